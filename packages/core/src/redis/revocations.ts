/**
 * Logouts and one-time WebSocket tickets shared by every instance (docs/ARCHITECTURE.md#scale-out).
 *
 * Revocations travel on channel `<prefix>revocations` as `{i: sender, j: jti, u: username, e: expiry ms}`:
 * every instance keeps the revoked-token list in process (auth/revocations.ts), so the hot path
 * never asks Redis; after a reconnection the list is reloaded from the Store.
 *
 * Tickets live under `<prefix>ticket:<sha-256 of the ticket>` with `SET … PX` (Redis expires
 * them) and are consumed with `GETDEL` (Redis ≥ 6.2), so exactly one instance can use one.
 */
import type { TokenRevocationFeed } from '../auth/revocations.js';
import type { TicketStore } from '../auth/tickets.js';
import type { Logger } from '../contract/logger.js';
import type { RevokedTokenRecord } from '../store/types.js';
import { busUnavailable, errorText, parseBusPayload } from './connection.js';
import type { RedisEventBus } from './event-bus.js';

/** The revocation feed on the bus's connections. */
export function createRedisRevocationFeed(bus: Pick<RedisEventBus, 'client' | 'keyPrefix' | 'instanceId' | 'listen'>, logger: Logger): TokenRevocationFeed {
  const channel = `${bus.keyPrefix}revocations`;
  return {
    publish(record) {
      const payload = JSON.stringify({ i: bus.instanceId, j: record.jti, u: record.username, e: record.expires_at_ms });
      // The Store already has it: an instance that misses this message still refuses the token
      // once it reloads (at its next reconnection) — and the row is what a restart reads.
      bus.client.publish(channel, payload).catch((err: unknown) => logger.warn('revocation publish failed', { username: record.username, error: errorText(err) }));
    },
    subscribe(listener) {
      return bus.listen(
        'revocations',
        (payload) => {
          const parsed = parseBusPayload(payload);
          if (parsed === null) return;
          const { i, j, u, e } = parsed;
          if (i === bus.instanceId || typeof j !== 'string' || typeof u !== 'string' || typeof e !== 'number') return;
          const record: RevokedTokenRecord = { jti: j, username: u, expires_at_ms: e };
          listener(record);
        },
        () => listener(null),
      );
    },
  };
}

/** Tickets in Redis (see the module comment). */
export function createRedisTicketStore(bus: Pick<RedisEventBus, 'client' | 'keyPrefix'>): TicketStore {
  const prefix = `${bus.keyPrefix}ticket:`;
  return {
    async put(key, value, ttlMs) {
      try {
        await bus.client.set(prefix + key, value, 'PX', ttlMs);
      } catch (err) {
        throw busUnavailable(err);
      }
    },
    async take(key) {
      try {
        return await bus.client.getdel(prefix + key);
      } catch (err) {
        throw busUnavailable(err);
      }
    },
  };
}
