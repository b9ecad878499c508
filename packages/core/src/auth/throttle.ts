/**
 * Login throttling, built so that nobody can lock anyone else out (the old per-username lock
 * let five wrong passwords from anywhere refuse the right one from everywhere):
 *
 * - per (username, client address): a few free failures, then the pair must wait, and the
 *   wait doubles with every further failure up to a cap (exponential backoff). This is what
 *   stops a guesser; a correct login from that address resets it.
 * - per client address, across usernames: the same backoff with a larger free budget, so one
 *   address cannot try a few passwords on every account.
 * - per username, from every address: never a refusal. Past a number of failures each login
 *   attempt for that name is held back by a small, bounded delay, which slows a guesser that
 *   spreads over many addresses without stopping the owner's correct login from a clean one.
 *
 * Refusals are `rate_limited` (HTTP 429 + Retry-After). Async methods, so the Redis limiter
 * (scale-out, docs/ARCHITECTURE.md#scale-out) implements the same interface and the same policy.
 */
import { SentinelError } from '../contract/errors.js';

/**
 * What AuthService needs from a limiter. Contract: every `check` that resolves is followed
 * by exactly one `recordFailure` or `recordSuccess` for the same pair (a limiter may count
 * the attempt as in flight between the two).
 */
export interface LoginLimiter {
  /**
   * Throws `rate_limited` with `retryAfter` seconds while the (username, address) pair or the
   * address must wait; otherwise resolves, after the username's slow-down delay if it has one.
   */
  check(username: string, address: string): Promise<void>;
  /** Counts a failed login against the pair, the address and the username. */
  recordFailure(username: string, address: string): Promise<void>;
  /**
   * Clears the pair's failures. The address keeps its count (one good account must not reset
   * its guessing budget) and so does the username (a success here says nothing about guesses
   * from elsewhere).
   */
  recordSuccess(username: string, address: string): Promise<void>;
}

/** The throttling policy, shared by the in-process and the Redis limiter. */
export interface LoginThrottlePolicy {
  /** Failures for one username from one address (IPv6: one /64) before that pair must wait. Default 5. */
  freeFailuresPerUserAddress?: number;
  /** Failures from one address, whatever the usernames, before that address must wait. Default 20. */
  freeFailuresPerAddress?: number;
  /** The first wait once the free failures are used, in ms; each further failure doubles it. Default 1000. */
  baseDelayMs?: number;
  /** Longest wait, in ms. Default 15 minutes. */
  maxDelayMs?: number;
  /** Counters with no new failure for this long are forgotten, in ms. Default 1 hour. */
  forgetAfterMs?: number;
  /** Failures for one username, from every address, before its login attempts are slowed down. Default 10. */
  userSlowdownAfter?: number;
  /** Slow-down per failure from then on, in ms. Default 100. */
  userSlowdownStepMs?: number;
  /** Longest slow-down, in ms: it delays, never refuses. Default 1000. */
  maxUserSlowdownMs?: number;
}

export type ResolvedLoginThrottlePolicy = Required<LoginThrottlePolicy>;

/** The policy with its defaults filled in; RangeError for a value that is not a non-negative integer (or a zero base delay). */
export function resolveLoginThrottlePolicy(policy: LoginThrottlePolicy = {}): ResolvedLoginThrottlePolicy {
  const resolved: ResolvedLoginThrottlePolicy = {
    freeFailuresPerUserAddress: policy.freeFailuresPerUserAddress ?? 5,
    freeFailuresPerAddress: policy.freeFailuresPerAddress ?? 20,
    baseDelayMs: policy.baseDelayMs ?? 1000,
    maxDelayMs: policy.maxDelayMs ?? 15 * 60 * 1000,
    forgetAfterMs: policy.forgetAfterMs ?? 60 * 60 * 1000,
    userSlowdownAfter: policy.userSlowdownAfter ?? 10,
    userSlowdownStepMs: policy.userSlowdownStepMs ?? 100,
    maxUserSlowdownMs: policy.maxUserSlowdownMs ?? 1000,
  };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`login throttle option ${name} must be a non-negative integer, got ${value}`);
  }
  if (resolved.baseDelayMs < 1) throw new RangeError('login throttle option baseDelayMs must be at least 1');
  return resolved;
}

