/**
 * Users: accounts, roles, passwords. The password hash never leaves this module; the API
 * sees {@link UserResource}.
 */
import { randomBytes } from 'node:crypto';
import { adminRequired, alreadyExists, conflict, forbidden, invalidRequest, isSentinelError, notFound, SentinelError } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import type { Principal, Role, UserRecord } from '../contract/models.js';
import type { ExternalIdentity, Store, UserPatch } from '../store/types.js';
import { newUserId } from '../store/user-id.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, hashPassword, verifyPassword } from './passwords.js';
import type { QuotasResource } from './quotas.js';
import type { TokenSubject } from './tokens.js';

/** A user as the API returns it (never the hash). */
export interface UserResource {
  username: string;
  role: Role;
  can_push: boolean;
  /** A disabled user cannot log in, and their tokens and API keys are refused. */
  disabled: boolean;
  /** Limits on the user's model usage and agents; null = unlimited. */
  quotas: QuotasResource;
  created_at: string;
  updated_at: string;
}

/** What an admin may change on a user (`PATCH /v1/users/{name}`); absent fields stay as they are. */
export interface UpdateUserInput {
  role?: Role;
  can_push?: boolean;
  disabled?: boolean;
  /** Each given quota is set (null: unlimited); absent ones stay. */
  quotas?: Partial<QuotasResource>;
}

/** One account change, as announced to the other instances. */
export interface UserChange {
  username: string;
  /** The id of the account the change is about. Absent in announcements from older instances. */
  user_id?: string;
  /** Its token version after the change; null when it was deleted; absent when not known. */
  token_version?: number | null;
}

/**
 * Tells the other instances sharing the Store that a user changed, so they drop what they
 * cached (a deleted user's token, or a token older than a password change, must be refused
 * everywhere at once). The Redis bus has one.
 */
export interface UserChangeFeed {
  /** Announces that a user was created, changed or deleted here. Never throws. */
  publish(change: UserChange): void;
  /**
   * Calls `listener` with a change another instance made, or with null when changes may
   * have been missed (the feed (re)connected): then everything cached is suspect. Returns the
   * unsubscribe function.
   */
  subscribe(listener: (change: UserChange | null) => void): () => void;
}

/**
 * What authentication compares a token with: the account as the store has it (cached).
 * `read_at_ms` says when it was read, so a token issued after that can ask for a fresh read.
 */
export interface UserAuthState extends TokenSubject {
  /** The same account as a plain principal (frozen, shared). */
  principal: Principal;
  /**
   * True when an admin disabled the account: every credential of it (tokens, API keys) must
   * be refused. {@link AuthService.checkClaims} does for tokens.
   */
  disabled: boolean;
  /** The account's quotas (frozen). */
  quotas: Readonly<QuotasResource>;
  /** When this state was read from the store (epoch ms). */
  read_at_ms: number;
}

export interface UserServiceOptions {
  /** Where users live. No default. */
  store: Store;
  /** Where account changes are logged. Default: silent. */
  logger?: Logger;
  /** Cross-instance cache invalidation. Default none (one instance: its own writes invalidate). */
  changes?: UserChangeFeed;
}

export interface CreateUserInput {
  username: string;
  password: string;
  /** Default 'user'. */
  role?: Role;
  /** Default false (admins may push regardless). */
  can_push?: boolean;
}

export interface ChangePasswordInput {
  /** Required when changing one's own password. */
  current_password?: string;
  new_password: string;
}

/**
 * The password hash of an account created for an OpenID Connect identity: not a scrypt hash,
 * so no password ever matches it (its user signs in at the identity provider only).
 */
export const EXTERNAL_ACCOUNT_PASSWORD_HASH = '!external-identity';

/** What an identity provider says about the account a token belongs to. */
export interface IdentityClaims extends ExternalIdentity {
  /** A name to derive the local username from (`preferred_username`); else the subject is used. */
  preferredUsername?: string;
}

/** Usernames tried for a new external account before a random suffix is used. */
const USERNAME_ATTEMPTS = 5;

/**
 * A valid local username from an identity provider's name for the user: characters we do not
 * allow become '-', a leading non-alphanumeric is dropped, and the length leaves room for a
 * "-NNNNNN" suffix. `oidc-user` when nothing is left.
 */
export function usernameFrom(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 56);
  return cleaned.length === 0 ? 'oidc-user' : cleaned;
}

/** Letters, digits, '.', '_', '-'; starts with a letter or digit; 1 to 64 characters. */
export const USERNAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const USERNAME = new RegExp(USERNAME_PATTERN);

