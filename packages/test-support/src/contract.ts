/**
 * The OpenAPI contract checker: every HTTP response a spec sees from a SentinelStacks server is
 * checked against the OpenAPI document that very server publishes (`GET /v1/openapi.json`), so
 * the document cannot drift from what the server really sends. It is an undici interceptor on
 * the global dispatcher, which serves undici's `request` and Node's global `fetch` alike; the
 * vitest setup file (contract-setup.ts) installs it and fails a test that saw a violation.
 *
 * Checked for each response to a `/v1/...` path: the operation exists (else the answer must be
 * the document's NoRoute 404 or MethodNotAllowed 405), its status is declared (no `default`
 * fallback), its content type is declared for that status, a JSON body validates against the
 * schema (compiled once per document with ajv 2020), and each complete item of an NDJSON or SSE
 * stream validates against the stream's item schema. Paths outside `/v1/` (a host's own routes,
 * the `/v2` registry) are not the document's and are ignored, as are origins that publish no
 * document (transport fixtures with route tables of their own).
 */
import { createHash } from 'node:crypto';
import { Agent, type Dispatcher } from 'undici';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS: its default export is the plugin itself under Node, `.default` under some loaders.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => void;

type Json = Record<string, unknown>;
type MediaType = { schema?: Json };
type ResponseObject = { $ref?: string; content?: Record<string, MediaType> };
type Operation = { responses: Record<string, ResponseObject> };
type OpenApiDocument = { paths: Record<string, Record<string, Operation>>; components?: { schemas?: Record<string, Json>; responses?: Record<string, ResponseObject> } };

export interface ContractViolation {
  method: string;
  url: string;
  status: number;
  contentType: string | undefined;
  /** The first 2000 characters of the body. */
  body: string;
  problem: string;
}

/** What one response looked like on the wire. */
export interface ObservedResponse {
  method: string;
  url: URL;
  status: number;
  contentType: string | undefined;
  body: Buffer;
  /** True when the body arrived whole (false: the client or the server cut the stream). */
  complete: boolean;
}

interface PathTemplate {
  segments: Array<{ literal: string } | { param: string }>;
  operations: Record<string, Operation>;
  params: number;
}

const STREAM_TYPES = new Set(['application/x-ndjson', 'text/event-stream']);

function mediaTypeOf(contentType: string | undefined): string | undefined {
  return contentType?.split(';')[0]?.trim().toLowerCase() || undefined;
}

/** A document compiled for checking: path templates, and a validator per schema, compiled on first use. */
export class CompiledContract {
  readonly #doc: OpenApiDocument;
  readonly #templates: PathTemplate[];
  readonly #ajv: Ajv2020;
  readonly #validators = new Map<Json, ValidateFunction>();

