/**
 * REST routes for API keys (auth/api-keys.ts): create (the secret answered once), list, revoke,
 * and an admin's view of one user's keys. Creating and revoking are audited, with the key's id,
 * name and scopes, never the key.
 */
import {
  API_KEY_MAX_EXPIRES_IN,
  API_KEY_MIN_EXPIRES_IN,
  API_KEY_NAME_MAX_LENGTH,
  type ApiKeyService,
  type CreateApiKeyInput,
} from '../auth/api-keys.js';
import { USERNAME_PATTERN } from '../auth/users.js';
import { auditFromRoute, type AuditRecorder } from '../contract/audit.js';
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';
import { SCOPES } from '../contract/scopes.js';

export interface KeyRouteDeps {
  keys: ApiKeyService;
  audit: AuditRecorder;
}

const timestampSchema: JsonSchema = { type: 'string', format: 'date-time' };
const scopesSchema: JsonSchema = { type: 'array', items: { type: 'string', enum: [...SCOPES] }, minItems: 1, maxItems: SCOPES.length, uniqueItems: true };

const keyProperties: Record<string, JsonSchema> = {
  id: { type: 'string', pattern: '^key_[0-9a-f]{24}$' },
  name: { type: 'string', minLength: 1, maxLength: API_KEY_NAME_MAX_LENGTH },
  prefix: { type: 'string', pattern: '^sk_sentinel_[A-Za-z0-9_-]{8}$' },
  scopes: scopesSchema,
  created_at: timestampSchema,
  last_used_at: { anyOf: [timestampSchema, { type: 'null' }] },
  expires_at: { anyOf: [timestampSchema, { type: 'null' }] },
};
const keyRequired = ['id', 'name', 'prefix', 'scopes', 'created_at', 'last_used_at', 'expires_at'];

const keyResourceSchema: JsonSchema = { type: 'object', properties: keyProperties, required: keyRequired, additionalProperties: false };

const createdKeySchema: JsonSchema = {
  type: 'object',
  properties: { ...keyProperties, key: { type: 'string', pattern: '^sk_sentinel_[A-Za-z0-9_-]{43}$' } },
  required: [...keyRequired, 'key'],
  additionalProperties: false,
};

const keyListSchema: JsonSchema = {
  type: 'object',
  properties: { keys: { type: 'array', items: keyResourceSchema } },
  required: ['keys'],
  additionalProperties: false,
};

const createKeyBodySchema: JsonSchema = {
  type: 'object',
  properties: {
    // No control characters: the name is shown in lists and logs.
    name: { type: 'string', minLength: 1, maxLength: API_KEY_NAME_MAX_LENGTH, pattern: '^[^\\u0000-\\u001f\\u007f]*\\S[^\\u0000-\\u001f\\u007f]*$' },
    scopes: scopesSchema,
    expires_in: { type: 'integer', minimum: API_KEY_MIN_EXPIRES_IN, maximum: API_KEY_MAX_EXPIRES_IN },
  },
  required: ['name', 'scopes'],
  additionalProperties: false,
};

const keyParamsSchema: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string', minLength: 1, maxLength: 64 } },
  required: ['id'],
  additionalProperties: false,
};

const userParamsSchema: JsonSchema = {
  type: 'object',
  properties: { name: { type: 'string', minLength: 1, maxLength: 64, pattern: USERNAME_PATTERN } },
  required: ['name'],
  additionalProperties: false,
};

/**
 * - POST /v1/keys (keys:write, 201) → the key with its secret, once
 * - GET /v1/keys (keys:write) → {keys}: the caller's keys that are not revoked
 * - DELETE /v1/keys/:id (keys:write, 204): revokes one's own key, or any key for an admin
 * - GET /v1/users/:name/keys (admin) → {keys} of that user
 */
export function keyRoutes(deps: KeyRouteDeps): RouteDef[] {
  const { keys, audit } = deps;
  return [
    {
      method: 'POST',
      path: '/v1/keys',
      auth: 'user',
      scope: 'keys:write',
      summary: 'Create an API key (its secret is in this response only) with at most the scopes the caller holds',
      status: 201,
      schemas: { body: createKeyBodySchema, response: createdKeySchema },
      maxBodyBytes: 16 * 1024,
      errors: ['insufficient_scope', 'conflict'],
      handler: async (input: { body: CreateApiKeyInput }, ctx) => {
        const created = await keys.create(principalOf(ctx), input.body);
        audit.record(auditFromRoute(ctx, 'key.created', `key:${created.id}`, { name: created.name, scopes: created.scopes, prefix: created.prefix }));
        return created;
      },
    },
    {
      method: 'GET',
      path: '/v1/keys',
      auth: 'user',
      scope: 'keys:write',
      summary: "The caller's API keys (never their secrets)",
      schemas: { response: keyListSchema },
      handler: async (_input, ctx) => ({ keys: await keys.list(principalOf(ctx)) }),
    },
    {
      method: 'DELETE',
      path: '/v1/keys/:id',
      auth: 'user',
      scope: 'keys:write',
      summary: 'Revoke an API key at once, on every instance (one of your own; an admin may revoke any)',
      schemas: { params: keyParamsSchema },
      handler: async (input: { params: { id: string } }, ctx) => {
        const revoked = await keys.revoke(principalOf(ctx), input.params.id);
        audit.record(auditFromRoute(ctx, 'key.revoked', `key:${revoked.id}`, { name: revoked.name, scopes: revoked.scopes, owner: revoked.username }));
        return undefined;
      },
    },
    {
      method: 'GET',
      path: '/v1/users/:name/keys',
      auth: 'admin',
      scope: 'admin',
      summary: "A user's API keys (never their secrets)",
      schemas: { params: userParamsSchema, response: keyListSchema },
      handler: async (input: { params: { name: string } }) => ({ keys: await keys.listOf(input.params.name) }),
    },
  ];
}
