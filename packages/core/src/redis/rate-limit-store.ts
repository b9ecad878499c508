/**
 * Rate-limit buckets shared by every instance (docs/ARCHITECTURE.md#scale-out): the token bucket
 * of auth/rate-limit.ts kept in Redis, one hash per bucket under `<prefix>rl:<class>:<partition>`
 * (`v` units left, `t` time of the last take on Redis's clock, so every instance agrees), with a
 * TTL of the time the bucket takes to fill (a full bucket is the same as no key). The refill,
 * the take and the write are one Lua script, run with EVALSHA (EVAL once per connection when
 * Redis answers NOSCRIPT), so concurrent requests on several instances never both take the
 * last unit.
 *
 * A Redis failure lets the request through (and logs a warning at most every 10 s): a
 * rate limit that turned a Redis outage into an outage of every route would do more harm than
 * the requests it stops.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { decisionFor, type RateDecision, type RateLimitStore, type ResolvedRateRule } from '../auth/rate-limit.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { RedisEventBus } from './event-bus.js';

// KEYS: the bucket. ARGV: burst, units per ms, ttl ms. Returns {1 allowed | 0 refused, units left as a string}.
// (Lua numbers become integers on the way out, hence the string.)
const TAKE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'v', 't')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens, at = burst, now end
if now > at then tokens = math.min(burst, tokens + (now - at) * rate) end
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
local left = string.format('%.6f', tokens)
redis.call('HSET', KEYS[1], 'v', left, 't', string.format('%d', math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {allowed, left}
`;
const TAKE_SHA = createHash('sha1').update(TAKE).digest('hex');

export interface RedisRateLimitStoreOptions {
  /** The bus whose command connection and key prefix the store uses. Required. */
  bus: Pick<RedisEventBus, 'client' | 'keyPrefix'>;
  /** Where a Redis failure is reported. Default: silent. */
  logger?: Logger;
}

/** Long partitions (addresses, names) are hashed so a key stays short whatever a client sends. */
function keyPart(text: string): string {
  return text.length <= 160 ? text : `sha256-${createHash('sha256').update(text).digest('base64url')}`;
}

/** A {@link RateLimitStore} in Redis (see the module comment). */
export class RedisRateLimitStore implements RateLimitStore {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #logger: Logger;
  #lastWarning = 0;

  constructor(options: RedisRateLimitStoreOptions) {
    this.#client = options.bus.client;
    this.#prefix = `${options.bus.keyPrefix}rl:`;
    this.#logger = options.logger ?? silentLogger;
  }

  async take(key: string, rule: ResolvedRateRule): Promise<RateDecision> {
    const redisKey = `${this.#prefix}${keyPart(key)}`;
    const args = [String(rule.burst), String(rule.perMs), String(Math.ceil(rule.fillMs) + 1000)];
    try {
      let reply: unknown;
      try {
        reply = await this.#client.evalsha(TAKE_SHA, 1, redisKey, ...args);
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
        reply = await this.#client.eval(TAKE, 1, redisKey, ...args);
      }
      const [allowed, left] = reply as [number, string];
      return decisionFor(rule, Number(left), Number(allowed) === 1);
    } catch (err) {
      const now = Date.now();
      if (now - this.#lastWarning >= 10_000) {
        this.#lastWarning = now;
        this.#logger.warn('rate limit check failed; letting requests through', { error: err instanceof Error ? err.message : String(err) });
      }
      return decisionFor(rule, rule.burst, true);
    }
  }
}
