/**
 * A small structured logger: one JSON object per line. Core code logs through this
 * interface only, so an embedding app can hand in pino or its own sink. A line written while an
 * OpenTelemetry span is active carries its `trace_id` and `span_id` (docs/ARCHITECTURE.md#observability).
 */
import { isSpanContextValid, trace, type SpanContext } from '@opentelemetry/api';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger;
  /** True when lines at `level` are written: lets hot paths skip building fields. */
  isLevelEnabled(level: LogLevel): boolean;
}

export interface JsonLoggerOptions {
  /** Minimum level written. Default `info`. */
  level?: LogLevel;
  /** Where lines go. Default `process.stderr`. */
  write?: (line: string) => void;
  /** Fields added to every line. Default none. */
  base?: Record<string, unknown>;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Keys whose values are never written, whatever the caller passes (compared in lower case). */
const SECRET_KEYS = new Set(['authorization', 'password', 'token', 'secret', 'apikey', 'api_key', 'api-key', 'cookie']);

// A Set lookup instead of a regular expression per key: this runs for every field of every
// log line, request lines included.
function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(key) || SECRET_KEYS.has(key.toLowerCase());
}

function redact(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in fields) {
    if (Object.hasOwn(fields, key) && isSecretKey(key)) {
      out ??= { ...fields };
      out[key] = '[redacted]';
    }
  }
  return out ?? fields;
}

/** The active span's ids for a line (the line's own fields win); undefined without one, and always without an SDK. */
function activeSpanContext(): SpanContext | undefined {
  const spanContext = trace.getActiveSpan()?.spanContext();
  return spanContext !== undefined && isSpanContextValid(spanContext) ? spanContext : undefined;
}

/** Creates a JSON-lines logger. */
export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const min = RANK[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const base = options.base ?? {};
  const make = (bound: Record<string, unknown>): Logger => {
    const hasBound = Object.keys(bound).length > 0;
    const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
      if (RANK[level] < min) return;
      const time = new Date().toISOString();
      // Spread only what is there: this is on every request's path (the request log).
      let line: Record<string, unknown>;
      const span = activeSpanContext();
      if (span !== undefined) {
        const { traceId: trace_id, spanId: span_id } = span;
        line = fields ? { time, level, msg, trace_id, span_id, ...bound, ...redact(fields) } : { time, level, msg, trace_id, span_id, ...bound };
      } else if (fields) line = hasBound ? { time, level, msg, ...bound, ...redact(fields) } : { time, level, msg, ...redact(fields) };
      else line = hasBound ? { time, level, msg, ...bound } : { time, level, msg };
      write(JSON.stringify(line) + '\n');
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (fields) => make({ ...bound, ...redact(fields) }),
      isLevelEnabled: (level) => RANK[level] >= min,
    };
  };
  return make(base);
}

/** A logger that drops everything (tests, embedding apps that want silence). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
  isLevelEnabled() {
    return false;
  },
};
