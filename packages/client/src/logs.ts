/**
 * An agent's log lines: the ones kept so far (`logs`) and the live stream (`followLogs`, the
 * NDJSON answer of `?follow=true`), which has no end of its own and so ends, without an error,
 * when the caller breaks out of the loop or aborts.
 */
import { isSentinelApiError } from './errors.js';
import { ndjson, segment, signalOf, type CallOptions, type TransportHolder } from './call.js';
import type { LogLevel, LogRecord } from './models.js';
import type { QueryValue } from './transport.js';
import type { paths } from './types.js';

type LogsWireQuery = NonNullable<paths['/v1/agents/{id}/logs']['get']['parameters']['query']>;

/** Which lines: the server's `since`, `tail` and `level` filters. */
export interface LogsQuery {
  /** RFC 3339 time, unix seconds, or a duration back from now such as `10m`. */
  since?: LogsWireQuery['since'];
  /** The last N lines (before following), or `all`. */
  tail?: number | 'all';
  /** The minimum level. */
  level?: LogLevel;
}

function wireQuery(query: LogsQuery): Record<string, QueryValue> {
  return { since: query.since, tail: query.tail === undefined ? undefined : String(query.tail), level: query.level };
}

/** GET /v1/agents/{id}/logs: the lines kept so far, oldest first. */
export async function agentLogs(holder: TransportHolder, id: string, options: LogsQuery & CallOptions = {}): Promise<LogRecord[]> {
  const answer = await holder.transport.request<{ agent_id: string; logs: LogRecord[] }>('GET', `/v1/agents/${segment(id)}/logs`, { query: wireQuery(options), ...signalOf(options) });
  return answer.logs;
}

/**
 * GET /v1/agents/{id}/logs?follow=true: the lines the filters pick, then each new line as it is
 * written. Ends when the loop breaks, the signal aborts (no error: that is how a follow stops) or
 * the server ends it (the agent was deleted); any other failure is a SentinelApiError.
 */
export async function* followAgentLogs(holder: TransportHolder, id: string, options: LogsQuery & CallOptions = {}): AsyncGenerator<LogRecord, void, undefined> {
  try {
    yield* ndjson<LogRecord>(holder.transport, 'GET', `/v1/agents/${segment(id)}/logs`, { query: { ...wireQuery(options), follow: true }, ...signalOf(options) });
  } catch (err) {
    if (options.signal?.aborted && isSentinelApiError(err) && err.code === 'aborted') return;
    throw err;
  }
}
