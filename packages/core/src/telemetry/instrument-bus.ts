/** `sentinel_bus_publish_total` for any EventBus: a wrapper that counts each publish. */
import type { EventBus } from '../bus.js';
import type { SentinelMetrics } from './metrics.js';

/** `bus` with every `publish` counted; the rest (shared, ping, close) passes through. */
export function countBusPublishes(bus: EventBus, metrics: SentinelMetrics): EventBus {
  return {
    publish(agentId, message) {
      metrics.busPublished();
      bus.publish(agentId, message);
    },
    subscribe: (agentId, listener) => bus.subscribe(agentId, listener),
    close: () => bus.close(),
    // A shared bus stays recognizable (and probe-able) through the wrapper.
    ...(bus.shared === undefined ? {} : { shared: bus.shared }),
    ...(bus.ping === undefined ? {} : { ping: () => (bus.ping as () => Promise<void>).call(bus) }),
  };
}