/**
 * How long a pair or an address must still wait, in ms (0: go ahead). `failures` past `free`
 * cost `baseDelayMs · 2^(failures − free)` (capped) counted from the last failure. Attempts in
 * flight count as failures up front, so concurrent guesses cannot overrun the free budget;
 * they settle within moments, hence the short wait while they do.
 * The Redis limiter's script computes exactly this; keep the two in step.
 */
export function loginBackoffMs(policy: ResolvedLoginThrottlePolicy, free: number, failures: number, inFlight: number, lastFailureAt: number, now: number): number {
  if (failures + inFlight < free) return 0;
  let wait = 0;
  if (failures >= free) wait = Math.max(0, lastFailureAt + Math.min(policy.baseDelayMs * 2 ** (failures - free), policy.maxDelayMs) - now);
  if (wait === 0 && inFlight > 0) wait = IN_FLIGHT_WAIT_MS;
  return wait;
}

/** The delay added to a login attempt for a username with `failures` recent failures, in ms. */
export function loginSlowdownMs(policy: ResolvedLoginThrottlePolicy, failures: number): number {
  if (failures < policy.userSlowdownAfter) return 0;
  return Math.min(policy.userSlowdownStepMs * (failures - policy.userSlowdownAfter + 1), policy.maxUserSlowdownMs);
}

/** The refusal for a wait of `waitMs`: whole seconds in the message and in Retry-After, at least 1. */
export function loginRefusal(waitMs: number): SentinelError {
  const wait = Math.max(1, Math.ceil(waitMs / 1000));
  return new SentinelError('rate_limited', `too many failed logins; try again in ${wait} s`, { retryAfter: wait });
}

/** The wait asked of an attempt while others that fill the budget are still in flight. */
const IN_FLIGHT_WAIT_MS = 1000;

/**
 * An in-flight attempt that was never recorded (the caller crashed between check and record)
 * stops counting after this long; a real verification takes well under a second.
 */
export const LOGIN_IN_FLIGHT_TTL_MS = 10_000;

export interface LoginThrottleOptions extends LoginThrottlePolicy {
  /** Clock in epoch milliseconds. Default `Date.now`. */
  now?: () => number;
  /** How the username slow-down waits. Default: a timer (`setTimeout`). */
  sleep?: (ms: number) => Promise<void>;
  /** Most keys tracked per table (pairs, addresses, usernames); the least recently failed is dropped past it. Default 10000. */
  maxKeys?: number;
}

interface Counter {
  failures: number;
  lastFailureAt: number;
  /** Start times of checks not yet followed by a record call. */
  inFlight: number[];
  /** When this counter is forgotten (epoch ms). */
  expiresAt: number;
}

/** Counters in expiry order (every touch moves one to the end), so pruning stops at the first live one. */
class CounterTable {
  readonly #counters = new Map<string, Counter>();
  readonly #maxKeys: number;

  constructor(maxKeys: number) {
    this.#maxKeys = maxKeys;
  }

  get size(): number {
    return this.#counters.size;
  }

  get(key: string, now: number): Counter | undefined {
    this.prune(now);
    const counter = this.#counters.get(key);
    if (counter !== undefined) dropStale(counter, now);
    return counter;
  }

  /** The counter for `key` (created when missing), living `ttlMs` from now. */
  touch(key: string, now: number, ttlMs: number): Counter {
    const counter = this.get(key, now) ?? { failures: 0, lastFailureAt: 0, inFlight: [], expiresAt: 0 };
    this.#counters.delete(key);
    if (this.#counters.size >= this.#maxKeys) {
      const oldest = this.#counters.keys().next();
      if (oldest.done !== true) this.#counters.delete(oldest.value);
    }
    counter.expiresAt = now + ttlMs;
    this.#counters.set(key, counter);
    return counter;
  }

  delete(key: string): void {
    this.#counters.delete(key);
  }

  prune(now: number): void {
    for (const [key, counter] of this.#counters) {
      if (counter.expiresAt > now) return;
      this.#counters.delete(key);
    }
  }
}

