/**
 * JWT access tokens: HS256 only, `exp` and `iss` required. Verification sits on the hot path
 * (every authenticated request), so verified tokens are cached until they expire.
 *
 * A token names its user three ways: `sub` (the username), `uid` (the user's immutable id) and
 * `tv` (the user's token version when it was issued). This service only proves the token is
 * ours and unexpired; whether the user still exists and still accepts that version is checked
 * against the user record on every request by `AuthService.authenticate`, which is why caching
 * a verified token here is safe: the cache never answers that question.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { invalidRequest, invalidToken, SentinelError, tokenExpired } from '../contract/errors.js';
import type { Principal, Role } from '../contract/models.js';

export interface TokenServiceOptions {
  /** The HS256 key (see `resolveTokenSecret`). No default. */
  key: KeyObject;
  /** Token lifetime in seconds. Default 86400 (24 h). */
  ttlSeconds?: number;
  /** `iss` claim written and required. Default 'sentinelstacks'. */
  issuer?: string;
  /** Clock in epoch milliseconds (tests drive expiry with it). Default `Date.now`. */
  now?: () => number;
  /** Verified-token cache entries; 0 disables the cache. Default 10000. */
  cacheSize?: number;
}

/** Who a token is issued to: the principal plus what binds the token to that one account. */
export interface TokenSubject extends Principal {
  /** The user's immutable id (`UserRecord.id`): claim `uid`. */
  user_id: string;
  /** The user's token version at issue time (`UserRecord.token_version`): claim `tv`. */
  token_version: number;
}

/** What a verified token says. `role` is as signed, not necessarily the user's current role. */
export interface TokenClaims extends TokenSubject {
  /** Claim `iat` in epoch seconds; 0 when the token has none. */
  issued_at: number;
  /** Claim `exp` in epoch milliseconds: when the token stops being valid (sockets close then). */
  expires_at_ms: number;
  /**
   * Claim `jti`: the token's own id, what logout revokes (auth/revocations.ts). Absent only in
   * tokens minted elsewhere with our secret (every token `issue` signs has one).
   */
  jti?: string;
}

export interface IssuedToken {
  token: string;
  /** Expiry, RFC 3339 in UTC. */
  expires: string;
}

interface CachedToken {
  claims: TokenClaims;
  expMs: number;
}

const ALGORITHMS: jwt.Algorithm[] = ['HS256'];
/** Longer strings are not tokens we issued; refuse before parsing them. */
const MAX_TOKEN_LENGTH = 8192;
/** Longest `uid` claim accepted; ours are 32 characters. */
const MAX_USER_ID_LENGTH = 128;
/** Longest `jti` claim accepted; ours are 16 characters. */
const MAX_JTI_LENGTH = 128;

function invalid(): SentinelError {
  // A fixed message: the token (or any part of it) is never echoed back.
  return invalidToken();
}

function isRole(value: unknown): value is Role {
  return value === 'admin' || value === 'user';
}

export class TokenService {
  readonly #key: KeyObject;
  readonly #ttlSeconds: number;
  readonly #issuer: string;
  readonly #now: () => number;
  readonly #cacheSize: number;
  /** Insertion-ordered, so the first key is the oldest entry. */
  readonly #cache = new Map<string, CachedToken>();

  constructor(options: TokenServiceOptions) {
    this.#key = options.key;
    this.#ttlSeconds = options.ttlSeconds ?? 86400;
    this.#issuer = options.issuer ?? 'sentinelstacks';
    this.#now = options.now ?? Date.now;
    this.#cacheSize = options.cacheSize ?? 10000;
    if (!Number.isInteger(this.#ttlSeconds) || this.#ttlSeconds <= 0) {
      throw invalidRequest('token lifetime must be a positive whole number of seconds');
    }
  }

  /** Signs a token for `subject` (claims sub, uid, tv, role, iss, iat, exp, jti) valid for the configured lifetime. */
  issue(subject: TokenSubject): IssuedToken {
    const iat = Math.floor(this.#now() / 1000);
    const exp = iat + this.#ttlSeconds;
    const payload = {
      sub: subject.username,
      uid: subject.user_id,
      tv: subject.token_version,
      role: subject.role,
      iss: this.#issuer,
      iat,
      exp,
      jti: randomBytes(12).toString('base64url'),
    };
    const token = jwt.sign(payload, this.#key, { algorithm: 'HS256' });
    // Whole seconds: drop the ".000" toISOString would add.
    return { token, expires: new Date(exp * 1000).toISOString().replace('.000Z', 'Z') };
  }

  /**
   * Returns what a token says, or throws `unauthorized` ('token expired' or 'invalid token').
   * A token without `uid` and `tv` (as issued before tokens were bound to user ids) is
   * invalid. The role is the one signed into the token; callers that need the current role,
   * and whether the user still accepts the token, look the user up (AuthService does).
   */
  verify(token: string): TokenClaims {
    const nowMs = this.#now();
    const cached = this.#cache.get(token);
    if (cached !== undefined) {
      if (nowMs < cached.expMs) return cached.claims;
      this.#cache.delete(token);
      throw tokenExpired();
    }
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw invalid();
    let payload: string | jwt.JwtPayload;
    try {
      payload = jwt.verify(token, this.#key, {
        algorithms: ALGORITHMS,
        issuer: this.#issuer,
        // jsonwebtoken treats 0 as "use the real clock"; our clock never reads 0 outside contrived tests.
        clockTimestamp: Math.floor(nowMs / 1000),
      });
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw tokenExpired();
      throw invalid();
    }
    // jsonwebtoken accepts tokens without exp; ours must expire.
    if (typeof payload !== 'object' || typeof payload.exp !== 'number' || !Number.isFinite(payload.exp)) throw invalid();
    const { sub, iat } = payload;
    const role: unknown = payload.role;
    const uid: unknown = payload.uid;
    const tv: unknown = payload.tv;
    if (typeof sub !== 'string' || sub.length === 0 || !isRole(role)) throw invalid();
    if (typeof uid !== 'string' || uid.length === 0 || uid.length > MAX_USER_ID_LENGTH) throw invalid();
    if (typeof tv !== 'number' || !Number.isSafeInteger(tv) || tv < 0) throw invalid();
    const jti: unknown = payload.jti;
    if (jti !== undefined && (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH)) throw invalid();
    const claims: TokenClaims = Object.freeze({
      username: sub,
      role,
      user_id: uid,
      token_version: tv,
      issued_at: typeof iat === 'number' && Number.isFinite(iat) ? iat : 0,
      expires_at_ms: payload.exp * 1000,
      ...(jti === undefined ? {} : { jti }),
    });
    this.#remember(token, { claims, expMs: payload.exp * 1000 });
    return claims;
  }

  #remember(token: string, entry: CachedToken): void {
    if (this.#cacheSize <= 0) return;
    if (this.#cache.size >= this.#cacheSize) {
      const oldest = this.#cache.keys().next();
      if (oldest.done !== true) this.#cache.delete(oldest.value);
    }
    this.#cache.set(token, entry);
  }
}
