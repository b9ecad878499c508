/**
 * The public entry of @sentinel/api-core: what transports, the CLI and embedding apps use, and
 * nothing else. Every other export of a module is internal and may change without notice; the
 * core's own tests import those by relative path. packages/core/api-surface.txt lists the
 * runtime names below and a test keeps the two in step, so growth here is a decision.
 * The back ends stay on their sub-path entries (`@sentinel/api-core/postgres`, `/redis`).
 */

// The contract: errors and their codes, the route and stream types, validation, models, logging.
export {
  ERROR_CODES,
  SentinelError,
  errorBody,
  httpStatusForErrorCode,
  isSentinelError,
  publicErrorBody,
  toPublicError,
  type ErrorBody,
  type ErrorCode,
  type SentinelErrorOptions,
} from './contract/errors.js';
export { ERROR_CATALOGUE, ERROR_DOCS_PATH, errorDocsUrl, type ErrorCatalogueEntry } from './contract/error-catalogue.js';
// The catalogue: one constructor per common error, with a fixed message shape.
export {
  adminRequired,
  alreadyExists,
  authenticationRequired,
  conflict,
  dataDirectoryUnusable,
  failedMidStream,
  forbidden,
  insufficientScope,
  internal,
  invalidInput,
  invalidRequest,
  invalidToken,
  notFound,
  quotaExceeded,
  sessionRequired,
  streamEndedEarly,
  tokenExpired,
  tooLarge,
  unavailable,
  upstream,
} from './contract/errors.js';
export { LOG_LEVELS, createJsonLogger, silentLogger, type JsonLoggerOptions, type LogLevel, type Logger } from './contract/logger.js';
export type * from './contract/models.js';
export {
  deprecationHeaders,
  isPreparedJson,
  isRouteReply,
  isStreamResult,
  preparedJson,
  routeReply,
  streamResult,
  type AuthLevel,
  type BodyFormat,
  type HttpMethod,
  type JsonSchema,
  type PreparedJson,
  type RequestOrigin,
  type RouteContext,
  type RouteDef,
  type RouteDeprecation,
  type RouteHeaderDoc,
  type RouteInput,
  type RouteReply,
  type RouteResult,
  type RouteSuccessDoc,
  type StreamItem,
  type StreamResult,
} from './contract/route.js';
export {
  auditFromRoute,
  noAudit,
  type AuditAction,
  type AuditEntry,
  type AuditEvent,
  type AuditQuery,
  type AuditReader,
  type AuditRecorder,
  type NewAuditEntry,
} from './contract/audit.js';
export { AuditLog, type AuditLogOptions } from './auth/audit-log.js';
export { SCOPES, SCOPE_DESCRIPTIONS, hasScope, isScope, principalScopes, roleScopes, type Scope } from './contract/scopes.js';
export { compileValidator, type ValidationIssue, type Validator } from './contract/validation.js';

// The WebSocket protocol: the frames and the transport-neutral chat and events services.
export {
  outgoing,
  type AnswerEndFrame,
  type AnswerEndReason,
  type AnswerUsage,
  type ErrorFrame,
  type EventFrame,
  type ServerFrameType,
  type StreamChunkFrame,
  type StreamStartFrame,
  type ToolResultFrame,
  type ChatService,
  type ChatSession,
  type EventsService,
  type EventsSubscribeOptions,
  type EventsSubscription,
  type FrameSink,
  type Outgoing,
  type PreparedChat,
  type PreparedEvents,
  type ServerFrame,
  type StreamCloseReason,
} from './protocol/frames.js';
export type { ClientCancelFrame, ClientFrame, ClientMessageFrame, ClientToolRequestFrame, ParsedClientFrame } from './protocol/client-frames.js';
export {
  CHAT_ENDPOINT,
  EVENTS_ENDPOINT,
  WEBSOCKET_ENDPOINTS,
  endpointQuery,
  endpointUrl,
  matchEndpoint,
  type WebSocketEndpointDef,
  type WebSocketEndpointName,
} from './protocol/endpoints.js';
export { SERVER_FRAME_SCHEMAS } from './protocol/server-frames.js';
export { WEBSOCKET_CLOSE_CODES, type WebSocketCloseCode } from './protocol/close-codes.js';
// The AsyncAPI 3.0 document of those endpoints, for embedders that serve or check it themselves.
export { buildAsyncApiDocument, type AsyncApiDocument, type AsyncApiOptions, type AsyncApiServer } from './routes/asyncapi.js';
// Constructed directly by transport tests that drive an events stream over a store of their own.
export { AgentEventsService, type AgentEventsServiceOptions } from './protocol/events.js';

