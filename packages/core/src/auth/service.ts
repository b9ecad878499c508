/**
 * Login and request authentication: the two doors into the API (docs/ARCHITECTURE.md#auth-and-tenancy).
 */
import { SentinelError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import type { Principal } from '../models.js';
import { LoginThrottle, type LoginLimiter } from './throttle.js';
import type { TokenService } from './tokens.js';
import type { UserService } from './users.js';

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
   * Exchanges a username and password for a token. Throttled per username and per address
   * (`rate_limited`); wrong credentials are `unauthorized` 'invalid username or password',
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
    await this.#throttle.recordSuccess(username, remoteAddress);
    const issued = this.#tokens.issue(principal);
    this.#log.info('login succeeded', { username: principal.username, address: remoteAddress });
    return { token: issued.token, username: principal.username, expires: issued.expires };
  }

  /**
   * Resolves an `Authorization` header to the caller. Requires `Bearer <token>` (scheme in
   * any case, one token); the role comes from the store, not the token, so demotions and
   * deletions take effect at once. Every failure is `unauthorized`.
   */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    if (authorization === undefined || authorization.length === 0) throw new SentinelError('unauthorized', 'authentication required');
    if (authorization.length > MAX_AUTHORIZATION_LENGTH) throw new SentinelError('unauthorized', 'invalid token');
    if (!hasBearerScheme(authorization)) throw new SentinelError('unauthorized', 'Bearer token required');
    const token = authorization.slice(BEARER_PREFIX_LENGTH);
    if (token.length === 0) throw new SentinelError('unauthorized', 'Bearer token required');
    if (token.includes(' ')) throw new SentinelError('unauthorized', 'invalid token');
    const claims = this.#tokens.verify(token);
    const principal = await this.#users.getPrincipal(claims.username);
    if (principal === null) throw new SentinelError('unauthorized', 'user no longer exists');
    return principal;
  }
}
