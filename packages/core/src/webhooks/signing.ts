/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com, "Signature scheme"): the
 * receiver gets `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`,
 * `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the base64-decoded part
 * of the secret after `whsec_`. Several space-separated signatures may be sent (rotation).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { invalidRequest } from '../contract/errors.js';

/** What every webhook secret starts with (the spec's convention). */
export const WEBHOOK_SECRET_PREFIX = 'whsec_';
/** Random bytes in a generated secret: the spec asks for 24 to 64; 32 is SHA-256's output size. */
const SECRET_BYTES = 32;
/** Default clock skew accepted by {@link verifyWebhookSignature}: the spec's 5 minutes. */
export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 5 * 60;
/** A generated secret: `whsec_` + base64 of 32 random bytes (the shape of a `webhook_secret` field). */
export const WEBHOOK_SECRET_PATTERN = '^whsec_[A-Za-z0-9+/]{43}=$';

/** A new secret: `whsec_` + base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return WEBHOOK_SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/** The HMAC key of a secret: the base64 after `whsec_` decoded. `invalid_request` for anything else. */
export function webhookSecretKey(secret: string): Buffer {
  if (!secret.startsWith(WEBHOOK_SECRET_PREFIX)) throw invalidRequest('a webhook secret starts with whsec_');
  const key = Buffer.from(secret.slice(WEBHOOK_SECRET_PREFIX.length), 'base64');
  if (key.length === 0) throw invalidRequest('a webhook secret holds base64 after whsec_');
  return key;
}

export interface WebhookSignatureInput {
  /** The `webhook-id` (the delivery id). */
  id: string;
  /** The `webhook-timestamp`: unix seconds. */
  timestamp: number;
  /** The exact body bytes sent. */
  body: string | Buffer;
}

/** `v1,<base64 signature>` of one message with `secret` (`whsec_…`). */
export function signWebhook(secret: string, input: WebhookSignatureInput): string {
  const mac = createHmac('sha256', webhookSecretKey(secret));
  mac.update(`${input.id}.${input.timestamp}.`);
  mac.update(input.body);
  return `v1,${mac.digest('base64')}`;
}

/** The three Standard Webhooks headers of one attempt (lower case, as HTTP/2 and undici send them). */
export function webhookHeaders(secret: string, input: WebhookSignatureInput): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  return { 'webhook-id': input.id, 'webhook-timestamp': String(input.timestamp), 'webhook-signature': signWebhook(secret, input) };
}

export interface VerifyWebhookOptions {
  /** Largest accepted distance between `webhook-timestamp` and now, in seconds. Default 300 (the spec's 5 minutes). */
  toleranceSeconds?: number;
  /** Now, in unix seconds. Default `Date.now() / 1000`. */
  nowSeconds?: number;
}

/**
 * Checks a received webhook: the timestamp within the tolerance (replays of old messages are
 * refused) and one of the `v1` signatures in `webhook-signature` equal to the expected one,
 * compared in constant time. Returns false on any mismatch, true when genuine.
 */
export function verifyWebhookSignature(
  secret: string,
  headers: { 'webhook-id'?: string; 'webhook-timestamp'?: string; 'webhook-signature'?: string },
  body: string | Buffer,
  options: VerifyWebhookOptions = {},
): boolean {
  const id = headers['webhook-id'];
  const timestampText = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (id === undefined || timestampText === undefined || signatures === undefined || !/^\d{1,12}$/.test(timestampText)) return false;
  const timestamp = Number(timestampText);
  const now = options.nowSeconds ?? Date.now() / 1000;
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? DEFAULT_WEBHOOK_TOLERANCE_SECONDS)) return false;
  const expected = Buffer.from(signWebhook(secret, { id, timestamp, body }).slice('v1,'.length), 'base64');
  let genuine = false;
  for (const entry of signatures.split(' ')) {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || value === undefined) continue;
    const given = Buffer.from(value, 'base64');
    // Every candidate is compared (no early exit), each in constant time.
    if (given.length === expected.length && timingSafeEqual(given, expected)) genuine = true;
  }
  return genuine;
}
