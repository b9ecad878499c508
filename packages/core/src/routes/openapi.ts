/**
 * The OpenAPI 3.1 document, generated from the route table: the table is the single source
 * of paths, methods, auth and schemas (docs/ARCHITECTURE.md#the-seam), so the document cannot drift from what
 * the server really accepts.
 */
import { bodyFormatsOf } from '../api.js';
import { ERROR_CODES, httpStatusForErrorCode, type ErrorCode } from '../contract/errors.js';
import type { BodyFormat, JsonSchema, RouteDef } from '../contract/route.js';

export interface OpenApiOptions {
  /** Default 'SentinelStacks API'. */
  title?: string;
  /** API version in `info.version`. Default '0.1.0'. */
  version?: string;
  /**
   * `servers` of the document. Default `[{url: '/'}]` (the origin the document was fetched
   * from); `GET /v1/openapi.json` puts the URL the client used first.
   */
  servers?: Array<{ url: string; description?: string }>;
}

/** An OpenAPI document: plain JSON. */
export type OpenApiDocument = Record<string, unknown>;

const MEDIA_TYPES: Record<BodyFormat, string> = { json: 'application/json', yaml: 'application/yaml' };

const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    error: { type: 'string', description: 'Human-readable message' },
    code: { type: 'string', description: 'Machine-readable code (invalid_request, unauthorized, not_found, …)' },
    details: { description: 'Extra detail, e.g. validation issues' },
  },
  required: ['error', 'code'],
};

const errorRef = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });

const STREAM_MEDIA_TYPES = { ndjson: 'application/x-ndjson', sse: 'text/event-stream' } as const;

/** What the built-in streaming routes send (their handlers decide at run time, so the table says it here). */
const KNOWN_STREAMS: Record<string, Array<'ndjson' | 'sse'>> = {
  'GET /v1/agents/:id/logs': ['ndjson', 'sse'],
  'GET /v1/agents/:id/events': ['sse', 'ndjson'],
  'POST /v1/registry/push': ['ndjson'],
  'POST /v1/registry/pull': ['ndjson'],
};

/** Errors of the built-in routes that their shape does not imply (see {@link RouteDef.errors}). */
const KNOWN_ERRORS: Record<string, ErrorCode[]> = {
  'POST /v1/auth/login': ['unauthorized', 'rate_limited'],
  'POST /v1/users': ['conflict'],
  'PUT /v1/users/:name/password': ['forbidden'],
  'POST /v1/agents': ['conflict', 'not_found'],
  'POST /v1/images': ['conflict', 'forbidden'],
  'DELETE /v1/images/:ref': ['conflict'],
  'POST /v1/registry/push': ['forbidden', 'not_found', 'upstream_error'],
  'POST /v1/registry/pull': ['forbidden', 'not_found', 'upstream_error'],
  'GET /v1/registry/search': ['upstream_error'],
};

const ERROR_DESCRIPTIONS: Partial<Record<ErrorCode, string>> = {
  invalid_request: 'Invalid request',
  unauthorized: 'Missing or invalid bearer token, or wrong credentials',
  forbidden: 'Not allowed for this user',
  not_found: 'No such resource (or another user\'s)',
  conflict: 'Conflicts with the current state (already exists, still in use)',
  payload_too_large: 'Body over the size cap',
  unsupported_media_type: 'Missing or unsupported Content-Type',
  rate_limited: 'Over a rate limit, or too many failed logins; Retry-After says when to try again',
  upstream_error: 'A model provider or registry failed',
  unavailable: 'The store or the event bus is unavailable, or the server is shutting down',
};

/** The error codes a route can answer, from its shape plus its declared (or known) extra ones. */
function errorCodesOf(route: RouteDef, hasBody: boolean): Set<ErrorCode> {
  const codes = new Set<ErrorCode>(route.errors ?? KNOWN_ERRORS[`${route.method} ${route.path}`] ?? []);
  if (route.schemas?.params || route.schemas?.query || route.schemas?.body) codes.add('invalid_request');
  if (route.auth !== 'public') codes.add('unauthorized');
  if (route.auth === 'admin') codes.add('forbidden');
  if (route.path.includes('/:')) codes.add('not_found');
  if (hasBody) {
    codes.add('payload_too_large');
    codes.add('unsupported_media_type');
  }
  // Every route but the probes takes a unit from a rate-limit bucket (auth/rate-limit.ts).
  if (route.rateClass !== 'none') codes.add('rate_limited');
  // Liveness touches nothing; everything else can meet a closed or unreachable store.
  if (route.path !== '/v1/health') codes.add('unavailable');
  return codes;
}

/** `/v1/agents/:id` → `/v1/agents/{id}`. */
export function toOpenApiPath(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

function operationId(route: RouteDef): string {
  const words = route.path
    .split('/')
    .filter((s) => s.length > 0 && s !== 'v1')
    .map((s) => (s.startsWith(':') ? `by_${s.slice(1)}` : s.replace(/[^A-Za-z0-9]+/g, '_')));
  return [route.method.toLowerCase(), ...words].join('_');
}

function successStatus(route: RouteDef): number {
  if (route.status !== undefined) return route.status;
  if (route.schemas?.response) return 200;
  return route.method === 'DELETE' || route.method === 'PUT' ? 204 : 200;
}

function propertiesOf(schema: JsonSchema | undefined): Array<[string, JsonSchema]> {
  const props = schema?.properties as Record<string, JsonSchema> | undefined;
  return props ? Object.entries(props) : [];
}

function parametersOf(route: RouteDef): unknown[] {
  const out: unknown[] = [];
  const pathSchemas = new Map(propertiesOf(route.schemas?.params));
  for (const match of route.path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)) {
    const name = match[1] as string;
    out.push({ name, in: 'path', required: true, schema: pathSchemas.get(name) ?? { type: 'string' } });
  }
  const query = route.schemas?.query;
  const required = new Set((query?.required as string[] | undefined) ?? []);
  for (const [name, schema] of propertiesOf(query)) {
    out.push({ name, in: 'query', required: required.has(name), schema });
  }
  return out;
}

