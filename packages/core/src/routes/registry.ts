/**
 * Registry routes: search, push, pull. Any logged-in user searches and pulls (from the server's
 * registry); pushing needs the admin role or a user created with `can_push` (admins grant it),
 * because a push publishes an image under the server's registry credentials. Naming another
 * registry in a request is for admins and pushers only (see RegistryService).
 *
 * Push and pull answer one JSON object, or, when the client sends
 * `Accept: application/x-ndjson`, a stream of progress lines (per blob, with overall bytes) and
 * a final line with the same object, or `{error, code}`. A client that hangs up cancels the
 * transfer: a pull then stores nothing.
 */
import type { RegistryService, TransferProgress } from '../registry/service.js';
import type { PreparedTransfer, PushResult } from '../registry/service.js';
import { auditFromRoute, noAudit, type AuditRecorder } from '../contract/audit.js';
import { createPushIterable } from '../contract/push-iterable.js';
import { IMAGE_RESOURCE_SCHEMA } from './images.js';
import { principalOf, streamResult, type JsonSchema, type RouteContext, type RouteDef, type StreamItem, type StreamResult } from '../contract/route.js';

/** Registry request bodies are small; credentials included. */
export const MAX_REGISTRY_BODY_BYTES = 16 * 1024;
/** Most results one search page returns. */
export const MAX_SEARCH_LIMIT = 100;
export const NDJSON_MEDIA_TYPE = 'application/x-ndjson';

const TAG_SCHEMA: JsonSchema = { type: 'string', pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$' };
const REGISTRY_SCHEMA: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 2048,
  description: 'Registry URL http(s)://host[:port][/namespace] (default: the server\'s registry; other registries: admins and pushers only)',
};
const CREDENTIALS_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'Credentials for this request only (never stored or logged); a token goes in password',
  properties: { username: { type: 'string', minLength: 1, maxLength: 256 }, password: { type: 'string', minLength: 1, maxLength: 8192 } },
  required: ['username', 'password'],
  additionalProperties: false,
};

const PUSH_BODY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    image: { type: 'string', minLength: 1, maxLength: 512, description: 'Local image: ID, short ID, name[:tag], or registry/name[:tag]' },
    tag: TAG_SCHEMA,
    registry: REGISTRY_SCHEMA,
    credentials: CREDENTIALS_SCHEMA,
  },
  required: ['image'],
  additionalProperties: false,
};

const PULL_BODY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 512, description: '[registry/]repository[:tag|@sha256:…]' },
    tag: TAG_SCHEMA,
    registry: REGISTRY_SCHEMA,
    credentials: CREDENTIALS_SCHEMA,
  },
  required: ['name'],
  additionalProperties: false,
};

const SEARCH_QUERY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    query: { type: 'string', maxLength: 256 },
    limit: { type: 'integer', minimum: 1, maximum: MAX_SEARCH_LIMIT, default: 25 },
    offset: { type: 'integer', minimum: 0, maximum: 1_000_000, default: 0 },
    registry: REGISTRY_SCHEMA,
  },
  additionalProperties: false,
};

/** One NDJSON progress line of a transfer: a blob's bytes so far, and the whole transfer's. */
const TRANSFER_PROGRESS_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['uploading', 'downloading', 'exists', 'verified'] },
    digest: { type: 'string' },
    kind: { type: 'string', enum: ['manifest', 'config', 'layer'] },
    bytes: { type: 'integer', minimum: 0 },
    total: { type: 'integer', minimum: 0 },
    overall: { type: 'object', properties: { bytes: { type: 'integer', minimum: 0 }, total: { type: 'integer', minimum: 0 } }, required: ['bytes', 'total'], additionalProperties: false },
  },
  required: ['status', 'digest', 'kind', 'bytes', 'total', 'overall'],
  additionalProperties: false,
};

/** Registry failures besides input ones: another registry without the right (403), a missing image (404), the registry failing or stalling. */
const TRANSFER_ERRORS = ['forbidden', 'not_found', 'upstream_error', 'upstream_timeout'] as const;

const PUSH_RESULT_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    tag: { type: 'string' },
    digest: { type: 'string' },
    status: { type: 'string', enum: ['pushed'] },
    registry: { type: 'string', description: 'host[:port], or embedded' },
  },
  required: ['name', 'tag', 'digest', 'status', 'registry'],
  additionalProperties: false,
};

const PULL_RESULT_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    tag: { type: ['string', 'null'] },
    digest: { type: 'string' },
    status: { type: 'string', enum: ['pulled', 'up_to_date'] },
    registry: { type: 'string' },
    image: IMAGE_RESOURCE_SCHEMA,
  },
  required: ['name', 'tag', 'digest', 'status', 'registry', 'image'],
  additionalProperties: false,
};

