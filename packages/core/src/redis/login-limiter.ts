/**
 * The login throttle shared by every instance (docs/ARCHITECTURE.md#scale-out): the policy of the in-process
 * `LoginThrottle` (auth/throttle.ts), with the counters in Redis, so a guesser spreading
 * attempts over several instances behind a load balancer gets no more tries than against one.
 *
 * Keys, under `<prefix>login:`: `pair:<username, address>` and `address:<address>` are hashes
 * (`f` failures, `t` time of the last failure, from Redis's clock so every instance agrees),
 * each with an `:inflight` counter (attempts checked but not yet recorded, so concurrent
 * guesses count up front; it lapses on its own if an instance dies in between);
 * `username:<name>` is a plain failure counter for the slow-down. Every counter is forgotten
 * `forgetAfterMs` after its last failure. Each step is one Lua script, so the check and the
 * count are atomic across instances.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  LOGIN_IN_FLIGHT_TTL_MS,
  loginRefusal,
  loginThrottleKeys,
  resolveLoginThrottlePolicy,
  type LoginLimiter,
  type LoginThrottlePolicy,
  type ResolvedLoginThrottlePolicy,
} from '../auth/throttle.js';
import { busUnavailable } from './connection.js';
import type { RedisEventBus } from './event-bus.js';

export interface RedisLoginLimiterOptions extends LoginThrottlePolicy {
  /** The bus whose command connection and key prefix the limiter uses. Required. */
  bus: Pick<RedisEventBus, 'client' | 'keyPrefix'>;
  /** How long an attempt checked but never recorded keeps counting, in ms. Default 10000. */
  inFlightTtlMs?: number;
  /** How the username slow-down waits. Default: a timer (`setTimeout`). */
  sleep?: (ms: number) => Promise<void>;
}

// Redis's clock, in ms: the same for every instance.
const NOW = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
`;

// KEYS: pair, address, pair in flight, address in flight, username.
// ARGV: free per pair, free per address, base delay, max delay, in-flight ttl, slow-down after,
// slow-down step, max slow-down. Returns {ms to wait (0: go ahead), slow-down ms}.
// The wait is loginBackoffMs() and the slow-down loginSlowdownMs() of auth/throttle.ts.
const CHECK = `${NOW}
local base, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local function wait(key, inflightKey, free)
  local failures = tonumber(redis.call('HGET', key, 'f') or '0')
  local inflight = tonumber(redis.call('GET', inflightKey) or '0')
  if failures + inflight < free then return 0 end
  local w = 0
  if failures >= free then
    local last = tonumber(redis.call('HGET', key, 't') or '0')
    w = math.max(0, last + math.min(base * 2 ^ (failures - free), cap) - now)
  end
  if w == 0 and inflight > 0 then w = 1000 end
  return w
end
local w = math.max(wait(KEYS[1], KEYS[3], tonumber(ARGV[1])), wait(KEYS[2], KEYS[4], tonumber(ARGV[2])))
if w > 0 then return {math.ceil(w), 0} end
for i = 3, 4 do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[5])
end
local userFailures, after = tonumber(redis.call('GET', KEYS[5]) or '0'), tonumber(ARGV[6])
local slow = 0
if userFailures >= after then slow = math.min(tonumber(ARGV[7]) * (userFailures - after + 1), tonumber(ARGV[8])) end
return {0, slow}
`;

// KEYS: as CHECK. ARGV: forget-after ms.
const FAILURE = `${NOW}
for i = 1, 2 do
  redis.call('HINCRBY', KEYS[i], 'f', 1)
  redis.call('HSET', KEYS[i], 't', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
  if redis.call('DECR', KEYS[i + 2]) <= 0 then redis.call('DEL', KEYS[i + 2]) end
end
redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], ARGV[1])
return 1
`;

// KEYS: as CHECK. The pair's slate is wiped; the address only loses its in-flight attempt.
const SUCCESS = `
redis.call('DEL', KEYS[1], KEYS[3])
if redis.call('DECR', KEYS[4]) <= 0 then redis.call('DEL', KEYS[4]) end
return 1
`;

/** Long keys are hashed, so a key stays short whatever a client sends. */
function keyPart(text: string): string {
  return text.length <= 128 ? text : `sha256-${createHash('sha256').update(text).digest('base64url')}`;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A {@link LoginLimiter} on Redis (see {@link RedisLoginLimiterOptions} and LoginThrottlePolicy for the defaults). */
export class RedisLoginLimiter implements LoginLimiter {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #policy: ResolvedLoginThrottlePolicy;
  readonly #inFlightTtlMs: number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(options: RedisLoginLimiterOptions) {
    this.#client = options.bus.client;
    this.#prefix = `${options.bus.keyPrefix}login:`;
    this.#policy = resolveLoginThrottlePolicy(options);
    this.#inFlightTtlMs = options.inFlightTtlMs ?? LOGIN_IN_FLIGHT_TTL_MS;
    this.#sleep = options.sleep ?? realSleep;
  }

  async check(username: string, address: string): Promise<void> {
    const p = this.#policy;
    const reply = await this.#run(
      CHECK,
      username,
      address,
      p.freeFailuresPerUserAddress,
      p.freeFailuresPerAddress,
      p.baseDelayMs,
      p.maxDelayMs,
      this.#inFlightTtlMs,
      p.userSlowdownAfter,
      p.userSlowdownStepMs,
      p.maxUserSlowdownMs,
    );
    const [waitMs, slowdownMs] = Array.isArray(reply) ? reply.map(Number) : [0, 0];
    if (waitMs !== undefined && waitMs > 0) throw loginRefusal(waitMs);
    if (slowdownMs !== undefined && slowdownMs > 0) await this.#sleep(slowdownMs);
  }

  async recordFailure(username: string, address: string): Promise<void> {
    await this.#run(FAILURE, username, address, Math.max(this.#policy.forgetAfterMs, this.#inFlightTtlMs));
  }

  async recordSuccess(username: string, address: string): Promise<void> {
    await this.#run(SUCCESS, username, address);
  }

  async #run(script: string, username: string, address: string, ...args: number[]): Promise<unknown> {
    const { pair, addressKey, userKey } = loginThrottleKeys(username, address);
    const pairKey = `${this.#prefix}pair:${keyPart(pair)}`;
    const addressCounter = `${this.#prefix}address:${keyPart(addressKey)}`;
    const userCounter = `${this.#prefix}username:${keyPart(userKey)}`;
    try {
      return await this.#client.eval(script, 5, pairKey, addressCounter, `${pairKey}:inflight`, `${addressCounter}:inflight`, userCounter, ...args.map(String));
    } catch (err) {
      throw busUnavailable(err);
    }
  }
}
