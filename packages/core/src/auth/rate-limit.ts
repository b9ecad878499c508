/**
 * Request rate limits (issue 13 item 4): one token bucket per (route class, partition), where
 * the partition is the caller — an API key by its id, any other credential by its username —
 * or, on public routes, the client address. A bucket holds `burst` units and refills at
 * `perMinute` units a minute; a request takes one unit or is refused with 429 `rate_limited`.
 *
 * The headers follow draft-ietf-httpapi-ratelimit-headers-11 (May 2026), one policy per class:
 * `RateLimit-Policy: "read";q=<burst>;w=<seconds to refill the whole burst>` and
 * `RateLimit: "read";r=<units left>;t=<seconds until the bucket is full again>`. A full bucket
 * of `q` units refilling in `w` seconds is exactly "q requests per w seconds", which is what the
 * policy item says; `t` is 0 on a full bucket. No partition key (`pk`) is sent: it would echo
 * a key id or an address back.
 *
 * The in-process store answers synchronously (no await, no promise: the check sits on every
 * request's hot path); the Redis store (redis/rate-limit-store.ts) answers with a promise and
 * shares the buckets between instances.
 */
import { SentinelError } from '../contract/errors.js';
import type { Principal } from '../contract/models.js';
import { RATE_CLASSES, type RateClass } from '../contract/rate-class.js';

export { RATE_CLASSES, type RateClass };

/** One class's limit: `perMinute` units a minute, at most `burst` at once. */
export interface RateLimitRule {
  /** Units restored a minute; 0 turns the class off. */
  perMinute: number;
  /** Bucket size: how many requests may come at once. Default `perMinute`. */
  burst?: number;
}

/**
 * Limits per class, as a per-minute number or a rule; 0 (or `false`) turns a class off.
 * Defaults (per caller, per minute, burst equal): read 1200, write 600, auth 120 (per address:
 * login), chat 120 (chat `message` and `tool_request` frames).
 */
export type RateLimitSettings = Partial<Record<RateClass, number | false | RateLimitRule>>;

export const DEFAULT_RATE_LIMITS: Readonly<Record<RateClass, number>> = Object.freeze({ read: 1200, write: 600, auth: 120, chat: 120 });

/** A rule with everything computed once: the bucket size, the refill per ms, the policy header item. */
export interface ResolvedRateRule {
  readonly rateClass: RateClass;
  readonly burst: number;
  readonly perMinute: number;
  /** Units per millisecond. */
  readonly perMs: number;
  /** Milliseconds an empty bucket takes to fill (`w` of the policy, in ms). */
  readonly fillMs: number;
  /** The `RateLimit-Policy` value: `"read";q=1200;w=60`. */
  readonly policy: string;
}

/** What one take from a bucket decided. */
export interface RateDecision {
  readonly allowed: boolean;
  /** Whole units left after this request (the draft's `r`). */
  readonly remaining: number;
  /** Seconds until the bucket is full again (the draft's `t`). */
  readonly resetSeconds: number;
  /** Seconds until one unit is back (Retry-After); 0 when allowed. */
  readonly retryAfterSeconds: number;
}

/** Where the buckets live: in process (synchronous) or in Redis (a promise). */
export interface RateLimitStore {
  /** Takes one unit from `key`'s bucket under `rule`. */
  take(key: string, rule: ResolvedRateRule): RateDecision | Promise<RateDecision>;
  /** Releases timers and connections the store holds. Default: nothing. */
  close?(): void;
}

/** Turns the settings into rules; a class set to 0/false is absent. Throws RangeError on a negative or fractional limit. */
export function resolveRateRules(settings: RateLimitSettings = {}): Partial<Record<RateClass, ResolvedRateRule>> {
  const rules: Partial<Record<RateClass, ResolvedRateRule>> = {};
  for (const rateClass of RATE_CLASSES) {
    const given = settings[rateClass];
    const raw = given === undefined ? DEFAULT_RATE_LIMITS[rateClass] : given;
    if (raw === false || raw === 0) continue;
    const rule = typeof raw === 'number' ? { perMinute: raw } : raw;
    const burst = rule.burst ?? rule.perMinute;
    for (const [name, value] of [['perMinute', rule.perMinute], ['burst', burst]] as const) {
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`rate limit ${rateClass}.${name} must be a non-negative integer, got ${String(value)}`);
    }
    if (rule.perMinute === 0 || burst === 0) continue;
    const perMs = rule.perMinute / 60_000;
    const fillMs = burst / perMs;
    rules[rateClass] = Object.freeze({
      rateClass,
      burst,
      perMinute: rule.perMinute,
      perMs,
      fillMs,
      policy: `"${rateClass}";q=${burst};w=${Math.max(1, Math.ceil(fillMs / 1000))}`,
    });
  }
  return rules;
}

