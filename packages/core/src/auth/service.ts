/**
 * Login and request authentication: the two doors into the API (docs/ARCHITECTURE.md#auth-and-tenancy).
 */
import { authenticationRequired, invalidToken, notFound, SentinelError } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import type { Principal } from '../contract/models.js';
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

  constructor(options: AuthServiceOptions) {
    this.#users = options.users;
    this.#tokens = options.tokens;
    this.#throttle = options.throttle ?? new LoginThrottle();
    this.#log = options.logger ?? silentLogger;
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
   * Every failure is `unauthorized`.
   */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    if (authorization === undefined || authorization.length === 0) throw authenticationRequired();
    if (authorization.length > MAX_AUTHORIZATION_LENGTH) throw invalidToken();
    if (!hasBearerScheme(authorization)) throw new SentinelError('unauthorized', 'Bearer token required');
    const token = authorization.slice(BEARER_PREFIX_LENGTH);
    if (token.length === 0) throw new SentinelError('unauthorized', 'Bearer token required');
    if (token.includes(' ')) throw invalidToken();
    const claims = this.#tokens.verify(token);
    return (await this.checkClaims(claims)).principal;
  }

  /**
   * The one place that decides whether a genuine, unexpired token is still honoured: its
   * user must exist with the same immutable id (a user deleted and created again under the
   * same name is another account), and its token version must be the user's current one (a
   * password change or reset bumps it, revoking every token issued before), and the account
   * must not be disabled. Returns the account as stored now; throws `unauthorized` 'user no
   * longer exists', 'token revoked' or 'account disabled'.
   *
   * The account comes from UserService's cache, which every write invalidates (on all
   * instances, through the user-change feed). A token that does not match the cached account
   * but was issued after it was read may simply be newer than the cache (issued on another
   * instance a moment ago): that one check reads the store afresh. Older mismatching tokens
   * are refused without a store read, so replaying revoked tokens costs nothing.
   */
  async checkClaims(claims: TokenClaims): Promise<UserAuthState> {
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

/** `unauthorized` for a disabled account: at login and for each of its credentials. */
function accountDisabled(): SentinelError {
  return new SentinelError('unauthorized', 'account disabled');
}

function matches(state: UserAuthState, claims: TokenClaims): boolean {
  return state.user_id === claims.user_id && state.token_version === claims.token_version;
}
