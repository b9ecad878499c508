/**
 * Content digests as OCI writes them: `sha256:<64 lowercase hex>`. Image IDs, blob names and
 * registry references all use this one form (docs/ARCHITECTURE.md#images-and-the-registry), so
 * the pattern lives here once instead of in every module that checks a digest.
 */
import { createHash } from 'node:crypto';

/** `sha256:` and 64 lowercase hex digits, nothing around them: the only digest form accepted. */
export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

/** True for a `sha256:<64 lowercase hex>` string. */
export function isDigest(value: string): boolean {
  return DIGEST_PATTERN.test(value);
}

/** `sha256:<64 hex>` of the bytes (strings are hashed as UTF-8). */
export function sha256Digest(bytes: string | Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
