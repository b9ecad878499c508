/**
 * @sentinel/api-client, the browser entry: no node: imports, the global fetch and WebSocket.
 * Node 20 (which has no global WebSocket) gets the same client from the package's Node entry,
 * with `ws` as its WebSocket.
 */
export { createClient, SentinelClient, type LoginResult } from './client.js';
export { isSentinelApiError, SentinelApiError, type ClientErrorCode, type SentinelApiErrorInit } from './errors.js';
export { SUBPROTOCOL, Transport, type ClientOptions, type QueryValue, type RequestOptions, type WebSocketConstructor, type WebSocketLike } from './transport.js';
export { AgentsApi } from './agents.js';
export { ImagesApi, type BuildOptions } from './images.js';
export { isTransferProgress, RegistryApi, Transfer, type SearchQuery } from './registry.js';
export { KeysApi } from './keys.js';
export { TicketsApi } from './tickets.js';
export type { LogsQuery } from './logs.js';
export type { CallOptions } from './call.js';
export type {
  Agent,
  AgentDefinition,
  ApiKey,
  CreateAgentInput,
  CreateApiKeyInput,
  CreatedApiKey,
  ErrorBody,
  ErrorCode,
  Image,
  LogLevel,
  LogRecord,
  Me,
  PullInput,
  PullResult,
  PushInput,
  PushResult,
  RegistrySearchResult,
  Scope,
  TicketChannel,
  TransferProgress,
  Visibility,
  WsTicket,
} from './models.js';
export type { components, operations, paths } from './types.js';
export { ChatSession, frameError, type ChatOptions, type ChatSendOptions, type ChatTurn, type ResumeOptions, type ServerFrame, type ToolRequestOptions, type TurnResult } from './chat.js';
export { RunsApi, type ApprovalDecision, type CreateRunInput, type CreateRunOptions, type ListRunsQuery, type RunPage, type StreamOptions, type WaitOptions } from './runs.js';
export { isTerminalFrame, TERMINAL_RUN_STATUSES, type ApprovalRequest, type RequiredAction, type Run, type RunFrame, type RunFrameFields, type RunStatus, type ToolApprovalRequiredFrame } from './run-types.js';
export { agentEvents, type EventFrame, type EventsOptions } from './events.js';
export { backoffDelay, type ReconnectOptions, type SocketAuth } from './socket.js';
