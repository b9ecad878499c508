/**
 * The login throttle shared by every instance (docs/ARCHITECTURE.md#scale-out): the same limits as the
 * in-process `LoginThrottle`, with the counters in Redis, so a guesser spreading attempts over
 * several instances behind a load balancer gets no more tries than against one.
 *
 * Per username and per client address: a failure counter (INCR, with PEXPIRE set by the first
 * failure: the window) and an in-flight counter (attempts checked but not yet recorded, so
 * concurrent guesses count up front; it lapses on its own if an instance dies in between).
 * Each step is one Lua script, so the check and the count are atomic across instances.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { SentinelError } from '../errors.js';
import { throttleAddressKey, type LoginLimiter } from '../auth/throttle.js';
import { busUnavailable } from './connection.js';
import type { RedisEventBus } from './event-bus.js';

export interface RedisLoginLimiterOptions {
  /** The bus whose command connection and key prefix the limiter uses. Required. */
  bus: Pick<RedisEventBus, 'client' | 'keyPrefix'>;
  /** Failures per username within a window before refusing. Default 5. */
  maxFailuresPerUser?: number;
  /** Failures per client address within a window before refusing. Default 20. */
  maxFailuresPerAddress?: number;
  /** Window length in ms, counted from the first failure. Default 15 minutes. */
  windowMs?: number;
  /** How long an attempt checked but never recorded keeps counting, in ms. Default 10000. */
  inFlightTtlMs?: number;
}

// KEYS: user failures, address failures, user in flight, address in flight.
// ARGV: user limit, address limit, in-flight ttl ms. Returns 0 (go ahead) or ms to wait.
const CHECK = `
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local function left(key)
  local ttl = redis.call('PTTL', key)
  if ttl < 1 then return 1000 end
  return ttl
end
local userFailures, addressFailures = count(KEYS[1]), count(KEYS[2])
local userLimit, addressLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
if userFailures >= userLimit then wait = math.max(wait, left(KEYS[1])) end
if addressFailures >= addressLimit then wait = math.max(wait, left(KEYS[2])) end
if wait > 0 then return wait end
if userFailures + count(KEYS[3]) >= userLimit or addressFailures + count(KEYS[4]) >= addressLimit then return 1000 end
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
return 0
`;

// KEYS: as CHECK. ARGV: window ms.
const FAILURE = `
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
  if redis.call('DECR', KEYS[i + 2]) <= 0 then redis.call('DEL', KEYS[i + 2]) end
end
return 1
`;

// KEYS: as CHECK. The username's slate is wiped; the address only loses its in-flight attempt.
const SUCCESS = `
redis.call('DEL', KEYS[1], KEYS[3])
if redis.call('DECR', KEYS[4]) <= 0 then redis.call('DEL', KEYS[4]) end
return 1
`;

/** Long keys are hashed, so a key stays short whatever a client sends. */
function keyPart(text: string): string {
  return text.length <= 128 ? text : `sha256-${createHash('sha256').update(text).digest('base64url')}`;
}

/** A {@link LoginLimiter} on Redis (see {@link RedisLoginLimiterOptions} for the defaults). */
export class RedisLoginLimiter implements LoginLimiter {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #userLimit: number;
  readonly #addressLimit: number;
  readonly #windowMs: number;
  readonly #inFlightTtlMs: number;

  constructor(options: RedisLoginLimiterOptions) {
    this.#client = options.bus.client;
    this.#prefix = `${options.bus.keyPrefix}login:`;
    this.#userLimit = options.maxFailuresPerUser ?? 5;
    this.#addressLimit = options.maxFailuresPerAddress ?? 20;
    this.#windowMs = options.windowMs ?? 15 * 60 * 1000;
    this.#inFlightTtlMs = options.inFlightTtlMs ?? 10_000;
  }

  async check(username: string, address: string): Promise<void> {
    const waitMs = Number(await this.#run(CHECK, username, address, String(this.#userLimit), String(this.#addressLimit), String(this.#inFlightTtlMs)));
    if (waitMs > 0) {
      const wait = Math.max(1, Math.ceil(waitMs / 1000));
      throw new SentinelError('rate_limited', `too many failed logins; try again in ${wait} s`, { retryAfter: wait });
    }
  }

  async recordFailure(username: string, address: string): Promise<void> {
    await this.#run(FAILURE, username, address, String(this.#windowMs));
  }

  async recordSuccess(username: string, address: string): Promise<void> {
    await this.#run(SUCCESS, username, address);
  }

  async #run(script: string, username: string, address: string, ...args: string[]): Promise<unknown> {
    const user = `${this.#prefix}user:${keyPart(username.toLowerCase())}`;
    const addr = `${this.#prefix}addr:${keyPart(throttleAddressKey(address))}`;
    try {
      return await this.#client.eval(script, 4, user, addr, `${user}:inflight`, `${addr}:inflight`, ...args);
    } catch (err) {
      throw busUnavailable(err);
    }
  }
}
