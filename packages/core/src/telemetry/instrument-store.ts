/**
 * `sentinel_store_operation_duration_seconds` for any Store: a wrapper that times every method
 * returning a promise, labelled with the method's name (a bounded set: the Store interface plus
 * what a back end adds, e.g. `registryBackend`). The back ends stay unaware of metrics.
 */
import { performance } from 'node:perf_hooks';
import type { Store } from '../store/types.js';
import type { SentinelMetrics } from './metrics.js';

function methodNamesOf(target: object): string[] {
  const names = new Set<string>();
  for (let proto: object | null = target; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name === 'constructor') continue;
      const descriptor = Object.getOwnPropertyDescriptor(proto, name);
      if (descriptor !== undefined && typeof descriptor.value === 'function') names.add(name);
    }
  }
  return [...names];
}

/**
 * A Store that forwards every call to `store` (with `store` as `this`, so private fields keep
 * working) and times the ones that return a promise; `backend` is the label (`sqlite`,
 * `postgres`, `custom`). Other properties read through to `store`.
 */
export function instrumentStore(store: Store, metrics: SentinelMetrics, backend: string): Store {
  const wrapped: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const name of methodNamesOf(store)) {
    const method = (store as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!;
    let observe: ((seconds: number) => void) | undefined;
    wrapped[name] = (...args: unknown[]): unknown => {
      const started = performance.now();
      const result = method.apply(store, args);
      if (!(result instanceof Promise)) return result;
      // Resolved lazily: only methods that are called get a series.
      observe ??= metrics.storeOperation(backend, name);
      const done = observe;
      const settle = (): void => done((performance.now() - started) / 1000);
      result.then(settle, settle);
      return result;
    };
  }
  return new Proxy(store, {
    get(target, property) {
      if (typeof property === 'string') {
        const own = wrapped[property];
        if (own !== undefined) return own;
      }
      // With the store as receiver: getters of a class with private fields need their own `this`.
      return Reflect.get(target, property, target);
    },
  });
}
