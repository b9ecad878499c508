/**
 * REST routes for login and user management (docs/ARCHITECTURE.md#auth-and-tenancy). Schemas are data here and are
 * compiled once, with the rest of the route table, by `compileRoute`.
 */
import type { QuotaService } from '../auth/quotas.js';
import type { AuthService } from '../auth/service.js';
import type { ChangePasswordInput, CreateUserInput, UpdateUserInput, UserService } from '../auth/users.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../auth/passwords.js';
import { USERNAME_PATTERN } from '../auth/users.js';
import { prepareJson } from './prepared-json.js';
import { auditFromRoute, noAudit, type AuditRecorder } from '../contract/audit.js';
import { isSentinelError } from '../contract/errors.js';
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';

export interface AuthRouteDeps {
  auth: AuthService;
  users: UserService;
  /** Usage against quota in `GET /v1/auth/me`. Default none: `usage` is left out. */
  quotas?: QuotaService;
  /** Where logins, user changes and password changes are recorded. Default {@link noAudit}. */
  audit?: AuditRecorder;
}

/**
 * Body cap for these routes: a maximal password fully \u-escaped in JSON is about 6 KiB,
 * and nothing here needs more.
 */
const MAX_AUTH_BODY_BYTES = 16 * 1024;

const usernameSchema: JsonSchema = { type: 'string', minLength: 1, maxLength: 64, pattern: USERNAME_PATTERN };
const newPasswordSchema: JsonSchema = { type: 'string', minLength: PASSWORD_MIN_LENGTH, maxLength: PASSWORD_MAX_LENGTH };
const roleSchema: JsonSchema = { type: 'string', enum: ['admin', 'user'] };

/** A quota: a whole number of at least 0, or null for unlimited. */
const quotaSchema: JsonSchema = { type: ['integer', 'null'], minimum: 0, maximum: Number.MAX_SAFE_INTEGER };
const quotaNames = ['tokens_per_day', 'turns_per_day', 'concurrent_agents'];

const quotasSchema: JsonSchema = {
  type: 'object',
  description: 'Per-user limits (null = unlimited): model tokens and turns per UTC day, agents owned at once',
  properties: Object.fromEntries(quotaNames.map((name) => [name, quotaSchema])),
  required: quotaNames,
  additionalProperties: false,
};

const userResourceProperties: Record<string, JsonSchema> = {
  username: { type: 'string' },
  role: roleSchema,
  can_push: { type: 'boolean' },
  disabled: { type: 'boolean', description: 'A disabled user cannot log in; their tokens and API keys are refused' },
  quotas: quotasSchema,
  created_at: { type: 'string', format: 'date-time' },
  updated_at: { type: 'string', format: 'date-time' },
};
const userResourceRequired = ['username', 'role', 'can_push', 'disabled', 'quotas', 'created_at', 'updated_at'];

const userResourceSchema: JsonSchema = {
  type: 'object',
  properties: userResourceProperties,
  required: userResourceRequired,
  additionalProperties: false,
};

const usageSchema: JsonSchema = {
  type: 'object',
  description: 'Use so far today (UTC) and agents owned, to compare with quotas',
  properties: {
    tokens_today: { type: 'integer', minimum: 0 },
    turns_today: { type: 'integer', minimum: 0 },
    agents: { type: 'integer', minimum: 0 },
  },
  required: ['tokens_today', 'turns_today', 'agents'],
  additionalProperties: false,
};

/** The caller's own user resource, with usage against quota when the server counts it. */
const meSchema: JsonSchema = {
  type: 'object',
  properties: { ...userResourceProperties, usage: usageSchema },
  required: userResourceRequired,
  additionalProperties: false,
};

const updateUserBodySchema: JsonSchema = {
  type: 'object',
  properties: {
    role: roleSchema,
    can_push: { type: 'boolean' },
    disabled: { type: 'boolean' },
    quotas: {
      type: 'object',
      properties: Object.fromEntries(quotaNames.map((name) => [name, quotaSchema])),
      minProperties: 1,
      additionalProperties: false,
    },
  },
  minProperties: 1,
  additionalProperties: false,
};

