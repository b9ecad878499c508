/**
 * The OpenAPI 3.1 document, generated from the route table: the table is the single source
 * of paths, methods, auth and schemas (docs/ARCHITECTURE.md#the-seam), so the document cannot drift from what
 * the server really accepts.
 */
import { bodyFormatsOf } from '../api.js';
import { ERROR_CATALOGUE } from '../contract/error-catalogue.js';
import { ERROR_CODES, httpStatusForErrorCode, type ErrorCode } from '../contract/errors.js';
import { SCOPES, SCOPE_DESCRIPTIONS } from '../contract/scopes.js';
import { COMPONENT_NAME, type BodyFormat, type JsonSchema, type RouteDef, type RouteHeaderDoc, type RouteSuccessDoc } from '../contract/route.js';

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

/**
 * The body of every error response and of a stream's final error item. `code` is the one code
 * list of core (contract/errors.ts); `docs` points at the code's entry in the error catalogue.
 */
export const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    error: { type: 'string', description: 'Human-readable message' },
    code: { type: 'string', enum: [...ERROR_CODES], description: 'Machine-readable code; the HTTP status follows from it' },
    details: { description: 'Extra machine-readable detail, e.g. validation issues (`{issues: [{path, message}]}`)' },
    docs: { type: 'string', description: 'Where the code is explained (relative URL of its entry in the error catalogue)' },
  },
  required: ['error', 'code', 'docs'],
  additionalProperties: false,
  examples: [{ error: 'agent "helper" not found', code: 'not_found', docs: '/docs/errors#not_found' }],
};

const ERROR_REF = '#/components/schemas/Error';

/** An error response whose `code` is one of `codes` (those that map to its status). */
function errorResponse(description: string, codes: readonly ErrorCode[], headers?: Record<string, unknown>): Record<string, unknown> {
  const schema = { $ref: ERROR_REF, properties: { code: { enum: [...codes] } } };
  return { description, ...(headers ? { headers } : {}), content: { 'application/json': { schema } } };
}

const STREAM_MEDIA_TYPES = { ndjson: 'application/x-ndjson', sse: 'text/event-stream' } as const;

/** What each error status means, from the error catalogue (the one place codes are explained). */
const describeCode = (code: ErrorCode): string => ERROR_CATALOGUE[code].meaning;

/** Headers some error statuses carry. */
const ERROR_HEADERS: Partial<Record<string, Record<string, unknown>>> = {
  '401': { 'WWW-Authenticate': { description: 'Always `Bearer`', schema: { type: 'string' } } },
  '403': { 'WWW-Authenticate': { description: 'With `insufficient_scope` only: `Bearer error="insufficient_scope", scope="<the scope>"` (RFC 6750 §3)', schema: { type: 'string' } } },
  '405': { Allow: { description: 'The methods the path has', schema: { type: 'string' } } },
  '429': { 'Retry-After': { description: 'Seconds to wait before trying again', schema: { type: 'integer', minimum: 0 } } },
};

