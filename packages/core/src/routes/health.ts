/**
 * Liveness and readiness. `/v1/health` answers without touching anything, so a probe stays
 * cheap under load and says only "the process serves requests". `/v1/ready` checks what the
 * instance depends on (the Store, and the event bus when it has one that can be pinged), so a
 * load balancer stops sending traffic to an instance whose database or Redis is away, and
 * sends it again once they are back.
 */
import type { EventBus } from '../bus.js';
import { unavailable } from '../contract/errors.js';
import type { Store } from '../store/types.js';
import type { RouteDef } from '../contract/route.js';

const OK = Object.freeze({ status: 'ok' });

/** Default bound on each readiness check: a probe must answer even while a dependency hangs. */
export const DEFAULT_READY_TIMEOUT_MS = 2000;

export interface HealthRouteDeps {
  /** Checked by `GET /v1/ready` with `ping()`. Default none: the ready route is left out. */
  store?: Pick<Store, 'ping'>;
  /** Checked by `GET /v1/ready` when it has a `ping()`; otherwise reported as `none`. Default none. */
  bus?: EventBus;
  /** Bound on each check, in ms. Default {@link DEFAULT_READY_TIMEOUT_MS} (2000). */
  readyTimeoutMs?: number;
}

type CheckOutcome = { state: 'ok' } | { state: 'down'; reason: string };

/** Runs `probe`, calling it down when it rejects or has not answered within `timeoutMs`. */
async function check(probe: () => Promise<void>, timeoutMs: number): Promise<CheckOutcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<CheckOutcome>((resolve) => {
    timer = setTimeout(() => resolve({ state: 'down', reason: `no answer within ${timeoutMs} ms` }), timeoutMs);
  });
  try {
    return await Promise.race([
      probe().then(
        (): CheckOutcome => ({ state: 'ok' }),
        (err: unknown): CheckOutcome => ({ state: 'down', reason: err instanceof Error ? err.message : String(err) }),
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function readyRoute(store: Pick<Store, 'ping'>, bus: EventBus | undefined, timeoutMs: number): RouteDef {
  return {
    method: 'GET',
    path: '/v1/ready',
    auth: 'public',
    // Probes must never get a 429.
    rateClass: 'none',
    summary: 'Readiness check: the store and the event bus answer (503 while either is down)',
    schemas: {
      response: {
        type: 'object',
        properties: {
          status: { type: 'string', const: 'ready' },
          store: { type: 'string', const: 'ok' },
          bus: { type: 'string', enum: ['ok', 'none'] },
        },
        required: ['status', 'store', 'bus'],
        additionalProperties: false,
      },
    },
    handler: async (_input, ctx) => {
      const busPing = bus?.ping?.bind(bus);
      const [storeOutcome, busOutcome] = await Promise.all([
        check(() => store.ping(), timeoutMs),
        busPing === undefined ? Promise.resolve(undefined) : check(busPing, timeoutMs),
      ]);
      const down = [
        ...(storeOutcome.state === 'down' ? ['store'] : []),
        ...(busOutcome?.state === 'down' ? ['bus'] : []),
      ];
      if (down.length === 0) return { status: 'ready', store: 'ok', bus: busOutcome === undefined ? 'none' : 'ok' };
      // The reasons go to the log only: this route is public, and they can name hosts and ports.
      ctx.log.warn('not ready', {
        ...(storeOutcome.state === 'down' ? { store: storeOutcome.reason } : {}),
        ...(busOutcome?.state === 'down' ? { bus: busOutcome.reason } : {}),
      });
      throw unavailable(`not ready: ${down.join(' and ')} ${down.length === 1 ? 'is' : 'are'} down`, {
        details: { store: storeOutcome.state, bus: busOutcome?.state ?? 'none' },
      });
    },
  };
}

/**
 * `GET /v1/health` (public) → `{status: 'ok'}`; with `deps.store`, also `GET /v1/ready` (public)
 * → `{status: 'ready', store: 'ok', bus: 'ok' | 'none'}`, or 503 `unavailable` ("not ready: store
 * is down", details `{store, bus}`) when a check fails or takes longer than `readyTimeoutMs`
 * (default 2000).
 */
export function healthRoutes(deps: HealthRouteDeps = {}): RouteDef[] {
  const routes: RouteDef[] = [
    {
      method: 'GET',
      path: '/v1/health',
      auth: 'public',
      rateClass: 'none',
      summary: 'Liveness check',
      schemas: {
        response: { type: 'object', properties: { status: { type: 'string', const: 'ok' } }, required: ['status'], additionalProperties: false },
      },
      handler: () => OK,
    },
  ];
  if (deps.store !== undefined) routes.push(readyRoute(deps.store, deps.bus, deps.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS));
  return routes;
}
