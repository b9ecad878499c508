/**
 * `docker logs --follow` for agents: the stored lines that match the query, then every new
 * line as it is written, until the client leaves or the agent is deleted.
 *
 * The bus subscription is taken BEFORE the Store is read and live lines are held aside during
 * the read, then sent only when their seq is above the last stored line sent: the journal
 * writes a line before publishing it, so nothing falls between the two and nothing is sent
 * twice. (A line that the query filtered out of the stored part is also filtered live: the
 * level filter applies to both, and live lines are newer than any `since`/`tail` window.)
 */
import type { EventBus } from '../bus.js';
import { LOG_LEVELS, type LogLevel } from '../logger.js';
import type { LogRecord, Principal } from '../models.js';
import type { StreamItem } from '../routes/types.js';
import { createPushIterable } from '../runtime/push-iterable.js';
import type { AgentLogsQuery, AgentService } from './service.js';

export interface FollowAgentLogsOptions {
  agents: AgentService;
  bus: EventBus;
  principal: Principal;
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
  const { agents, bus, principal, agentId, query = {}, signal } = options;
  const minRank = query.level === undefined ? 0 : LOG_LEVELS.indexOf(query.level);
  const matches = (line: LogRecord) => LOG_LEVELS.indexOf(line.level as LogLevel) >= minRank;

  let live = false;
  let deletedDuringRead = false;
  let lastSeq = 0;
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
    stream.push(logStreamItem(line));
  };

  unsubscribe = bus.subscribe(agentId, (message) => {
    if (message.kind === 'deleted') {
      if (live) stream.end();
      else deletedDuringRead = true;
    } else if (message.kind === 'log' && matches(message.log)) {
      if (live) send(message.log);
      else heldAside.push(message.log);
    }
  });
  if (signal?.aborted) unsubscribe();

  let stored: LogRecord[];
  try {
    stored = await agents.logs(principal, agentId, query);
  } catch (err) {
    unsubscribe();
    throw err;
  }
  lastSeq = stored.at(-1)?.seq ?? 0;
  live = true;
  // Live lines go through the bounded buffer; the stored part is handed out lazily below, so a
  // long history never counts against that bound.
  for (const line of heldAside.splice(0)) send(line);
  if (deletedDuringRead) stream.end();

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
