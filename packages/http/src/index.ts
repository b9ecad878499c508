/**
 * @sentinel/api-http: the node:http transport of the SentinelStacks API. `toNodeListener`
 * mounts the api on any Node host; `createServer`/`listen` run it standalone.
 */
export { toNodeListener, type NodeListener, type NodeListenerOptions } from './listener.js';
export type { ConsoleOptions } from './console.js';
export type { CorsOptions } from './cors.js';
export { createServer, listen, type ListenOptions, type RunningServer, type ServerOptions } from './server.js';
/** Error code → HTTP status (the core's table, re-exported for HTTP hosts). */
export { httpStatusForErrorCode as statusForErrorCode } from '@sentinel/api-core';
export { DEFAULT_MAX_BODY_BYTES } from './read-body.js';
export { METRICS_PATH, listenMetrics, sendMetrics, type MetricsListenOptions, type MetricsServer } from './metrics.js';
