/**
 * The events stream of an agent (`/v1/agents/{id}/events`, WebSocket and SSE alike): an
 * `agent_status` snapshot, then (with `since`) the replay from the durable log, then live
 * events, in seq order with no gap and no duplicate.
 *
 * How "no gap, no duplicate" holds: a subscriber joins the agent's bus channel BEFORE it reads
 * anything, and holds live events aside while it sends the snapshot and the replay. The journal
 * writes an event to the Store before publishing it, so every event is either already in the
 * Store when the replay reads, or arrives live afterwards (or both); sending only seq numbers
 * above the last one sent removes the overlap. One instance's bus delivers an agent's events in
 * seq order (the journal appends and publishes them in order); with several instances, one
 * instance's event can overtake another's, so a live event whose seq skips ahead makes the
 * subscriber fill the gap from the Store before sending it.
 *
 * Without `since` the same holds from the snapshot on: after joining the channel the subscriber
 * reads the agent's last stored seq and delivers every event after it (a live event, or from
 * the Store when the bus did not bring it: another instance's event published before this
 * instance's Redis SUBSCRIBE took effect comes in with the catch-up the bus asks for once it
 * has). Live events held aside while it started are delivered even when they were stored just
 * before that read: they happened after the client subscribed.
 *
 * Pace: the replay and the catch-up on events held aside go out in batches of
 * `replayPageSize`, each after the sink said it is ready for more (`FrameSink.whenReady`), so a
 * long replay never floods a transport's bounded queue even for a fast client.
 *
 * Fan-out: one bus subscription per agent however many subscribers it has, and each live event
 * is wrapped in one {@link Outgoing} shared by all of them, so it is serialized once.
 */
