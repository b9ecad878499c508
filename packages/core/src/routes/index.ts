/**
 * The route table: every REST route of the core in one list, the single source for the
 * transports' routers and for the OpenAPI document.
 */
import type { AgentService } from '../agents/service.js';
import type { ApiKeyService } from '../auth/api-keys.js';
import type { QuotaService } from '../auth/quotas.js';
import type { AuthService } from '../auth/service.js';
import type { UserService } from '../auth/users.js';
import type { EventBus } from '../bus.js';
import type { ImageService } from '../images/service.js';
import type { RegistryService } from '../registry/service.js';
import type { EventsService } from '../protocol/frames.js';
import type { Store } from '../store/types.js';
import { agentRoutes } from './agents.js';
import { asyncapiRoutes } from './asyncapi.js';
import { auditRoutes } from './audit.js';
import { authRoutes } from './auth.js';
import { eventRoutes } from './events.js';
import { healthRoutes } from './health.js';
import { imageRoutes } from './images.js';
import { keyRoutes } from './keys.js';
import { openapiRoutes, type OpenApiOptions } from './openapi.js';
import { registryRoutes } from './registry.js';
import { runRoutes, type RunRoutesService } from './runs.js';
import { runApprovalRoutes, type RunApprovalRoutesService } from './run-approvals.js';
import { runtimeRoutes } from './runtime.js';
import { sessionRoutes } from './sessions.js';
import type { TicketService } from '../auth/tickets.js';
import type { RouteDef } from '../contract/route.js';
import { noAudit, type AuditReader, type AuditRecorder } from '../contract/audit.js';
import { versionRoutes, type VersionRouteDeps } from './version.js';

export interface RouteTableDeps {
  auth: AuthService;
  users: UserService;
  /** Serves usage against quota in `GET /v1/auth/me`. Default: none (usage is left out). */
  quotas?: QuotaService;
  agents: AgentService;
  images: ImageService;
  /** Serves `GET /v1/agents/:id/logs?follow=true`. Default: none (follow answers `unavailable`). */
  bus?: EventBus;
  /** Serves `/v1/agents/:id/runs…` (start, list, get/wait, stream, cancel). Default: none (the routes are absent). */
  runs?: RunRoutesService & RunApprovalRoutesService;
  /** Serves `GET /v1/agents/:id/events` (SSE / NDJSON). Default: none (the route is absent). */
  events?: EventsService;
  /** Checked by `GET /v1/ready`, with `bus` when it can be pinged. Default none: the ready route is absent. */
  store?: Pick<Store, 'ping'>;
  /** Serves `/v1/registry/{search,push,pull}`. Default: none (the routes are absent). */
  registry?: RegistryService;
  /** Title and version of the OpenAPI document. Default: see {@link OpenApiOptions}. */
  openapi?: OpenApiOptions;
  /** Store and bus kinds for `GET /v1/version`. Default: store `unknown`, bus `local`. */
  version?: VersionRouteDeps;
  /** Where security-relevant actions are recorded. Default: {@link noAudit}. */
  audit?: AuditRecorder;
  /** Serves `/v1/keys` (API keys). Default: none (the routes are absent). */
  keys?: ApiKeyService;
  /** Serves `GET /v1/audit` (admins). Default: none (the route is absent). */
  auditLog?: AuditReader;
  /** Serves `POST /v1/ws-tickets`, logout and revoke-tokens. Default: none (those routes are absent). */
  tickets?: TicketService;
}

/**
 * Health, auth, agents, images and the OpenAPI document, in that order. Throws at start-up
 * when two routes share a method and path shape (`/a/:x` and `/a/:y` are the same shape):
 * a router would silently serve only one of them.
 */
export function buildRouteTable(deps: RouteTableDeps): RouteDef[] {
  const table: RouteDef[] = [];
  const audit = deps.audit ?? noAudit;
  table.push(
    ...healthRoutes({ store: deps.store, bus: deps.bus }),
    ...versionRoutes(deps.version),
    ...authRoutes({ auth: deps.auth, users: deps.users, audit, ...(deps.quotas ? { quotas: deps.quotas } : {}) }),
    ...(deps.keys === undefined ? [] : keyRoutes({ keys: deps.keys, audit })),
    ...(deps.tickets === undefined ? [] : sessionRoutes({ auth: deps.auth, users: deps.users, agents: deps.agents, tickets: deps.tickets, audit })),
    ...agentRoutes({ agents: deps.agents, audit, ...(deps.bus === undefined ? {} : { bus: deps.bus }) }),
    ...runtimeRoutes({ agents: deps.agents }),
    ...(deps.events === undefined ? [] : eventRoutes({ events: deps.events })),
    ...(deps.runs === undefined ? [] : runRoutes({ runs: deps.runs })),
    ...(deps.runs === undefined ? [] : runApprovalRoutes({ runs: deps.runs })),
    ...imageRoutes({ images: deps.images, audit }),
    ...(deps.registry === undefined ? [] : registryRoutes({ registry: deps.registry, audit })),
    ...(deps.auditLog === undefined ? [] : auditRoutes({ audit: deps.auditLog })),
    ...openapiRoutes({ routes: () => table, ...deps.openapi }),
    // The WebSocket protocol's document, next to the REST one and with the same version.
    ...asyncapiRoutes(deps.openapi?.version === undefined ? {} : { version: deps.openapi.version }),
  );
  assertUniqueRoutes(table);
  return table;
}

/** Throws on a duplicate method + path shape. */
export function assertUniqueRoutes(routes: readonly RouteDef[]): void {
  const seen = new Set<string>();
  for (const route of routes) {
    const key = `${route.method} ${route.path.replace(/:[^/]+/g, ':')}`;
    if (seen.has(key)) throw new Error(`duplicate route ${route.method} ${route.path}`);
    seen.add(key);
  }
}
