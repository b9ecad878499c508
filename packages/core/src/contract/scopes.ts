/**
 * Scopes: what a credential may do, checked by the transports from the route table and the
 * WebSocket endpoint table (each route and endpoint declares the one scope it needs). A login
 * session holds every scope of its user's role; an API key holds the scopes it was created with,
 * cut to what its owner's role allows at the time of each request, so a key never holds more
 * than its owner.
 */
import type { Principal, Role } from './models.js';

/** Every scope, in one list (the `scopes` of keys are validated against it, and OpenAPI lists it). */
export const SCOPES = [
  'agents:read',
  'agents:write',
  'agents:chat',
  'images:read',
  'images:write',
  'registry:pull',
  'registry:push',
  'keys:write',
  'metrics:read',
  'admin',
] as const;

export type Scope = (typeof SCOPES)[number];

/** What each scope allows, for documents and the key-creation form. */
export const SCOPE_DESCRIPTIONS: Readonly<Record<Scope, string>> = {
  'agents:read': 'List and read agents, their logs and events',
  'agents:write': 'Create, start, stop and delete agents',
  'agents:chat': 'Chat with agents (the chat WebSocket)',
  'images:read': 'List and read images',
  'images:write': 'Build, tag and delete images',
  'registry:pull': 'Search a registry and pull images from it',
  'registry:push': 'Push images to a registry',
  'keys:write': 'Create and revoke API keys (never with more scopes than the caller holds)',
  'metrics:read': 'Scrape the Prometheus metrics at GET /metrics (admins only: they cover the whole instance)',
  admin: 'Administer users and everything else (admins only)',
};

/** Scopes only an admin may hold: they reach past one user's own things. */
const ADMIN_ONLY: ReadonlySet<Scope> = new Set<Scope>(['admin', 'metrics:read']);

const USER_SCOPES: readonly Scope[] = SCOPES.filter((s) => !ADMIN_ONLY.has(s));

/** The scopes a role allows: admins every scope, users every scope but `admin` and `metrics:read`. */
export function roleScopes(role: Role): readonly Scope[] {
  return role === 'admin' ? SCOPES : USER_SCOPES;
}

const SCOPE_SET: ReadonlySet<string> = new Set(SCOPES);

/** True for a known scope name. */
export function isScope(value: string): value is Scope {
  return SCOPE_SET.has(value);
}

/**
 * The scopes a principal holds: its own list (API keys, tickets), or else every scope of its
 * role (login sessions). Admins' `admin` scope implies every other one.
 */
export function principalScopes(principal: Principal): readonly Scope[] {
  return principal.scopes ?? roleScopes(principal.role);
}

/** True when the principal may act with `scope`: it holds it, or it holds `admin` as an admin. */
export function hasScope(principal: Principal, scope: Scope): boolean {
  const held = principal.scopes;
  if (held === undefined) return principal.role === 'admin' || !ADMIN_ONLY.has(scope);
  if (held.includes(scope)) return principal.role === 'admin' || !ADMIN_ONLY.has(scope);
  return principal.role === 'admin' && held.includes('admin');
}
