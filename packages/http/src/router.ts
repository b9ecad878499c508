/**
 * The router, built once from the api's route table. Static paths are one Map lookup; paths
 * with `:params` are matched segment by segment. The raw path is split on '/' before each
 * segment is percent-decoded, so an encoded slash (`sentinel%2Fecho`) stays inside its segment.
 */
import { invalidRequest, type CompiledRoute } from '@sentinel/api-core';

type Segment = { literal: string; param?: undefined } | { param: string; literal?: undefined };

/** Every route sharing one path pattern, by method. */
interface PathEntry {
  readonly segments: readonly Segment[];
  readonly byMethod: Map<string, CompiledRoute>;
  /** Methods for `Allow`: the routes' own, HEAD after GET, then OPTIONS. */
  allow: string[];
}

export type RouteMatch =
  | { kind: 'route'; route: CompiledRoute; params: Record<string, string> }
  | { kind: 'method_not_allowed'; allow: string[] }
  | { kind: 'not_found' };

export interface Router {
  /** True when `path` lies under one of the route prefixes (`/v1`): the api answers it. */
  owns(path: string): boolean;
  /** Finds the route for `method` and the raw (still percent-encoded) `path`. Throws `invalid_request` on a bad escape. */
  match(method: string, path: string): RouteMatch;
  /** The `Allow` list of `path` (for OPTIONS and preflights), or undefined when no route has that path. */
  allowedMethods(path: string): string[] | undefined;
}

function parsePattern(path: string): Segment[] {
  return path
    .slice(1)
    .split('/')
    .map((part) => (part.startsWith(':') ? { param: part.slice(1) } : { literal: part }));
}

// Literal segments win over parameters at the first place two patterns differ, so
// `/v1/images/search` is tried before `/v1/images/:ref`.
function bySpecificity(a: PathEntry, b: PathEntry): number {
  for (let i = 0; i < a.segments.length; i++) {
    const x = a.segments[i]?.param === undefined ? 0 : 1;
    const y = b.segments[i]?.param === undefined ? 0 : 1;
    if (x !== y) return x - y;
  }
  return 0;
}

function allowListOf(byMethod: Map<string, CompiledRoute>): string[] {
  const allow: string[] = [];
  for (const method of byMethod.keys()) {
    allow.push(method);
    if (method === 'GET') allow.push('HEAD');
  }
  allow.push('OPTIONS');
  return allow;
}

function decodeSegments(path: string): string[] {
  const raw = path.slice(1).split('/');
  if (!path.includes('%')) return raw;
  try {
    return raw.map((segment) => decodeURIComponent(segment));
  } catch {
    throw invalidRequest('malformed percent-encoding in the request path');
  }
}

function segmentsMatch(entry: PathEntry, segments: readonly string[], params: Record<string, string>): boolean {
  for (let i = 0; i < segments.length; i++) {
    const pattern = entry.segments[i];
    const actual = segments[i] as string;
    if (pattern === undefined) return false;
    if (pattern.param === undefined) {
      if (pattern.literal !== actual) return false;
    } else {
      if (actual === '') return false;
      params[pattern.param] = actual;
    }
  }
  return true;
}

/** Builds the router for `routes`; throws on two routes with the same method and path. */
export function createRouter(routes: readonly CompiledRoute[]): Router {
  const entriesByPath = new Map<string, PathEntry>();
  for (const route of routes) {
    let entry = entriesByPath.get(route.path);
    if (!entry) {
      entry = { segments: parsePattern(route.path), byMethod: new Map(), allow: [] };
      entriesByPath.set(route.path, entry);
    }
    if (entry.byMethod.has(route.method)) throw new Error(`duplicate route ${route.method} ${route.path}`);
    entry.byMethod.set(route.method, route);
  }

  const staticEntries = new Map<string, PathEntry>();
  const entriesBySegmentCount = new Map<number, PathEntry[]>();
  const prefixes = new Set<string>();
  for (const [path, entry] of entriesByPath) {
    entry.allow = allowListOf(entry.byMethod);
    if (entry.segments.every((s) => s.param === undefined)) staticEntries.set(path, entry);
    const sameLength = entriesBySegmentCount.get(entry.segments.length) ?? [];
    sameLength.push(entry);
    entriesBySegmentCount.set(entry.segments.length, sameLength);
    const first = entry.segments[0];
    if (first?.literal) prefixes.add(`/${first.literal}`);
  }
  for (const list of entriesBySegmentCount.values()) list.sort(bySpecificity);

  /** Entries matching `path`, most specific first, each with its decoded params. */
  function candidates(path: string): Array<{ entry: PathEntry; params: Record<string, string> }> {
    const segments = decodeSegments(path);
    const found: Array<{ entry: PathEntry; params: Record<string, string> }> = [];
    for (const entry of entriesBySegmentCount.get(segments.length) ?? []) {
      // Null prototype: a `__proto__` segment value must stay a plain key.
      const params = Object.create(null) as Record<string, string>;
      if (segmentsMatch(entry, segments, params)) found.push({ entry, params });
    }
    return found;
  }

  return {
    owns(path) {
      for (const prefix of prefixes) {
        if (path === prefix || path.startsWith(prefix + '/')) return true;
      }
      return false;
    },

    match(method, path) {
      const wanted = method === 'HEAD' ? 'GET' : method;
      if (!path.includes('%')) {
        // The hot path: a static route, one lookup.
        const route = staticEntries.get(path)?.byMethod.get(wanted);
        if (route) return { kind: 'route', route, params: Object.create(null) as Record<string, string> };
      }
      const found = candidates(path);
      if (found.length === 0) return { kind: 'not_found' };
      for (const { entry, params } of found) {
        const route = entry.byMethod.get(wanted);
        if (route) return { kind: 'route', route, params };
      }
      return { kind: 'method_not_allowed', allow: unionOfAllowLists(found.map((f) => f.entry)) };
    },

    allowedMethods(path) {
      const found = candidates(path);
      return found.length === 0 ? undefined : unionOfAllowLists(found.map((f) => f.entry));
    },
  };
}

function unionOfAllowLists(entries: readonly PathEntry[]): string[] {
  if (entries.length === 1) return (entries[0] as PathEntry).allow;
  const methods = new Set<string>();
  for (const entry of entries) for (const method of entry.allow) if (method !== 'OPTIONS') methods.add(method);
  methods.add('OPTIONS');
  return [...methods];
}
