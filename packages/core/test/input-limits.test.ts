/**
 * The shared edge checks on their own: the iterative JSON depth/size check and the RFC 3339
 * parser. (The HTTP and WebSocket suites prove they are wired into every route, frame and
 * Sentinelfile.)
 */
import { describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import { checkJsonDepth, compileJsonLimits } from '../src/contract/json-limits.js';
import { parseRfc3339 } from '../src/contract/timestamp.js';

function messageOf(run: () => void): string | undefined {
  try {
    run();
    return undefined;
  } catch (err) {
    expect(isSentinelError(err) && err.code).toBe('invalid_request');
    return (err as Error).message;
  }
}

describe('JSON limits', () => {
  it('walks a million levels without overflowing the stack', () => {
    const value: unknown = JSON.parse('['.repeat(1_000_000) + ']'.repeat(1_000_000));
    expect(messageOf(() => checkJsonDepth(value, 'body'))).toBe('body[0]: nested deeper than 32 levels');
  });

  it('ends a cycle at the depth cap', () => {
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(messageOf(() => checkJsonDepth({ parameters: loop }, 'body'))).toBe('body.parameters: nested deeper than 32 levels');
  });

  it('names the field the schema declares, down to a free-form value', () => {
    const check = compileJsonLimits(
      {
        type: 'object',
        properties: { model: { type: 'object', properties: { parameters: { type: 'object' } } }, list: { type: 'array', items: { type: 'object', properties: { x: { type: 'object' } } } } },
      },
      'body',
    );
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { k: deep };
    expect(messageOf(() => check({ model: { parameters: deep } }))).toBe('body.model.parameters: nested deeper than 32 levels');
    expect(messageOf(() => check({ list: [{ x: deep }] }))).toBe('body.list[0].x: nested deeper than 32 levels');
    expect(messageOf(() => check({ 'odd key': deep }))).toBe('body["odd key"]: nested deeper than 32 levels');
    expect(messageOf(() => check({ model: { parameters: { a: 'x'.repeat(70_000) } } }))).toBe('body.model.parameters: larger than 65536 characters of JSON');
    // Large is fine where the schema declares the content (it caps strings itself); so is 32 deep.
    expect(messageOf(() => check({ model: { name: 'x'.repeat(70_000), parameters: { a: 1 } } }))).toBeUndefined();
    let ok: unknown = 1;
    for (let i = 0; i < 29; i++) ok = { k: ok };
    expect(messageOf(() => check({ model: { parameters: ok } }))).toBeUndefined();
  });
});

describe('parseRfc3339', () => {
  it.each(['2024-02-30T00:00:00Z', '2023-02-29T00:00:00Z', '2024-01-01T25:00:00Z', '2024-13-01T00:00:00Z', '2024-00-10T00:00:00Z', '2024-04-31T00:00:00Z', '2024-01-01T00:60:00Z', '2024-01-01T00:00:60Z', '2024-01-01T00:00:00+24:00', '2024-01-01T00:00:00', '2024-1-01T00:00:00Z', 'yesterday', ''])(
    'refuses %j',
    (value) => {
      expect(parseRfc3339(value)).toBeUndefined();
    },
  );

  it('accepts real instants, with offsets, fractions and leap days', () => {
    expect(parseRfc3339('2024-02-29T00:00:00Z')).toBe(Date.UTC(2024, 1, 29));
    expect(parseRfc3339('2000-02-29T12:30:15.250Z')).toBe(Date.UTC(2000, 1, 29, 12, 30, 15, 250));
    expect(parseRfc3339('2024-01-01T01:00:00+01:00')).toBe(Date.UTC(2024, 0, 1));
    expect(parseRfc3339('2023-12-31t23:00:00-01:00')).toBe(Date.UTC(2024, 0, 1));
    expect(parseRfc3339('0001-01-01T00:00:00Z')).toBe(new Date('0001-01-01T00:00:00Z').getTime());
    expect(parseRfc3339('1900-02-29T00:00:00Z')).toBeUndefined();
    expect(parseRfc3339('2024-03-01')).toBeUndefined();
    expect(parseRfc3339('2024-03-01', { allowDateOnly: true })).toBe(Date.UTC(2024, 2, 1));
  });
});