const userParamsSchema: JsonSchema = {
  type: 'object',
  properties: { name: usernameSchema },
  required: ['name'],
  additionalProperties: false,
};

const loginBodySchema: JsonSchema = {
  type: 'object',
  properties: {
    // Login accepts any short name and any password up to the cap (not the current minimum):
    // a policy change must not lock out existing accounts, and bad names just fail to match.
    username: { type: 'string', minLength: 1, maxLength: 64 },
    password: { type: 'string', minLength: 1, maxLength: PASSWORD_MAX_LENGTH },
  },
  required: ['username', 'password'],
  additionalProperties: false,
};

const loginResponseSchema: JsonSchema = {
  type: 'object',
  properties: {
    token: { type: 'string' },
    username: { type: 'string' },
    expires: { type: 'string', format: 'date-time' },
  },
  required: ['token', 'username', 'expires'],
  additionalProperties: false,
};

const createUserBodySchema: JsonSchema = {
  type: 'object',
  properties: {
    username: usernameSchema,
    password: newPasswordSchema,
    role: roleSchema,
    can_push: { type: 'boolean' },
  },
  required: ['username', 'password'],
  additionalProperties: false,
};

const changePasswordBodySchema: JsonSchema = {
  type: 'object',
  properties: {
    current_password: { type: 'string', minLength: 1, maxLength: PASSWORD_MAX_LENGTH },
    new_password: newPasswordSchema,
  },
  required: ['new_password'],
  additionalProperties: false,
};

const userListSchema: JsonSchema = {
  type: 'object',
  properties: { users: { type: 'array', items: userResourceSchema } },
  required: ['users'],
  additionalProperties: false,
};


/**
 * Login and user-management routes:
 * - POST /v1/auth/login (public) → {token, username, expires}
 * - GET /v1/auth/me (user) → the caller's own user resource (role, quotas) and usage against quota
 * - PATCH /v1/users/:name (admin) → the updated user: role, can_push, disabled, quotas
 * - POST /v1/users (admin, 201), GET /v1/users (admin) → {users}, DELETE /v1/users/:name (admin, 204)
 * - PUT /v1/users/:name/password (user, 204): one's own password, or anyone's for an admin
 */
