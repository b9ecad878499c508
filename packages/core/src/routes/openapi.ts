/**
 * The OpenAPI 3.1 document, generated from the route table: the table is the single source
 * of paths, methods, auth and schemas (DESIGN.md §3), so the document cannot drift from what
 * the server really accepts.
 */
import { bodyFormatsOf } from '../api.js';
import type { BodyFormat, JsonSchema, RouteDef } from './types.js';

export interface OpenApiOptions {
  /** Default 'SentinelStacks API'. */
  title?: string;
  /** API version in `info.version`. Default '0.1.0'. */
  version?: string;
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
  const responses: Record<string, unknown> = {
    [String(status)]: response
      ? { description: route.summary, content: { 'application/json': { schema: response } } }
      : { description: status === 204 ? 'No content' : route.summary },
  };
  if (route.schemas?.params || route.schemas?.query || route.schemas?.body) responses['400'] = errorRef('Invalid request');
  if (route.auth !== 'public') responses['401'] = errorRef('Missing or invalid bearer token');
  if (route.auth === 'admin') responses['403'] = errorRef('Admin role required');
  for (const [code, description] of Object.entries(route.errors ?? {})) responses[code] = errorRef(description);
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
  const formats = bodyFormatsOf(route);
  if (route.schemas?.body || formats.length > 0) {
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
  return [
    {
      method: 'GET',
      path: '/v1/openapi.json',
      auth: 'public',
      summary: 'This API as an OpenAPI 3.1 document',
      schemas: { response: { type: 'object' } },
      handler: () => (document ??= buildOpenApiDocument(deps.routes(), { title: deps.title, version: deps.version })),
    },
  ];
}
