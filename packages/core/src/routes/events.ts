/**
 * `GET /v1/agents/:id/events` without an upgrade: the same stream as the events WebSocket
 * (snapshot, replay from `since`, live), as a streamed result the HTTP transport writes as
 * Server-Sent Events (`Accept: text/event-stream`; `id:` = seq, so `Last-Event-ID` resumes)
 * or NDJSON. A WebSocket upgrade on the same path is the ws transport's.
 */
import { unavailable } from '../contract/errors.js';
import type { EventsService, FrameSink, EventsSubscription, Outgoing } from '../protocol/frames.js';
import { createPushIterable } from '../contract/push-iterable.js';
import { SERVER_FRAME_SCHEMAS } from '../protocol/server-frames.js';
import { AGENT_ID_PATTERN } from './agents.js';
import { principalOf, streamResult, type JsonSchema, type RouteContext, type RouteDef, type StreamItem } from '../contract/route.js';

const eventsParams: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string', pattern: AGENT_ID_PATTERN } },
  required: ['id'],
  additionalProperties: false,
};

/**
 * `since` is an integer on purpose: the HTTP transport fills it from `Last-Event-ID` for routes
 * whose query declares an integer `since` (see the listener).
 */
export const EVENTS_QUERY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: { since: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } },
  additionalProperties: false,
};

export interface EventRoutesOptions {
  events: EventsService;
  /**
   * Frames buffered for a slow HTTP client before its stream is closed. Keep it above the
   * events service's replay page (500 by default): a page is pushed at once. Default 1000.
   */
  maxBuffered?: number;
}

/** The stream item of one frame: SSE `event:` is the frame's `event_type` (or its `type`). */
export function frameStreamItem(out: Outgoing): StreamItem {
  const { frame } = out;
  return {
    json: out.json,
    event: frame.type === 'event' ? frame.event_type : frame.type,
    ...(out.id === undefined ? {} : { id: out.id }),
  };
}

/**
 * Turns a PreparedEvents into a stream: a FrameSink feeding a bounded push iterable. The
 * subscription is closed as soon as the client stops reading (return / abort / overflow).
 */
function openEventStream(open: (sink: FrameSink) => EventsSubscription, ctx: RouteContext, maxBuffered: number | undefined): AsyncIterable<StreamItem> {
  // Filled after open(); onReturn may run before that (an already aborted signal).
  const opened: { subscription?: EventsSubscription } = {};
  let released = false;
  const stream = createPushIterable<StreamItem>({
    signal: ctx.signal,
    ...(maxBuffered === undefined ? {} : { maxBuffered }),
    onReturn: () => {
      released = true;
      opened.subscription?.close();
    },
  });
  const sink: FrameSink = {
    send: (out) => {
      stream.push(frameStreamItem(out));
    },
    close: (reason, message) => {
      if (reason === 'too_slow') stream.fail(unavailable(message));
      else stream.end();
    },
    // A replay is pushed a page at a time, each once the client has taken the previous one.
    whenReady: () => stream.drained(),
  };
  opened.subscription = open(sink);
  // The stream may have ended before or while open() ran (aborted signal, agent already gone).
  if (released) opened.subscription.close();
  return stream.iterable;
}

/** GET /v1/agents/:id/events (any logged-in user; another user's agent is a 404). */
export function eventRoutes(options: EventRoutesOptions): RouteDef[] {
  const { events, maxBuffered } = options;
  return [
    {
      method: 'GET',
      path: '/v1/agents/:id/events',
      auth: 'user',
      scope: 'agents:read',
      summary:
        "Stream an agent's events: an agent_status snapshot, then (with since=<seq>) the stored events after it, then live ones. " +
        'Server-Sent Events with Accept: text/event-stream (id = seq; Last-Event-ID resumes), else NDJSON.',
      schemas: { params: eventsParams, query: EVENTS_QUERY_SCHEMA },
      // Always a stream (NDJSON unless the client asks for SSE); each item is an event frame.
      streams: ['ndjson', 'sse'],
      streamItem: SERVER_FRAME_SCHEMAS.event,
      errors: ['conflict'],
      handler: async (input: { params: { id: string }; query: { since?: number } }, ctx) => {
        const { since } = input.query;
        const prepared = await events.prepare(principalOf(ctx), input.params.id, since === undefined ? {} : { since });
        return streamResult(openEventStream((sink) => prepared.open(sink), ctx, maxBuffered));
      },
    },
  ];
}
