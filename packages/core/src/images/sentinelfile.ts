/**
 * The agent definition, a "Sentinelfile" (docs/ARCHITECTURE.md#images-and-the-registry): its JSON Schema and the parser
 * that turns a decoded JSON or YAML document into a normalised {@link AgentDefinition}.
 * The normalised definition is the OCI config blob of an image, so normalisation must be
 * deterministic: the same input always gives the same definition (and the same digest).
 */
import { invalidRequest, SentinelError } from '../contract/errors.js';
import type { AgentDefinition } from '../contract/models.js';
import type { JsonSchema } from '../contract/route.js';
import { compileJsonLimits } from '../contract/json-limits.js';
import { compileValidator } from '../contract/validation.js';

/** Docker-like repository name: lowercase path components separated by `/`. */
export const IMAGE_NAME_PATTERN = '^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$';
export const IMAGE_NAME_MAX_LENGTH = 128;
/**
 * A local image name: a repository name, optionally after the `host[:port]/` of the registry it
 * was pulled from (`127.0.0.1:5000/demo/helper`), as Docker keeps them, so the same path from
 * two registries never collides. Hosts are lowercase (URL parsing lowercases them); an IPv6
 * host is bracketed. Builds still take {@link IMAGE_NAME_PATTERN}: only pulls name a registry.
 */
export const LOCAL_IMAGE_NAME_PATTERN =
  '^(?:(?:\\[[0-9a-f:.]+\\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)(?::[0-9]{1,5})?/)?' +
  '[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$';
/** Docker's tag grammar. */
export const IMAGE_TAG_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$';
export const MODEL_PROVIDER_PATTERN = '^[a-z][a-z0-9_-]{0,31}$';
/** Model names are free-form (`llama3.1:8b`, `org/model`), but one visible token: no whitespace or control characters. */
export const MODEL_NAME_PATTERN = '^[^\\s\\p{Cc}]{1,200}$';
export const TOOL_NAME_PATTERN = '^[a-z][a-z0-9_]{0,63}$';
export const CAPABILITY_PATTERN = '^[a-z][a-z0-9_-]{0,63}$';
/** Values of a Sentinelfile tool entry's `approval`: `required` gates each call on a person's decision; `never` (the default) runs it at once. */
export const TOOL_APPROVAL_MODES = ['required', 'never'] as const;

/** A Sentinelfile `tools` entry: a tool name, or the name with its approval mode. */
export type ToolEntryInput = string | { name: string; approval?: (typeof TOOL_APPROVAL_MODES)[number] };

/** Nesting cap for model parameters: deeper values are refused before anything recurses over them. */
const MAX_PARAMETER_DEPTH = 16;

const modelObjectProperties = {
  provider: { type: 'string', pattern: MODEL_PROVIDER_PATTERN },
  name: { type: 'string', pattern: MODEL_NAME_PATTERN },
  parameters: { type: 'object', maxProperties: 64 },
};

/**
 * JSON Schema of a Sentinelfile. `model` is an object or a `"provider/name"` string: a union
 * type whose string-only and object-only keywords each apply to their own type, so a wrong
 * value gets one precise message rather than the noise of a failed `oneOf`.
 */
export const AGENT_DEFINITION_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: IMAGE_NAME_MAX_LENGTH, pattern: IMAGE_NAME_PATTERN },
    tag: { type: 'string', pattern: IMAGE_TAG_PATTERN },
    description: { type: 'string', maxLength: 4096 },
    model: {
      type: ['object', 'string'],
      pattern: `^[a-z][a-z0-9_-]{0,31}/[^\\s\\p{Cc}]{1,200}$`,
      properties: modelObjectProperties,
      required: ['provider', 'name'],
      additionalProperties: false,
    },
    instructions: { type: 'string', maxLength: 65536 },
    tools: {
      type: 'array',
      maxItems: 64,
      uniqueItems: true,
      // A name, or `{name, approval}`: `approval: required` makes every call of it wait for a person (README "Tool approval").
      items: {
        type: ['string', 'object'],
        pattern: TOOL_NAME_PATTERN,
        properties: { name: { type: 'string', pattern: TOOL_NAME_PATTERN }, approval: { enum: TOOL_APPROVAL_MODES } },
        required: ['name'],
        additionalProperties: false,
      },
    },
    capabilities: { type: 'array', maxItems: 64, uniqueItems: true, items: { type: 'string', pattern: CAPABILITY_PATTERN } },
  },
  required: ['name', 'model'],
  additionalProperties: false,
};