/** The error codes a route can answer, from its shape plus its declared extra ones. */
function errorCodesOf(route: RouteDef, hasBody: boolean): Set<ErrorCode> {
  const codes = new Set<ErrorCode>(route.errors ?? []);
  if (route.schemas?.params || route.schemas?.query || hasBody) codes.add('invalid_request');
  if (route.auth !== 'public') codes.add('unauthorized');
  if (route.auth === 'admin') codes.add('forbidden');
  if (route.scope !== undefined || route.credentials === 'session') codes.add('insufficient_scope');
  if (route.path.includes('/:')) codes.add('not_found');
  if (hasBody) {
    codes.add('payload_too_large');
    codes.add('unsupported_media_type');
  }
  // Every route but the probes takes a unit from a rate-limit bucket (auth/rate-limit.ts).
  if (route.rateClass !== 'none') codes.add('rate_limited');
  // Liveness touches nothing; everything else can meet a closed or unreachable store.
  if (route.path !== '/v1/health') codes.add('unavailable');
  codes.add('internal');
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

const ETAG_HEADER = { ETag: { description: 'Strong entity tag of the body; send it back in If-None-Match', schema: { type: 'string' } } };

/** The schema of one streamed item: the route's item, or the error item a failed stream ends with. */
function streamItemSchema(route: RouteDef, description: string): JsonSchema {
  return { description, anyOf: [route.streamItem ?? { type: 'object' }, { $ref: ERROR_REF }] };
}

function successResponse(route: RouteDef, status: number, kinds?: RouteSuccessDoc['content'], description?: string, headers?: RouteHeaderDoc[]): Record<string, unknown> {
  const response = route.schemas?.response;
  const content: Record<string, unknown> = {};
  if (response && (kinds === undefined || kinds.includes('json'))) {
    content['application/json'] = { schema: response, ...(route.examples?.response === undefined ? {} : { example: route.examples.response }) };
  }
  for (const kind of kinds?.filter((k) => k !== 'json') ?? route.streams ?? []) {
    const description =
      kind === 'sse'
        ? 'Server-Sent Events: `id:` (seq), `event:` (type, `error` for the final error item), `data:` one JSON object of this schema; `: ping` comments keep the connection open'
        : 'One JSON object of this schema per line; a stream that fails ends with an Error line';
    content[STREAM_MEDIA_TYPES[kind]] = { schema: streamItemSchema(route, description) };
  }
  const headerObjects: Record<string, unknown> = { ...(route.etag ? ETAG_HEADER : {}) };
  for (const header of headers ?? []) headerObjects[header.name] = { description: header.description, schema: header.schema };
  return {
    description: description ?? (status === 204 ? 'No content' : route.summary),
    ...(Object.keys(headerObjects).length > 0 ? { headers: headerObjects } : {}),
    ...(Object.keys(content).length > 0 ? { content } : {}),
  };
}

function operationOf(route: RouteDef): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  if (route.successResponses === undefined) responses[String(successStatus(route))] = successResponse(route, successStatus(route));
  for (const answer of route.successResponses ?? []) responses[String(answer.status)] = successResponse(route, answer.status, answer.content, answer.description, answer.headers);
  if (route.etag) responses['304'] = { description: 'Not modified: If-None-Match named the current ETag', headers: ETAG_HEADER };
  const formats = bodyFormatsOf(route);
  const hasBody = route.schemas?.body !== undefined || formats.length > 0;
  const byStatus = new Map<string, ErrorCode[]>();
  const codes = errorCodesOf(route, hasBody);
  for (const code of ERROR_CODES) {
    if (!codes.has(code)) continue;
    const httpStatus = String(httpStatusForErrorCode(code));
    byStatus.set(httpStatus, [...(byStatus.get(httpStatus) ?? []), code]);
  }
  for (const [httpStatus, codes] of byStatus) {
    const described = route.errorDescriptions?.[Number(httpStatus)] ?? (route.auth === 'admin' && httpStatus === '403' ? 'Admin role required' : codes.map(describeCode).join(' '));
    responses[httpStatus] = errorResponse(described, codes, ERROR_HEADERS[httpStatus]);
  }

  const operation: Record<string, unknown> = {
    operationId: operationId(route),
    summary: route.summary,
    tags: [route.path.split('/').filter(Boolean)[1] ?? 'default'],
    // OpenAPI 3.1 lets a bearer requirement list role names: ours are the route's scope.
    security: route.auth === 'public' ? [] : [{ bearerAuth: route.scope === undefined ? [] : [route.scope] }],
    'x-sentinel-auth': route.auth,
  };
  if (route.scope !== undefined) operation['x-sentinel-scope'] = route.scope;
  if (route.credentials === 'session') operation['x-sentinel-credentials'] = 'session';
  // docs/VERSIONING.md: the route still works; its responses carry Deprecation (and Sunset).
  if (route.deprecated !== undefined) operation.deprecated = true;
  const parameters = parametersOf(route);
  // The HTTP transport reads Last-Event-ID as `since` where `since` is a sequence number (an integer).
  if ((route.schemas?.query?.properties as Record<string, { type?: unknown }> | undefined)?.since?.type === 'integer') {
    parameters.push({ name: 'Last-Event-ID', in: 'header', required: false, description: 'Resume after this seq (used when the query has no since), as EventSource sends it', schema: { type: 'string' } });
  }
  for (const header of route.requestHeaders ?? []) parameters.push({ name: header.name, in: 'header', required: false, description: header.description, schema: header.schema });
  if (route.etag) parameters.push({ name: 'If-None-Match', in: 'header', required: false, description: 'An ETag of an earlier answer: 304 when it is still current', schema: { type: 'string' } });
  if (parameters.length > 0) operation.parameters = parameters;
  if (hasBody) {
    const schema = route.schemas?.body ?? { type: 'object', maxProperties: 0, description: 'No fields; the body may be left out' };
    const example = route.examples?.body === undefined ? {} : { example: route.examples.body };
    operation.requestBody = {
      required: route.schemas?.body !== undefined,
      ...(route.maxBodyBytes === undefined ? {} : { description: `At most ${route.maxBodyBytes} bytes.` }),
      content: Object.fromEntries((formats.length > 0 ? formats : (['json'] as BodyFormat[])).map((f) => [MEDIA_TYPES[f], { schema, ...example }])),
    };
    if (route.maxBodyBytes !== undefined) operation['x-max-body-bytes'] = route.maxBodyBytes;
  }
  operation.responses = responses;
  return operation;
}

