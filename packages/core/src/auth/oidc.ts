/**
 * OpenID Connect bearer tokens: access tokens signed by an external issuer (Keycloak, Auth0,
 * Entra ID, ...), verified against the keys the issuer publishes. Discovery
 * (`<issuer>/.well-known/openid-configuration`) and the JWKS are fetched through undici with a
 * size cap and a timeout, and cached; a token naming an unknown `kid` (the issuer rotated its
 * keys) triggers one JWKS refetch, at most one per `jwksRefetchIntervalMs`, so a storm of
 * forged kids cannot turn this server into a load generator against the issuer.
 *
 * Only asymmetric algorithms are accepted (RS256, ES256, EdDSA): an HS* token would be
 * "signed" with a secret the issuer shares with every client, and `none` is no signature at
 * all. `iss` must equal the configured issuer exactly, `aud` must contain the audience, `exp`
 * is required, and `exp`/`nbf` are checked with a small clock tolerance.
 *
 * This module only proves a token is genuine and current; which user it maps to is
 * AuthService's and UserService's business.
 */
import { createPublicKey, verify as verifySignature, type JsonWebKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { request } from 'undici';
import { invalidRequest, invalidToken, SentinelError, tokenExpired, unavailable } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import { discardBody } from '../undici-body.js';

export interface OidcOptions {
  /** The issuer URL, exactly as tokens carry it in `iss` (https, or http on a loopback address for tests). No default. */
  issuer: string;
  /** The audience this API is: a token's `aud` must contain it. No default. */
  audience: string;
  /**
   * A claim that grants admin when it holds `adminValue` (equal, or an element of an array).
   * A dotted name (`realm_access.roles`) walks into nested objects when no claim has the whole
   * name. Default none: OIDC users are never admins by claim.
   */
  adminClaim?: string;
  /** The value of `adminClaim` that grants admin. Required with `adminClaim`. */
  adminValue?: string;
  /** Clock difference tolerated for `exp` and `nbf`, in seconds. Default 60. */
  clockToleranceSeconds?: number;
  /** Least time between two JWKS refetches caused by unknown key ids. Default 30000 ms. */
  jwksRefetchIntervalMs?: number;
  /** How long fetched keys are used before they are fetched again. Default 600000 ms (10 min). */
  jwksMaxAgeMs?: number;
  /** Timeout of one discovery or JWKS fetch. Default 5000 ms. */
  fetchTimeoutMs?: number;
  /** Largest discovery document or JWKS accepted. Default 262144 bytes. */
  maxDocumentBytes?: number;
  /** Verified tokens kept (least recently used go first); 0 disables the cache. Default 10000. */
  cacheSize?: number;
  /** How long a verified token is answered from the cache before it is verified again (never past its expiry). Default 300000 ms (5 min). */
  cacheTtlMs?: number;
  /** Where fetch failures are logged (never tokens). Default: silent. */
  logger?: Logger;
  /** Clock in epoch milliseconds. Default `Date.now`. */
  now?: () => number;
}

/** What a verified OIDC access token says, as far as this server cares. */
export interface OidcIdentity {
  issuer: string;
  /** Claim `sub`. */
  subject: string;
  /** Claim `preferred_username` when it is a non-empty string. */
  preferredUsername?: string;
  /** The space-separated `scope` claim (or `scp`), split; undefined when the token has neither. */
  scopes?: readonly string[];
  /** True when `adminClaim` holds `adminValue` in this token. */
  admin: boolean;
  /** Claim `jti`, when present. */
  tokenId?: string;
  /** Claim `exp` in epoch milliseconds. */
  expiresAtMs: number;
}

type OidcAlgorithm = 'RS256' | 'ES256' | 'EdDSA';

interface VerificationKey {
  kid: string | undefined;
  alg: OidcAlgorithm;
  key: KeyObject;
}

interface KeySet {
  keys: VerificationKey[];
  fetchedAtMs: number;
}

interface CachedIdentity {
  identity: OidcIdentity;
  /** Until when the cached answer holds: `exp` plus the tolerance, or the cache's time to live if sooner. */
  untilMs: number;
}

const ALGORITHMS: ReadonlySet<string> = new Set<OidcAlgorithm>(['RS256', 'ES256', 'EdDSA']);
/** Longest token considered; bigger ones are refused before parsing. */
const MAX_TOKEN_LENGTH = 8192;
/** Longest `sub` accepted (OpenID Connect Core says 255 ASCII characters). */
const MAX_SUBJECT_LENGTH = 255;
const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]']);

