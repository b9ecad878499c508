/** What a tool is: a name, a JSON Schema for its parameters and an async `run` (docs/ARCHITECTURE.md#runtime-providers-and-tools). */
import type { JsonSchema } from '../contract/route.js';

/** What a tool run gets besides its parameters. */
export interface ToolContext {
  /** Aborted when the turn ends early or the tool's timeout passes: stop work promptly. */
  signal: AbortSignal;
  /** The agent the tool runs for. */
  agentId: string;
  /**
   * The agent's `environment` (set when it was created), e.g. a tool's credentials: read what
   * the tool needs by name. It is never sent to the model and the API returns only its names,
   * so a tool must not put values into its result (the result goes to the model). Frozen;
   * empty for an agent without environment. The registry always sets it; optional only so
   * that code calling a tool's `run` directly (tests) need not.
   */
  env?: Readonly<Record<string, string>>;
}

export interface Tool {
  /** `^[a-z][a-z0-9_]{0,63}$`, the name images list in `tools`. */
  readonly name: string;
  /** One or two sentences for the model: what the tool does and when to use it. */
  readonly description: string;
  /** JSON Schema of the parameters object; the registry validates against it before `run`. */
  readonly parameters: JsonSchema;
  /**
   * Runs the tool with already validated parameters and returns a JSON-serializable result.
   * Throw SentinelError (e.g. `invalid_request`) for failures the caller should read, such as
   * "division by zero"; any other error is reported as "tool <name> failed" and logged.
   */
  run(params: Record<string, unknown>, ctx: ToolContext): Promise<unknown>;
}
