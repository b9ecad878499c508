/**
 * The OpenAPI document of the full route table, checked by a real, strict OpenAPI 3.1 parser
 * (@readme/openapi-parser) and by ajv: it is valid, its error codes are core's, every operation
 * describes its success body, and its examples match the schemas they illustrate.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileErrors, validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { createSentinelApi, ERROR_CODES, silentLogger, type SentinelApi } from '@sentinel/api-core';

type MediaType = { schema?: Record<string, unknown>; example?: unknown };
type Operation = {
  requestBody?: { content: Record<string, MediaType> };
  responses: Record<string, { content?: Record<string, MediaType> }>;
};
type Doc = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Record<string, unknown>> } };

let dir: string;
let api: SentinelApi;
let doc: Doc;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-openapi-doc-'));
  api = await createSentinelApi({ dataDir: dir, adminPassword: 'openapi-doc-password' });
  const route = api.routes.find((r) => r.path === '/v1/openapi.json');
  if (!route) throw new Error('no GET /v1/openapi.json');
  const ctx = { principal: null, requestId: 't', signal: new AbortController().signal, log: silentLogger, origin: { secure: false, host: 'localhost:8080' }, remoteAddress: '127.0.0.1' };
  doc = (await api.invoke(route, { params: {}, query: {} }, ctx)).body as Doc;
});

afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

const operations = (): Array<[string, Operation]> =>
  Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]): [string, Operation] => [`${method.toUpperCase()} ${path}`, op]));

describe('the OpenAPI document', () => {
  it('passes @readme/openapi-parser validation with zero errors and zero warnings', async () => {
    // The parser dereferences in place: give it a copy.
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true);
    expect(result.warnings).toEqual([]);
  });

  it("declares the Error schema's code as exactly core's ERROR_CODES, and docs as required (every error body links its catalogue entry)", () => {
    const error = doc.components.schemas.Error as { properties: Record<string, { enum?: string[]; type?: string }>; required: string[] };
    expect(error.properties.code?.enum).toEqual([...ERROR_CODES]);
    expect(error.properties.docs?.type).toBe('string');
    expect(error.required).toEqual(['error', 'code', 'docs']);
  });

  it('describes a body for every success status but 204, and a 500 for every operation', () => {
    for (const [name, op] of operations()) {
      const success = Object.keys(op.responses).filter((s) => s.startsWith('2'));
      // Starting a run answers 202 with the run, or 200 with a replayed run or its stream.
      expect(success, name).toHaveLength(name === 'POST /v1/agents/{id}/runs' ? 2 : 1);
      for (const status of success) if (status !== '204') expect(Object.keys(op.responses[status]?.content ?? {}).length, `${name} ${status}`).toBeGreaterThan(0);
      expect(op.responses['500'], name).toBeDefined();
      expect(op.responses.default, name).toBeUndefined();
    }
  });

  it('has request and success examples on the main routes, each valid against its schema', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema({ $id: 'document', $defs: doc.components.schemas });
    const check = (where: string, media: MediaType) => {
      // Refs point into the document's components (Error, Run, ...): resolve them there.
      const schema = JSON.parse(JSON.stringify(media.schema).replaceAll('"#/components/schemas/', '"document#/$defs/')) as object;
      const ok = ajv.validate(schema, media.example);
      expect(ok, `${where}: ${ajv.errorsText()}`).toBe(true);
    };
    let examples = 0;
    const checkIfExample = (where: string, media: MediaType) => {
      if (media.example === undefined) return;
      examples++;
      check(where, media);
    };
    for (const [name, op] of operations()) {
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) checkIfExample(`${name} body ${type}`, media);
      for (const [status, response] of Object.entries(op.responses)) {
        for (const [type, media] of Object.entries(response.content ?? {})) checkIfExample(`${name} ${status} ${type}`, media);
      }
    }
    for (const main of ['POST /v1/auth/login', 'POST /v1/agents', 'POST /v1/images', 'POST /v1/users']) {
      const op = operations().find(([name]) => name === main)?.[1];
      expect(op?.requestBody?.content['application/json']?.example, main).toBeDefined();
    }
    expect(examples).toBeGreaterThanOrEqual(10);
  });

  it('describes the items of every streamed response', () => {
    let streams = 0;
    for (const [name, op] of operations()) {
      for (const [type, media] of Object.entries(op.responses['200']?.content ?? {})) {
        if (type === 'application/json') continue;
        streams++;
        expect(media.schema, `${name} ${type}`).toMatchObject({ anyOf: [expect.any(Object), { $ref: '#/components/schemas/Error' }] });
      }
    }
    // Logs and events (NDJSON and SSE each), registry push and pull (NDJSON), a run started with stream: true and a run's stream (SSE).
    expect(streams).toBe(8);
  });
});
