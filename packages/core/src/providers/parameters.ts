/**
 * Model parameters pass through an allow-list per provider: an image's `parameters` are
 * user-written, and sending unknown keys makes strict APIs reject the whole request (and could
 * smuggle fields such as `stream: false` or another `model` into the body).
 */

/** The entries of `parameters` whose keys are in `allowed` (values untouched), renamed by `rename` when given. */
export function pickParameters(
  parameters: Record<string, unknown>,
  allowed: readonly string[],
  rename: Readonly<Record<string, string>> = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of allowed) {
    if (!Object.hasOwn(parameters, key)) continue;
    const value = parameters[key];
    if (value === undefined || value === null) continue;
    out[rename[key] ?? key] = value;
  }
  return out;
}
