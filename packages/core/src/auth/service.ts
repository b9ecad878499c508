/**
 * Login and request authentication: the two doors into the API (docs/ARCHITECTURE.md#auth-and-tenancy).
 */
import { noAudit, type AuditRecorder } from '../contract/audit.js';
import { authenticationRequired, invalidRequest, invalidToken, notFound, SentinelError, tokenExpired } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import type { Principal } from '../contract/models.js';
import { invalidApiKey, looksLikeApiKey, type ApiKeyService } from './api-keys.js';
import { isScope, roleScopes, type Scope } from '../contract/scopes.js';
import type { OidcIdentity, OidcVerifier } from './oidc.js';
import type { TokenRevocations } from './revocations.js';
import { LoginThrottle, type LoginLimiter } from './throttle.js';
import type { TokenClaims, TokenService } from './tokens.js';
import type { UserAuthState, UserService } from './users.js';

export interface AuthServiceOptions {
  /** Accounts and credentials. No default. */
  users: UserService;
  /** Token signing and verification. No default. */
  tokens: TokenService;
  /** Login failure limiter. Default: an in-process `new LoginThrottle()`. */
  throttle?: LoginLimiter;
  /** Where logins are logged (never passwords or tokens). Default: silent. */
  logger?: Logger;
  /** Resolves `Bearer sk_sentinel_…` API keys. Default none: such a credential is refused 'invalid api key'. */
  keys?: ApiKeyService;
  /** Bearer tokens of an OpenID Connect issuer, accepted beside our own. Default none. */
  oidc?: OidcVerifier;
  /** Where accounts created for OIDC identities are recorded (`user.created`). Default: nowhere. */
  audit?: AuditRecorder;
  /** The revoked-token list logout writes to. Default none: logout is refused as unsupported. */
  revocations?: TokenRevocations;
  /** Clock in epoch ms, for credential expiry checks. Default `Date.now`. */
  now?: () => number;
}

export interface LoginResult {
  token: string;
  username: string;
  /** RFC 3339. */
  expires: string;
}

/** Longest Authorization header considered: 8 KiB. */
const MAX_AUTHORIZATION_LENGTH = 8192;
const BEARER_PREFIX_LENGTH = 7; // "Bearer "
/**
 * Clock difference tolerated between the instance that issued a token and the one checking
 * it, plus the second `iat` is truncated to. Within it, a token that does not match the cached
 * account may be newer than the cache, and earns a fresh read instead of a refusal.
 */
const ISSUE_SKEW_MS = 2000;
/** Identity → account links kept for the hot path; a miss costs one store read. */
const IDENTITY_CACHE_SIZE = 10000;

/** True when `header` starts with "bearer " in any letter case, without allocating. */
function hasBearerScheme(header: string): boolean {
  if (header.length < BEARER_PREFIX_LENGTH || header.charCodeAt(6) !== 0x20) return false;
  const scheme = 'bearer';
  for (let i = 0; i < 6; i++) {
    if ((header.charCodeAt(i) | 0x20) !== scheme.charCodeAt(i)) return false;
  }
  return true;
}

export class AuthService {
  readonly #users: UserService;
  readonly #tokens: TokenService;
  readonly #throttle: LoginLimiter;
  readonly #log: Logger;
  readonly #keys: ApiKeyService | undefined;
  readonly #oidc: OidcVerifier | undefined;
  readonly #audit: AuditRecorder;
  /** `issuer \n subject` → the account last resolved for it, so the hot path skips the identity lookup. */
  readonly #identities = new Map<string, { username: string; user_id: string }>();
  readonly #revocations: TokenRevocations | undefined;
  readonly #now: () => number;
  /**
   * The login token behind each principal this service handed out (a session's, or the one a
   * ticket was minted with), for logout and for rechecking an open socket's credential. Weak:
   * a principal lives as long as its request or socket.
   */
  readonly #claimsOf = new WeakMap<Principal, TokenClaims>();

