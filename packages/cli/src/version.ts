import { readFileSync } from 'node:fs';
import { sentinelCommit } from '@sentinel/api-core';

/**
 * The version of @sentinel/cli from its package.json. `../package.json` is right both from
 * `src/` (tests) and from `dist/` (the built binary, also when installed from a packed tarball).
 */
export function cliVersion(): string {
  const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
  const parsed = JSON.parse(text) as { version?: unknown };
  return typeof parsed.version === 'string' ? parsed.version : 'unknown';
}

/** The commit this binary was built from, shortened to 12 hex digits as git and Docker show it; `unknown` when not known. */
export function shortCommit(): string {
  return sentinelCommit()?.slice(0, 12) ?? 'unknown';
}

/** What `sentinel --version` prints: `sentinel 0.1.0 (commit 1a2b3c4d5e6f, node v20.19.0)`. */
export function versionLine(): string {
  return `sentinel ${cliVersion()} (commit ${shortCommit()}, node ${process.version})`;
}