export function authRoutes(deps: AuthRouteDeps): RouteDef[] {
  const { auth, users, quotas } = deps;
  const audit = deps.audit ?? noAudit;
  return [
    {
      method: 'POST',
      path: '/v1/auth/login',
      auth: 'public',
      // Its own bucket per client address, beside the failure throttle (auth/throttle.ts).
      rateClass: 'auth',
      summary: 'Exchange a username and password for a bearer token',
      schemas: { body: loginBodySchema, response: loginResponseSchema },
      maxBodyBytes: MAX_AUTH_BODY_BYTES,
      errors: ['unauthorized', 'rate_limited'],
      examples: {
        body: { username: 'admin', password: 'correct horse battery staple' },
        response: { token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl', username: 'admin', expires: '2026-01-02T03:04:05.000Z' },
      },
      handler: async (input: { body: { username: string; password: string } }, ctx) => {
        const target = `user:${input.body.username}`;
        try {
          const result = await auth.login(input.body, ctx.remoteAddress);
          audit.record({ ...auditFromRoute(ctx, 'auth.login', target), actor: result.username });
          return result;
        } catch (err) {
          // A wrong password and a throttled attempt are what an attacker leaves; an outage is not.
          // The attempted name only, never the password; no actor: nobody was authenticated.
          if (isSentinelError(err) && (err.code === 'unauthorized' || err.code === 'rate_limited')) {
            audit.record({ ...auditFromRoute(ctx, 'auth.login_failed', target, { reason: err.code === 'unauthorized' ? 'invalid_credentials' : 'throttled' }), actor: null });
          }
          throw err;
        }
      },
    },
    {
      method: 'GET',
      path: '/v1/auth/me',
      auth: 'user',
      summary: 'The calling user',
      schemas: { response: meSchema },
      handler: async (_input, ctx) => {
        const { username } = principalOf(ctx);
        const user = await users.get(username);
        return quotas === undefined ? user : { ...user, usage: await quotas.usage(username) };
      },
    },
    {
      method: 'POST',
      path: '/v1/users',
      auth: 'admin',
      scope: 'admin',
      summary: 'Create a user',
      status: 201,
      schemas: { body: createUserBodySchema, response: userResourceSchema },
      maxBodyBytes: MAX_AUTH_BODY_BYTES,
      errors: ['conflict'],
      examples: {
        body: { username: 'alice', password: 'a long enough password', role: 'user', can_push: false },
        response: {
          username: 'alice',
          role: 'user',
          can_push: false,
          disabled: false,
          quotas: { tokens_per_day: null, turns_per_day: null, concurrent_agents: null },
          created_at: '2026-01-02T03:04:05.000Z',
          updated_at: '2026-01-02T03:04:05.000Z',
        },
      },
      handler: async (input: { body: CreateUserInput }, ctx) => {
        const created = await users.create(input.body);
        audit.record(auditFromRoute(ctx, 'user.created', `user:${created.username}`, { role: created.role, can_push: created.can_push }));
        return created;
      },
    },
    {
      method: 'GET',
      path: '/v1/users',
      auth: 'admin',
      scope: 'admin',
      summary: 'List users',
      schemas: { response: userListSchema },
      etag: true,
      handler: async () => prepareJson({ users: await users.list() }),
    },
    {
      method: 'DELETE',
      path: '/v1/users/:name',
      auth: 'admin',
      scope: 'admin',
      summary: 'Delete a user and every agent they own (409 for oneself)',
      schemas: { params: userParamsSchema },
      errors: ['conflict'],
      handler: async (input: { params: { name: string } }, ctx) => {
        await users.delete(input.params.name, principalOf(ctx));
        audit.record(auditFromRoute(ctx, 'user.deleted', `user:${input.params.name}`));
        return undefined;
      },
    },
    {
      method: 'PATCH',
      path: '/v1/users/:name',
      auth: 'admin',
      scope: 'admin',
      summary: "Change a user's role, push right, disabled flag or quotas (at least one field; 409 for the last enabled admin)",
      schemas: { params: userParamsSchema, body: updateUserBodySchema, response: userResourceSchema },
      errors: ['conflict'],
      errorDescriptions: { 409: 'It would leave no enabled admin (the last one demoted or disabled)' },
      maxBodyBytes: MAX_AUTH_BODY_BYTES,
      handler: async (input: { params: { name: string }; body: UpdateUserInput }, ctx) => {
        const { user, changed } = await users.update(principalOf(ctx), input.params.name, input.body);
        if (Object.keys(changed).length > 0) audit.record(auditFromRoute(ctx, 'user.updated', `user:${user.username}`, { changed }));
        return user;
      },
    },
    {
      method: 'PUT',
      path: '/v1/users/:name/password',
      auth: 'user',
      // A password is the account itself: no API key may change it, whatever its scopes.
      credentials: 'session',
      summary: "Change a user's password (one's own with current_password; an admin may reset anyone else's)",
      schemas: { params: userParamsSchema, body: changePasswordBodySchema },
      maxBodyBytes: MAX_AUTH_BODY_BYTES,
      // conflict: an account that signs in through OpenID Connect has no password to change.
      errors: ['forbidden', 'conflict'],
      examples: { body: { current_password: 'the old password', new_password: 'a new long password' } },
      handler: async (input: { params: { name: string }; body: ChangePasswordInput }, ctx) => {
        const actor = principalOf(ctx);
        await users.changePassword(actor, input.params.name, input.body);
        // Who and whose, never the password: `reset` tells an admin's reset from one's own change.
        audit.record(auditFromRoute(ctx, 'auth.password_changed', `user:${input.params.name}`, { reset: actor.username !== input.params.name }));
        return undefined;
      },
    },
  ];
}