function dropStale(counter: Counter, now: number): void {
  while (counter.inFlight.length > 0 && (counter.inFlight[0] ?? 0) <= now - LOGIN_IN_FLIGHT_TTL_MS) counter.inFlight.shift();
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * IPv6 clients usually own a whole /64, so they are counted per /64; IPv4-mapped IPv6
 * addresses count as the IPv4 address. Anything unparsable is used as given.
 */
export function throttleAddressKey(address: string): string {
  if (!address.includes(':')) return address;
  let text = address.toLowerCase();
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  if (text.startsWith('::ffff:') && text.includes('.')) return text.slice(7);
  const halves = text.split('::');
  if (halves.length > 2) return address;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  // An embedded dotted IPv4 part fills two 16-bit groups.
  const width = (groups: string[]) => groups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const zeros = halves.length === 2 ? Math.max(0, 8 - width(head) - width(tail)) : 0;
  const groups = [...head, ...Array<string>(zeros).fill('0'), ...tail].slice(0, 4);
  const prefix: string[] = [];
  for (const group of groups) {
    if (!/^[0-9a-f]{1,4}$/.test(group)) return address;
    prefix.push(parseInt(group, 16).toString(16));
  }
  return `${prefix.join(':')}::/64`;
}

/** In-process {@link LoginLimiter}: the policy above with counters in memory, bounded by `maxKeys`. */
export class LoginThrottle implements LoginLimiter {
  readonly #policy: ResolvedLoginThrottlePolicy;
  readonly #pairs: CounterTable;
  readonly #addresses: CounterTable;
  readonly #users: CounterTable;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(options: LoginThrottleOptions = {}) {
    this.#policy = resolveLoginThrottlePolicy(options);
    const maxKeys = Math.max(1, options.maxKeys ?? 10000);
    this.#pairs = new CounterTable(maxKeys);
    this.#addresses = new CounterTable(maxKeys);
    this.#users = new CounterTable(maxKeys);
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? realSleep;
  }

  /** Counters currently held (pairs + addresses + usernames); for tests and metrics. */
  get trackedKeys(): number {
    return this.#pairs.size + this.#addresses.size + this.#users.size;
  }

  async check(username: string, address: string): Promise<void> {
    const now = this.#now();
    const { pair, addressKey, userKey } = loginThrottleKeys(username, address);
    const policy = this.#policy;
    const wait = Math.max(
      this.#wait(this.#pairs.get(pair, now), policy.freeFailuresPerUserAddress, now),
      this.#wait(this.#addresses.get(addressKey, now), policy.freeFailuresPerAddress, now),
    );
    if (wait > 0) throw loginRefusal(wait);
    const ttl = Math.max(policy.forgetAfterMs, LOGIN_IN_FLIGHT_TTL_MS);
    this.#pairs.touch(pair, now, ttl).inFlight.push(now);
    this.#addresses.touch(addressKey, now, ttl).inFlight.push(now);
    const slowdown = loginSlowdownMs(policy, this.#users.get(userKey, now)?.failures ?? 0);
    if (slowdown > 0) await this.#sleep(slowdown);
  }

  async recordFailure(username: string, address: string): Promise<void> {
    const now = this.#now();
    const { pair, addressKey, userKey } = loginThrottleKeys(username, address);
    const ttl = Math.max(this.#policy.forgetAfterMs, LOGIN_IN_FLIGHT_TTL_MS);
    for (const [table, key] of [
      [this.#pairs, pair],
      [this.#addresses, addressKey],
    ] as const) {
      const counter = table.touch(key, now, ttl);
      counter.inFlight.shift();
      counter.failures += 1;
      counter.lastFailureAt = now;
    }
    this.#users.touch(userKey, now, this.#policy.forgetAfterMs).failures += 1;
  }

  async recordSuccess(username: string, address: string): Promise<void> {
    const now = this.#now();
    const { pair, addressKey } = loginThrottleKeys(username, address);
    this.#pairs.delete(pair);
    const counter = this.#addresses.get(addressKey, now);
    if (counter === undefined) return;
    counter.inFlight.shift();
    if (counter.failures === 0 && counter.inFlight.length === 0) this.#addresses.delete(addressKey);
  }

  #wait(counter: Counter | undefined, free: number, now: number): number {
    if (counter === undefined) return 0;
    return loginBackoffMs(this.#policy, free, counter.failures, counter.inFlight.length, counter.lastFailureAt, now);
  }
}

/**
 * The three counter keys of an attempt. Usernames match case-insensitively; the pair key is
 * JSON, so no username/address combination can pose as another.
 */
export function loginThrottleKeys(username: string, address: string): { pair: string; addressKey: string; userKey: string } {
  const userKey = username.toLowerCase();
  const addressKey = throttleAddressKey(address);
  return { pair: JSON.stringify([userKey, addressKey]), addressKey, userKey };
}