function invalid(): SentinelError {
  // A fixed message: nothing of the token, or of why exactly it failed, is echoed back.
  return invalidToken();
}

/** The issuer URL, checked: https, or http on loopback; no query, fragment or credentials. */
export function checkIssuerUrl(issuer: string): URL {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw invalidRequest(`OIDC issuer "${issuer}" is not a URL`);
  }
  const loopback = LOOPBACK_HOSTS.has(url.hostname) || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw invalidRequest('OIDC issuer must be an https:// URL (http:// only on a loopback address)');
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw invalidRequest('OIDC issuer must not carry a query, a fragment or credentials');
  }
  return url;
}

function decodeSegment(segment: string): unknown {
  try {
    return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The algorithm a JWK can verify, or undefined for keys this server does not use. */
function algorithmOf(jwk: Record<string, unknown>): OidcAlgorithm | undefined {
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined;
  let alg: OidcAlgorithm | undefined;
  if (jwk.kty === 'RSA') alg = 'RS256';
  else if (jwk.kty === 'EC' && jwk.crv === 'P-256') alg = 'ES256';
  else if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') alg = 'EdDSA';
  // A key published for one algorithm is not used for another.
  if (alg === undefined || (jwk.alg !== undefined && jwk.alg !== alg)) return undefined;
  return alg;
}

export class OidcVerifier {
  readonly issuer: string;
  readonly audience: string;
  readonly #issuerUrl: URL;
  readonly #adminClaim: string | undefined;
  readonly #adminValue: string | undefined;
  readonly #toleranceSeconds: number;
  readonly #refetchIntervalMs: number;
  readonly #maxAgeMs: number;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #cacheSize: number;
  readonly #cacheTtlMs: number;
  readonly #log: Logger;
  readonly #now: () => number;
  /** Insertion-ordered; a hit moves its entry to the end, so the first key is the least recently used. */
  readonly #cache = new Map<string, CachedIdentity>();
  #jwksUri: string | undefined;
  #keys: KeySet | undefined;
  /** The fetch under way, shared by every request that needs keys meanwhile. */
  #fetching: Promise<KeySet> | undefined;
  /** When the last unknown-kid refetch started; -Infinity before the first. */
  #lastRefetchMs = Number.NEGATIVE_INFINITY;

  constructor(options: OidcOptions) {
    this.#issuerUrl = checkIssuerUrl(options.issuer);
    this.issuer = options.issuer;
    if (typeof options.audience !== 'string' || options.audience.length === 0) throw invalidRequest('OIDC audience is required with an OIDC issuer');
    this.audience = options.audience;
    if ((options.adminClaim === undefined) !== (options.adminValue === undefined) || options.adminClaim === '' || options.adminValue === '') {
      throw invalidRequest('OIDC admin claim and admin value go together, both non-empty');
    }
    this.#adminClaim = options.adminClaim;
    this.#adminValue = options.adminValue;
    this.#toleranceSeconds = options.clockToleranceSeconds ?? 60;
    this.#refetchIntervalMs = options.jwksRefetchIntervalMs ?? 30_000;
    this.#maxAgeMs = options.jwksMaxAgeMs ?? 600_000;
    this.#timeoutMs = options.fetchTimeoutMs ?? 5000;
    this.#maxBytes = options.maxDocumentBytes ?? 262_144;
    this.#cacheSize = options.cacheSize ?? 10_000;
    this.#cacheTtlMs = options.cacheTtlMs ?? 300_000;
    this.#log = options.logger ?? silentLogger;
    this.#now = options.now ?? Date.now;
  }

  /**
   * True when `token` looks like a JWT whose `iss` is this issuer (unverified: it only decides
   * which verifier gets the token). Our own login tokens carry another `iss`.
   */
  claimsToBeOurs(token: string): boolean {
    if (this.#cache.has(token)) return true;
    if (token.length > MAX_TOKEN_LENGTH) return false;
    const first = token.indexOf('.');
    const second = first < 0 ? -1 : token.indexOf('.', first + 1);
    if (second < 0) return false;
    const payload = decodeSegment(token.slice(first + 1, second));
    return isRecord(payload) && payload.iss === this.issuer;
  }

  /**
   * Verifies an access token from this issuer and returns what it says; throws `unauthorized`
   * ('token expired' or 'invalid token'), or `unavailable` when the issuer's keys cannot be
   * fetched (a retry may succeed; the token may be fine).
   */
  async verify(token: string): Promise<OidcIdentity> {
    const nowMs = this.#now();
    const cached = this.#cache.get(token);
    if (cached !== undefined) {
      this.#cache.delete(token);
      if (nowMs < cached.untilMs) {
        this.#cache.set(token, cached);
        return cached.identity;
      }
      // Past the cached window: verified again below (expired, or signed by a key withdrawn since, or fine).
    }
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw invalid();
    const parts = token.split('.');
    if (parts.length !== 3) throw invalid();
    const header = decodeSegment(parts[0] ?? '');
    if (!isRecord(header) || typeof header.alg !== 'string' || !ALGORITHMS.has(header.alg)) throw invalid();
    const alg = header.alg as OidcAlgorithm;
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    const key = await this.#keyFor(kid, alg);
    const payload = this.#checkSignature(token, parts, key, alg, nowMs);
    const identity = this.#identityOf(payload, nowMs);
    // Briefly: a key the issuer withdraws stops working within this window plus the JWKS age.
    this.#remember(token, { identity, untilMs: Math.min(identity.expiresAtMs + this.#toleranceSeconds * 1000, nowMs + this.#cacheTtlMs) });
    return identity;
  }

  #checkSignature(token: string, parts: string[], key: KeyObject, alg: OidcAlgorithm, nowMs: number): Record<string, unknown> {
    if (alg === 'EdDSA') {
      // jsonwebtoken 9 has no EdDSA; node:crypto verifies Ed25519 itself, the claims are checked below.
      const signed = Buffer.from(`${parts[0] ?? ''}.${parts[1] ?? ''}`);
      const signature = Buffer.from(parts[2] ?? '', 'base64url');
      if (!verifySignature(null, signed, key, signature)) throw invalid();
      const payload = decodeSegment(parts[1] ?? '');
      if (!isRecord(payload)) throw invalid();
      return payload;
    }
    try {
      const payload = jwt.verify(token, key, {
        algorithms: [alg],
        issuer: this.issuer,
        audience: this.audience,
        clockTolerance: this.#toleranceSeconds,
        clockTimestamp: Math.floor(nowMs / 1000),
      });
      if (!isRecord(payload)) throw invalid();
      return payload;
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw tokenExpired();
      throw invalid();
    }
  }

  /** The claims every token must pass, whatever verified its signature. */
  #identityOf(payload: Record<string, unknown>, nowMs: number): OidcIdentity {
    const nowSeconds = nowMs / 1000;
    if (payload.iss !== this.issuer) throw invalid();
    const aud = payload.aud;
    if (!(aud === this.audience || (Array.isArray(aud) && aud.includes(this.audience)))) throw invalid();
    const { exp, nbf, sub } = payload;
    if (typeof exp !== 'number' || !Number.isFinite(exp)) throw invalid();
    if (nowSeconds >= exp + this.#toleranceSeconds) throw tokenExpired();
    if (nbf !== undefined && (typeof nbf !== 'number' || nowSeconds < nbf - this.#toleranceSeconds)) throw invalid();
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_SUBJECT_LENGTH) throw invalid();
    const scopes = this.#scopesOf(payload);
    const preferred = payload.preferred_username;
    return Object.freeze({
      issuer: this.issuer,
      subject: sub,
      ...(typeof preferred === 'string' && preferred.length > 0 ? { preferredUsername: preferred } : {}),
      ...(scopes === undefined ? {} : { scopes }),
      admin: this.#isAdmin(payload),
      ...(typeof payload.jti === 'string' && payload.jti.length > 0 && payload.jti.length <= 256 ? { tokenId: payload.jti } : {}),
      expiresAtMs: exp * 1000,
    });
  }

  /** `scope` (RFC 9068, a space-separated string) or Entra's `scp`; arrays are accepted too. */
  #scopesOf(payload: Record<string, unknown>): readonly string[] | undefined {
    const raw = payload.scope ?? payload.scp;
    if (raw === undefined) return undefined;
    if (typeof raw === 'string') return Object.freeze(raw.split(' ').filter((s) => s.length > 0));
    if (Array.isArray(raw)) return Object.freeze(raw.filter((s): s is string => typeof s === 'string'));
    return Object.freeze([]);
  }

  #isAdmin(payload: Record<string, unknown>): boolean {
    if (this.#adminClaim === undefined || this.#adminValue === undefined) return false;
    let value: unknown = payload[this.#adminClaim];
    if (value === undefined && this.#adminClaim.includes('.')) {
      value = payload;
      for (const part of this.#adminClaim.split('.')) value = isRecord(value) ? value[part] : undefined;
    }
    if (Array.isArray(value)) return value.includes(this.#adminValue);
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value) === this.#adminValue;
    return false;
  }

  async #keyFor(kid: string | undefined, alg: OidcAlgorithm): Promise<KeyObject> {
    const nowMs = this.#now();
    let set = this.#keys;
    if (set === undefined) set = await this.#fetchKeys();
    else if (nowMs - set.fetchedAtMs >= this.#maxAgeMs) {
      // Keys past their age are fetched again; while the issuer is unreachable the old ones still serve.
      const stale = set;
      set = await this.#fetchKeys().catch(() => stale);
    }
    let key = pick(set, kid, alg);
    if (key === undefined && nowMs - this.#lastRefetchMs >= this.#refetchIntervalMs && set.fetchedAtMs < nowMs) {
      // An unknown kid may be a key the issuer has just rotated in: look once, then not again for a while.
      this.#lastRefetchMs = nowMs;
      set = await this.#fetchKeys();
      key = pick(set, kid, alg);
    } else if (key === undefined && this.#fetching !== undefined) {
      // A refetch another request started may bring the key.
      key = pick(await this.#fetching, kid, alg);
    }
    if (key === undefined) throw invalid();
    return key;
  }

  #fetchKeys(): Promise<KeySet> {
    this.#fetching ??= (async () => {
      try {
        const set = await this.#loadKeys();
        this.#keys = set;
        return set;
      } catch (err) {
        this.#log.warn('OIDC keys could not be fetched', { issuer: this.issuer, error: err instanceof Error ? err.message : String(err) });
        throw unavailable('the OpenID provider\'s keys could not be fetched');
      } finally {
        this.#fetching = undefined;
      }
    })();
    return this.#fetching;
  }

  async #loadKeys(): Promise<KeySet> {
    if (this.#jwksUri === undefined) {
      const base = this.#issuerUrl.href.replace(/\/$/, '');
      const discovery = await this.#fetchJson(`${base}/.well-known/openid-configuration`);
      if (!isRecord(discovery) || discovery.issuer !== this.issuer) throw new Error('discovery document names another issuer');
      const jwksUri = discovery.jwks_uri;
      if (typeof jwksUri !== 'string') throw new Error('discovery document has no jwks_uri');
      checkIssuerUrl(jwksUri);
      this.#jwksUri = jwksUri;
    }
    const jwks = await this.#fetchJson(this.#jwksUri);
    if (!isRecord(jwks) || !Array.isArray(jwks.keys)) throw new Error('JWKS has no keys array');
    const keys: VerificationKey[] = [];
    for (const jwk of jwks.keys) {
      if (!isRecord(jwk)) continue;
      const alg = algorithmOf(jwk);
      if (alg === undefined) continue;
      try {
        // A JWK with private members would still yield its public half; only public parts are kept.
        const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
        keys.push({ kid: typeof jwk.kid === 'string' ? jwk.kid : undefined, alg, key });
      } catch {
        // A malformed key is skipped; the others still work.
      }
    }
    return { keys, fetchedAtMs: this.#now() };
  }

  async #fetchJson(url: string): Promise<unknown> {
    const res = await request(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (res.statusCode !== 200) {
      discardBody(res.body);
      throw new Error(`GET ${url} answered ${res.statusCode}`);
    }
    const declared = Number(res.headers['content-length'] ?? 0);
    if (declared > this.#maxBytes) {
      discardBody(res.body);
      throw new Error(`GET ${url} is larger than ${this.#maxBytes} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > this.#maxBytes) {
        discardBody(res.body);
        throw new Error(`GET ${url} is larger than ${this.#maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  }

  #remember(token: string, entry: CachedIdentity): void {
    if (this.#cacheSize <= 0) return;
    if (this.#cache.size >= this.#cacheSize) {
      const oldest = this.#cache.keys().next();
      if (oldest.done !== true) this.#cache.delete(oldest.value);
    }
    this.#cache.set(token, entry);
  }
}

/** The key for `kid` and `alg`; a token without `kid` gets the only key for its algorithm, if there is exactly one. */
function pick(set: KeySet, kid: string | undefined, alg: OidcAlgorithm): KeyObject | undefined {
  if (kid === undefined) {
    const candidates = set.keys.filter((k) => k.alg === alg);
    return candidates.length === 1 ? candidates[0]?.key : undefined;
  }
  return set.keys.find((k) => k.kid === kid && k.alg === alg)?.key;
}
