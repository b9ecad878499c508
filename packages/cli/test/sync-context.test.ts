// The context manager `sentinel api` registers: a context is active for the synchronous run of
// `with` only, and nothing tracks it across awaits (the core carries it explicitly).
import { createContextKey, ROOT_CONTEXT } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { SyncContextManager } from '../src/tracing.js';

const key = createContextKey('sentinel test');

describe('SyncContextManager', () => {
  it('makes a context active for the synchronous run of with, nested, and restores the previous one, also when fn throws', () => {
    const manager = new SyncContextManager().enable();
    const outer = ROOT_CONTEXT.setValue(key, 'outer');
    const inner = ROOT_CONTEXT.setValue(key, 'inner');
    expect(manager.active()).toBe(ROOT_CONTEXT);
    const seen = manager.with(outer, (a: number, b: number) => {
      const nested = manager.with(inner, () => manager.active().getValue(key));
      return [a + b, nested, manager.active().getValue(key)];
    }, undefined, 1, 2);
    expect(seen).toEqual([3, 'inner', 'outer']);
    expect(manager.active()).toBe(ROOT_CONTEXT);
    expect(() =>
      manager.with(outer, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(manager.active()).toBe(ROOT_CONTEXT);
  });

  it('does not carry a context across an await (no async tracking), and a bound function keeps its context and this', async () => {
    const manager = new SyncContextManager().enable();
    const ctx = ROOT_CONTEXT.setValue(key, 'request');
    const afterAwait = await manager.with(ctx, async () => {
      const before = manager.active().getValue(key);
      await Promise.resolve();
      return [before, manager.active().getValue(key)];
    });
    expect(afterAwait).toEqual(['request', undefined]);

    const target = {
      name: 'target',
      read(this: { name: string }, suffix: string) {
        return `${this.name}:${String(manager.active().getValue(key))}:${suffix}`;
      },
    };
    target.read = manager.bind(ctx, target.read);
    expect(target.read('x')).toBe('target:request:x');
    expect(manager.active()).toBe(ROOT_CONTEXT);
    const notAFunction = { a: 1 };
    expect(manager.bind(ctx, notAFunction)).toBe(notAFunction);

    manager.with(ctx, () => {
      manager.disable();
      expect(manager.active()).toBe(ROOT_CONTEXT);
    });
  });
});
