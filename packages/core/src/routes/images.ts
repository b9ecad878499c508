/**
 * Image routes. Any logged-in user may build (POST a Sentinelfile as JSON or YAML) into a
 * repository they own or create; only a repository's owner or an admin tags, deletes, or
 * changes its visibility; private repositories are a 404 to everyone else (ImageService).
 */
import type { ImageService } from '../images/service.js';
import { prepareJson } from './prepared-json.js';
import { AGENT_DEFINITION_SCHEMA, normalizeAgentDefinition, type AgentDefinitionInput } from '../images/sentinelfile.js';
import { auditFromRoute, noAudit, type AuditRecorder } from '../contract/audit.js';
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';

/** Sentinelfiles are small; 256 KiB leaves room for long instructions and refuses the rest early. */
export const MAX_SENTINELFILE_BYTES = 256 * 1024;

/**
 * An image reference in a path: ID, short ID, `name:tag`, `name`, `host:port/name:tag`. Slashes are allowed
 * (repository paths, sent percent-encoded); the service parses the grammar precisely.
 */
const imageRefParams: JsonSchema = {
  type: 'object',
  properties: { ref: { type: 'string', pattern: '^[A-Za-z0-9\\[][A-Za-z0-9._:/\\[\\]-]{0,255}$' } },
  required: ['ref'],
  additionalProperties: false,
};

const modelSchema: JsonSchema = {
  type: 'object',
  properties: { provider: { type: 'string' }, name: { type: 'string' }, parameters: { type: 'object' } },
  required: ['provider', 'name', 'parameters'],
  additionalProperties: false,
};

export const IMAGE_RESOURCE_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'The manifest digest (sha256:…)' },
    short_id: { type: 'string', description: 'First 12 hex digits of the digest' },
    digest: { type: 'string' },
    name: { type: 'string' },
    tag: { type: 'string' },
    tags: { type: 'array', items: { type: 'string' } },
    created_at: { type: 'string', format: 'date-time' },
    size: { type: 'integer' },
    base_model: { type: 'string', description: 'provider/name' },
    features: { type: 'array', items: { type: 'string' } },
    description: { type: 'string' },
    model: modelSchema,
    tools: { type: 'array', items: { type: 'string' } },
    tool_approval: { type: 'array', items: { type: 'string' }, description: 'The tools of tools whose calls wait for a person (Sentinelfile approval: required); absent when none' },
    capabilities: { type: 'array', items: { type: 'string' } },
    instructions: { type: 'string' },
    owner: { type: ['string', 'null'], description: 'Owner of the repository of name (null when untagged)' },
    visibility: { type: ['string', 'null'], enum: ['public', 'private', null], description: 'Visibility of the repository of name (null when untagged)' },
  },
  required: [
    'id', 'short_id', 'digest', 'name', 'tag', 'tags', 'created_at', 'size', 'base_model', 'features',
    'description', 'model', 'tools', 'capabilities', 'instructions', 'owner', 'visibility',
  ],
  additionalProperties: false,
};

export const REPOSITORY_RESOURCE_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'The image name without tag' },
    owner: { type: 'string', description: 'Who may tag in it (with admins); "sentinel": admins only' },
    visibility: { type: 'string', enum: ['public', 'private'] },
    created_at: { type: 'string', format: 'date-time' },
    tags: { type: 'array', items: { type: 'string' }, description: 'Its name:tag references that point at an image now' },
  },
  required: ['name', 'owner', 'visibility', 'created_at', 'tags'],
  additionalProperties: false,
};

const VISIBILITY_SCHEMA: JsonSchema = { type: 'string', enum: ['public', 'private'] };

const buildQuery: JsonSchema = {
  type: 'object',
  properties: { visibility: VISIBILITY_SCHEMA },
  additionalProperties: false,
};

const patchBody: JsonSchema = {
  type: 'object',
  properties: { visibility: VISIBILITY_SCHEMA },
  required: ['visibility'],
  additionalProperties: false,
};

const historyQuery: JsonSchema = {
  type: 'object',
  properties: {
    since: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    limit: { type: 'integer', minimum: 1, maximum: 1000 },
  },
  additionalProperties: false,
};

const JOURNAL_EVENT_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    seq: { type: 'integer' },
    event_type: { type: 'string', enum: ['tag_created', 'tag_moved', 'tag_deleted', 'visibility_changed'] },
    timestamp: { type: 'string', format: 'date-time' },
    content: { type: 'string' },
    data: {
      type: 'object',
      description: 'repository, and: name_tag, tag, from and to (digests, null for none) for tags; from and to (visibilities) otherwise; by (who)',
    },
  },
  required: ['seq', 'event_type', 'timestamp', 'content', 'data'],
  additionalProperties: false,
};

/**
 * Repository namespace of the built-in images (admins only; ImageService enforces it, with
 * every other repository's owner).
 */
export const RESERVED_IMAGE_NAMESPACE = 'sentinel/';


/**
 * GET/POST /v1/images, GET/PATCH/DELETE /v1/images/:ref and GET /v1/images/:ref/history (any
 * logged-in user; ownership and visibility are the ImageService's).
 */
