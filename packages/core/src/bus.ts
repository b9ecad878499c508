/**
 * The event bus carries an agent's events and log lines from whoever writes them (journal)
 * to whoever streams them (WebSocket, SSE, log follow). The interface is deliberately small so
 * a Redis adapter can replace the in-process one for scale-out (docs/ARCHITECTURE.md#scale-out). The bus is not
 * durable: the Store is the record, the bus only says "something new happened".
 */
import mittModule, { type Emitter, type EventType } from 'mitt';
import type { Logger } from './contract/logger.js';
import { silentLogger } from './contract/logger.js';
import type { EventRecord, LogRecord } from './contract/models.js';

/**
 * What one instance asks every instance to do to an agent's turns (scale-out): `cancel` the
 * message `message_id` wherever it is queued or running, end the agent's turns because it was
 * `stop`ped or is being `delete`d.
 */
export type AgentControlAction = 'cancel' | 'stop' | 'delete';

export type AgentBusMessage =
  | { kind: 'event'; event: EventRecord }
  | { kind: 'log'; log: LogRecord }
  | { kind: 'deleted'; agent_id: string }
  | { kind: 'control'; action: AgentControlAction; message_id?: string }
  /**
   * A batch of a run's frames, just written to the Store by the instance that runs it
   * (runs/journal.ts), so subscribers of the run on other instances go live without polling.
   */
  | { kind: 'run_frames'; run_id: string; frames: { seq: number; json: string }[] }
  /**
   * Delivered locally by a shared bus after it reconnected: messages published meanwhile may
   * have been missed, so readers catch up from the Store.
   */
  | { kind: 'resync' };

export interface EventBus {
  /** Delivers `message` to the agent's current subscribers. Never throws because of a subscriber. */
  publish(agentId: string, message: AgentBusMessage): void;
  /** Returns the unsubscribe function (idempotent). */
  subscribe(agentId: string, listener: (m: AgentBusMessage) => void): () => void;
  /** Drops every subscriber; later publishes are ignored. */
  close(): Promise<void>;
  /** True when publishes also reach other instances (e.g. the Redis bus). Default (absent): false, in-process only. */
  readonly shared?: boolean;
  /**
   * Checks that the bus can deliver right now (readiness probes); rejects with SentinelError
   * `unavailable` when it cannot. Default (absent): an in-process bus is always ready.
   */
  ping?(): Promise<void>;
}

export interface LocalEventBusOptions {
  /** Where a throwing subscriber is reported. Default: silent. */
  logger?: Logger;
}

// mitt's types are CommonJS-shaped (`export default` in a CJS .d.ts), but Node resolves its
// ESM build, whose default export is the factory itself. Name the call shape, as
// validation.ts does for ajv-formats.
type MittFactory = <Events extends Record<EventType, unknown>>() => Emitter<Events>;
const mitt = mittModule as unknown as MittFactory;

type BusEvents = Record<`agent:${string}`, AgentBusMessage>;

/** The in-process bus on `mitt`, one event name per agent (`agent:<id>`). */
export function createLocalEventBus(options: LocalEventBusOptions = {}): EventBus {
  const logger = options.logger ?? silentLogger;
  const emitter: Emitter<BusEvents> = mitt<BusEvents>();
  let closed = false;
  return {
    publish(agentId, message) {
      if (closed) return;
      emitter.emit(`agent:${agentId}`, message);
    },
    subscribe(agentId, listener) {
      if (closed) return () => {};
      const type = `agent:${agentId}` as const;
      // One subscriber's bug must not stop delivery to the others, nor fail the
      // publisher, whose write is already durable.
      const handler = (message: AgentBusMessage) => {
        try {
          listener(message);
        } catch (err) {
          logger.error('event bus subscriber failed', { agent_id: agentId, error: err instanceof Error ? err.message : String(err) });
        }
      };
      emitter.on(type, handler);
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        emitter.off(type, handler);
        // mitt keeps an empty handler list per name; drop it so agents that come and go
        // do not grow the map forever.
        if (emitter.all.get(type)?.length === 0) emitter.all.delete(type);
      };
    },
    async close() {
      closed = true;
      emitter.all.clear();
    },
  };
}