// The seam and the composition root: what a transport holds, and what builds it.
export {
  bodyFormatsOf,
  compileRoute,
  invokeRoute,
  type CompiledRoute,
  type RawRouteInput,
  type CredentialSurface,
  type RouteResponse,
  type SentinelApiOptions,
  type RunsOptions,
  type SentinelApiSurface,
} from './api.js';
export { createSentinelApi, type SentinelApi } from './create-api.js';
// Prometheus metrics (telemetry/metrics.ts): a registry per API instance, recorded into by the transports.
export {
  SentinelMetrics,
  type ProviderCallMetrics,
  type SentinelMetricsOptions,
  type TurnQueueStats,
  type WebSocketChannel,
  type WebSocketChannelMetrics,
} from './telemetry/metrics.js';
export { API_MINOR_VERSION, API_VERSION_HEADER, apiVersionHeader, sentinelCommit, sentinelVersion } from './version.js';
export type { VersionInfo } from './routes/version.js';
// For apps (and tests) that serve routes of their own next to the api's: their document, built the same way.
export { buildOpenApiDocument, type OpenApiDocument, type OpenApiOptions } from './routes/openapi.js';

// Ports and services: the interfaces behind `SentinelApi`'s members, and their inputs and results.
export type { AgentPatch, AgentQuery, ExternalIdentity, LogQuery, RevokedTokenRecord, Store, UserPatch } from './store/types.js';
export { openSqliteStore, type SqliteStore, type SqliteStoreOptions } from './store/sqlite/store.js';
// Runs (issue 16): a turn as a resource, and the Store's inputs for it.
export {
  RUN_STATUSES,
  type CreateRunOptions,
  type CreateRunResult,
  type NewRunRecord,
  type RequiredAction,
  type RunFrameRow,
  type RunPatch,
  type RunQuery,
  type RunRecord,
  type RunSearch,
  type RunStatus,
  type RunUsage,
  type UpdateRunOptions,
} from './runs/types.js';
export { createLocalEventBus, type AgentBusMessage, type AgentControlAction, type EventBus, type LocalEventBusOptions } from './bus.js';
export { AgentJournal, type AgentJournalOptions } from './journal.js';
export type { TurnLease, TurnLock } from './runtime/turn-lock.js';
export type { LoginLimiter } from './auth/throttle.js';
export type { OidcIdentity, OidcOptions, OidcVerifier } from './auth/oidc.js';
export type { RateClass, RateLimitRule, RateLimitSettings } from './auth/rate-limit.js';
export type { AuthService, LoginResult } from './auth/service.js';
export { API_KEY_PREFIX, type ApiKeyRecord, type ApiKeyStore, type ApiKeyUse } from './contract/api-keys.js';
export type { ApiKeyResource, ApiKeyService, CreateApiKeyInput, CreatedApiKey } from './auth/api-keys.js';
export type { CredentialRevocation, CredentialRevocationFeed, TokenRevocationFeed, TokenRevocations } from './auth/revocations.js';
export type { IssuedTicket, TicketChannel, TicketService, TicketStore } from './auth/tickets.js';
export type { IssuedToken, TokenClaims, TokenService, TokenSubject } from './auth/tokens.js';
export type { ChangePasswordInput, CreateUserInput, UpdateUserInput, UserAuthState, UserResource, UserService } from './auth/users.js';
export {
  InProcessUsageCounters,
  type QuotaService,
  type QuotasResource,
  type UsageCounterKind,
  type UsageCounters,
  type UsageResource,
} from './auth/quotas.js';
export type { TurnQuota } from './runtime/turn-runner.js';
export type { AgentLogsQuery, AgentRunStatus, AgentService, CreateAgentInput } from './agents/service.js';
export type { AgentRuntime, RuntimeOptions, SubmitResult, TurnEnd, TurnEndReason, TurnUsage } from './runtime/runtime.js';
export type { InstanceLiveness, RunInput, RunService, RunServiceOptions, RunTransition } from './runs/service.js';
export type { JournaledFrame, LiveRun, RunFrameListener, RunJournal, RunJournalOptions } from './runs/journal.js';
export type { ImageReference, ImageService, RepositoryResource } from './images/service.js';
export type {
  PullInput,
  PullResult,
  PushInput,
  PushResult,
  RegistryService,
  RegistrySettings,
  SearchInput,
  SearchPage,
  SearchResult,
  TransferProgress,
} from './registry/service.js';
export { createBatchedLineWriter, type BatchedLineWriter, type BatchedLineWriterOptions } from './line-writer.js';