  constructor(doc: OpenApiDocument) {
    this.#doc = doc;
    this.#templates = Object.entries(doc.paths).map(([path, operations]) => {
      const segments = path
        .slice(1)
        .split('/')
        .map((s) => (s.startsWith('{') && s.endsWith('}') ? { param: s.slice(1, -1) } : { literal: s }));
      return { segments, operations, params: segments.filter((s) => 'param' in s).length };
    });
    // The router prefers literal segments: so does the matcher (fewest parameters first).
    this.#templates.sort((a, b) => a.params - b.params);
    this.#ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    addFormats(this.#ajv);
    this.#ajv.addSchema({ $id: 'sentinel-openapi', $defs: doc.components?.schemas ?? {} });
  }

  #validator(schema: Json): ValidateFunction {
    let validate = this.#validators.get(schema);
    if (!validate) {
      // Refs into the document's components become refs into the schema registered above.
      const text = JSON.stringify(schema).replace(/"#\/components\/schemas\//g, '"sentinel-openapi#/$defs/');
      validate = this.#ajv.compile(JSON.parse(text) as Json);
      this.#validators.set(schema, validate);
    }
    return validate;
  }

  #resolve(response: ResponseObject): ResponseObject {
    const ref = response.$ref?.replace('#/components/responses/', '');
    return ref === undefined ? response : (this.#doc.components?.responses?.[ref] ?? {});
  }

  /** The operations of the most specific template matching `pathname` (raw, percent-encoded). */
  #match(pathname: string): PathTemplate[] {
    const segments = pathname.slice(1).split('/');
    let decoded: string[];
    try {
      decoded = segments.map((s) => decodeURIComponent(s));
    } catch {
      decoded = segments;
    }
    return this.#templates.filter(
      (t) => t.segments.length === decoded.length && t.segments.every((s, i) => ('literal' in s ? s.literal === decoded[i] : decoded[i] !== '')),
    );
  }

  /** Problems of one response, or an empty list. */
  check(observed: ObservedResponse): string[] {
    const method = observed.method.toUpperCase();
    // CORS preflights and OPTIONS are the transport's, answered for every path (Allow).
    if (method === 'OPTIONS') return [];
    const wanted = method === 'HEAD' ? 'get' : method.toLowerCase();
    const matches = this.#match(observed.url.pathname);
    const operation = matches.map((t) => t.operations[wanted]).find((o) => o !== undefined);
    let response: ResponseObject | undefined;
    let where: string;
    if (operation) {
      response = operation.responses[String(observed.status)];
      where = `${wanted.toUpperCase()} ${observed.url.pathname}`;
      if (!response) return [`status ${observed.status} is not declared for this operation (declared: ${Object.keys(operation.responses).join(', ')})`];
    } else {
      let expected = matches.length > 0 ? 'MethodNotAllowed' : 'NoRoute';
      const expectedStatus = matches.length > 0 ? 405 : 404;
      // A malformed path is refused before routing, with a declared 400 of its own.
      if (observed.status === 400 && matches.length === 0) expected = 'InvalidPath';
      else if (observed.status !== expectedStatus) return [`no operation for ${method} ${observed.url.pathname}: expected the ${expected} ${expectedStatus}, got ${observed.status}`];
      where = `${expected} for ${observed.url.pathname}`;
      response = this.#doc.components?.responses?.[expected];
      if (!response) return [`the document declares no ${expected} response`];
    }
    response = this.#resolve(response);
    const mediaType = mediaTypeOf(observed.contentType);
    const empty = observed.body.length === 0;
    if (mediaType === undefined) {
      if (!empty) return [`${where}: a body without a Content-Type`];
      // 204, 304, HEAD: nothing to check beyond the status.
      return [];
    }
    const declared = response.content?.[mediaType];
    if (!declared) return [`${where}: content type ${mediaType} is not declared for ${observed.status} (declared: ${Object.keys(response.content ?? {}).join(', ') || 'none'})`];
    if (method === 'HEAD' || !declared.schema) return [];
    const validate = this.#validator(declared.schema);
    const problems: string[] = [];
    const checkItem = (what: string, text: string) => {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        problems.push(`${what}: not JSON`);
        return;
      }
      if (!validate(value)) problems.push(`${what}: ${this.#ajv.errorsText(validate.errors, { separator: '; ' })}`);
    };
    const text = observed.body.toString('utf8');
    if (!STREAM_TYPES.has(mediaType)) {
      if (observed.complete) checkItem(`${where} ${observed.status} body`, text);
      return problems;
    }
    if (mediaType === 'application/x-ndjson') {
      const lines = text.split('\n');
      // The last piece is incomplete unless the body ended with a newline (then it is '').
      lines.pop();
      lines.forEach((line, i) => {
        if (line.trim() !== '') checkItem(`${where} NDJSON line ${i + 1}`, line);
      });
      return problems;
    }
    const events = text.split(/\r?\n\r?\n/);
    events.pop();
    events.forEach((event, i) => {
      const data = event
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''));
      if (data.length > 0) checkItem(`${where} SSE event ${i + 1}`, data.join('\n'));
    });
    return problems;
  }
}

const compiledByDigest = new Map<string, CompiledContract>();

/** Compiles a document, reusing the compilation of an identical one (servers aside). */
export function compileContract(doc: OpenApiDocument): CompiledContract {
  const digest = createHash('sha256').update(JSON.stringify({ paths: doc.paths, components: doc.components })).digest('hex');
  let compiled = compiledByDigest.get(digest);
  if (!compiled) {
    compiled = new CompiledContract(doc);
    compiledByDigest.set(digest, compiled);
  }
  return compiled;
}

export interface ContractRecorder {
  /** Responses checked against a document. */
  checked: number;
  violations: ContractViolation[];
  /** Checks still running (a document being fetched): await them before reading violations. */
  pending: Set<Promise<void>>;
  /** False: the interceptor passes everything through unchecked. */
  active: boolean;
  /** Documents by origin; null: the origin publishes none. */
  documents: Map<string, Promise<CompiledContract | null>>;
}

