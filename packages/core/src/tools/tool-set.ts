/**
 * The tools this server can run. Each tool's parameter schema is compiled once, when it is
 * registered; every call is validated, bounded in time and bounded in result size.
 */
import { internal, isSentinelError, SentinelError, unavailable } from '../contract/errors.js';
import { TOOL_NAME_PATTERN } from '../images/sentinelfile.js';
import type { ToolSpec } from '../providers/types.js';
import { compileValidator, type Validator } from '../contract/validation.js';
import type { Tool } from './types.js';

const TOOL_NAME_RE = new RegExp(TOOL_NAME_PATTERN);

export interface ToolRunOptions {
  /** The caller's signal (the turn's, or the chat session's): aborting it stops the run. */
  signal: AbortSignal;
  /** Time limit of this run in ms. Default 30000. */
  timeoutMs?: number;
  /** The agent the tool runs for. Default `''`. */
  agentId?: string;
  /** The agent's environment, handed to the tool as `ctx.env` (frozen copy). Default empty. */
  env?: Readonly<Record<string, string>>;
}

const NO_ENV: Readonly<Record<string, string>> = Object.freeze({});

export interface ToolSetOptions {
  /** Largest result, in characters of its JSON, a tool may return. Default 100000. */
  maxResultChars?: number;
}

interface RegisteredTool {
  tool: Tool;
  validate: Validator<Record<string, unknown>>;
}

/**
 * The tool set. `createSentinelApi` fills it with the built-ins (`calculator`,
 * `current_time`); an embedding app adds its own through `api.tools`, and images that list the
 * tool's name may then use it:
 *
 * ```ts
 * api.tools.register({
 *   name: 'word_count',
 *   description: 'Counts the words of a text.',
 *   parameters: { type: 'object', properties: { text: { type: 'string', maxLength: 100000 } }, required: ['text'], additionalProperties: false },
 *   run: async (params) => ({ words: String(params.text).split(/\s+/).filter(Boolean).length }),
 * });
 * ```
 */
export class ToolSet {
  private readonly tools = new Map<string, RegisteredTool>();
  private readonly maxResultChars: number;

  constructor(options: ToolSetOptions = {}) {
    this.maxResultChars = options.maxResultChars ?? 100_000;
  }

  /**
   * Adds a tool and compiles its parameter schema (once). Throws when the name is malformed,
   * already taken (call {@link unregister} first to replace a tool) or the schema does not compile.
   */
  register(tool: Tool): this {
    if (!TOOL_NAME_RE.test(tool.name)) throw new Error(`invalid tool name "${tool.name}": use ${TOOL_NAME_PATTERN}`);
    if (this.tools.has(tool.name)) throw new Error(`tool "${tool.name}" is already registered`);
    const validate = compileValidator<Record<string, unknown>>(tool.parameters, `parameters of tool ${tool.name}`);
    this.tools.set(tool.name, { tool, validate });
    return this;
  }

  /** Removes a tool; false when there was none by that name. */
  unregister(name: string): boolean {
    return this.tools.delete(name);
  }

  /** The tool named `name`, or undefined. */
  get(name: string): Tool | undefined {
    return this.tools.get(name)?.tool;
  }

  /** Registered tool names, sorted. */
  names(): string[] {
    return [...this.tools.keys()].sort();
  }

  /** Specs of the registered tools among `names`, in that order (unknown names are skipped). */
  specs(names: readonly string[]): ToolSpec[] {
    const specs: ToolSpec[] = [];
    for (const name of names) {
      const entry = this.tools.get(name);
      if (entry) specs.push({ name, description: entry.tool.description, parameters: entry.tool.parameters });
    }
    return specs;
  }

  /**
   * Validates `params` and runs the tool within `timeoutMs` (default 30000) and the caller's
   * signal. Throws SentinelError: `not_found` (no such tool on this server), `invalid_request`
   * (parameters, listing the issues; or the tool's own refusal), `unavailable` (timed out or
   * cancelled; result too large), `internal` (the tool failed unexpectedly; the cause is attached).
   */
  async run(name: string, params: Record<string, unknown>, options: ToolRunOptions): Promise<unknown> {
    const entry = this.tools.get(name);
    if (!entry) throw new SentinelError('not_found', `tool ${name} is not available on this server`);
    const valid = entry.validate(params);
    const timeoutMs = options.timeoutMs ?? 30_000;
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort(unavailable(`tool ${name} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onCallerAbort = () => controller.abort(unavailable(`tool ${name} was cancelled`));
    if (options.signal.aborted) onCallerAbort();
    else options.signal.addEventListener('abort', onCallerAbort, { once: true });
    try {
      // Race the run against the abort: a tool that ignores its signal must not hold the turn.
      const aborted = new Promise<never>((_, reject) => {
        if (controller.signal.aborted) reject(controller.signal.reason);
        controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
      });
      // A copy per run: one tool must not be able to change what the next one sees.
      const env = options.env === undefined ? NO_ENV : Object.freeze({ ...options.env });
      const running = Promise.resolve().then(() => entry.tool.run(valid, { signal: controller.signal, agentId: options.agentId ?? '', env }));
      running.catch(() => undefined);
      aborted.catch(() => undefined);
      let result: unknown;
      try {
        result = await Promise.race([running, aborted]);
      } catch (err) {
        if (controller.signal.aborted) throw controller.signal.reason;
        if (isSentinelError(err)) throw err;
        throw internal(`tool ${name} failed`, err);
      }
      let json: string;
      try {
        json = JSON.stringify(result ?? null);
      } catch (err) {
        throw internal(`tool ${name} returned a result that is not JSON`, err);
      }
      if (json.length > this.maxResultChars) {
        throw unavailable(`tool ${name} returned more than ${this.maxResultChars} characters`);
      }
      return result ?? null;
    } finally {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onCallerAbort);
    }
  }
}
