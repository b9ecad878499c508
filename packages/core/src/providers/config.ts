/**
 * Server-wide model provider settings: base URLs, API keys, timeouts, retries. They come from
 * the server's operator, never from an image (an image is shareable; a key in it would travel
 * with every push). Sources, per setting, first found wins: `createSentinelApi({ providers })`
 * (the CLI's flags land here), then the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
 * `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `OLLAMA_HOST`), then `<dataDir>/providers.json`
 * (same shape as the option; refused when it holds a key and others may read it).
 * Keys never reach logs, events, API responses or error messages.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidRequest, unavailable } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { JsonSchema } from '../contract/route.js';
import { compileValidator } from '../contract/validation.js';
import { ANTHROPIC_DEFAULT_BASE_URL, AnthropicProvider } from './anthropic.js';
import { checkBaseUrl, type ProviderRetryPolicy, type ProviderTimeouts } from './http.js';
import { normalizeOllamaHost, OLLAMA_DEFAULT_HOST, OllamaProvider } from './ollama.js';
import { OPENAI_DEFAULT_BASE_URL, OpenAiProvider } from './openai.js';
import type { ModelProvider } from './types.js';

/** Settings of the model providers, as the option and `providers.json` take them. */
export interface ProviderSettings {
  /** `openai` (and every OpenAI-compatible server). Default: `OPENAI_API_KEY`, `OPENAI_BASE_URL` or `https://api.openai.com/v1`. */
  openai?: { apiKey?: string; baseUrl?: string };
  /** `anthropic`. Default: `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` or `https://api.anthropic.com`. */
  anthropic?: { apiKey?: string; baseUrl?: string };
  /** `ollama` (native API). Default: `OLLAMA_HOST` or `http://127.0.0.1:11434`. */
  ollama?: { host?: string };
  /** Every provider's timeouts. Default: connect 10 s, first byte 60 s, idle 60 s. */
  timeouts?: ProviderTimeouts;
  /** Every provider's retries. Default: 3 attempts, 500 ms base, 30 s cap. */
  retries?: ProviderRetryPolicy;
}

/** `createSentinelApi({ providers })`: settings, plus where else to look. */
export interface ProviderOptions extends ProviderSettings {
  /** The environment read for `OPENAI_API_KEY` etc. Default `process.env`; `{}` ignores the environment. */
  env?: Readonly<Record<string, string | undefined>>;
  /** The settings file. Default `<dataDir>/providers.json`, read when it exists; `false` reads none. */
  file?: string | false;
}

/** The settings in effect. */
export interface ResolvedProviderSettings {
  openai: { apiKey: string | undefined; baseUrl: string };
  anthropic: { apiKey: string | undefined; baseUrl: string };
  ollama: { host: string };
  timeouts: ProviderTimeouts;
  retries: ProviderRetryPolicy;
  /** The settings file that was read, if any. */
  file: string | undefined;
}

const KEY = { type: 'string', minLength: 1, maxLength: 4096 } as const;
const URL_TEXT = { type: 'string', minLength: 1, maxLength: 2048 } as const;
const MS = { type: 'integer', minimum: 1, maximum: 3_600_000 } as const;

const SETTINGS_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    openai: { type: 'object', additionalProperties: false, properties: { apiKey: KEY, baseUrl: URL_TEXT } },
    anthropic: { type: 'object', additionalProperties: false, properties: { apiKey: KEY, baseUrl: URL_TEXT } },
    ollama: { type: 'object', additionalProperties: false, properties: { host: URL_TEXT } },
    timeouts: { type: 'object', additionalProperties: false, properties: { connectMs: MS, headersMs: MS, idleMs: MS } },
    retries: {
      type: 'object',
      additionalProperties: false,
      properties: {
        attempts: { type: 'integer', minimum: 1, maximum: 10 },
        baseDelayMs: { type: 'integer', minimum: 0, maximum: 60_000 },
        maxDelayMs: { type: 'integer', minimum: 0, maximum: 600_000 },
      },
    },
  },
};

let validateSettingsFile: ((value: unknown) => ProviderSettings) | undefined;

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/**
 * Reads `<dataDir>/providers.json` (or `path`): undefined when it does not exist. Throws
 * SentinelError `invalid_request` when it is not valid settings JSON, `unavailable` when it
 * cannot be read or holds an API key while group/others may read it (mode must be 0600).
 */
