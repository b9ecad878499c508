/**
 * The edge of the run routes that needs no server: the Idempotency-Key grammar
 * (draft-ietf-httpapi-idempotency-key-header: an sf-string, or a bare token), what makes two
 * requests with one key the same request, the frame type read off a journaled frame, and what
 * the OpenAPI document says about starting a run (202 or 200, Location, Idempotency-Replayed,
 * the Idempotency-Key parameter, SSE items). The routes against a real server, on every host and
 * both stores: packages/http/test/runs-rest.test.ts.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildOpenApiDocument, SentinelError } from '@sentinel/api-core';
import { compileValidator } from '../src/contract/validation.js';
import { RUN_EXAMPLE, RUN_SCHEMA } from '../src/runs/schema.js';
import { messageRequestHash } from '../src/runs/service.js';
import { frameTypeOf, parseIdempotencyKey, runRequestHash, runRoutes, type RunRoutesService } from '../src/routes/runs.js';

describe('parseIdempotencyKey', () => {
  it('takes a quoted sf-string (escapes decoded) or a bare token, and nothing when the header is absent', () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
    expect(parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"')).toBe('8e03978e-40d5-43e8-bc93-6894a57f9324');
    expect(parseIdempotencyKey('  "with spaces inside"  ')).toBe('with spaces inside');
    expect(parseIdempotencyKey('"a \\"quoted\\" \\\\ key"')).toBe('a "quoted" \\ key');
    expect(parseIdempotencyKey('order-42')).toBe('order-42');
    expect(parseIdempotencyKey('urn:uuid:1/2.3_4~5')).toBe('urn:uuid:1/2.3_4~5');
    expect(parseIdempotencyKey(`"${'k'.repeat(255)}"`)).toHaveLength(255);
  });

  it('refuses (invalid_request) what is neither, an empty key, a longer one than 255 characters and a repeated header', () => {
    const refused = (header: string) => {
      try {
        parseIdempotencyKey(header);
      } catch (err) {
        expect(err).toBeInstanceOf(SentinelError);
        expect((err as SentinelError).code).toBe('invalid_request');
        return (err as SentinelError).message;
      }
      throw new Error(`accepted ${header}`);
    };
    for (const header of ['"unterminated', 'two words', '"bad \\x escape"', '"tab\tinside"', '"ünïcode"', 'a, b', '"a", "b"', '']) {
      expect(refused(header), header).toMatch(/^Idempotency-Key must be a quoted string/);
    }
    expect(refused('""')).toBe('Idempotency-Key must not be empty');
    expect(refused(`"${'k'.repeat(256)}"`)).toBe('Idempotency-Key must be at most 255 characters (got 256)');
    expect(refused('k'.repeat(300))).toBe('Idempotency-Key must be at most 255 characters (got 300)');
  });
});

describe('runRequestHash', () => {
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

  it('is the sha256 of the canonical JSON of content, webhook and (with an Idempotency-Key) message_id; stream does not change it', () => {
    const keyed = { keyed: true };
    const base = runRequestHash({ content: 'hi' }, keyed);
    expect(base).toBe(sha256('{"content":"hi"}'));
    expect(runRequestHash({ content: 'hi', stream: true } as { content: string }, keyed)).toBe(base);
    expect(runRequestHash({ content: 'hi!' }, keyed)).not.toBe(base);
    expect(runRequestHash({ content: 'hi', message_id: 'm1' }, keyed)).toBe(sha256('{"content":"hi","message_id":"m1"}'));
    expect(runRequestHash({ content: 'hi', webhook: 'https://example.com/' }, keyed)).toBe(sha256('{"content":"hi","webhook":"https://example.com/"}'));
    // Field order in the request does not matter; the canonical form fixes it.
    expect(runRequestHash({ webhook: 'https://example.com/', content: 'hi', message_id: 'm1' } as never, keyed)).toBe(
      sha256('{"content":"hi","message_id":"m1","webhook":"https://example.com/"}'),
    );
  });

  it('leaves message_id out when it is the key itself, so a chat message retried over REST hashes the same as on the socket', () => {
    expect(runRequestHash({ content: 'hi', message_id: 'm1' }, { keyed: false })).toBe(messageRequestHash('hi'));
  });
});

describe('frameTypeOf', () => {
  it('reads the type off the front of a frame, parsing only frames written in another order', () => {
    expect(frameTypeOf('{"type":"stream_chunk","content":"x","seq":3}')).toBe('stream_chunk');
    expect(frameTypeOf('{"seq":3,"type":"stream_end"}')).toBe('stream_end');
    expect(frameTypeOf('{"seq":3}')).toBe('message');
  });
});

describe('the document of the run routes', () => {
  const unused = () => Promise.reject(new Error('not called'));
  const service: RunRoutesService = { create: unused, get: unused, list: unused, wait: unused, cancel: unused, subscribe: unused };
  const doc = buildOpenApiDocument(runRoutes({ runs: service })) as { paths: Record<string, Record<string, any>>; components: { schemas: Record<string, Record<string, unknown>> } };

  it('declares POST …/runs as 202 (JSON, Location) or 200 (JSON or SSE, Location, Idempotency-Replayed), with the Idempotency-Key header', () => {
    const op = doc.paths['/v1/agents/{id}/runs']?.post;
    expect(Object.keys(op.responses).filter((s: string) => s.startsWith('2'))).toEqual(['200', '202']);
    expect(Object.keys(op.responses['202'].content)).toEqual(['application/json']);
    expect(Object.keys(op.responses['202'].headers)).toEqual(['Location']);
    expect(Object.keys(op.responses['200'].content)).toEqual(['application/json', 'text/event-stream']);
    expect(Object.keys(op.responses['200'].headers)).toEqual(['Location', 'Idempotency-Replayed']);
    expect(op.parameters).toContainEqual(expect.objectContaining({ name: 'Idempotency-Key', in: 'header', required: false }));
    expect(op['x-sentinel-scope']).toBe('agents:chat');
    // 409 covers both conflicts: the agent's state and a key reused with another body.
    expect(op.responses['409'].content['application/json'].schema.properties.code.enum).toEqual(['conflict', 'idempotency_conflict']);
    expect(op.responses['429']).toBeDefined();
  });

  it('names the run and its frames once, under components, and refers to them everywhere', () => {
    const components = doc.components.schemas;
    expect(Object.keys(components).sort()).toEqual(['Error', 'Run', 'RunFrame']);
    expect(components.Run).toMatchObject({ type: 'object', required: expect.arrayContaining(['id', 'status', 'last_seq']) });
    expect(JSON.stringify(doc)).not.toContain('x-sentinel-component');
    const post = doc.paths['/v1/agents/{id}/runs']?.post;
    expect(post.responses['202'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Run' });
    expect(doc.paths['/v1/agents/{id}/runs']?.get.responses['200'].content['application/json'].schema.properties.runs.items).toEqual({ $ref: '#/components/schemas/Run' });
    expect(post.responses['200'].content['text/event-stream'].schema.anyOf[0]).toEqual({ $ref: '#/components/schemas/RunFrame' });
  });

  it('has a Run schema the core validator compiles (marker and all) and its example passes', () => {
    const validate = compileValidator(RUN_SCHEMA, 'run');
    expect(validate(RUN_EXAMPLE)).toEqual(RUN_EXAMPLE);
    expect(() => validate({ ...RUN_EXAMPLE, status: 'done' })).toThrow(/status/);
  });

  it('declares the stream route as SSE only, resumable with Last-Event-ID', () => {
    const op = doc.paths['/v1/agents/{id}/runs/{run}/stream']?.get;
    expect(Object.keys(op.responses['200'].content)).toEqual(['text/event-stream']);
    expect(op.parameters).toContainEqual(expect.objectContaining({ name: 'Last-Event-ID', in: 'header' }));
    expect(op.parameters).toContainEqual(expect.objectContaining({ name: 'since', in: 'query' }));
  });
});
