import { readFileSync } from 'node:fs';

/**
 * The version of @sentinel/cli from its package.json. `../package.json` is right both from
 * `src/` (tests) and from `dist/` (the built binary), so no build-time constant is needed.
 */
export function cliVersion(): string {
  const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
  const parsed = JSON.parse(text) as { version?: unknown };
  return typeof parsed.version === 'string' ? parsed.version : 'unknown';
}
