/**
 * Depth and size caps for JSON values that come from clients (request bodies, WebSocket frames,
 * Sentinelfiles), checked before anything recursive touches them: ajv, `JSON.stringify` in a
 * store, the YAML composer. `JSON.parse` accepts 10 000 levels happily, but a recursive walk
 * over them overflows the stack, so this check is iterative (an explicit stack, never recursion).
 *
 * The schema that will validate the value tells the check where the free-form values are (a
 * `type: object` with no declared properties, such as an agent's `parameters`): those get a size
 * cap too, and messages name the field by its schema path (`body.parameters`), not by the
 * thousands of keys below it.
 */
import { SentinelError } from './errors.js';
import type { JsonSchema } from './route.js';

/** Deepest nesting accepted in a client's JSON value; the value itself (a body object) is level 1. */
export const MAX_JSON_DEPTH = 32;
/** Largest free-form value (a schema `type: object` without declared properties), in characters of its JSON text. */
export const MAX_FREE_FORM_JSON_CHARS = 65_536;

export interface JsonLimits {
  /** Deepest nesting, the root value counting as level 1. Default {@link MAX_JSON_DEPTH}. */
  maxDepth?: number;
  /** Size cap of each free-form value, in characters of JSON (escapes not counted). Default {@link MAX_FREE_FORM_JSON_CHARS}. */
  maxFreeFormChars?: number;
}

/** What the schema declares at one place in the value. */
interface ShapeNode {
  /** Declared properties. */
  readonly properties: ReadonlyMap<string, ShapeNode>;
  /** The schema of every other property (`additionalProperties`) or of every item (`items`). */
  readonly other: ShapeNode | undefined;
  /** An object whose content the schema leaves open: it gets the size cap. */
  readonly freeForm: boolean;
}

const FREE_FORM_LEAF: ShapeNode = { properties: new Map(), other: undefined, freeForm: true };

function typesOf(schema: JsonSchema): unknown[] {
  const type = schema.type;
  return Array.isArray(type) ? type : [type];
}

function isSchema(value: unknown): value is JsonSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The declared shape of `schema` (properties, items, additionalProperties), depth-bounded like the values. */
function shapeOf(schema: JsonSchema | undefined, depth = 0): ShapeNode | undefined {
  if (schema === undefined || depth > MAX_JSON_DEPTH) return undefined;
  const properties = new Map<string, ShapeNode>();
  if (isSchema(schema.properties)) {
    for (const [key, sub] of Object.entries(schema.properties)) {
      const node = isSchema(sub) ? shapeOf(sub, depth + 1) : undefined;
      if (node) properties.set(key, node);
    }
  }
  const otherSchema = isSchema(schema.items) ? schema.items : isSchema(schema.additionalProperties) ? schema.additionalProperties : undefined;
  const open = typesOf(schema).includes('object') && properties.size === 0 && otherSchema === undefined && schema.patternProperties === undefined;
  if (open) return FREE_FORM_LEAF;
  return { properties, other: shapeOf(otherSchema, depth + 1), freeForm: false };
}

/** One container waiting to be walked. */
interface Pending {
  readonly value: object;
  readonly depth: number;
  readonly parent: Pending | undefined;
  readonly key: string | number | undefined;
  /** What the schema declares here; undefined below what it declares. */
  readonly node: ShapeNode | undefined;
  /** The free-form value this container belongs to, if any. */
  readonly budget: Budget | undefined;
}

interface Budget {
  readonly root: Pending;
  used: number;
}

const IDENTIFIER_RE = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const MAX_KEY_SHOWN = 64;

function keySegment(key: string | number): string {
  if (typeof key === 'number') return `[${key}]`;
  if (IDENTIFIER_RE.test(key) && key.length <= MAX_KEY_SHOWN) return `.${key}`;
  const shown = key.length > MAX_KEY_SHOWN ? `${key.slice(0, MAX_KEY_SHOWN)}…` : key;
  return `[${JSON.stringify(shown)}]`;
}

