/**
 * Liveness: answers without touching the Store, so a probe stays cheap under load and
 * says only "the process serves requests".
 */
import type { RouteDef } from './types.js';

const OK = Object.freeze({ status: 'ok' });

/** `GET /v1/health` (public) → `{status: 'ok'}`. */
export function healthRoutes(): RouteDef[] {
  return [
    {
      method: 'GET',
      path: '/v1/health',
      auth: 'public',
      summary: 'Liveness check',
      schemas: {
        response: { type: 'object', properties: { status: { type: 'string', const: 'ok' } }, required: ['status'] },
      },
      handler: () => OK,
    },
  ];
}
