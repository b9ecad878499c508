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