import type { AgentService } from '../agents/service.js';
import type { EventBus, AgentBusMessage } from '../bus.js';
import { SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { AgentRecord, EventRecord, Principal } from '../contract/models.js';
import type { Store } from '../store/types.js';
import { EVENTS_ENDPOINT, checkEndpointScope } from './endpoints.js';
import {
  outgoing,
  type EventFrame,
  type EventsService,
  type EventsSubscribeOptions,
  type EventsSubscription,
  type FrameSink,
  type Outgoing,
  type PreparedEvents,
} from './frames.js';

export interface AgentEventsServiceOptions {
  store: Store;
  /** The bus the journal publishes on (wrapped by `withEventRetention` or not: both work). */
  bus: EventBus;
  /** Authorizes subscriptions (another user's agent is `not_found`). */
  agents: AgentService;
  /** Events read from the Store per replay query. Default 500. */
  replayPageSize?: number;
  /**
   * Live events one subscriber may hold aside while its snapshot and replay are sent; past it
   * the subscriber is closed as too slow. Default 10 000.
   */
  maxPendingLive?: number;
  /** Where failures are reported. Default: silent. */
  logger?: Logger;
  /** Clock for frame timestamps. Default `Date.now`. */
  now?: () => number;
}

/** The frame of one stored event: `{type:'event', event_type, timestamp, content, data, seq, agent_id}`. */
export function eventFrame(record: EventRecord): EventFrame {
  return {
    type: 'event',
    event_type: record.event_type,
    timestamp: record.timestamp,
    content: record.content,
    data: record.data,
    seq: record.seq,
    agent_id: record.agent_id,
  };
}

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB'] as const;

/** Human-readable size in binary units: `512 B`, `1.2 KiB`, `3.0 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** The sink's own readiness, or one turn of the event loop so the transport can write. */
function whenReady(sink: FrameSink): Promise<void> {
  return sink.whenReady ? sink.whenReady() : new Promise((resolve) => setImmediate(resolve));
}

/** Present tense for the snapshot: `Agent <name> is <status>`. */
function snapshotContent(record: AgentRecord): string {
  return `Agent ${record.name} is ${record.status}`;
}

/**
 * One subscriber's progress: snapshot → replay → live, and back through "catching up" when a
 * live event shows a gap (with several instances, an event published by one can overtake an
 * earlier one published by another) or the bus reconnected after missing messages.
 */
class Subscriber {
  #phase: 'starting' | 'live' | 'catching_up' | 'closed' = 'starting';
  /** Live events held aside while the snapshot and replay go out, or while a gap is filled. */
  #pending: { seq: number; out: Outgoing }[] = [];
  /** Set when the agent was deleted while events were held aside: close once they are sent. */
  #deletedWhileHolding = false;
  /** Set when the bus may have missed events: catch up to the newest stored event. */
  wantsStoreCatchUp = false;
  /** The seq of the last event sent (with `since`, starts there; without, at the snapshot's). */
  lastSeq: number;
  /**
   * True once `lastSeq` means something: from the start with `since`; without it, once the
   * snapshot's seq was read ({@link anchorAt}).
   */
  anchored: boolean;

  constructor(
    readonly sink: FrameSink,
    readonly since: number | undefined,
    private readonly maxPending: number,
    private readonly detach: (s: Subscriber) => void,
    /** Called when a live event shows a gap: the service fills it from the Store. */
    private readonly onGap: (s: Subscriber) => void,
  ) {
    this.lastSeq = since ?? 0;
    this.anchored = since !== undefined;
  }

  get closed(): boolean {
    return this.#phase === 'closed';
  }

  /** A live event from the channel. */
  deliver(seq: number, out: Outgoing): void {
    if (this.#phase === 'live') {
      if (!this.anchored || seq <= this.lastSeq + 1) {
        this.sendEvent(seq, out);
        return;
      }
      this.#phase = 'catching_up';
      this.#hold(seq, out);
      this.onGap(this);
      return;
    }
    if (this.#phase !== 'closed') this.#hold(seq, out);
  }

  #hold(seq: number, out: Outgoing): void {
    this.#pending.push({ seq, out });
    if (this.#pending.length > this.maxPending) this.closeWith('too_slow', 'too many events waiting while the replay runs');
  }

  /** Sends one event unless it was sent already (seq at or below the last one sent). */
  sendEvent(seq: number, out: Outgoing): void {
    if (this.anchored && seq <= this.lastSeq) return;
    this.anchored = true;
    this.lastSeq = seq;
    this.sink.send(out);
  }

  send(out: Outgoing): void {
    if (this.#phase !== 'closed') this.sink.send(out);
  }

  /**
   * The bus may have missed events (it reconnected). True when the caller must start a
   * catch-up now; false when one is running already (it sees the flag) or the stream is over.
   */
  requestCatchUp(): boolean {
    if (this.#phase === 'closed') return false;
    this.wantsStoreCatchUp = true;
    if (this.#phase !== 'live') return false;
    this.#phase = 'catching_up';
    return true;
  }

  agentDeleted(): void {
    if (this.#phase === 'starting' || this.#phase === 'catching_up') this.#deletedWhileHolding = true;
    else this.closeWith('agent_deleted', 'agent deleted');
  }

  get hasPending(): boolean {
    return this.#pending.length > 0;
  }

  /**
   * Without `since`: the stream goes on from `seq`, the newest stored when the snapshot was
   * taken (read after joining the channel, so nothing after it can be missed).
   */
  anchorAt(seq: number): void {
    this.lastSeq = seq;
    this.anchored = true;
  }

  /**
   * Without `since`: the live events held aside while starting arrived after the subscription
   * began, so they are delivered even if stored before the snapshot's seq was read (an event
   * published between joining the channel and that read). The anchor moves back to just before
   * the oldest of them; the catch-up fills whatever lies between from the Store.
   */
  includeHeld(): void {
    let oldest = Number.POSITIVE_INFINITY;
    for (const { seq } of this.#pending) if (seq < oldest) oldest = seq;
    if (oldest <= this.lastSeq) this.lastSeq = Math.max(0, oldest - 1);
  }

  /** Takes up to `max` of the events held aside, lowest seq first. */
  takePending(max: number): { seq: number; out: Outgoing }[] {
    this.#pending.sort((a, b) => a.seq - b.seq);
    return this.#pending.splice(0, max);
  }

  /** Goes (back) live; the caller has sent everything held aside. */
  goLive(): void {
    if (this.#phase !== 'starting' && this.#phase !== 'catching_up') return;
    this.#phase = 'live';
    if (this.#deletedWhileHolding) this.closeWith('agent_deleted', 'agent deleted');
  }

  /** Stops delivery without telling the sink (the transport asked). */
  stop(): void {
    if (this.#phase === 'closed') return;
    this.#phase = 'closed';
    this.#pending = [];
    this.detach(this);
  }

  /** Stops delivery and asks the transport to close the connection. */
  closeWith(reason: Parameters<FrameSink['close']>[0], message: string): void {
    if (this.#phase === 'closed') return;
    this.stop();
    this.sink.close(reason, message);
  }
}

/** The subscribers of one agent, behind one bus subscription. */
interface Channel {
  readonly subscribers: Set<Subscriber>;
  unsubscribe(): void;
}

/**
 * The {@link EventsService} of the core. Retention (pruning old events) is not done here: see
 * `withEventRetention` in `event-retention.ts`, which wraps the bus at start-up.
 */
export class AgentEventsService implements EventsService {
  readonly #store: Store;
  readonly #bus: EventBus;
  readonly #agents: AgentService;
  readonly #pageSize: number;
  readonly #maxPending: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #channels = new Map<string, Channel>();
  #shutDown = false;

  constructor(options: AgentEventsServiceOptions) {
    this.#store = options.store;
    this.#bus = options.bus;
    this.#agents = options.agents;
    this.#pageSize = options.replayPageSize ?? 500;
    this.#maxPending = options.maxPendingLive ?? 10_000;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? Date.now;
    if (!Number.isSafeInteger(this.#pageSize) || this.#pageSize < 1) throw new RangeError('replayPageSize must be a positive integer');
    if (!Number.isSafeInteger(this.#maxPending) || this.#maxPending < 1) throw new RangeError('maxPendingLive must be a positive integer');
  }

  /**
   * Authorizes `principal` for the agent's events (`not_found` for an unknown agent or another
   * user's; `invalid_request` for a `since` that is not a non-negative integer; `unavailable`
   * after {@link shutdown}). Transports call it before accepting the connection.
   */
  async prepare(principal: Principal, agentId: string, options: EventsSubscribeOptions = {}): Promise<PreparedEvents> {
    const { since } = options;
    if (since !== undefined && (!Number.isSafeInteger(since) || since < 0)) {
      throw new SentinelError('invalid_request', 'invalid "since": use a non-negative integer event seq');
    }
    if (this.#shutDown) throw new SentinelError('unavailable', 'server shutting down');
    checkEndpointScope(EVENTS_ENDPOINT, principal);
    // The reference (id, name or id prefix) resolved once: channels and the Store key by id.
    const { id } = await this.#agents.getRecord(principal, agentId);
    return {
      agentId: id,
      open: (sink) => this.#open(id, sink, since),
    };
  }

  /** Open subscriptions: of one agent, or of all agents. Cheap (for tests and metrics). */
  subscriptionCount(agentId?: string): number {
    if (agentId !== undefined) return this.#channels.get(agentId)?.subscribers.size ?? 0;
    let total = 0;
    for (const channel of this.#channels.values()) total += channel.subscribers.size;
    return total;
  }

  /**
   * Closes every subscription with reason `shutdown` and refuses new ones (idempotent). The
   * api's shutdown calls it before the transports close their connections.
   */
  shutdown(): void {
    this.#shutDown = true;
    for (const channel of [...this.#channels.values()]) {
      for (const subscriber of [...channel.subscribers]) subscriber.closeWith('shutdown', 'server shutting down');
    }
  }

  #open(agentId: string, sink: FrameSink, since: number | undefined): EventsSubscription {
    const subscriber = new Subscriber(
      sink,
      since,
      this.#maxPending,
      (s) => this.#detach(agentId, s),
      (s) => this.#repair(agentId, s),
    );
    const subscription: EventsSubscription = { close: () => subscriber.stop() };
    if (this.#shutDown) {
      subscriber.closeWith('shutdown', 'server shutting down');
      return subscription;
    }
    // Join the channel first: from here on no live event can slip past this subscriber.
    this.#channelOf(agentId).subscribers.add(subscriber);
    this.#start(agentId, subscriber).catch((err: unknown) => this.#failed(agentId, subscriber, err));
    return subscription;
  }

  #failed(agentId: string, subscriber: Subscriber, err: unknown): void {
    if (subscriber.closed) return;
    this.#logger.error('events stream failed', { agent_id: agentId, error: err instanceof Error ? err.message : String(err) });
    subscriber.send(outgoing({ type: 'error', timestamp: this.#timestamp(), error: 'internal server error', code: 'internal' }));
    subscriber.closeWith('shutdown', 'events stream failed');
  }

  /** A live subscriber saw a gap (or the bus reconnected): catch up from the Store, then live again. */
  #repair(agentId: string, subscriber: Subscriber): void {
    this.#catchUp(agentId, subscriber).catch((err: unknown) => this.#failed(agentId, subscriber, err));
  }

  /**
   * Sends the events held aside in seq order, first filling any gap before each from the Store
   * (every event is stored before it is published, so the Store has what the bus has not
   * brought yet), then goes live. Duplicates (the bus bringing what the Store already gave)
   * are dropped by seq.
   */
  async #catchUp(agentId: string, subscriber: Subscriber): Promise<void> {
    while (subscriber.hasPending || subscriber.wantsStoreCatchUp) {
      if (subscriber.wantsStoreCatchUp) {
        subscriber.wantsStoreCatchUp = false;
        if (subscriber.anchored) await this.#fill(agentId, subscriber, Number.POSITIVE_INFINITY);
      }
      for (const { seq, out } of subscriber.takePending(this.#pageSize)) {
        if (subscriber.closed) return;
        if (subscriber.anchored && seq > subscriber.lastSeq + 1) await this.#fill(agentId, subscriber, seq);
        if (subscriber.closed) return;
        subscriber.sendEvent(seq, out);
      }
      await whenReady(subscriber.sink);
      if (subscriber.closed) return;
    }
    subscriber.goLive();
  }

  /** Sends the stored events after the subscriber's last seq and before `before`, in pages. */
  async #fill(agentId: string, subscriber: Subscriber, before: number): Promise<void> {
    for (;;) {
      const missing = before - subscriber.lastSeq - 1;
      if (missing <= 0) return;
      const limit = Math.min(this.#pageSize, missing);
      const page = await this.#store.listEvents(agentId, subscriber.lastSeq, limit);
      if (subscriber.closed) return;
      let progressed = false;
      for (const event of page) {
        if (event.seq >= before) break;
        // Retention pruned the events between the cursor and this one.
        if (event.seq > subscriber.lastSeq + 1) this.#resync(subscriber, agentId, event.seq);
        subscriber.sendEvent(event.seq, outgoing(eventFrame(event), String(event.seq)));
        progressed = true;
      }
      if (page.length < limit || !progressed) break;
      await whenReady(subscriber.sink);
      if (subscriber.closed) return;
    }
    // What the Store no longer has cannot be sent: say so, and go on from `before`.
    if (before !== Number.POSITIVE_INFINITY && subscriber.lastSeq + 1 < before) this.#resync(subscriber, agentId, before);
  }

  #timestamp(): string {
    return new Date(this.#now()).toISOString();
  }

  async #start(agentId: string, subscriber: Subscriber): Promise<void> {
    if (subscriber.since === undefined) {
      // Read after joining the channel (see #open): every event stored after this seq is
      // either live on the bus from here on or in the Store for the catch-up.
      const last = await this.#store.lastEventSeq(agentId);
      if (subscriber.closed) return;
      subscriber.anchorAt(last);
    }
    const record = await this.#store.getAgent(agentId);
    if (subscriber.closed) return;
    if (!record) {
      subscriber.closeWith('agent_deleted', 'agent deleted');
      return;
    }
    const stats = await this.#store.conversationStats(agentId);
    if (subscriber.closed) return;
    subscriber.send(outgoing(this.#snapshotFrame(record, stats.bytes)));

    if (subscriber.since !== undefined) {
      const first = await this.#store.firstEventSeq(agentId);
      if (subscriber.closed) return;
      if (first > 0 && subscriber.since < first - 1) this.#resync(subscriber, agentId, first);
      for (;;) {
        const page = await this.#store.listEvents(agentId, subscriber.lastSeq, this.#pageSize);
        if (subscriber.closed) return;
        for (const event of page) {
          // Retention pruned the events between the cursor and this one while we replayed.
          if (event.seq > subscriber.lastSeq + 1) this.#resync(subscriber, agentId, event.seq);
          subscriber.sendEvent(event.seq, outgoing(eventFrame(event), String(event.seq)));
        }
        if (page.length < this.#pageSize) break;
        await whenReady(subscriber.sink);
        if (subscriber.closed) return;
      }
    }
    if (subscriber.since === undefined) subscriber.includeHeld();
    // Live events that came during the replay, in batches too; more may arrive meanwhile.
    await this.#catchUp(agentId, subscriber);
  }

  /** Tells the subscriber that events after its cursor are gone, then moves its cursor to what is retained. */
  #resync(subscriber: Subscriber, agentId: string, oldestSeq: number): void {
    subscriber.send(
      outgoing({
        type: 'event',
        event_type: 'resync_required',
        timestamp: this.#timestamp(),
        content: `events after seq ${subscriber.since ?? 0} are no longer retained; the stream continues from seq ${oldestSeq}`,
        data: { requested_since: subscriber.since ?? 0, oldest_seq: oldestSeq },
        agent_id: agentId,
      }),
    );
    subscriber.lastSeq = oldestSeq - 1;
  }

  #snapshotFrame(record: AgentRecord, conversationBytes: number): EventFrame {
    return {
      type: 'event',
      event_type: 'agent_status',
      timestamp: this.#timestamp(),
      content: snapshotContent(record),
      data: {
        agent_id: record.id,
        status: record.status,
        memory: formatBytes(conversationBytes),
        api_usage: { requests: record.usage_requests, tokens: record.usage_tokens },
      },
      agent_id: record.id,
    };
  }

  #channelOf(agentId: string): Channel {
    const existing = this.#channels.get(agentId);
    if (existing) return existing;
    const subscribers = new Set<Subscriber>();
    const unsubscribe = this.#bus.subscribe(agentId, (message: AgentBusMessage) => {
      if (message.kind === 'event') {
        // Serialized at most once, whatever the number of subscribers.
        const out = outgoing(eventFrame(message.event), String(message.event.seq));
        for (const subscriber of [...subscribers]) subscriber.deliver(message.event.seq, out);
      } else if (message.kind === 'deleted') {
        for (const subscriber of [...subscribers]) subscriber.agentDeleted();
      } else if (message.kind === 'resync') {
        for (const subscriber of [...subscribers]) if (subscriber.requestCatchUp()) this.#repair(agentId, subscriber);
      }
    });
    const channel: Channel = { subscribers, unsubscribe };
    this.#channels.set(agentId, channel);
    return channel;
  }

  #detach(agentId: string, subscriber: Subscriber): void {
    const channel = this.#channels.get(agentId);
    if (!channel) return;
    channel.subscribers.delete(subscriber);
    if (channel.subscribers.size === 0) {
      channel.unsubscribe();
      this.#channels.delete(agentId);
    }
  }
}
