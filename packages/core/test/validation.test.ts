import { describe, expect, it } from 'vitest';
import { compileValidator, isSentinelError } from '@sentinel/api-core';

describe('compileValidator', () => {
  it('lists every issue, names unknown fields and keeps the value on success', () => {
    const v = compileValidator({ type: 'object', properties: { a: { type: 'string' } }, required: ['a'], additionalProperties: false }, 'body');
    expect(v({ a: 'x' })).toEqual({ a: 'x' });
    try {
      v({ b: 1 });
      expect.unreachable();
    } catch (err) {
      expect(isSentinelError(err)).toBe(true);
      expect((err as Error).message).toContain('unknown field "b"');
      expect((err as Error).message).toContain('"a" is required');
    }
  });
});
