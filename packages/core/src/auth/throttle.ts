/**
 * Login throttling: repeated failures for one username or one client address are refused
 * with `rate_limited` (HTTP 429 + Retry-After) until their window ends, so passwords cannot
 * be guessed at full speed. Async methods, so a Redis-backed limiter (scale-out, docs/ARCHITECTURE.md#scale-out)
 * can implement the same interface.
 */
import { SentinelError } from '../errors.js';

/**
 * What AuthService needs from a limiter. Contract: every `check` that resolves is followed
 * by exactly one `recordFailure` or `recordSuccess` for the same pair (a limiter may count
 * the attempt as in flight between the two).
 */
export interface LoginLimiter {
  /** Throws `rate_limited` with `retryAfter` seconds when the username or the address is over its limit. */
  check(username: string, address: string): Promise<void>;
  /** Counts a failed login against both the username and the address. */
  recordFailure(username: string, address: string): Promise<void>;
  /** Clears the username's failures (the address keeps its count: one good account must not reset guessing budgets). */
  recordSuccess(username: string, address: string): Promise<void>;
}

export interface LoginThrottleOptions {
  /** Failures per username within a window before refusing. Default 5. */
  maxFailuresPerUser?: number;
  /** Failures per client address within a window before refusing. Default 20. */
  maxFailuresPerAddress?: number;
  /** Window length in milliseconds, counted from the first attempt. Default 15 minutes. */
  windowMs?: number;
  /** Clock in epoch milliseconds. Default `Date.now`. */
  now?: () => number;
  /** Most usernames (and, separately, addresses) tracked at once; the oldest window is dropped past it. Default 10000. */
  maxKeys?: number;
}

interface Window {
  failures: number;
  /** When this window ends (epoch ms); fixed at creation, so map order is also end order. */
  resetAt: number;
  /** Start times of checks not yet followed by a record call: concurrent guesses count up front. */
  inFlight: number[];
}

/**
 * An in-flight attempt that was never recorded (the caller crashed between check and record)
 * stops counting after this long; a real verification takes well under a second.
 */
const IN_FLIGHT_TTL_MS = 10_000;

class WindowTable {
  readonly #windows = new Map<string, Window>();
  readonly limit: number;
  readonly #maxKeys: number;

  constructor(limit: number, maxKeys: number) {
    this.limit = limit;
    this.#maxKeys = maxKeys;
  }

  get size(): number {
    return this.#windows.size;
  }

  /** The live window for `key`, or undefined. Drops expired windows from the front first. */
  get(key: string, now: number): Window | undefined {
    this.prune(now);
    return this.#windows.get(key);
  }

  /** The live window for `key`, created when missing (evicting the oldest when full). */
  open(key: string, now: number, windowMs: number): Window {
    const existing = this.get(key, now);
    if (existing !== undefined) return existing;
    if (this.#windows.size >= this.#maxKeys) {
      const oldest = this.#windows.keys().next();
      if (oldest.done !== true) this.#windows.delete(oldest.value);
    }
    const created: Window = { failures: 0, resetAt: now + windowMs, inFlight: [] };
    this.#windows.set(key, created);
    return created;
  }

  delete(key: string): void {
    this.#windows.delete(key);
  }

  /** Windows end in insertion order, so pruning stops at the first live one: O(expired). */
  prune(now: number): void {
    for (const [key, window] of this.#windows) {
      if (window.resetAt > now) return;
      this.#windows.delete(key);
    }
  }
}

function dropStale(window: Window, now: number): void {
  while (window.inFlight.length > 0 && (window.inFlight[0] ?? 0) <= now - IN_FLIGHT_TTL_MS) window.inFlight.shift();
}

/** Seconds until `window` lets attempts through again, or 0 when it does now. */
function blockedFor(window: Window | undefined, limit: number, now: number): number {
  if (window === undefined) return 0;
  dropStale(window, now);
  if (window.failures >= limit) return Math.max(1, Math.ceil((window.resetAt - now) / 1000));
  // Only in-flight attempts fill the budget: they settle within moments.
  if (window.failures + window.inFlight.length >= limit) return 1;
  return 0;
}

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

/** In-process {@link LoginLimiter}: fixed windows per username and per address, memory bounded. */
export class LoginThrottle implements LoginLimiter {
  readonly #users: WindowTable;
  readonly #addresses: WindowTable;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(options: LoginThrottleOptions = {}) {
    const maxKeys = Math.max(1, options.maxKeys ?? 10000);
    this.#users = new WindowTable(options.maxFailuresPerUser ?? 5, maxKeys);
    this.#addresses = new WindowTable(options.maxFailuresPerAddress ?? 20, maxKeys);
    this.#windowMs = options.windowMs ?? 15 * 60 * 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Windows currently held (usernames + addresses); for tests and metrics. */
  get trackedKeys(): number {
    return this.#users.size + this.#addresses.size;
  }

  async check(username: string, address: string): Promise<void> {
    const now = this.#now();
    const userKey = username.toLowerCase();
    const addressKey = throttleAddressKey(address);
    const wait = Math.max(
      blockedFor(this.#users.get(userKey, now), this.#users.limit, now),
      blockedFor(this.#addresses.get(addressKey, now), this.#addresses.limit, now),
    );
    if (wait > 0) {
      throw new SentinelError('rate_limited', `too many failed logins; try again in ${wait} s`, { retryAfter: wait });
    }
    this.#users.open(userKey, now, this.#windowMs).inFlight.push(now);
    this.#addresses.open(addressKey, now, this.#windowMs).inFlight.push(now);
  }

  async recordFailure(username: string, address: string): Promise<void> {
    const now = this.#now();
    for (const [table, key] of [
      [this.#users, username.toLowerCase()],
      [this.#addresses, throttleAddressKey(address)],
    ] as const) {
      const window = table.open(key, now, this.#windowMs);
      window.inFlight.shift();
      window.failures += 1;
    }
  }

  async recordSuccess(username: string, address: string): Promise<void> {
    const now = this.#now();
    this.#users.delete(username.toLowerCase());
    const addressKey = throttleAddressKey(address);
    const window = this.#addresses.get(addressKey, now);
    if (window === undefined) return;
    window.inFlight.shift();
    if (window.failures === 0 && window.inFlight.length === 0) this.#addresses.delete(addressKey);
  }
}