function operationOf(route: RouteDef): Record<string, unknown> {
  const status = successStatus(route);
  const response = route.schemas?.response;
  const streams = route.streams ?? KNOWN_STREAMS[`${route.method} ${route.path}`] ?? [];
  const content: Record<string, unknown> = response ? { 'application/json': { schema: response } } : {};
  // Each streamed item is one JSON object: a line of NDJSON, or the data of one SSE event.
  for (const kind of streams) content[STREAM_MEDIA_TYPES[kind]] = { schema: { type: 'string', description: kind === 'sse' ? 'Server-Sent Events: `id:` (seq), `event:` (type), `data:` (one JSON object)' : 'One JSON object per line' } };
  const responses: Record<string, unknown> = {
    [String(status)]:
      Object.keys(content).length > 0 ? { description: route.summary, content } : { description: status === 204 ? 'No content' : route.summary },
  };
  const formats = bodyFormatsOf(route);
  const hasBody = route.schemas?.body !== undefined || formats.length > 0;
  const codes = errorCodesOf(route, hasBody);
  for (const code of ERROR_CODES) {
    if (!codes.has(code)) continue;
    const httpStatus = String(httpStatusForErrorCode(code));
    const description = ERROR_DESCRIPTIONS[code] ?? code;
    const existing = responses[httpStatus] as { description: string } | undefined;
    responses[httpStatus] = errorRef(existing ? `${existing.description}; ${description}` : description);
  }
  if (route.auth === 'admin') responses['403'] = errorRef('Admin role required');
  for (const [code, description] of Object.entries(route.errorDescriptions ?? {})) responses[code] = errorRef(description);
  responses.default = errorRef('Error');

  const operation: Record<string, unknown> = {
    operationId: operationId(route),
    summary: route.summary,
    tags: [route.path.split('/').filter(Boolean)[1] ?? 'default'],
    security: route.auth === 'public' ? [] : [{ bearerAuth: [] }],
    'x-sentinel-auth': route.auth,
  };
  const parameters = parametersOf(route);
  if (parameters.length > 0) operation.parameters = parameters;
  if (hasBody) {
    const schema = route.schemas?.body ?? {};
    operation.requestBody = {
      required: route.schemas?.body !== undefined,
      ...(route.maxBodyBytes === undefined ? {} : { description: `At most ${route.maxBodyBytes} bytes.` }),
      content: Object.fromEntries((formats.length > 0 ? formats : (['json'] as BodyFormat[])).map((f) => [MEDIA_TYPES[f], { schema }])),
    };
    if (route.maxBodyBytes !== undefined) operation['x-max-body-bytes'] = route.maxBodyBytes;
  }
  operation.responses = responses;
  return operation;
}

/** Builds the OpenAPI 3.1 document of a route table. */
export function buildOpenApiDocument(routes: readonly RouteDef[], options: OpenApiOptions = {}): OpenApiDocument {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = toOpenApiPath(route.path);
    (paths[path] ??= {})[route.method.toLowerCase()] = operationOf(route);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: options.title ?? 'SentinelStacks API',
      version: options.version ?? '0.1.0',
      description: 'Run LLM agents the way Docker runs containers. Every route except those with `security: []` needs `Authorization: Bearer <token>` from POST /v1/auth/login.',
    },
    servers: options.servers ?? [{ url: '/', description: 'The server this document came from' }],
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Error: ERROR_SCHEMA },
    },
  };
}

/**
 * `GET /v1/openapi.json` (public). `routes` is called once, on the first request (the table
 * includes this route, so it cannot be passed in while being built); the document is then kept.
 */
export function openapiRoutes(deps: { routes: () => readonly RouteDef[] } & OpenApiOptions): RouteDef[] {
  let document: OpenApiDocument | undefined;
  let lastServed: { url: string; document: OpenApiDocument } | undefined;
  return [
    {
      method: 'GET',
      path: '/v1/openapi.json',
      auth: 'public',
      summary: 'This API as an OpenAPI 3.1 document',
      schemas: { response: { type: 'object' } },
      handler: (_input, ctx) => {
        document ??= buildOpenApiDocument(deps.routes(), { title: deps.title, version: deps.version, ...(deps.servers ? { servers: deps.servers } : {}) });
        // The URL the client used comes first, so tools that take servers[0] call this server.
        const url = `${ctx.origin.secure ? 'https' : 'http'}://${ctx.origin.host}`;
        // One document per origin would let Host headers grow memory; the last one is kept (clients rarely change host).
        if (lastServed?.url !== url) {
          const here = { url, description: 'This server, as the request addressed it' };
          lastServed = { url, document: { ...document, servers: [here, ...(document.servers as unknown[])] } };
        }
        return lastServed.document;
      },
    },
  ];
}
