/**
 * PostgreSQL connection URLs: recognising them and showing them without their secret. A store
 * URL ends up in logs and error messages (`cannot open database <url>`), and it often carries
 * a password, so everything that prints one goes through {@link redactDatabaseUrl}.
 */

const POSTGRES_PROTOCOLS = new Set(['postgres:', 'postgresql:']);
const MASK = '***';

/** True for a parseable `postgres://` or `postgresql://` URL. */
export function isPostgresUrl(url: string): boolean {
  try {
    return POSTGRES_PROTOCOLS.has(new URL(url).protocol);
  } catch {
    return false;
  }
}

/**
 * The URL with its password (userinfo and a `password=` query parameter) replaced by `***`,
 * safe to log. A string that does not parse as a URL is still masked between `//` and `@`.
 */
export function redactDatabaseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.replace(/\/\/[^/@]*@/, `//${MASK}@`).replace(/([?&]password=)[^&]*/i, `$1${MASK}`);
  }
  if (parsed.password !== '') parsed.password = MASK;
  for (const key of [...parsed.searchParams.keys()]) {
    if (key.toLowerCase() === 'password') parsed.searchParams.set(key, MASK);
  }
  return parsed.toString();
}
