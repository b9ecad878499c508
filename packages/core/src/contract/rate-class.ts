/**
 * The rate-limit classes a route or a WebSocket frame belongs to (the buckets themselves are in
 * auth/rate-limit.ts). Here in the contract so route definitions can name one.
 */
export const RATE_CLASSES = ['read', 'write', 'auth', 'chat'] as const;

/** `read` (GET), `write` (other methods), `auth` (login), `chat` (chat `message`/`tool_request` frames). */
export type RateClass = (typeof RATE_CLASSES)[number];
