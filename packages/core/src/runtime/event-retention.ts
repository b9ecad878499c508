/**
 * Event retention: an agent keeps its newest `keepLast` events; older ones are pruned from the
 * Store. Every event reaches the bus right after its Store write (the journal's order), so the
 * bus is where retention can see every append without the writers knowing about it: wrap the
 * bus once at start-up and every writer's events count.
 */
import type { AgentBusMessage, EventBus } from '../bus.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { EventRecord } from '../contract/models.js';
import type { Store } from '../store/types.js';

export interface EventRetentionOptions {
  store: Store;
  /** Events kept per agent. Default 10 000. */
  keepLast?: number;
  /** Prune when an agent's seq reaches a multiple of this (so at most this many extra rows wait). Default 100. */
  every?: number;
  /** Where a failed prune is reported. Default: silent. */
  logger?: Logger;
}

export interface EventRetention {
  readonly keepLast: number;
  /**
   * Tells retention that `record` was appended. When its seq is a multiple of `every`, prunes
   * the agent's older events in the background (errors are logged, never thrown).
   */
  noteAppended(record: EventRecord): void;
}

/** Creates the retention policy (see {@link EventRetentionOptions} for the defaults). */
export function createEventRetention(options: EventRetentionOptions): EventRetention {
  const keepLast = options.keepLast ?? 10_000;
  const every = options.every ?? 100;
  if (!Number.isSafeInteger(keepLast) || keepLast < 1) throw new RangeError('event retention keepLast must be a positive integer');
  if (!Number.isSafeInteger(every) || every < 1) throw new RangeError('event retention every must be a positive integer');
  const { store } = options;
  const logger = options.logger ?? silentLogger;
  // One prune at a time per agent: a burst must not stack up identical DELETEs.
  const pruning = new Set<string>();
  return {
    keepLast,
    noteAppended(record) {
      // Stateless (the seq says when): works the same across restarts and instances.
      if (record.seq % every !== 0 || pruning.has(record.agent_id)) return;
      const agentId = record.agent_id;
      pruning.add(agentId);
      store
        .pruneEvents(agentId, keepLast)
        .catch((err: unknown) => {
          logger.error('event retention failed', { agent_id: agentId, error: err instanceof Error ? err.message : String(err) });
        })
        .finally(() => pruning.delete(agentId));
    },
  };
}

/**
 * Wraps `bus` so that every event published through it also drives `retention`. Pass the
 * wrapped bus to the journal and to the readers alike: subscribe and close go straight through.
 */
export function withEventRetention(bus: EventBus, retention: EventRetention): EventBus {
  return {
    publish(agentId: string, message: AgentBusMessage) {
      bus.publish(agentId, message);
      if (message.kind === 'event') retention.noteAppended(message.event);
    },
    subscribe: (agentId, listener) => bus.subscribe(agentId, listener),
    close: () => bus.close(),
    // A shared bus stays recognizable (and probe-able) through the wrapper.
    ...(bus.shared === undefined ? {} : { shared: bus.shared }),
    ...(bus.ping === undefined ? {} : { ping: () => (bus.ping as () => Promise<void>).call(bus) }),
  };
}