const SEARCH_RESULT_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    results: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          tags: { type: 'array', items: { type: 'string' } },
          description: { type: 'string' },
          digest: { type: ['string', 'null'] },
          tag: { type: ['string', 'null'] },
          agent: { type: 'boolean' },
        },
        required: ['name', 'tags', 'description', 'digest', 'tag', 'agent'],
        additionalProperties: false,
      },
    },
    total: { type: 'integer' },
    offset: { type: 'integer' },
    limit: { type: 'integer' },
  },
  required: ['results', 'total', 'offset', 'limit'],
  additionalProperties: false,
};

/** True when the Accept header asks for NDJSON (with a non-zero q). */
export function acceptsNdjson(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';');
    if (type.trim().toLowerCase() !== NDJSON_MEDIA_TYPE) continue;
    const q = params.map((p) => p.trim().toLowerCase()).find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/**
 * Runs a prepared transfer as a stream of NDJSON lines: progress, then the result (or an
 * `{error, code}` line the transport writes). Cancelled when the client goes away.
 */
function streamTransfer<R>(prepared: PreparedTransfer<R>, ctx: RouteContext): StreamResult {
  const controller = new AbortController();
  const stream = createPushIterable<StreamItem>({
    signal: ctx.signal,
    // Over once the client stopped reading, or the transfer finished: either way, stop moving bytes.
    onReturn: () => controller.abort(ctx.signal.aborted ? ctx.signal.reason : undefined),
  });
  prepared
    .run({
      signal: controller.signal,
      onProgress: (progress: TransferProgress) => {
        stream.push({ json: JSON.stringify(progress) });
      },
    })
    .then(
      (result) => {
        stream.push({ json: JSON.stringify(result) });
        stream.end();
      },
      (err: unknown) => stream.fail(err),
    );
  return streamResult(stream.iterable);
}


/** GET /v1/registry/search, POST /v1/registry/push, POST /v1/registry/pull. */
export function registryRoutes(deps: { registry: RegistryService; audit?: AuditRecorder }): RouteDef[] {
  const { registry } = deps;
  const audit = deps.audit ?? noAudit;
  return [
    {
      method: 'GET',
      path: '/v1/registry/search',
      auth: 'user',
      scope: 'registry:pull',
      summary: "Search the registry's repositories by name (catalog + tags), paged with limit/offset",
      schemas: { query: SEARCH_QUERY_SCHEMA, response: SEARCH_RESULT_SCHEMA },
      errors: ['forbidden', 'upstream_error', 'upstream_timeout'],
      handler: (input: { query: { query?: string; limit: number; offset: number; registry?: string } }, ctx) =>
        registry.search(principalOf(ctx), input.query, ctx.signal),
    },
    {
      method: 'POST',
      path: '/v1/registry/push',
      auth: 'user',
      scope: 'registry:push',
      summary: 'Push a local image to the registry (admins and users with can_push); NDJSON progress with Accept: application/x-ndjson',
      maxBodyBytes: MAX_REGISTRY_BODY_BYTES,
      schemas: { body: PUSH_BODY_SCHEMA, response: PUSH_RESULT_SCHEMA },
      streams: ['ndjson'],
      streamItem: { anyOf: [TRANSFER_PROGRESS_SCHEMA, PUSH_RESULT_SCHEMA] },
      errors: [...TRANSFER_ERRORS],
      examples: {
        body: { image: 'alice/helper:latest' },
        response: { name: 'alice/helper', tag: 'latest', digest: 'sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945', status: 'pushed', registry: '127.0.0.1:5000' },
      },
      handler: async (input: { body: Parameters<RegistryService['preparePush']>[1] }, ctx) => {
        const checked = await registry.preparePush(principalOf(ctx), input.body);
        // Recorded once the push completed, streamed or not: a cancelled or failed push published nothing.
        const prepared: PreparedTransfer<PushResult> = {
          run: async (options) => {
            const result = await checked.run(options);
            audit.record(
              auditFromRoute(ctx, 'image.pushed', `image:${result.name}:${result.tag}`, { digest: result.digest, registry: result.registry, image: input.body.image }),
            );
            return result;
          },
        };
        if (acceptsNdjson(ctx.accept)) return streamTransfer(prepared, ctx);
        return prepared.run({ signal: ctx.signal });
      },
    },
    {
      method: 'POST',
      path: '/v1/registry/pull',
      auth: 'user',
      scope: 'registry:pull',
      summary: 'Pull an image from the registry into the local images, digest-verified; NDJSON progress with Accept: application/x-ndjson',
      maxBodyBytes: MAX_REGISTRY_BODY_BYTES,
      schemas: { body: PULL_BODY_SCHEMA, response: PULL_RESULT_SCHEMA },
      streams: ['ndjson'],
      streamItem: { anyOf: [TRANSFER_PROGRESS_SCHEMA, PULL_RESULT_SCHEMA] },
      errors: [...TRANSFER_ERRORS],
      examples: { body: { name: 'alice/helper:latest' } },
      handler: async (input: { body: Parameters<RegistryService['preparePull']>[1] }, ctx) => {
        const prepared = await registry.preparePull(principalOf(ctx), input.body);
        if (acceptsNdjson(ctx.accept)) return streamTransfer(prepared, ctx);
        return prepared.run({ signal: ctx.signal });
      },
    },
  ];
}