/** The definition as validated by {@link AGENT_DEFINITION_SCHEMA}, before defaults are applied. */
export interface AgentDefinitionInput {
  name: string;
  tag?: string;
  description?: string;
  model: string | { provider: string; name: string; parameters?: Record<string, unknown> };
  instructions?: string;
  tools?: ToolEntryInput[];
  capabilities?: string[];
}

const validateDefinition = compileValidator<AgentDefinitionInput>(AGENT_DEFINITION_SCHEMA, 'agent definition');
const checkDefinitionLimits = compileJsonLimits(AGENT_DEFINITION_SCHEMA, 'definition');

function invalid(message: string): SentinelError {
  return invalidRequest(`invalid agent definition: ${message}`);
}

/**
 * Copies a parameter value, refusing what JSON cannot carry faithfully (a YAML `.nan` or
 * `.inf`, for example) and absurd nesting, so the config blob is plain, canonical JSON.
 */
function copyJsonValue(value: unknown, path: string, depth: number): unknown {
  if (depth > MAX_PARAMETER_DEPTH) throw invalid(`${path}: nested deeper than ${MAX_PARAMETER_DEPTH} levels`);
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`${path}: numbers must be finite`);
    return value;
  }
  if (Array.isArray(value)) return value.map((item, i) => copyJsonValue(item, `${path}/${i}`, depth + 1));
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = copyJsonValue(item, `${path}/${key}`, depth + 1);
    return out;
  }
  throw invalid(`${path}: unsupported value`);
}

/**
 * Applies defaults to an already validated definition: `tag` 'latest', `description` '',
 * `instructions` '', `tools` [], `capabilities` [], `model.parameters` {}; a `"provider/name"`
 * model string becomes `{provider, name, parameters: {}}` (split at the first `/`). Tool
 * entries become their names; those with `approval: required` are also listed, in order, in
 * `tool_approval`, which is present only when non-empty (so a definition without approvals
 * normalises, and digests, exactly as before). Returns a fresh object holding only the known fields.
 */
export function normalizeAgentDefinition(input: AgentDefinitionInput): AgentDefinition {
  let model: AgentDefinition['model'];
  if (typeof input.model === 'string') {
    const slash = input.model.indexOf('/');
    model = { provider: input.model.slice(0, slash), name: input.model.slice(slash + 1), parameters: {} };
  } else {
    const parameters = copyJsonValue(input.model.parameters ?? {}, '/model/parameters', 0) as Record<string, unknown>;
    model = { provider: input.model.provider, name: input.model.name, parameters };
  }
  const tools: string[] = [];
  const approval: string[] = [];
  for (const entry of input.tools ?? []) {
    const name = typeof entry === 'string' ? entry : entry.name;
    // uniqueItems compares whole entries: `calculator` and `{name: calculator}` both pass it.
    if (tools.includes(name)) throw invalid(`/tools: tool ${name} is listed twice`);
    tools.push(name);
    if (typeof entry !== 'string' && entry.approval === 'required') approval.push(name);
  }
  return {
    name: input.name,
    tag: input.tag ?? 'latest',
    description: input.description ?? '',
    model,
    instructions: input.instructions ?? '',
    tools,
    capabilities: [...(input.capabilities ?? [])],
    ...(approval.length > 0 ? { tool_approval: approval } : {}),
  };
}

/**
 * Validates an already decoded Sentinelfile (JSON or YAML) and normalises it (see
 * {@link normalizeAgentDefinition}). Throws SentinelError `invalid_request` listing every
 * problem, unknown top-level fields included.
 */
export function parseAgentDefinition(input: unknown): AgentDefinition {
  // Definitions also arrive from registries (a pulled config blob): cap them like request bodies.
  checkDefinitionLimits(input);
  return normalizeAgentDefinition(validateDefinition(input));
}