export function imageRoutes(deps: { images: ImageService; audit?: AuditRecorder }): RouteDef[] {
  const { images } = deps;
  const audit = deps.audit ?? noAudit;
  return [
    {
      method: 'GET',
      path: '/v1/images',
      auth: 'user',
      scope: 'images:read',
      summary: "List local images you may see (public ones and your own; admins: every image, untagged ones too)",
      schemas: { response: { type: 'object', properties: { images: { type: 'array', items: IMAGE_RESOURCE_SCHEMA } }, required: ['images'], additionalProperties: false } },
      etag: true,
      // Serialized per request (the records are new objects) for the ETag; the list depends on who asks (private repositories).
      handler: async (_input, ctx) => prepareJson({ images: await images.list(principalOf(ctx)) }),
    },
    {
      method: 'POST',
      path: '/v1/images',
      auth: 'user',
      scope: 'images:write',
      status: 201,
      summary:
        'Build an image from a Sentinelfile (JSON or YAML) and tag it name:tag, in a repository you own or create ' +
        '(sentinel/ is admin-only; a namespace named like a user is theirs). Unknown tools or model providers are a 400. ' +
        '?visibility=private|public sets the repository visibility (default: public when new, else unchanged).',
      bodyFormats: ['json', 'yaml'],
      maxBodyBytes: MAX_SENTINELFILE_BYTES,
      errorDescriptions: { 403: 'The repository or its namespace belongs to another user (sentinel/: admins only)' },
      errors: ['conflict', 'forbidden'],
      schemas: { query: buildQuery, body: AGENT_DEFINITION_SCHEMA, response: IMAGE_RESOURCE_SCHEMA },
      examples: {
        body: {
          name: 'alice/helper',
          tag: 'latest',
          description: 'Answers questions politely',
          model: { provider: 'openai', name: 'gpt-4o-mini' },
          instructions: 'You are a helpful assistant.',
          tools: [],
        },
      },
      // The route already validated the body against the Sentinelfile schema: only normalise.
      handler: (input: { query: { visibility?: 'public' | 'private' }; body: AgentDefinitionInput }, ctx) =>
        images.build(normalizeAgentDefinition(input.body), {
          principal: principalOf(ctx),
          ...(input.query.visibility === undefined ? {} : { visibility: input.query.visibility }),
        }),
    },
    {
      method: 'GET',
      path: '/v1/images/:ref',
      auth: 'user',
      scope: 'images:read',
      summary: 'Get an image by ID, short ID, name:tag or name',
      schemas: { params: imageRefParams, response: IMAGE_RESOURCE_SCHEMA },
      handler: (input: { params: { ref: string } }, ctx) => images.get(input.params.ref, principalOf(ctx)),
    },
    {
      method: 'PATCH',
      path: '/v1/images/:ref',
      auth: 'user',
      scope: 'images:write',
      summary: "Change a repository's visibility (ref: its name, or name:tag; owner or admin): {\"visibility\": \"private\"|\"public\"}",
      schemas: { params: imageRefParams, body: patchBody, response: REPOSITORY_RESOURCE_SCHEMA },
      errorDescriptions: { 403: 'Not the owner of the repository', 404: 'No such repository (or a private one of another user)' },
      errors: ['forbidden'],
      examples: { body: { visibility: 'private' } },
      handler: (input: { params: { ref: string }; body: { visibility: 'public' | 'private' } }, ctx) =>
        images.setVisibility(principalOf(ctx), input.params.ref, input.body.visibility),
    },
    {
      method: 'DELETE',
      path: '/v1/images/:ref',
      auth: 'user',
      scope: 'images:write',
      summary: 'Delete an image with all its tags (owner of every repository it is tagged in, or admin; refused while agents use it)',
      schemas: { params: imageRefParams },
      errorDescriptions: { 403: 'The image is tagged in a repository you do not own (untagged: admins only)', 409: 'Agents use the image' },
      errors: ['conflict', 'forbidden'],
      handler: async (input: { params: { ref: string } }, ctx) => {
        const deleted = await images.delete(input.params.ref, principalOf(ctx));
        audit.record(auditFromRoute(ctx, 'image.deleted', `image:${input.params.ref}`, { digest: deleted.digest, tags: deleted.tags }));
        return undefined;
      },
    },
    {
      method: 'GET',
      path: '/v1/images/:ref/history',
      auth: 'user',
      scope: 'images:read',
      summary: "A repository's journal (ref: its name, or name:tag): every tag created, moved or deleted (who, from which digest to which) and visibility change, oldest first",
      schemas: {
        params: imageRefParams,
        query: historyQuery,
        response: {
          type: 'object',
          properties: { repository: REPOSITORY_RESOURCE_SCHEMA, events: { type: 'array', items: JOURNAL_EVENT_SCHEMA } },
          required: ['repository', 'events'],
          additionalProperties: false,
        },
      },
      handler: async (input: { params: { ref: string }; query: { since?: number; limit?: number } }, ctx) => {
        const principal = principalOf(ctx);
        const repository = await images.repository(input.params.ref, principal);
        const events = await images.history(input.params.ref, principal, input.query);
        return { repository, events: events.map(({ agent_id: _stream, ...event }) => event) };
      },
    },
  ];
}