export function createRecorder(): ContractRecorder {
  return { checked: 0, violations: [], pending: new Set(), active: false, documents: new Map() };
}

/** A plain agent, outside the interceptor, for fetching the documents themselves. */
let documentAgent: Agent | undefined;

/** Closes the agent that fetched the documents (a test file's end). */
export async function closeDocumentAgent(): Promise<void> {
  const agent = documentAgent;
  documentAgent = undefined;
  await agent?.close();
}

async function loadDocument(origin: string): Promise<CompiledContract | null> {
  documentAgent ??= new Agent();
  const res = await documentAgent.request({ origin, path: '/v1/openapi.json', method: 'GET', headers: { accept: 'application/json' } });
  if (res.statusCode === 404) {
    await res.body.dump();
    return null;
  }
  if (res.statusCode !== 200) throw new Error(`GET ${origin}/v1/openapi.json answered ${res.statusCode}: ${await res.body.text()}`);
  return compileContract((await res.body.json()) as OpenApiDocument);
}

function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

const MAX_KEPT_BODY = 8 * 1024 * 1024;

/** The undici interceptor recording every `/v1` response's violations in `recorder`. */
export function contractInterceptor(recorder: ContractRecorder): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const origin = opts.origin === undefined ? undefined : new URL(String(opts.origin)).origin;
    const url = origin === undefined ? undefined : new URL(opts.path, origin);
    if (!recorder.active || origin === undefined || url === undefined || !url.pathname.startsWith('/v1/') || opts.upgrade) return dispatch(opts, handler);
    let contract = recorder.documents.get(origin);
    if (!contract) {
      contract = loadDocument(origin);
      // Rejections are reported when a response is checked; never unhandled.
      contract.catch(() => undefined);
      recorder.documents.set(origin, contract);
    }
    const documentOf = contract;
    const method = opts.method;
    let status = 0;
    let contentType: string | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (complete: boolean) => {
      if (done || status === 0) return;
      done = true;
      const observed: ObservedResponse = { method, url, status, contentType, body: Buffer.concat(chunks), complete };
      const check = documentOf.then(
        (compiled) => {
          if (compiled === null) return;
          recorder.checked++;
          for (const problem of compiled.check(observed)) {
            recorder.violations.push({ method, url: url.href, status, contentType, body: observed.body.toString('utf8').slice(0, 2000), problem });
          }
        },
        (err: unknown) => {
          recorder.violations.push({ method, url: url.href, status, contentType, body: '', problem: `cannot load the OpenAPI document: ${err instanceof Error ? err.message : String(err)}` });
        },
      );
      recorder.pending.add(check);
      void check.finally(() => recorder.pending.delete(check));
    };
    const h = handler as Dispatcher.DispatchHandler;
    const wrapped: Dispatcher.DispatchHandler = {
      onRequestStart: (controller, context) => h.onRequestStart?.(controller, context),
      onRequestUpgrade: (controller, statusCode, headers, socket) => h.onRequestUpgrade?.(controller, statusCode, headers, socket),
      onResponseStart: (controller, statusCode, headers, statusMessage) => {
        status = statusCode;
        contentType = headerValue(headers as Record<string, string | string[] | undefined>, 'content-type');
        return h.onResponseStart?.(controller, statusCode, headers, statusMessage);
      },
      onResponseData: (controller, chunk) => {
        if (size < MAX_KEPT_BODY) {
          chunks.push(chunk);
          size += chunk.length;
        }
        return h.onResponseData?.(controller, chunk);
      },
      onResponseEnd: (controller, trailers) => {
        finish(true);
        return h.onResponseEnd?.(controller, trailers);
      },
      onResponseError: (controller, err) => {
        finish(false);
        return h.onResponseError?.(controller, err);
      },
    };
    return dispatch(opts, wrapped);
  };
}

/** One readable paragraph per violation, for a failing test. */
export function formatViolations(violations: readonly ContractViolation[]): string {
  return violations
    .map((v) => `${v.method} ${v.url} → ${v.status} ${v.contentType ?? '(no content type)'}\n  ${v.problem}\n  body: ${v.body || '(empty)'}`)
    .join('\n\n');
}
