/**
 * What this build is: the package version and the git commit it was built from. tsup writes
 * both in at build time (`define` in tsup.config.ts); running from the sources (tests), the
 * version comes from package.json and the commit is unknown unless `SENTINEL_COMMIT` says it.
 */
import { readFileSync } from 'node:fs';

declare const __SENTINEL_VERSION__: string | undefined;
declare const __SENTINEL_COMMIT__: string | undefined;

/** The REST API's version: the `/v1` path prefix. Bumped only by an incompatible change. */
export const API_VERSION = 'v1';

/** The API's major version, the number in {@link API_VERSION}. */
export const API_MAJOR_VERSION = 1;

/**
 * The API's minor version inside v1 (docs/VERSIONING.md): raised by one with every release that
 * adds to the contract (a route, an optional field, a header, an error code, a frame type) and
 * never lowered. Clients compare it to learn whether what they rely on is there.
 */
export const API_MINOR_VERSION = 0;

/** The response header that carries {@link apiVersionHeader} on every HTTP response and upgrade. */
export const API_VERSION_HEADER = 'Sentinel-Api-Version';

/** The value of `Sentinel-Api-Version`, e.g. `1.0`: the one place transports take it from. */
export function apiVersionHeader(): string {
  return `${API_MAJOR_VERSION}.${API_MINOR_VERSION}`;
}

function sourceVersion(): string {
  try {
    const parsed = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof parsed.version === 'string' ? parsed.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The version of the SentinelStacks packages (they are released together), e.g. `0.1.0`. */
export function sentinelVersion(): string {
  return typeof __SENTINEL_VERSION__ === 'string' && __SENTINEL_VERSION__ !== '' ? __SENTINEL_VERSION__ : sourceVersion();
}

/**
 * The git commit of this build: `SENTINEL_COMMIT` from the environment (for images built
 * without `.git`), else the one written in at build time, else null (unknown).
 */
export function sentinelCommit(env: NodeJS.ProcessEnv = process.env): string | null {
  const fromEnv = env.SENTINEL_COMMIT?.trim();
  if (fromEnv !== undefined && /^[0-9a-f]{7,64}$/i.test(fromEnv)) return fromEnv.toLowerCase();
  return typeof __SENTINEL_COMMIT__ === 'string' && __SENTINEL_COMMIT__ !== '' ? __SENTINEL_COMMIT__ : null;
}
