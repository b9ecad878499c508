/**
 * @sentinel/cli: the `sentinel` command as a library. `runApiCommand` starts the API server
 * exactly like `sentinel api` does; the flag table and parser are exported for tools that
 * generate docs or wrap the command.
 */
export { API_ENV_ONLY, API_FLAGS, type ApiFlagValues, type FlagSpec, type FlagType } from './flags.js';
export { parseApiArgs, parseBool, type ApiConfig, type ParsedApiArgs } from './parse-args.js';
export { CommandError, UsageError, isUsageError } from './errors.js';
export { formatApiHelp, formatMainHelp } from './help.js';
export { resolveUserPath, runApiCommand, startApi, type ApiOverrides, type CommandIo, type RunningApi, type TextSink } from './api-command.js';
export { cliVersion } from './version.js';
