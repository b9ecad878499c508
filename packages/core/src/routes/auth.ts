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
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';
import { auditFromRoute, noAudit, type AuditRecorder } from '../contract/audit.js';

export interface AuthRouteDeps {
  auth: AuthService;
  users: UserService;
  /** Usage against quota in `GET /v1/auth/me`. Default none: `usage` is left out. */
  quotas?: QuotaService;
  /** Where user changes are recorded. Default {@link noAudit}. */
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
      summary: 'Exchange a username and password for a bearer token',
      schemas: { body: loginBodySchema, response: loginResponseSchema },
      maxBodyBytes: MAX_AUTH_BODY_BYTES,
      handler: (input: { body: { username: string; password: string } }, ctx) => auth.login(input.body, ctx.remoteAddress),
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
      handler: (input: { body: CreateUserInput }) => users.create(input.body),
    },
    {
      method: 'GET',
      path: '/v1/users',
      auth: 'admin',
      scope: 'admin',
      summary: 'List users',
      schemas: { response: userListSchema },
      handler: async () => prepareJson({ users: await users.list() }),
    },
    {
      method: 'DELETE',
      path: '/v1/users/:name',
      auth: 'admin',
      scope: 'admin',
      summary: 'Delete a user and every agent they own',
      schemas: { params: userParamsSchema },
      handler: async (input: { params: { name: string } }, ctx) => {
        await users.delete(input.params.name, principalOf(ctx));
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
      handler: async (input: { params: { name: string }; body: ChangePasswordInput }, ctx) => {
        await users.changePassword(principalOf(ctx), input.params.name, input.body);
        return undefined;
      },
    },
  ];
}
