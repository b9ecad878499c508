/**
 * The agent journal: the one place that writes an agent's log lines and events. The Store
 * write comes first (durable, assigns `seq`), then the bus publish, so a subscriber never sees
 * something that a replay from the Store would not also return.
 */
import { isoTimestamp } from './clock.js';
import type { EventBus } from './bus.js';
import type { Logger, LogLevel } from './contract/logger.js';
import { silentLogger } from './contract/logger.js';
import type { EventRecord, LogRecord } from './contract/models.js';
import type { Store } from './store/types.js';
import type { SentinelMetrics } from './telemetry/metrics.js';
import { captureTraceContext, runInContext } from './telemetry/tracing.js';

export interface AgentJournalOptions {
  store: Store;
  bus: EventBus;
  /** Server logger; each agent log line is mirrored to it at debug level. Default: silent. */
  logger?: Logger;
  /** Clock for timestamps. Default `Date.now`. */
  now?: () => number;
  /** Counts appended events (`sentinel_event_log_appends_total`). Default: none. */
  metrics?: SentinelMetrics;
}

export class AgentJournal {
  private readonly store: Store;
  private readonly bus: EventBus;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly metrics: SentinelMetrics | undefined;

  constructor(options: AgentJournalOptions) {
    this.store = options.store;
    this.bus = options.bus;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.metrics = options.metrics;
  }

  /** Appends one log line for the agent, publishes it, and returns it with its `seq`. */
  async log(agentId: string, level: LogLevel, message: string, fields?: Record<string, unknown>): Promise<LogRecord> {
    const line = { agent_id: agentId, timestamp: isoTimestamp(this.now()), level, message, ...(fields === undefined ? {} : { fields }) };
    // Taken before the await: the publish is in the caller's trace without async context tracking.
    const traceContext = captureTraceContext();
    const [stored] = await this.store.appendLogs(agentId, [line]);
    if (!stored) throw new Error(`store returned no log record for agent ${agentId}`);
    runInContext(traceContext, () => this.bus.publish(agentId, { kind: 'log', log: stored }));
    if (this.logger.isLevelEnabled('debug')) this.logger.debug(message, { ...fields, agent_id: agentId, agent_log_level: level });
    return stored;
  }

  /** Appends one event for the agent (the Store assigns `seq`), publishes it, and returns it. */
  async event(agentId: string, eventType: string, content: string, data: Record<string, unknown>): Promise<EventRecord> {
    const traceContext = captureTraceContext();
    const [stored] = await this.store.appendEvents(agentId, [
      { agent_id: agentId, event_type: eventType, timestamp: isoTimestamp(this.now()), content, data },
    ]);
    if (!stored) throw new Error(`store returned no event record for agent ${agentId}`);
    this.metrics?.eventsAppended();
    runInContext(traceContext, () => this.bus.publish(agentId, { kind: 'event', event: stored }));
    return stored;
  }

  /**
   * Tells subscribers the agent is gone (after the Store deleted it), so live streams can end
   * instead of waiting for events that will never come.
   */
  announceDeleted(agentId: string): void {
    this.bus.publish(agentId, { kind: 'deleted', agent_id: agentId });
  }
}