/**
 * A copy of `value` in which every schema marked with {@link COMPONENT_NAME} is replaced by a
 * `$ref` to its entry in `components` (filled here). Two different schemas under one name are
 * a bug in the route table.
 */
function hoistComponents(value: unknown, components: Record<string, JsonSchema>, seen: Map<string, unknown>): unknown {
  if (Array.isArray(value)) return value.map((item) => hoistComponents(item, components, seen));
  if (typeof value !== 'object' || value === null) return value;
  const record = value as Record<string, unknown>;
  const name = record[COMPONENT_NAME];
  if (typeof name === 'string') {
    const known = seen.get(name);
    if (known === undefined) {
      seen.set(name, value);
      const { [COMPONENT_NAME]: _marker, ...schema } = record;
      components[name] = hoistComponents(schema, components, seen) as JsonSchema;
    } else if (known !== value) {
      throw new Error(`two different schemas are named ${name} in the OpenAPI document`);
    }
    return { $ref: `#/components/schemas/${name}` };
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(record)) out[key] = hoistComponents(record[key], components, seen);
  return out;
}

/** Builds the OpenAPI 3.1 document of a route table. */
export function buildOpenApiDocument(routes: readonly RouteDef[], options: OpenApiOptions = {}): OpenApiDocument {
  const operations: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = toOpenApiPath(route.path);
    (operations[path] ??= {})[route.method.toLowerCase()] = operationOf(route);
  }
  const named: Record<string, JsonSchema> = {};
  const paths = hoistComponents(operations, named, new Map()) as Record<string, Record<string, unknown>>;
  return {
    openapi: '3.1.0',
    info: {
      title: options.title ?? 'SentinelStacks API',
      version: options.version ?? '0.1.0',
      description:
        'Run LLM agents the way Docker runs containers. Every route except those with `security: []` needs `Authorization: Bearer <token>` from POST /v1/auth/login. ' +
        'Every error is `{error, code, details?, docs?}` (the Error schema) with the status its code maps to; a /v1 path no route has answers the NoRoute 404, ' +
        'a method the path lacks the MethodNotAllowed 405 (components.responses).',
    },
    servers: options.servers ?? [{ url: '/', description: 'The server this document came from' }],
    paths,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description:
            'A login token (JWT from POST /v1/auth/login), an API key (`sk_sentinel_…` from POST /v1/keys) or, when the server is configured for it, an OpenID Connect access token. ' +
            'A route\'s requirement lists the scope it needs (x-sentinel-scope); login sessions hold every scope of their role. Scopes: ' +
            SCOPES.map((scope) => `\`${scope}\` (${SCOPE_DESCRIPTIONS[scope]})`).join(', ') +
            '.',
        },
      },
      schemas: { Error: ERROR_SCHEMA, ...named },
      responses: {
        // What the transport answers for a /v1 path no route has, or a method the path lacks.
        NoRoute: errorResponse('No route has this path', ['not_found']),
        InvalidPath: errorResponse('The path is malformed (bad percent-encoding), refused before routing', ['invalid_request']),
        MethodNotAllowed: errorResponse(describeCode('method_not_allowed'), ['method_not_allowed'], ERROR_HEADERS['405']),
      },
    },
  };
}

/** The outline of an OpenAPI 3.1 document (the full meta-schema is the parser's to check). */
const OPENAPI_DOCUMENT_SCHEMA: JsonSchema = {
  type: 'object',
  properties: { openapi: { type: 'string', pattern: '^3\\.1\\.' }, info: { type: 'object' }, servers: { type: 'array' }, paths: { type: 'object' }, components: { type: 'object' } },
  required: ['openapi', 'info', 'paths'],
};

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
      schemas: { response: OPENAPI_DOCUMENT_SCHEMA },
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