// Images and the registry: definitions, OCI images, image-layout directories, the distribution client.
export { parseAgentDefinition, type AgentDefinitionInput } from './images/sentinelfile.js';
export { OCI_MANIFEST_MEDIA_TYPE, buildAgentImage, type AgentImageManifest, type BuiltAgentImage, type OciDescriptor } from './images/oci.js';
export {
  readImageFromLayout,
  writeImageToLayout,
  type ImageBytes,
  type LayoutBlobEvent,
  type LayoutImage,
  type LayoutSelector,
  type ReadLayoutOptions,
  type WriteLayoutOptions,
} from './images/layout.js';
export {
  RegistryClient,
  type CatalogPage,
  type FetchedManifest,
  type RegistryAccess,
  type RegistryAddressPolicy,
  type RegistryClientOptions,
  type RegistryCredentials,
  type TransferListener,
} from './registry/client.js';
export type { BlobProgressEvent, PulledImageBytes, RegistryBackend, TagDescription, TransferOptions } from './registry/backends/types.js';
export { DistributionBackend, type DistributionBackendOptions } from './registry/backends/distribution.js';

// Extension points: model providers an embedder registers, and tools.
export type { ChatMessage, ChatRole, ModelProvider, ProviderEvent, ProviderFinishReason, ProviderRequest, ThinkingBlock, ToolSpec } from './providers/types.js';
export type { ProviderCatalog } from './providers/catalog.js';
export type { ProviderOptions, ProviderSettings } from './providers/config.js';
export { EchoProvider, type EchoProviderOptions } from './providers/echo.js';
export { OpenAiProvider, type OpenAiProviderOptions } from './providers/openai.js';
export { AnthropicProvider, type AnthropicProviderOptions } from './providers/anthropic.js';
export { OllamaProvider, type OllamaProviderOptions } from './providers/ollama.js';
export type { Tool, ToolContext } from './tools/types.js';
export type { ToolSet, ToolRunOptions } from './tools/tool-set.js';
export type { HttpFetchToolOptions } from './tools/http-fetch.js';
export type { WebSearchToolOptions } from './tools/web-search.js';
export {
  WEBHOOK_EVENTS,
  type NewWebhookDelivery,
  type WebhookAttemptOutcome,
  type WebhookAttemptRecord,
  type WebhookClaim,
  type WebhookDeliveryRecord,
  type WebhookDeliveryStatus,
  type WebhookDeliveryWithAttempts,
  type WebhookEvent,
  type WebhookStore,
} from './contract/webhooks.js';
export {
  DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
  WEBHOOK_SECRET_PREFIX,
  generateWebhookSecret,
  signWebhook,
  verifyWebhookSignature,
  webhookHeaders,
  type VerifyWebhookOptions,
  type WebhookSignatureInput,
} from './webhooks/signing.js';
export { WebhookSecrets, type WebhookSecretsOptions } from './webhooks/secrets.js';
export { WebhookDispatcher, deliverRunWebhooks, type RunTransitions, type WebhookDispatcherOptions, type WebhookOptions, type WebhookPayload, type WebhookRun, type WebhookTransition } from './webhooks/dispatcher.js';
export { WEBHOOK_URL_MAX_LENGTH, checkWebhookUrl, parseWebhookUrl, type WebhookAddressPolicy } from './webhooks/url.js';

// Telemetry: OpenTelemetry spans for the transports' instrumentation points, and the
// traceparent helper for outgoing requests (docs/ARCHITECTURE.md#observability).
export {
  activeTraceFields,
  endHttpServerSpan,
  injectTraceHeaders,
  runInContext,
  setActiveHttpRoute,
  startHttpServerSpan,
  startWebSocketMessageSpan,
  traceFieldsOf,
  TRACER_NAME,
  type ServerSpan,
  type TracingOptions,
} from './telemetry/tracing.js';
