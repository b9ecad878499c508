/**
 * Friendly names for the generated types (types.ts): each one is a path into `paths`, so a
 * schema change on the server changes these with it and nothing here repeats a field.
 */
import type { components, paths } from './types.js';

/** The JSON body of an operation's success answer. */
type JsonOf<R> = R extends { content: { 'application/json': infer B } } ? B : never;
/** The JSON request body of an operation. */
type BodyOf<O> = O extends { requestBody: { content: { 'application/json': infer B } } } ? B : O extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;
/** The item type of an operation's NDJSON answer, without the error line (the SDK throws that). */
type NdjsonItemOf<R> = R extends { content: { 'application/x-ndjson': infer I } } ? Exclude<I, components['schemas']['Error']> : never;

/** The server's error body (`{error, code, details?, docs}`). */
export type ErrorBody = components['schemas']['Error'];
/** One of the server's error codes. */
export type ErrorCode = ErrorBody['code'];

/** The caller, as GET /v1/auth/me answers. */
export type Me = JsonOf<paths['/v1/auth/me']['get']['responses'][200]>;

/** An agent resource. */
export type Agent = JsonOf<paths['/v1/agents/{id}']['get']['responses'][200]>;
/** The body of POST /v1/agents. */
export type CreateAgentInput = BodyOf<paths['/v1/agents']['post']>;
/** One log line of an agent (in the list, and each item of a followed stream). */
export type LogRecord = JsonOf<paths['/v1/agents/{id}/logs']['get']['responses'][200]>['logs'][number];
/** An agent's log levels (the `level` filter is the minimum). */
export type LogLevel = LogRecord['level'];

/** A local image. */
export type Image = JsonOf<paths['/v1/images/{ref}']['get']['responses'][200]>;
/** A Sentinelfile as an object (the body of POST /v1/images). */
export type AgentDefinition = BodyOf<paths['/v1/images']['post']>;
/** `visibility` of a repository. */
export type Visibility = NonNullable<NonNullable<paths['/v1/images']['post']['parameters']['query']>['visibility']>;

/** GET /v1/registry/search's answer. */
export type RegistrySearchResult = JsonOf<paths['/v1/registry/search']['get']['responses'][200]>;
/** The body of POST /v1/registry/push. */
export type PushInput = BodyOf<paths['/v1/registry/push']['post']>;
/** The body of POST /v1/registry/pull. */
export type PullInput = BodyOf<paths['/v1/registry/pull']['post']>;
/** The last record of a push: what was pushed where. */
export type PushResult = JsonOf<paths['/v1/registry/push']['post']['responses'][200]>;
/** The last record of a pull: what was pulled, and the local image. */
export type PullResult = JsonOf<paths['/v1/registry/pull']['post']['responses'][200]>;
/** One progress record of a push or pull (a blob's bytes so far, and the whole transfer's). */
export type TransferProgress = Exclude<NdjsonItemOf<paths['/v1/registry/push']['post']['responses'][200]>, PushResult>;

/** An API key as listed (never its secret). */
export type ApiKey = JsonOf<paths['/v1/keys']['get']['responses'][200]>['keys'][number];
/** A new API key: the listed fields and, this once, its secret `key`. */
export type CreatedApiKey = JsonOf<paths['/v1/keys']['post']['responses'][201]>;
/** The body of POST /v1/keys. */
export type CreateApiKeyInput = BodyOf<paths['/v1/keys']['post']>;
/** A scope an API key may hold. */
export type Scope = ApiKey['scopes'][number];

/** A one-time WebSocket ticket (POST /v1/ws-tickets). */
export type WsTicket = JsonOf<paths['/v1/ws-tickets']['post']['responses'][201]>;
/** The WebSocket a ticket opens. */
export type TicketChannel = BodyOf<paths['/v1/ws-tickets']['post']>['channel'];

/** A run: one turn of an agent as a resource (README, "Runs"). */
export type Run = JsonOf<paths['/v1/agents/{id}/runs/{run}']['get']['responses'][200]>;
/** Where a run is: `queued` → `running` (↔ `requires_action`) → `completed`, `cancelled` or `failed`. */
export type RunStatus = Run['status'];
/** What a run in `requires_action` waits for: decisions on its gated tool calls. */
export type RequiredAction = NonNullable<Run['required_action']>;
/** One tool call waiting for a person's decision. */
export type ApprovalRequest = RequiredAction['requests'][number];