export async function readProviderSettingsFile(path: string): Promise<ProviderSettings | undefined> {
  let text: string;
  let mode: number;
  try {
    [text, mode] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => s.mode)]);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
    throw unavailable(`cannot read provider settings ${path}: ${(err as { code?: unknown }).code ?? 'read error'}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The parser's message may quote the file's content, keys included: say only where.
    throw invalidRequest(`provider settings ${path} are not valid JSON`);
  }
  validateSettingsFile ??= compileValidator<ProviderSettings>(SETTINGS_SCHEMA, 'provider settings');
  let settings: ProviderSettings;
  try {
    settings = validateSettingsFile(value);
  } catch (err) {
    // ajv's messages name fields and rules, never values.
    throw invalidRequest(`${path}: ${(err as Error).message}`);
  }
  const holdsKey = settings.openai?.apiKey !== undefined || settings.anthropic?.apiKey !== undefined;
  if (holdsKey && process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw unavailable(
      `provider settings ${path} hold API keys but other users may read the file (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): run chmod 600 ${path}`,
    );
  }
  return settings;
}

/**
 * The settings in effect: per setting the option, else the environment, else the file.
 * Base URLs are checked (SentinelError `invalid_request` names the bad setting, not its value).
 */
export async function resolveProviderSettings(options: ProviderOptions, dataDir: string): Promise<ResolvedProviderSettings> {
  const env = options.env ?? process.env;
  const path = options.file === false ? undefined : (options.file ?? join(dataDir, 'providers.json'));
  const file = path === undefined ? undefined : await readProviderSettingsFile(path);
  const pick = (...values: (string | undefined)[]) => {
    for (const value of values) {
      const set = nonEmpty(value);
      if (set !== undefined) return set;
    }
    return undefined;
  };
  const openaiBase = pick(options.openai?.baseUrl, env.OPENAI_BASE_URL, file?.openai?.baseUrl) ?? OPENAI_DEFAULT_BASE_URL;
  const anthropicBase = pick(options.anthropic?.baseUrl, env.ANTHROPIC_BASE_URL, file?.anthropic?.baseUrl) ?? ANTHROPIC_DEFAULT_BASE_URL;
  const ollamaHost = pick(options.ollama?.host, env.OLLAMA_HOST, file?.ollama?.host) ?? OLLAMA_DEFAULT_HOST;
  return {
    openai: { apiKey: pick(options.openai?.apiKey, env.OPENAI_API_KEY, file?.openai?.apiKey), baseUrl: checkBaseUrl(openaiBase, 'OPENAI_BASE_URL') },
    anthropic: {
      apiKey: pick(options.anthropic?.apiKey, env.ANTHROPIC_API_KEY, file?.anthropic?.apiKey),
      baseUrl: checkBaseUrl(anthropicBase, 'ANTHROPIC_BASE_URL'),
    },
    ollama: { host: normalizeOllamaHost(ollamaHost) },
    timeouts: { ...file?.timeouts, ...definedOnly(options.timeouts) },
    retries: { ...file?.retries, ...definedOnly(options.retries) },
    file: file === undefined ? undefined : path,
  };
}

function definedOnly<T extends object>(value: T | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (value) for (const [key, v] of Object.entries(value)) if (v !== undefined) (out as Record<string, unknown>)[key] = v;
  return out;
}

/** What the settings look like in a log line: endpoints and whether a key is set, never the key. */
export function describeProviderSettings(settings: ResolvedProviderSettings): Record<string, unknown> {
  return {
    openai_base_url: settings.openai.baseUrl,
    openai_key_set: settings.openai.apiKey !== undefined,
    anthropic_base_url: settings.anthropic.baseUrl,
    anthropic_key_set: settings.anthropic.apiKey !== undefined,
    ollama_host: settings.ollama.host,
    ...(settings.file === undefined ? {} : { settings_file: settings.file }),
  };
}

/** The `openai`, `anthropic` and `ollama` providers for these settings (each with its own connection pool); `options.logger` defaults to silent. */
export function createModelProviders(settings: ResolvedProviderSettings, options: { logger?: Logger } = {}): ModelProvider[] {
  const logger = options.logger ?? silentLogger;
  const common = { timeouts: settings.timeouts, retries: settings.retries, logger };
  return [
    new OpenAiProvider({ ...common, baseUrl: settings.openai.baseUrl, ...(settings.openai.apiKey ? { apiKey: settings.openai.apiKey } : {}) }),
    new AnthropicProvider({ ...common, baseUrl: settings.anthropic.baseUrl, ...(settings.anthropic.apiKey ? { apiKey: settings.anthropic.apiKey } : {}) }),
    new OllamaProvider({ ...common, host: settings.ollama.host }),
  ];
}
