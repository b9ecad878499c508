export * from './contract/errors.js';
export * from './contract/logger.js';
export type * from './contract/models.js';
export type * from './store/types.js';
export * from './contract/route.js';
export * from './routes/prepared-json.js';
export * from './contract/validation.js';
export * from './api.js';
export * from './auth/passwords.js';
export * from './auth/secret.js';
export * from './auth/tokens.js';
export * from './auth/throttle.js';
export * from './auth/users.js';
export * from './auth/service.js';
export * from './routes/auth.js';
export * from './bus.js';
export * from './journal.js';
export * from './body.js';
export * from './images/sentinelfile.js';
export * from './images/oci.js';
export * from './images/service.js';
export * from './images/layout.js';
export * from './registry/reference.js';
export * from './registry/auth.js';
export * from './registry/client.js';
export * from './registry/agent-manifest.js';
export * from './registry/backends/types.js';
export * from './registry/backends/distribution.js';
export * from './registry/backends/layout.js';
export * from './registry/service.js';
export * from './routes/registry.js';
export * from './agents/log-query.js';
export * from './agents/service.js';
export * from './routes/health.js';
export * from './routes/version.js';
export * from './version.js';
export * from './routes/agents.js';
export * from './routes/images.js';
export * from './routes/openapi.js';
export * from './routes/index.js';
export * from './create-api.js';
export * from './store/sqlite/store.js';
export * from './store/sqlite/migrations.js';
export * from './protocol/frames.js';
export * from './protocol/server-frames.js';
export * from './protocol/endpoints.js';
export * from './contract/push-iterable.js';
export * from './protocol/events.js';
export * from './runtime/event-retention.js';
export * from './agents/log-follow.js';
export * from './routes/events.js';
export * from './providers/types.js';
export * from './providers/registry.js';
export * from './providers/echo.js';
export {
  ProviderHttpClient,
  DEFAULT_PROVIDER_RETRIES,
  DEFAULT_PROVIDER_TIMEOUTS,
  type ProviderHttpClientOptions,
  type ProviderRetryPolicy,
  type ProviderTimeouts,
  type UpstreamHints,
  type UpstreamRequest,
} from './providers/http.js';
export { parseSse, type SseEvent, type SseParseOptions } from './providers/sse.js';
export * from './providers/ndjson.js';
export * from './providers/tool-calls.js';
export * from './providers/parameters.js';
export * from './providers/openai.js';
export * from './providers/anthropic.js';
export * from './providers/ollama.js';
export * from './providers/config.js';
export * from './tools/types.js';
export * from './tools/registry.js';
export * from './tools/calculator.js';
export * from './tools/current-time.js';
export { HostAllowList, isPrivateAddress, pinnedLookup, resolveAllowedAddresses, type HostResolver, type ResolveAllowedOptions, type ResolvedAddress } from './tools/net-policy.js';
export * from './tools/http-fetch.js';
export * from './tools/web-search.js';
export * from './contract/ids.js';
export * from './runtime/history.js';
export * from './protocol/client-frames.js';
export * from './runtime/runtime.js';
export * from './runtime/turn-lock.js';
export * from './protocol/chat.js';
export * from './routes/runtime.js';
export * from './line-writer.js';