/** The decision for a bucket holding `tokens` (fractional) after the take, `allowed` or not. */
export function decisionFor(rule: ResolvedRateRule, tokens: number, allowed: boolean): RateDecision {
  return {
    allowed,
    remaining: Math.max(0, Math.floor(tokens)),
    resetSeconds: Math.max(0, Math.ceil((rule.burst - tokens) / rule.perMs / 1000)),
    retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / rule.perMs / 1000)),
  };
}

interface Bucket {
  tokens: number;
  at: number;
}

export interface MemoryRateLimitStoreOptions {
  /** Clock in ms. Default `Date.now`. */
  now?: () => number;
  /** Buckets kept before full (idle) ones are swept. Default 100000. */
  maxBuckets?: number;
}

/**
 * Buckets in a Map, for one instance. Memory stays bounded: once the map holds `maxBuckets`,
 * buckets that have refilled completely are dropped (a full bucket is the same as none), and
 * if that is not enough the oldest ones go too.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly #buckets = new Map<string, Bucket>();
  readonly #now: () => number;
  readonly #maxBuckets: number;
  readonly #fillMs = new Map<string, number>();

  constructor(options: MemoryRateLimitStoreOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#maxBuckets = options.maxBuckets ?? 100_000;
  }

  /** Buckets held right now. */
  get size(): number {
    return this.#buckets.size;
  }

  take(key: string, rule: ResolvedRateRule): RateDecision {
    const now = this.#now();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxBuckets) this.#sweep(now);
      bucket = { tokens: rule.burst, at: now };
      this.#buckets.set(key, bucket);
      this.#fillMs.set(key, rule.fillMs);
    } else if (now > bucket.at) {
      bucket.tokens = Math.min(rule.burst, bucket.tokens + (now - bucket.at) * rule.perMs);
      bucket.at = now;
    }
    const allowed = bucket.tokens >= 1;
    if (allowed) bucket.tokens -= 1;
    return decisionFor(rule, bucket.tokens, allowed);
  }

  #sweep(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.at >= (this.#fillMs.get(key) ?? 0)) {
        this.#buckets.delete(key);
        this.#fillMs.delete(key);
      }
    }
    // Still full of active buckets: drop the oldest inserted (a Map iterates in insertion order)
    // down to 90 %, so a flood of new callers costs one sweep per many of them, not one each.
    const keep = Math.floor(this.#maxBuckets * 0.9);
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size <= keep) break;
      this.#buckets.delete(key);
      this.#fillMs.delete(key);
    }
  }
}

/**
 * Who a bucket belongs to: `key:<id>` for an API key (each key its own bucket, apart from its
 * owner's), `user:<name>` for any other credential, `addr:<address>` without a principal.
 */
export function ratePartitionOf(principal: Principal | null, remoteAddress: string): string {
  if (principal === null) return `addr:${remoteAddress}`;
  if (principal.via === 'key' && principal.credentialId !== undefined) return `key:${principal.credentialId}`;
  return `user:${principal.username}`;
}

/** The `RateLimit` and `RateLimit-Policy` headers for a decision. */
export function rateLimitHeaders(rule: ResolvedRateRule, decision: RateDecision): Record<string, string> {
  return {
    'RateLimit-Policy': rule.policy,
    RateLimit: `"${rule.rateClass}";r=${decision.remaining};t=${decision.resetSeconds}`,
  };
}

/** `rate_limited` with Retry-After and the headers, for a refused request or frame. */
export function rateLimited(rule: ResolvedRateRule, decision: RateDecision, headers?: Record<string, string>): SentinelError {
  return new SentinelError('rate_limited', `rate limit of ${rule.perMinute} ${rule.rateClass} requests a minute exceeded; try again in ${decision.retryAfterSeconds} s`, {
    retryAfter: decision.retryAfterSeconds,
    details: { rate_class: rule.rateClass, retry_after: decision.retryAfterSeconds },
    ...(headers === undefined ? {} : { headers }),
  });
}

export interface RateLimiterOptions {
  /** Limits per class. Default {@link DEFAULT_RATE_LIMITS}. */
  limits?: RateLimitSettings;
  /** Where the buckets live. Default a {@link MemoryRateLimitStore}. */
  store?: RateLimitStore;
}

/** The limiter the seam and the chat service hold: rules per class and a store. */
export class RateLimiter {
  readonly #rules: Partial<Record<RateClass, ResolvedRateRule>>;
  readonly #store: RateLimitStore;

  constructor(options: RateLimiterOptions = {}) {
    this.#rules = resolveRateRules(options.limits);
    this.#store = options.store ?? new MemoryRateLimitStore();
  }

  /** The rule of a class, or undefined when the class is off. */
  ruleFor(rateClass: RateClass): ResolvedRateRule | undefined {
    return this.#rules[rateClass];
  }

  /** Takes a unit from `partition`'s bucket of `rule`'s class (synchronous in process). */
  take(rule: ResolvedRateRule, partition: string): RateDecision | Promise<RateDecision> {
    return this.#store.take(`${rule.rateClass}:${partition}`, rule);
  }

  close(): void {
    this.#store.close?.();
  }
}
