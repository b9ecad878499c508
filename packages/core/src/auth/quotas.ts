/**
 * Per-user quotas on model usage (issue 13): model tokens and turns per UTC day, and agents
 * owned at once. An admin sets them on the user (`PATCH /v1/users/{name}`; null = unlimited).
 *
 * The daily counters are keyed by the user's immutable id (a user deleted and created again
 * under the same name starts afresh) and the UTC day, and expire at the end of that day. With
 * `--bus` they live in Redis, so every instance counts against the same numbers; otherwise
 * in process.
 */
import { quotaExceeded } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { Store } from '../store/types.js';
import type { UserService } from './users.js';

/** The daily counters a quota is checked against. */
export type UsageCounterKind = 'tokens' | 'turns';

/**
 * Daily usage counters. `day` is the UTC date (`YYYY-MM-DD`); a counter lapses once its day is
 * over (`expiresAtMs`). Implementations may reject when their back end is down; callers decide.
 */
export interface UsageCounters {
  /** Adds `amount` (may be negative) to the counter and returns its new value. */
  add(userId: string, day: string, kind: UsageCounterKind, amount: number, expiresAtMs: number): Promise<number>;
  /** The counter's value (0 when never counted). */
  get(userId: string, day: string, kind: UsageCounterKind): Promise<number>;
}

/** Counters in this process (one instance). Entries of past days are dropped as the day turns. */
export class InProcessUsageCounters implements UsageCounters {
  readonly #values = new Map<string, number>();
  #day = '';

  async add(userId: string, day: string, kind: UsageCounterKind, amount: number): Promise<number> {
    this.#roll(day);
    const key = `${userId}:${kind}`;
    const value = (this.#values.get(key) ?? 0) + amount;
    this.#values.set(key, value);
    return value;
  }

  async get(userId: string, day: string, kind: UsageCounterKind): Promise<number> {
    this.#roll(day);
    return this.#values.get(`${userId}:${kind}`) ?? 0;
  }

  #roll(day: string): void {
    if (day === this.#day) return;
    // Only today's counters are ever read, so a new day empties the map.
    if (day > this.#day) {
      this.#values.clear();
      this.#day = day;
    }
  }
}

/** What a user's quotas are checked against: their use so far today and their agents. */
export interface UsageResource {
  tokens_today: number;
  turns_today: number;
  agents: number;
}

/** A user's quotas as the API shows them (null = unlimited). */
export interface QuotasResource {
  tokens_per_day: number | null;
  turns_per_day: number | null;
  concurrent_agents: number | null;
}

export interface QuotaServiceOptions {
  users: UserService;
  store: Store;
  /** Default: in process. */
  counters?: UsageCounters;
  /** Default: `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

/** The UTC day of `ms` as `YYYY-MM-DD`, and when it ends (epoch ms). */
export function utcDay(ms: number): { day: string; endMs: number } {
  const date = new Date(ms);
  const start = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  return { day: new Date(start).toISOString().slice(0, 10), endMs: start + 86_400_000 };
}

/**
 * Checks and counts quotas. Turns are checked in the turn runner before anything is stored or
 * any provider is called; tokens are counted after each turn from its usage (a turn that
 * starts under the token quota may end over it: the next one is refused). Agents are
 * checked when one is created ("concurrent agents" = agents the user owns at once, whatever
 * their status: an agent that exists can be started at any moment).
 */
export class QuotaService {
  readonly #users: UserService;
  readonly #store: Store;
  readonly #counters: UsageCounters;
  readonly #now: () => number;
  readonly #log: Logger;

  constructor(options: QuotaServiceOptions) {
    this.#users = options.users;
    this.#store = options.store;
    this.#counters = options.counters ?? new InProcessUsageCounters();
    this.#now = options.now ?? Date.now;
    this.#log = options.logger ?? silentLogger;
  }

  /**
   * Counts a turn of `owner`'s agent, or refuses it with `quota_exceeded` (counting nothing)
   * when the day's turns or tokens are used up. Unknown users pass (the turn fails elsewhere).
   */
  async beginTurn(owner: string): Promise<void> {
    const state = await this.#users.authState(owner);
    if (state === null) return;
    const { day, endMs } = utcDay(this.#now());
    const tokenLimit = state.quotas.tokens_per_day;
    if (tokenLimit !== null) {
      const tokens = await this.#counters.get(state.user_id, day, 'tokens');
      if (tokens >= tokenLimit) throw quotaExceeded('tokens_per_day', tokenLimit, tokens);
    }
    // Counted first, checked after: two turns racing on two instances cannot both take the last one.
    const turns = await this.#counters.add(state.user_id, day, 'turns', 1, endMs);
    const turnLimit = state.quotas.turns_per_day;
    if (turnLimit !== null && turns > turnLimit) {
      await this.#counters.add(state.user_id, day, 'turns', -1, endMs).catch(() => undefined);
      throw quotaExceeded('turns_per_day', turnLimit, turns - 1);
    }
  }

  /** Adds a finished turn's model tokens to `owner`'s day. Never throws (a lost count is logged). */
  async addTokens(owner: string, tokens: number): Promise<void> {
    if (!(tokens > 0)) return;
    try {
      const state = await this.#users.authState(owner);
      if (state === null) return;
      const { day, endMs } = utcDay(this.#now());
      await this.#counters.add(state.user_id, day, 'tokens', tokens, endMs);
    } catch (err) {
      this.#log.warn('token usage not counted', { username: owner, error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Refuses with `quota_exceeded` when `owner` already owns as many agents as allowed. */
  async checkNewAgent(owner: string): Promise<void> {
    const state = await this.#users.authState(owner);
    const limit = state?.quotas.concurrent_agents ?? null;
    if (limit === null) return;
    const owned = (await this.#store.listAgents({ owner })).length;
    if (owned >= limit) throw quotaExceeded('concurrent_agents', limit, owned);
  }

  /** `username`'s use today and agents, for `GET /v1/auth/me`. */
  async usage(username: string): Promise<UsageResource> {
    const state = await this.#users.authState(username);
    const agents = (await this.#store.listAgents({ owner: username })).length;
    if (state === null) return { tokens_today: 0, turns_today: 0, agents };
    const { day } = utcDay(this.#now());
    const [tokens, turns] = await Promise.all([
      this.#counters.get(state.user_id, day, 'tokens'),
      this.#counters.get(state.user_id, day, 'turns'),
    ]);
    return { tokens_today: tokens, turns_today: turns, agents };
  }
}
