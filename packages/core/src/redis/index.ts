/**
 * `@sentinel/api-core/redis`: scale-out on Redis (docs/ARCHITECTURE.md#scale-out). A separate entry so that
 * ioredis loads only when a bus URL is configured. `createSentinelApi({ busUrl })` uses
 * {@link openRedisScaleOut}; the parts are exported for embedding apps that compose their own.
 */
import { silentLogger } from '../contract/logger.js';
import { parseRedisUrl } from './connection.js';
import { createRedisEventBus, type RedisEventBus, type RedisEventBusOptions } from './event-bus.js';
import { RedisLoginLimiter } from './login-limiter.js';
import { createRedisTurnLock, type RedisTurnLock } from './turn-lock.js';
import { RedisRateLimitStore } from './rate-limit-store.js';
import { createRedisRevocationFeed, createRedisTicketStore } from './revocations.js';
import type { TokenRevocationFeed } from '../auth/revocations.js';
import type { TicketStore } from '../auth/tickets.js';
import { RedisUsageCounters } from './usage-counters.js';

export { DEFAULT_KEY_PREFIX, busUnavailable, maskRedisUrl, parseRedisUrl, type RedisClientTimeouts, type RedisTarget } from './connection.js';
export { createRedisEventBus, type RedisEventBus, type RedisEventBusOptions } from './event-bus.js';
export { RedisLoginLimiter, type RedisLoginLimiterOptions } from './login-limiter.js';
export { createRedisTurnLock, type RedisTurnLock, type RedisTurnLockOptions } from './turn-lock.js';
export { RedisRateLimitStore, type RedisRateLimitStoreOptions } from './rate-limit-store.js';
export { createRedisRevocationFeed, createRedisTicketStore } from './revocations.js';
export { RedisUsageCounters } from './usage-counters.js';

export interface RedisScaleOutOptions extends RedisEventBusOptions {
  /** Lease of the per-agent turn lock, in ms. Default: the URL's `turn_lease_ms`, else 15000. */
  turnLeaseMs?: number;
}

/** Everything one instance shares with the others through Redis. */
export interface RedisScaleOut {
  /** Agent events, logs, control messages and user invalidations between instances. */
  readonly bus: RedisEventBus;
  /** One turn at a time per agent across instances. */
  readonly turnLock: RedisTurnLock;
  /** Login failure counters shared by all instances. */
  readonly loginLimiter: RedisLoginLimiter;
  /** Rate-limit buckets shared by all instances. */
  readonly rateLimitStore: RedisRateLimitStore;
  /** Logouts announced to every instance. */
  readonly revocations: TokenRevocationFeed;
  /** One-time WebSocket tickets any instance can consume (once). */
  readonly tickets: TicketStore;
  /** Quota counters (turns and tokens per user and UTC day) shared by all instances. */
  readonly usageCounters: RedisUsageCounters;
  /** Closes the lock's listener and the bus's connections. Idempotent. */
  close(): Promise<void>;
}

/**
 * Connects to Redis and builds the bus, the turn lock and the login limiter on one command
 * connection and one subscriber connection. Rejects with SentinelError `invalid_request` for a
 * malformed URL and `unavailable` when Redis does not answer within the connect timeout.
 */
export async function openRedisScaleOut(options: RedisScaleOutOptions): Promise<RedisScaleOut> {
  const turnLeaseMs = options.turnLeaseMs ?? parseRedisUrl(options.url).turnLeaseMs;
  const bus = createRedisEventBus(options);
  try {
    await bus.ready();
  } catch (err) {
    await bus.close();
    throw err;
  }
  const logger = options.logger ?? silentLogger;
  const turnLock = createRedisTurnLock({ bus, logger, ...(turnLeaseMs === undefined ? {} : { leaseMs: turnLeaseMs }) });
  const loginLimiter = new RedisLoginLimiter({ bus });
  const rateLimitStore = new RedisRateLimitStore({ bus, logger });
  let closing: Promise<void> | undefined;
  return {
    bus,
    turnLock,
    loginLimiter,
    rateLimitStore,
    revocations: createRedisRevocationFeed(bus, logger),
    tickets: createRedisTicketStore(bus),
    usageCounters: new RedisUsageCounters({ bus }),
    close: () =>
      (closing ??= (async () => {
        turnLock.close();
        await bus.close();
      })()),
  };
}