/**
 * The field to name for a problem at `at`: the path the schema declares, down to a free-form
 * value or to the first undeclared key (never the thousands of keys below it).
 */
function fieldName(name: string, at: Pending): string {
  const chain: Pending[] = [];
  for (let p: Pending | undefined = at; p !== undefined; p = p.parent) chain.push(p);
  chain.reverse();
  let out = name;
  for (const p of chain.slice(1)) {
    out += keySegment(p.key as string | number);
    if (p.node === undefined || p.node.freeForm) break;
  }
  return out;
}

function scalarChars(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return value.length + 2;
    case 'number':
      return String(value).length;
    case 'boolean':
      return value ? 4 : 5;
    default:
      return 4; // null (undefined does not occur in parsed JSON or YAML)
  }
}

function childNode(node: ShapeNode | undefined, key: string | number): ShapeNode | undefined {
  if (node === undefined || node.freeForm) return undefined;
  return (typeof key === 'string' ? node.properties.get(key) : undefined) ?? node.other;
}

/**
 * Checks `value` against the depth cap and its free-form fields against the size cap. Throws
 * SentinelError `invalid_request` naming the field (`body.parameters: nested deeper than 32
 * levels`). Iterative, so it is safe on any depth `JSON.parse` produces, and a cycle (a YAML
 * alias pointing at its own ancestor) ends at the depth cap.
 */
function checkWithShape(value: unknown, name: string, shape: ShapeNode | undefined, maxDepth: number, maxChars: number): void {
  if (typeof value !== 'object' || value === null) return;
  const stack: Pending[] = [];
  const start: Pending = { value, depth: 1, parent: undefined, key: undefined, node: shape, budget: undefined };
  if (shape?.freeForm) (start as { budget: Budget | undefined }).budget = { root: start, used: 0 };
  stack.push(start);
  while (stack.length > 0) {
    const current = stack.pop() as Pending;
    if (current.depth > maxDepth) {
      throw new SentinelError('invalid_request', `${fieldName(name, current)}: nested deeper than ${maxDepth} levels`);
    }
    const budget = current.budget;
    const entries: Iterable<[string | number, unknown]> = Array.isArray(current.value) ? current.value.entries() : Object.entries(current.value);
    let chars = 2;
    for (const [key, child] of entries) {
      chars += 1 + (typeof key === 'string' ? key.length + 3 : 0);
      if (typeof child === 'object' && child !== null) {
        const node = childNode(current.node, key);
        const pending: Pending = { value: child, depth: current.depth + 1, parent: current, key, node, budget };
        if (budget === undefined && node?.freeForm) (pending as { budget: Budget | undefined }).budget = { root: pending, used: 0 };
        stack.push(pending);
      } else {
        chars += scalarChars(child);
      }
    }
    if (budget !== undefined) {
      budget.used += chars;
      if (budget.used > maxChars) {
        throw new SentinelError('invalid_request', `${fieldName(name, budget.root)}: larger than ${maxChars} characters of JSON`);
      }
    }
  }
}

/** A compiled check for values that `schema` will validate (see {@link compileJsonLimits}). */
export type JsonLimitsCheck = (value: unknown) => void;

/**
 * Compiles the depth/size check for values validated by `schema` (once, at start-up). `name`
 * starts every message (`body`, `frame`, `definition`). Without a schema only the depth is capped.
 */
export function compileJsonLimits(schema: JsonSchema | undefined, name: string, limits: JsonLimits = {}): JsonLimitsCheck {
  const shape = shapeOf(schema);
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  const maxChars = limits.maxFreeFormChars ?? MAX_FREE_FORM_JSON_CHARS;
  return (value) => checkWithShape(value, name, shape, maxDepth, maxChars);
}

/** Checks one value without a schema: depth only (see {@link compileJsonLimits}). */
export function checkJsonDepth(value: unknown, name: string, maxDepth: number = MAX_JSON_DEPTH): void {
  checkWithShape(value, name, undefined, maxDepth, Number.POSITIVE_INFINITY);
}
