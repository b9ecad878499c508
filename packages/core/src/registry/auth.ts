/**
 * Registry authentication as Docker clients do it: a request without credentials gets a 401
 * whose `WWW-Authenticate` names the scheme. `Basic` means username/password on every request;
 * `Bearer realm=…,service=…,scope=…` means "get a token from the realm" (the Docker token
 * protocol: GET realm?service=&scope= with Basic credentials, or anonymously), cached here per
 * realm, service and scope until it expires.
 */

/** One challenge of a `WWW-Authenticate` header. */
export interface AuthChallenge {
  /** Lowercased: `basic`, `bearer`, … */
  scheme: string;
  /** Parameter names lowercased; values unquoted. */
  params: Record<string, string>;
}

/**
 * Parses `WWW-Authenticate` (RFC 9110 §11.6.1): one or more challenges, each a scheme and
 * `name=value` / `name="quoted, value"` parameters. Unparseable parts are skipped, never thrown.
 */
export function parseWwwAuthenticate(header: string | string[] | undefined): AuthChallenge[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join(', ') : header;
  const challenges: AuthChallenge[] = [];
  let current: AuthChallenge | undefined;
  let i = 0;
  const n = text.length;
  const skipSpaceAndCommas = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === ',')) i++;
  };
  while (i < n) {
    skipSpaceAndCommas();
    const start = i;
    while (i < n && /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(text[i] as string)) i++;
    const token = text.slice(start, i);
    if (token === '') {
      i++;
      continue;
    }
    let j = i;
    while (j < n && (text[j] === ' ' || text[j] === '\t')) j++;
    let k = j + 1;
    while (k < n && (text[k] === ' ' || text[k] === '\t')) k++;
    const token68 = text[j] === '=' && (text[j + 1] === '=' || k >= n || text[k] === ',');
    if (token68) {
      // `Negotiate abc==`: a token68 credential blob of the current challenge; we never answer those.
      while (i < n && text[i] !== ',') i++;
    } else if (text[j] === '=' && current !== undefined) {
      // name=value inside the current challenge
      i = j + 1;
      while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
      let value = '';
      if (text[i] === '"') {
        i++;
        while (i < n && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < n) i++;
          value += text[i];
          i++;
        }
        i++;
      } else {
        const valueStart = i;
        while (i < n && text[i] !== ',' && text[i] !== ' ' && text[i] !== '\t') i++;
        value = text.slice(valueStart, i);
      }
      current.params[token.toLowerCase()] = value;
    } else {
      current = { scheme: token.toLowerCase(), params: {} };
      challenges.push(current);
    }
  }
  return challenges;
}

/** A bearer token and when to stop using it. */
interface CachedToken {
  token: string;
  expiresAt: number;
}

/** The Docker token protocol's default lifetime when the token server states none. */
export const DEFAULT_TOKEN_TTL_SECONDS = 60;
/** Tokens are dropped this long before they expire, so none expires in flight. */
const EXPIRY_MARGIN_MS = 5_000;
/** Bound on cached tokens per client (one per repository and access kind). */
const MAX_CACHED_TOKENS = 256;

/** Bearer tokens by realm, service and scope, until they expire. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  /** `now`: clock in ms. Default `Date.now`. */
  constructor(private readonly now: () => number = Date.now) {}

  /** The cache key of a token: realm, service and scope. */
  static key(realm: string, service: string | undefined, scope: string): string {
    return `${realm}\n${service ?? ''}\n${scope}`;
  }

  /** The token for `key`, or undefined when none is cached or it is about to expire. */
  get(key: string): string | undefined {
    const cached = this.tokens.get(key);
    if (cached === undefined) return undefined;
    if (cached.expiresAt - EXPIRY_MARGIN_MS <= this.now()) {
      this.tokens.delete(key);
      return undefined;
    }
    return cached.token;
  }

  /** `expiresInSeconds` default {@link DEFAULT_TOKEN_TTL_SECONDS}. */
  set(key: string, token: string, expiresInSeconds: number = DEFAULT_TOKEN_TTL_SECONDS): void {
    if (this.tokens.size >= MAX_CACHED_TOKENS) {
      const oldest = this.tokens.keys().next();
      if (!oldest.done) this.tokens.delete(oldest.value);
    }
    this.tokens.set(key, { token, expiresAt: this.now() + expiresInSeconds * 1000 });
  }

  /** Forgets a token (the registry refused it). */
  delete(key: string): void {
    this.tokens.delete(key);
  }
}
