/**
 * Which API instances are alive, for the sweep that fails the runs of an instance that went
 * away (runs/service.ts): each instance keeps `<prefix>instance:<id>` set with a TTL and
 * renews it on a heartbeat; a key that expired is an instance that stopped without ending its
 * runs (a crash, `kill -9`, a lost network).
 */
import type { InstanceLiveness } from '../runs/service.js';
import type { RedisEventBus } from './event-bus.js';

/** The liveness keys of every instance in Redis, next to the bus's other keys. */
export function createRedisInstanceLiveness(bus: RedisEventBus): InstanceLiveness {
  const key = (id: string) => `${bus.keyPrefix}instance:${id}`;
  const known = `${bus.keyPrefix}instances`;
  return {
    async beat(instanceId, ttlMs) {
      await bus.client.multi().set(key(instanceId), '1', 'PX', Math.max(1, Math.round(ttlMs))).sadd(known, instanceId).exec();
    },
    async known() {
      return bus.client.smembers(known);
    },
    async forget(instanceId) {
      await bus.client.srem(known, instanceId);
    },
    async alive(instanceIds) {
      if (instanceIds.length === 0) return new Set();
      const pipeline = bus.client.pipeline();
      for (const id of instanceIds) pipeline.exists(key(id));
      const results = (await pipeline.exec()) ?? [];
      const alive = new Set<string>();
      results.forEach(([err, value], index) => {
        // An unanswered check counts as alive: a run is never failed on a doubt.
        if (err || value !== 0) alive.add(instanceIds[index]!);
      });
      return alive;
    },
    async gone(instanceId) {
      // Its runs all ended (a graceful stop), so it needs no sweep either.
      await bus.client.multi().del(key(instanceId)).srem(known, instanceId).exec();
    },
  };
}