/** Length of a generated admin password: 24 base64url characters (144 random bits). */
const GENERATED_PASSWORD_BYTES = 18;

/**
 * Verified against when the username is unknown, so an unknown user costs the same scrypt
 * as a wrong password and response times do not reveal which usernames exist. Same
 * parameters as {@link hashPassword}; it matches no password anyone would send.
 */
const DUMMY_HASH = 'scrypt$16384$8$1$h7RO9Gb_p-1r28a3LiFrQQ$FE7QN19YAk_a3W9grLwcNqowsDcE3DcAwlGu_A6T9V5h5zDexEdCqazfuEfDKnkavtUrhse1vVvDl6u0iFMoBA';

/** Bound on cached accounts; an oversized cache only costs a store read on a miss. */
const ACCOUNT_CACHE_SIZE = 10000;

function quotasOf(user: UserRecord): QuotasResource {
  return {
    tokens_per_day: user.quota_tokens_per_day,
    turns_per_day: user.quota_turns_per_day,
    concurrent_agents: user.quota_concurrent_agents,
  };
}

function toResource(user: UserRecord): UserResource {
  return {
    username: user.username,
    role: user.role,
    can_push: user.can_push,
    disabled: user.disabled,
    quotas: quotasOf(user),
    created_at: user.created_at,
    updated_at: user.updated_at,
  };
}

/** Whether `user` counts towards "at least one enabled admin". */
function isEnabledAdmin(user: Pick<UserRecord, 'role' | 'disabled'>): boolean {
  return user.role === 'admin' && !user.disabled;
}

function checkUsername(username: string): void {
  if (!USERNAME.test(username)) {
    throw invalidRequest(
      'username must be 1 to 64 characters: letters, digits, ".", "_" or "-", starting with a letter or digit',
    );
  }
}

function checkNewPassword(password: string): void {
  if (password.length < PASSWORD_MIN_LENGTH || password.length > PASSWORD_MAX_LENGTH) {
    throw invalidRequest(`password must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters`);
  }
}

/** What every new account starts with: no tokens revoked yet, enabled, no quotas. */
const NEW_ACCOUNT_STATE = {
  token_version: 0,
  disabled: false,
  quota_tokens_per_day: null,
  quota_turns_per_day: null,
  quota_concurrent_agents: null,
} as const;

export class UserService {
  readonly #store: Store;
  readonly #log: Logger;
  /**
   * username → account state for the authentication hot path. Invalidated by this service's
   * own writes and, with several instances on one database, by the others' through `changes`.
   */
  readonly #accounts = new Map<string, UserAuthState>();
  /** Bumped by every write, so a read that raced a write does not cache what it read. */
  #generation = 0;
  readonly #changes: UserChangeFeed | undefined;
  /** Told of every change that may revoke credentials, here or announced from elsewhere (see {@link watch}). */
  readonly #watchers = new Set<(username: string | null) => void>();

