/**
 * Image routes. Any logged-in user may build (POST a Sentinelfile as JSON or YAML); only
 * admins delete, because images are shared by every user's agents.
 */
import { SentinelError } from '../errors.js';
import type { ImageService } from '../images/service.js';
import { prepareJson } from './prepared-json.js';
import { AGENT_DEFINITION_SCHEMA, normalizeAgentDefinition, type AgentDefinitionInput } from '../images/sentinelfile.js';
import type { JsonSchema, RouteContext, RouteDef } from './types.js';

/** Sentinelfiles are small; 256 KiB leaves room for long instructions and refuses the rest early. */
export const MAX_SENTINELFILE_BYTES = 256 * 1024;

/**
 * An image reference in a path: ID, short ID, `name:tag`, `name`. Slashes are allowed
 * (repository paths, sent percent-encoded); the service parses the grammar precisely.
 */
const imageRefParams: JsonSchema = {
  type: 'object',
  properties: { ref: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}$' } },
  required: ['ref'],
  additionalProperties: false,
};

const modelSchema: JsonSchema = {
  type: 'object',
  properties: { provider: { type: 'string' }, name: { type: 'string' }, parameters: { type: 'object' } },
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
    capabilities: { type: 'array', items: { type: 'string' } },
    instructions: { type: 'string' },
  },
};

/**
 * Repository namespace of the built-in images. Tags are shared by every user, so without this
 * any user could re-point `sentinel/echo:latest`, the image everyone starts from.
 */
export const RESERVED_IMAGE_NAMESPACE = 'sentinel/';

function checkMayBuild(name: string, ctx: RouteContext): void {
  if (name.startsWith(RESERVED_IMAGE_NAMESPACE) && ctx.principal?.role !== 'admin') {
    throw new SentinelError('forbidden', `image names under ${RESERVED_IMAGE_NAMESPACE} are reserved for admins`);
  }
}

/** GET/POST /v1/images, GET /v1/images/:ref (any logged-in user), DELETE /v1/images/:ref (admin). */
export function imageRoutes(deps: { images: ImageService }): RouteDef[] {
  const { images } = deps;
  return [
    {
      method: 'GET',
      path: '/v1/images',
      auth: 'user',
      summary: 'List local images',
      schemas: { response: { type: 'object', properties: { images: { type: 'array', items: IMAGE_RESOURCE_SCHEMA } } } },
      // Every user sees the same list: serialized per request (the records are new objects) for the ETag.
      handler: async () => prepareJson({ images: await images.list() }),
    },
    {
      method: 'POST',
      path: '/v1/images',
      auth: 'user',
      status: 201,
      summary: 'Build an image from a Sentinelfile (JSON or YAML) and tag it name:tag (names under sentinel/ are admin-only)',
      bodyFormats: ['json', 'yaml'],
      maxBodyBytes: MAX_SENTINELFILE_BYTES,
      schemas: { body: AGENT_DEFINITION_SCHEMA, response: IMAGE_RESOURCE_SCHEMA },
      // The route already validated the body against the Sentinelfile schema: only normalise.
      handler: (input: { body: AgentDefinitionInput }, ctx) => {
        checkMayBuild(input.body.name, ctx);
        return images.build(normalizeAgentDefinition(input.body));
      },
    },
    {
      method: 'GET',
      path: '/v1/images/:ref',
      auth: 'user',
      summary: 'Get an image by ID, short ID, name:tag or name',
      schemas: { params: imageRefParams, response: IMAGE_RESOURCE_SCHEMA },
      handler: (input: { params: { ref: string } }) => images.get(input.params.ref),
    },
    {
      method: 'DELETE',
      path: '/v1/images/:ref',
      auth: 'admin',
      summary: 'Delete an image (refused while agents use it)',
      schemas: { params: imageRefParams },
      handler: async (input: { params: { ref: string } }) => {
        await images.delete(input.params.ref);
        return undefined;
      },
    },
  ];
}
