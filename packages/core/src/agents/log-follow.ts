/**
 * `docker logs --follow` for agents: the stored lines that match the query, then every new
 * line as it is written, until the client leaves or the agent is deleted.
 *
 * The bus subscription is taken BEFORE the Store is read and live lines are held aside during
 * the read, then sent only when their seq is above the last stored line sent: the journal
 * writes a line before publishing it, so nothing falls between the two and nothing is sent
 * twice. (A line that the query filtered out of the stored part is also filtered live: the
 * level filter applies to both, and live lines are newer than any `since`/`tail` window.)
 *
 * With several instances, one instance's line can overtake an earlier one written by another,
 * and Redis loses what is published while a connection is down. A live line whose seq skips
 * past the last seq seen (sent or filtered out) makes the follower read the missing lines from
 * the Store before sending it; a `resync` from the bus (it reconnected) does the same.
 */
import type { EventBus } from '../bus.js';
import { isSentinelError } from '../contract/errors.js';
import { LOG_LEVELS, type LogLevel } from '../contract/logger.js';
import type { LogRecord, Principal } from '../contract/models.js';
import type { StreamItem } from '../contract/route.js';
import { createPushIterable } from '../contract/push-iterable.js';
import type { AgentLogsQuery, AgentService } from './service.js';

export interface FollowAgentLogsOptions {
  agents: AgentService;
  bus: EventBus;
  principal: Principal;
  /** The agent: its id, name or a unique id prefix (see AgentService). */
  agentId: string;
  /** since / tail / level, as for a plain logs request. Default: every line. */
  query?: AgentLogsQuery;
  /** Aborted when the client goes away; ends the stream. Default: none. */
  signal?: AbortSignal;
  /** Live lines buffered for a slow client before the stream fails. Default 1000. */
  maxBuffered?: number;
}

/** One log line as a stream item: its JSON, and its seq as the SSE id. */
export function logStreamItem(line: LogRecord): StreamItem {
  return { json: JSON.stringify(line), id: String(line.seq) };
}

/**
 * Starts following the agent's logs. Rejects like {@link AgentService.logs} (`not_found` for
 * another user's agent, `invalid_request` for a bad query) before anything is streamed.
 * The returned iterable ends when the agent is deleted or `signal` aborts, and lets go of its
 * bus subscription as soon as the consumer stops.
 */
export async function followAgentLogs(options: FollowAgentLogsOptions): Promise<AsyncIterable<StreamItem>> {
  const { agents, bus, principal, query = {}, signal } = options;
  // The reference (id, name or id prefix) resolved once: the bus and the Store key by id.
  const agentId = (await agents.getRecord(principal, options.agentId)).id;
  const minRank = query.level === undefined ? 0 : LOG_LEVELS.indexOf(query.level);
  const matches = (line: LogRecord) => LOG_LEVELS.indexOf(line.level as LogLevel) >= minRank;

  let live = false;
  let deletedDuringRead = false;
  /** The highest seq seen (sent, filtered out, or before the stored part). */
  let lastSeq = 0;
  /** Held aside while the Store is read (start, gap repair, catch-up). */
  let holding = true;
  let wantsCatchUp = false;
  const heldAside: LogRecord[] = [];
  let unsubscribe: () => void = () => {};
  const stream = createPushIterable<StreamItem>({
    ...(options.maxBuffered === undefined ? {} : { maxBuffered: options.maxBuffered }),
    ...(signal === undefined ? {} : { signal }),
    onReturn: () => unsubscribe(),
  });

  const send = (line: LogRecord) => {
    if (line.seq <= lastSeq) return;
    lastSeq = line.seq;
    if (matches(line)) stream.push(logStreamItem(line));
  };

  /** Sends what is held aside in seq order, reading what the bus has not brought from the Store. */
  const catchUp = async (): Promise<void> => {
    while (heldAside.length > 0 || wantsCatchUp) {
      heldAside.sort((x, y) => x.seq - y.seq);
      const next = heldAside[0];
      if (wantsCatchUp || (next !== undefined && next.seq > lastSeq + 1)) {
        wantsCatchUp = false;
        const before = next?.seq ?? Number.POSITIVE_INFINITY;
        const missing = await agents.logs(principal, agentId, { afterSeq: lastSeq, ...(query.level === undefined ? {} : { level: query.level }) });
        for (const line of missing) if (line.seq < before) send(line);
        // The Store gave every matching line before `next`; the others were filtered out.
        if (next !== undefined) lastSeq = Math.max(lastSeq, next.seq - 1);
        continue;
      }
      heldAside.shift();
      if (next !== undefined) send(next);
    }
    // In the same synchronous step as the loop's last check: no line can be left held aside.
    holding = false;
    if (deletedDuringRead) stream.end();
  };

  const repair = () => {
    holding = true;
    catchUp().catch((err: unknown) => {
      // The agent went while catching up: the stream ends as it does on deletion.
      if (isSentinelError(err) && err.code === 'not_found') stream.end();
      else stream.fail(err);
    });
  };

  unsubscribe = bus.subscribe(agentId, (message) => {
    if (message.kind === 'deleted') {
      if (live && !holding) stream.end();
      else deletedDuringRead = true;
    } else if (message.kind === 'log') {
      const line = message.log;
      if (holding) {
        heldAside.push(line);
      } else if (line.seq > lastSeq + 1) {
        heldAside.push(line);
        repair();
      } else {
        send(line);
      }
    } else if (message.kind === 'resync') {
      // Lines may have been missed: read the Store again once the first read is done.
      wantsCatchUp = true;
      if (live && !holding) repair();
    }
  });
  if (signal?.aborted) unsubscribe();

  let stored: LogRecord[];
  try {
    stored = await agents.logs(principal, agentId, query);
    // A follower whose stored part is empty (tail 0, a level nothing matched yet) starts where
    // the log ends now, so it knows which live seq comes next (a gap after it is then real).
    const last = stored.at(-1) ?? (await agents.logs(principal, agentId, { tail: 1 })).at(-1);
    lastSeq = last?.seq ?? 0;
  } catch (err) {
    unsubscribe();
    throw err;
  }
  live = true;
  // Live lines go through the bounded buffer; the stored part is handed out lazily below, so a
  // long history never counts against that bound.
  repair();

  const liveLines = stream.iterable[Symbol.asyncIterator]();
  let index = 0;
  return {
    [Symbol.asyncIterator](): AsyncIterator<StreamItem> {
      return {
        next() {
          const line = stored[index];
          if (line !== undefined && signal?.aborted !== true) {
            index++;
            return Promise.resolve({ value: logStreamItem(line), done: false });
          }
          return liveLines.next();
        },
        return() {
          index = stored.length;
          return liveLines.return?.() ?? Promise.resolve({ value: undefined, done: true });
        },
      };
    },
  };
}