  constructor(options: UserServiceOptions) {
    this.#store = options.store;
    this.#log = options.logger ?? silentLogger;
    this.#changes = options.changes;
    this.#changes?.subscribe((change) => {
      // Dropping the entry is enough whatever the change carries: the next request reads the
      // account (new id, new token version, or none) from the store.
      if (change !== null) {
        this.#invalidate(change.username);
        this.#notify(change.username);
        return;
      }
      this.#generation += 1;
      this.#accounts.clear();
      this.#notify(null);
    });
  }

  /**
   * Calls `listener` after a change that may have revoked a user's credentials: deletion, a
   * password change or reset, revoke-tokens on this instance, and any change another instance
   * announces; `null` when changes may have been missed (recheck everyone). Returns the unsubscribe
   * function. The WebSocket transport rechecks that user's open sockets on it.
   */
  watch(listener: (username: string | null) => void): () => void {
    this.#watchers.add(listener);
    return () => {
      this.#watchers.delete(listener);
    };
  }

  #notify(username: string | null): void {
    for (const watcher of [...this.#watchers]) {
      try {
        watcher(username);
      } catch (err) {
        this.#log.error('user change watcher failed', { error: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  /**
   * Revokes every token issued to `username` so far (its token version goes up, as a password
   * change does), on every instance. Admins only (`forbidden`); `not_found` when unknown.
   */
  async revokeTokens(username: string, actor: Principal): Promise<void> {
    if (actor.role !== 'admin') throw adminRequired();
    this.#invalidate(username);
    const updated = USERNAME.test(username) && (await this.#store.updateUser(username, { updated_at: new Date().toISOString(), bump_token_version: true }));
    this.#invalidate(username);
    if (!updated) throw notFound('user', username);
    const after = await this.#store.getUser(username);
    this.#changes?.publish({ username, ...(after === null ? { token_version: null } : { user_id: after.id, token_version: after.token_version }) });
    this.#notify(username);
    this.#log.info('tokens revoked', { username, by: actor.username });
  }

  /**
   * Creates the first admin (role admin, can_push true) when the store has no users at all;
   * does nothing otherwise. Without `password` a random 24-character one is generated and
   * returned once, for the caller to show the operator.
   */
  async ensureAdmin(options: { username: string; password?: string }): Promise<{ created: boolean; generatedPassword?: string }> {
    if ((await this.#store.countUsers()) > 0) return { created: false };
    const generated = options.password === undefined ? randomBytes(GENERATED_PASSWORD_BYTES).toString('base64url') : undefined;
    try {
      await this.create({ username: options.username, password: options.password ?? generated ?? '', role: 'admin', can_push: true });
    } catch (err) {
      // Another instance bootstrapped the same store at the same moment.
      if (isSentinelError(err) && err.code === 'conflict') return { created: false };
      throw err;
    }
    this.#log.info('created admin user', { username: options.username, password_generated: generated !== undefined });
    return generated === undefined ? { created: true } : { created: true, generatedPassword: generated };
  }

  /** Creates a user (role default 'user', can_push default false); `conflict` when the name is taken. */
  async create(input: CreateUserInput): Promise<UserResource> {
    checkUsername(input.username);
    checkNewPassword(input.password);
    if ((await this.#store.getUser(input.username)) !== null) throw this.#taken(input.username);
    const now = new Date().toISOString();
    const record: UserRecord = {
      // A fresh id even when the name was used before: the old account's tokens name the old id.
      id: newUserId(),
      username: input.username,
      password_hash: await hashPassword(input.password),
      role: input.role ?? 'user',
      can_push: input.can_push ?? false,
      ...NEW_ACCOUNT_STATE,
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.createUser(record);
    } catch (err) {
      if (isSentinelError(err) && err.code === 'conflict') throw this.#taken(input.username);
      throw err;
    }
    // Whatever was cached under this name belonged to a deleted account.
    this.#invalidate(record.username);
    this.#changes?.publish({ username: record.username, user_id: record.id, token_version: record.token_version });
    this.#log.info('user created', { username: record.username, role: record.role });
    return toResource(record);
  }

  /**
   * The local account an external identity maps to, created on first use with role `user`,
   * `can_push` false and no usable password. Its username comes from the provider's
   * preferred username (or the subject), made valid and unique: an existing local user of
   * that name is never taken over; the new account gets a suffixed name instead.
   * `created` says whether this call created it (another instance may win a race; then its
   * account is returned).
   */
  async resolveIdentity(claims: IdentityClaims): Promise<{ state: UserAuthState; created: boolean }> {
    const identity: ExternalIdentity = { issuer: claims.issuer, subject: claims.subject };
    const base = usernameFrom(claims.preferredUsername ?? claims.subject);
    for (let attempt = 0; ; attempt++) {
      if (attempt > USERNAME_ATTEMPTS + 3) throw conflict('could not find a free username for the identity');
      const linked = await this.#store.getIdentityUser(identity);
      if (linked !== null) {
        const state = await this.authState(linked.username, { fresh: true });
        if (state !== null && state.user_id === linked.id) return { state, created: false };
        continue;
      }
      const username =
        attempt === 0 ? base : attempt < USERNAME_ATTEMPTS ? `${base}-${attempt + 1}` : `${base}-${randomBytes(3).toString('hex')}`;
      const now = new Date().toISOString();
      const record: UserRecord = {
        id: newUserId(),
        username,
        password_hash: EXTERNAL_ACCOUNT_PASSWORD_HASH,
        role: 'user',
        can_push: false,
        ...NEW_ACCOUNT_STATE,
        created_at: now,
        updated_at: now,
      };
      try {
        await this.#store.createIdentityUser(identity, record);
      } catch (err) {
        // The name is taken, or another instance linked the identity first: look again.
        if (isSentinelError(err) && err.code === 'conflict') continue;
        throw err;
      }
      this.#invalidate(username);
      this.#changes?.publish({ username, user_id: record.id, token_version: record.token_version });
      this.#log.info('user created for an external identity', { username, issuer: identity.issuer });
      const state = await this.authState(username, { fresh: true });
      if (state === null) throw notFound('user', username);
      return { state, created: true };
    }
  }

  /** Every user, in the store's order. */
  async list(): Promise<UserResource[]> {
    return (await this.#store.listUsers()).map(toResource);
  }

  /** One user; `not_found` when unknown. */
  async get(username: string): Promise<UserResource> {
    const user = USERNAME.test(username) ? await this.#store.getUser(username) : null;
    if (user === null) throw notFound('user', username);
    return toResource(user);
  }

  /**
   * Deletes a user and, through the store, every agent they own. Admins only (`forbidden`);
   * `conflict` for oneself (which also keeps at least one admin); `not_found` when unknown.
   */
  async delete(username: string, actor: Principal): Promise<void> {
    if (actor.role !== 'admin') throw adminRequired();
    if (actor.username === username) throw conflict('you cannot delete yourself');
    // Before and after: a lookup that read the user while the delete was in flight must
    // neither keep nor later store the stale account.
    this.#invalidate(username);
    const existing = USERNAME.test(username) ? await this.#store.getUser(username) : null;
    const deleted = existing !== null && (await this.#store.deleteUser(username));
    this.#invalidate(username);
    if (!deleted) throw notFound('user', username);
    // Its id goes with it: tokens naming that id are refused from now on, even once the name is taken again.
    this.#changes?.publish({ username, user_id: existing.id, token_version: null });
    this.#notify(username);
    this.#log.info('user deleted', { username, by: actor.username });
  }

  /**
   * Changes a user's role, push right, disabled flag or quotas (admins only: `forbidden`);
   * `not_found` when unknown; `conflict` when it would leave no enabled admin (an admin
   * demoting or disabling themselves as the last one), checked in the same store statement so
   * two admins demoting each other at once cannot both succeed. Every instance drops its
   * cached account at once (the user-change feed), so a disabled user's tokens and keys, and
   * a new role, take effect on the next request everywhere. Returns the updated user and the
   * fields that actually changed (for the audit log; never a secret).
   */
  async update(actor: Principal, username: string, input: UpdateUserInput): Promise<{ user: UserResource; changed: Record<string, unknown> }> {
    if (actor.role !== 'admin') throw adminRequired();
    const before = USERNAME.test(username) ? await this.#store.getUser(username) : null;
    if (before === null) throw notFound('user', username);
    const patch: UserPatch = {};
    const changed: Record<string, unknown> = {};
    if (input.role !== undefined && input.role !== before.role) changed.role = patch.role = input.role;
    if (input.can_push !== undefined && input.can_push !== before.can_push) changed.can_push = patch.can_push = input.can_push;
    if (input.disabled !== undefined && input.disabled !== before.disabled) changed.disabled = patch.disabled = input.disabled;
    const quotas = input.quotas ?? {};
    const quotaChanges: Partial<QuotasResource> = {};
    if (quotas.tokens_per_day !== undefined && quotas.tokens_per_day !== before.quota_tokens_per_day) {
      quotaChanges.tokens_per_day = patch.quota_tokens_per_day = quotas.tokens_per_day;
    }
    if (quotas.turns_per_day !== undefined && quotas.turns_per_day !== before.quota_turns_per_day) {
      quotaChanges.turns_per_day = patch.quota_turns_per_day = quotas.turns_per_day;
    }
    if (quotas.concurrent_agents !== undefined && quotas.concurrent_agents !== before.quota_concurrent_agents) {
      quotaChanges.concurrent_agents = patch.quota_concurrent_agents = quotas.concurrent_agents;
    }
    if (Object.keys(quotaChanges).length > 0) changed.quotas = quotaChanges;
    if (Object.keys(changed).length === 0) return { user: toResource(before), changed };
    const after = { role: patch.role ?? before.role, disabled: patch.disabled ?? before.disabled };
    patch.keep_an_admin = isEnabledAdmin(before) && !isEnabledAdmin(after);
    patch.updated_at = new Date().toISOString();
    this.#invalidate(username);
    const updated = await this.#store.updateUser(username, patch);
    this.#invalidate(username);
    const current = await this.#store.getUser(username);
    if (current === null) throw notFound('user', username);
    if (!updated) throw conflict(`${username} is the last enabled admin: make another user admin first`);
    this.#changes?.publish({ username, user_id: current.id, token_version: current.token_version });
    this.#log.info('user updated', { username, by: actor.username, changed });
    return { user: toResource(current), changed };
  }

  /**
   * Sets a new password. Changing one's own password (admins included: a stolen token alone
   * must not be enough to take over the account) needs the correct `current_password`, else
   * `forbidden` 'current password is incorrect'. An admin resets anyone else's without it.
   * For a non-admin, another user's name is `not_found`, as if the user did not exist.
   * Either way the user's token version goes up: every token issued before (the caller's own
   * included, when changing one's own) is refused from then on, on every instance.
   */
  async changePassword(actor: Principal, username: string, input: ChangePasswordInput): Promise<void> {
    const self = actor.username === username;
    if (!self && actor.role !== 'admin') throw notFound('user', username);
    checkNewPassword(input.new_password);
    const user = USERNAME.test(username) ? await this.#store.getUser(username) : null;
    if (user === null) throw notFound('user', username);
    // Accounts of an identity provider sign in there; a password here would be a second door.
    if (user.password_hash === EXTERNAL_ACCOUNT_PASSWORD_HASH) throw conflict('this account signs in through OpenID Connect and has no password');
    if (self) {
      if (input.current_password === undefined) throw forbidden('current password is required');
      if (!(await verifyPassword(input.current_password, user.password_hash))) {
        throw forbidden('current password is incorrect');
      }
    }
    const passwordHash = await hashPassword(input.new_password);
    this.#invalidate(username);
    const updated = await this.#store.updateUser(username, { password_hash: passwordHash, updated_at: new Date().toISOString(), bump_token_version: true });
    this.#invalidate(username);
    if (!updated) throw notFound('user', username);
    // Read back for the announcement: the bump is atomic in the store, so only it knows the new version.
    const after = await this.#store.getUser(username);
    this.#changes?.publish({ username, user_id: after?.id ?? user.id, token_version: after?.token_version ?? null });
    this.#notify(username);
    this.#log.info('password changed', { username, by: actor.username });
  }

  /**
   * The account for a correct username/password pair (what a token is issued to), else null.
   * An unknown user still costs one scrypt (against a fixed dummy hash) so timing does not
   * reveal which names exist. A disabled account is returned with `disabled: true` (only
   * once the password is right, so the flag tells a guesser nothing): the caller refuses it.
   */
  async verifyCredentials(username: string, password: string): Promise<(TokenSubject & { disabled: boolean }) | null> {
    // Over-long passwords are refused before any work for every username alike.
    if (password.length > PASSWORD_MAX_LENGTH) return null;
    const user = USERNAME.test(username) ? await this.#store.getUser(username) : null;
    if (user === null || user.password_hash === EXTERNAL_ACCOUNT_PASSWORD_HASH) {
      // External accounts have no password: the same scrypt, so timing does not tell them apart either.
      await verifyPassword(password, DUMMY_HASH);
      return null;
    }
    if (!(await verifyPassword(password, user.password_hash))) return null;
    return Object.freeze({ username: user.username, role: user.role, user_id: user.id, token_version: user.token_version, disabled: user.disabled });
  }

  /**
   * The current principal for `username` (role as stored now), or null when the user no
   * longer exists or is disabled. Cached in process: this runs on every authenticated request.
   */
  async getPrincipal(username: string): Promise<Principal | null> {
    const state = await this.authState(username);
    return state === null || state.disabled ? null : state.principal;
  }

  /**
   * The account `username` names now (id, token version, role, disabled, quotas), or null
   * when there is none. A disabled account is returned (`disabled: true`), for the caller to
   * refuse whatever credential it checks.
   * Cached in process, since it runs on every authenticated request; `fresh` skips the cache
   * (and refreshes it), for a token that may be newer than what was cached.
   */
  async authState(username: string, options: { fresh?: boolean } = {}): Promise<UserAuthState | null> {
    if (options.fresh !== true) {
      const cached = this.#accounts.get(username);
      if (cached !== undefined) return cached;
    }
    const generation = this.#generation;
    const readAt = Date.now();
    const user = USERNAME.test(username) ? await this.#store.getUser(username) : null;
    if (user === null) {
      if (generation === this.#generation) this.#accounts.delete(username);
      return null;
    }
    const state: UserAuthState = Object.freeze({
      username: user.username,
      role: user.role,
      user_id: user.id,
      token_version: user.token_version,
      principal: Object.freeze({ username: user.username, role: user.role }),
      disabled: user.disabled,
      quotas: Object.freeze(quotasOf(user)),
      read_at_ms: readAt,
    });
    // A write (here or announced from elsewhere) that raced this read must not be undone by caching it.
    if (generation === this.#generation) {
      this.#accounts.delete(username);
      if (this.#accounts.size >= ACCOUNT_CACHE_SIZE) {
        const oldest = this.#accounts.keys().next();
        if (oldest.done !== true) this.#accounts.delete(oldest.value);
      }
      this.#accounts.set(username, state);
    }
    return state;
  }

  #invalidate(username: string): void {
    this.#generation += 1;
    this.#accounts.delete(username);
  }

  #taken(username: string): SentinelError {
    return alreadyExists('user', username);
  }
}
