/**
 * Quota counters shared by every instance (docs/ARCHITECTURE.md#scale-out): one Redis integer
 * per user, UTC day and kind, under `<prefix>quota:<day>:<user id>:<kind>`, added to with
 * INCRBY and expiring at the end of its day (plus an hour, so an instance whose clock is a
 * little behind still finds it), so nothing needs cleaning up.
 */
import type { UsageCounterKind, UsageCounters } from '../auth/quotas.js';
import { busUnavailable } from './connection.js';
import type { RedisEventBus } from './event-bus.js';

/** Kept past the end of its day so slightly skewed clocks agree on the day's total. */
const EXPIRY_SLACK_MS = 3_600_000;

// KEYS: the counter. ARGV: amount, expiry (epoch ms). One round trip, atomic.
const ADD = `
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return value
`;

export class RedisUsageCounters implements UsageCounters {
  readonly #bus: Pick<RedisEventBus, 'client' | 'keyPrefix'>;

  constructor(options: { bus: Pick<RedisEventBus, 'client' | 'keyPrefix'> }) {
    this.#bus = options.bus;
  }

  async add(userId: string, day: string, kind: UsageCounterKind, amount: number, expiresAtMs: number): Promise<number> {
    try {
      const value = await this.#bus.client.eval(ADD, 1, this.#key(userId, day, kind), String(Math.trunc(amount)), String(expiresAtMs + EXPIRY_SLACK_MS));
      return Number(value);
    } catch (err) {
      throw busUnavailable(err);
    }
  }

  async get(userId: string, day: string, kind: UsageCounterKind): Promise<number> {
    try {
      const value = await this.#bus.client.get(this.#key(userId, day, kind));
      return value === null ? 0 : Number(value);
    } catch (err) {
      throw busUnavailable(err);
    }
  }

  #key(userId: string, day: string, kind: UsageCounterKind): string {
    return `${this.#bus.keyPrefix}quota:${day}:${userId}:${kind}`;
  }
}