  constructor(options: AuthServiceOptions) {
    this.#users = options.users;
    this.#tokens = options.tokens;
    this.#throttle = options.throttle ?? new LoginThrottle();
    this.#log = options.logger ?? silentLogger;
    this.#keys = options.keys;
    this.#oidc = options.oidc;
    this.#audit = options.audit ?? noAudit;
    this.#revocations = options.revocations;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Exchanges a username and password for a token. Throttled (`rate_limited`) per username and
   * address and per address; failures for a username from everywhere only slow its logins down
   * (see LoginThrottle). Wrong credentials are `unauthorized` 'invalid username or password',
   * whether or not the user exists.
   */
  async login(input: { username: string; password: string }, remoteAddress: string): Promise<LoginResult> {
    const { username } = input;
    try {
      await this.#throttle.check(username, remoteAddress);
    } catch (err) {
      this.#log.warn('login refused: too many failures', { username, address: remoteAddress });
      throw err;
    }
    // An unexpected error here (store down) records nothing: the limiter lets an unrecorded
    // attempt lapse on its own, and an outage must not lock users out.
    const principal = await this.#users.verifyCredentials(username, input.password);
    if (principal === null) {
      await this.#throttle.recordFailure(username, remoteAddress);
      this.#log.warn('login failed', { username, address: remoteAddress });
      throw new SentinelError('unauthorized', 'invalid username or password');
    }
    // Said plainly (the password was right, so it tells a guesser nothing): the user should
    // ask an admin rather than retry or reset the password.
    if (principal.disabled) {
      await this.#throttle.recordSuccess(username, remoteAddress);
      this.#log.warn('login refused: account disabled', { username, address: remoteAddress });
      throw accountDisabled();
    }
    await this.#throttle.recordSuccess(username, remoteAddress);
    const issued = this.#tokens.issue(principal);
    this.#log.info('login succeeded', { username: principal.username, address: remoteAddress });
    return { token: issued.token, username: principal.username, expires: issued.expires };
  }

  /**
   * Issues a token for an existing user without their password: for embedding apps that
   * authenticate users themselves, scripts and tests. `not_found` when there is no such user.
   */
  async issueToken(username: string): Promise<LoginResult> {
    const state = await this.#users.authState(username, { fresh: true });
    if (state === null) throw notFound('user', username);
    if (state.disabled) throw accountDisabled();
    const issued = this.#tokens.issue(state);
    return { token: issued.token, username: state.username, expires: issued.expires };
  }

  /**
   * Resolves an `Authorization` header to the caller. Requires `Bearer <token>` (scheme in
   * any case, one token); the role comes from the store, not the token, so demotions and
   * deletions take effect at once, and so does a password change (see {@link checkClaims}).
   * Every failure is `unauthorized`. An `sk_sentinel_…` credential is an API key (see
   * ApiKeyService.authenticate).
   */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    if (authorization === undefined || authorization.length === 0) throw authenticationRequired();
    if (authorization.length > MAX_AUTHORIZATION_LENGTH) throw invalidToken();
    if (!hasBearerScheme(authorization)) throw new SentinelError('unauthorized', 'Bearer token required');
    const token = authorization.slice(BEARER_PREFIX_LENGTH);
    if (token.length === 0) throw new SentinelError('unauthorized', 'Bearer token required');
    if (token.includes(' ')) throw invalidToken();
    // API keys carry their own prefix, so one header serves both kinds of credential.
    if (looksLikeApiKey(token)) {
      if (this.#keys === undefined) throw invalidApiKey();
      return this.#keys.authenticate(token);
    }
    if (this.#oidc?.claimsToBeOurs(token) === true) return this.#authenticateOidc(this.#oidc, token);
    const claims = this.#tokens.verify(token);
    return this.principalFor(claims, await this.checkClaims(claims));
  }

  /**
   * The principal of a verified session token: the account as stored now, `via: 'session'`,
   * the token's `jti` as its credential id and its expiry, remembered so logout and socket
   * rechecks find the token again.
   */
  principalFor(claims: TokenClaims, state: UserAuthState): Principal {
    const principal: Principal = {
      username: state.username,
      role: state.role,
      via: 'session',
      expiresAtMs: claims.expires_at_ms,
      ...(claims.jti === undefined ? {} : { credentialId: claims.jti }),
    };
    this.#claimsOf.set(principal, claims);
    return principal;
  }

  /** The login token claims behind `principal` (a session's, or a ticket's underlying token), if this service issued the principal. */
  claimsOf(principal: Principal): TokenClaims | undefined {
    return this.#claimsOf.get(principal);
  }

  /** Remembers the token behind a principal built elsewhere (a ticket's), so {@link recheck} covers it. */
  bindClaims(principal: Principal, claims: TokenClaims): void {
    this.#claimsOf.set(principal, claims);
  }

  /**
   * Throws `unauthorized` when the credential behind `principal` is no longer valid: expired,
   * logged out, its user deleted or its tokens revoked (password change, revoke-tokens). A
   * key's principal is checked against the key store; one this service did not issue is checked
   * for expiry only. Used to recheck open sockets.
   */
  async recheck(principal: Principal): Promise<void> {
    if (principal.expiresAtMs !== undefined && principal.expiresAtMs <= this.#now()) throw tokenExpired();
    // An API key is checked against the store: revoked anywhere, its owner gone or disabled.
    if (principal.via === 'key' && this.#keys !== undefined) {
      await this.#keys.recheck(principal);
      return;
    }
    const claims = this.#claimsOf.get(principal);
    if (claims === undefined) return;
    await this.checkClaims(claims);
  }

  /**
   * Logs out: revokes the login token behind `principal` on every instance (REST 401 at once here,
   * within a second elsewhere; its sockets close with 4401). `invalid_request` for a principal
   * that is not a login session with a token id.
   */
  async logout(principal: Principal): Promise<void> {
    const claims = this.#claimsOf.get(principal);
    if (claims?.jti === undefined || principal.via !== 'session') throw invalidRequest('only a login token can be logged out');
    if (this.#revocations === undefined) throw invalidRequest('logout is not available on this server');
    await this.#revocations.revoke({ jti: claims.jti, username: claims.username, expires_at_ms: claims.expires_at_ms });
    this.#log.info('logged out', { username: claims.username });
  }

  /**
   * An OpenID Connect access token: verified by the issuer's keys (cached), mapped to its local
   * account (created on first use). The role is `admin` when the token carries the admin claim
   * or the account is an admin here; the token's `scope` values that are ours become the
   * principal's scopes (cut to the role), and a token without a scope claim holds its role's.
   */
  async #authenticateOidc(oidc: OidcVerifier, token: string): Promise<Principal> {
    const identity = await oidc.verify(token);
    const state = await this.#accountOf(identity);
    const role = identity.admin || state.role === 'admin' ? 'admin' : 'user';
    const scopes = identity.scopes === undefined ? undefined : ourScopes(identity.scopes, role);
    return Object.freeze({
      username: state.username,
      role,
      via: 'session',
      expiresAtMs: identity.expiresAtMs,
      ...(scopes === undefined ? {} : { scopes }),
      ...(identity.tokenId === undefined ? {} : { credentialId: identity.tokenId }),
    });
  }

  async #accountOf(identity: OidcIdentity): Promise<UserAuthState> {
    const key = `${identity.issuer}\n${identity.subject}`;
    const known = this.#identities.get(key);
    if (known !== undefined) {
      // The account cache is invalidated by every write, on every instance: a deleted account is gone here too.
      const state = await this.#users.authState(known.username);
      if (state !== null && state.user_id === known.user_id) return state;
      this.#identities.delete(key);
    }
    const { state, created } = await this.#users.resolveIdentity({
      issuer: identity.issuer,
      subject: identity.subject,
      ...(identity.preferredUsername === undefined ? {} : { preferredUsername: identity.preferredUsername }),
    });
    if (created) {
      this.#audit.record({
        action: 'user.created',
        actor: state.username,
        target: `user:${state.username}`,
        address: null,
        request_id: null,
        details: { via: 'oidc', issuer: identity.issuer, subject: identity.subject, role: state.role },
      });
    }
    if (this.#identities.size >= IDENTITY_CACHE_SIZE) {
      const oldest = this.#identities.keys().next();
      if (oldest.done !== true) this.#identities.delete(oldest.value);
    }
    this.#identities.set(key, { username: state.username, user_id: state.user_id });
    return state;
  }

  /**
   * The one place that decides whether a genuine, unexpired token is still honoured: its
   * user must exist with the same immutable id (a user deleted and created again under the
   * same name is another account), and its token version must be the user's current one (a
   * password change or reset bumps it, revoking every token issued before), it must not have
   * been logged out (its jti on the revoked list, held in process), and the account must not be
   * disabled. Returns the account as stored now; throws `unauthorized` 'user no longer exists',
   * 'token revoked' or 'account disabled'.
   *
   * The account comes from UserService's cache, which every write invalidates (on all
   * instances, through the user-change feed). A token that does not match the cached account
   * but was issued after it was read may simply be newer than the cache (issued on another
   * instance a moment ago): that one check reads the store afresh. Older mismatching tokens
   * are refused without a store read, so replaying revoked tokens costs nothing.
   */
  async checkClaims(claims: TokenClaims): Promise<UserAuthState> {
    if (claims.jti !== undefined && this.#revocations?.isRevoked(claims.jti) === true) throw new SentinelError('unauthorized', 'token revoked');
    let state = await this.#users.authState(claims.username);
    if (state !== null && !matches(state, claims) && claims.issued_at * 1000 + ISSUE_SKEW_MS > state.read_at_ms) {
      state = await this.#users.authState(claims.username, { fresh: true });
    }
    if (state === null || state.user_id !== claims.user_id) throw new SentinelError('unauthorized', 'user no longer exists');
    if (claims.token_version !== state.token_version) throw new SentinelError('unauthorized', 'token revoked');
    if (state.disabled) throw accountDisabled();
    return state;
  }
}

/** The token's scopes that are ours and that the role allows (unknown ones, such as `openid`, are dropped). */
function ourScopes(claimed: readonly string[], role: 'admin' | 'user'): readonly Scope[] {
  const allowed = roleScopes(role);
  return Object.freeze(claimed.filter((s): s is Scope => isScope(s) && allowed.includes(s)));
}

/** `unauthorized` for a disabled account: at login and for each of its credentials. */
function accountDisabled(): SentinelError {
  return new SentinelError('unauthorized', 'account disabled');
}

function matches(state: UserAuthState, claims: TokenClaims): boolean {
  return state.user_id === claims.user_id && state.token_version === claims.token_version;
}
