import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createJsonLogger, createSentinelApi, isSentinelError, type SentinelError } from '@sentinel/api-core';
import { describeProviderSettings, resolveProviderSettings } from '../src/providers/config.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-providers-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeSettings(content: unknown, mode = 0o600): string {
  const path = join(dir, 'providers.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  chmodSync(path, mode);
  return path;
}

async function failure(promise: Promise<unknown>): Promise<SentinelError> {
  try {
    await promise;
  } catch (err) {
    if (isSentinelError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('provider settings', () => {
  it('defaults to the public endpoints and no keys', async () => {
    const settings = await resolveProviderSettings({ env: {} }, dir);
    expect(settings.openai).toEqual({ apiKey: undefined, baseUrl: 'https://api.openai.com/v1' });
    expect(settings.anthropic).toEqual({ apiKey: undefined, baseUrl: 'https://api.anthropic.com' });
    expect(settings.ollama).toEqual({ host: 'http://127.0.0.1:11434' });
    expect(settings.file).toBeUndefined();
  });

  it('takes each setting from the option, else the environment, else providers.json', async () => {
    writeSettings({
      openai: { apiKey: 'file-openai-key', baseUrl: 'http://file.example/v1' },
      anthropic: { apiKey: 'file-anthropic-key', baseUrl: 'http://file-anthropic.example' },
      ollama: { host: 'file-host:1234' },
      timeouts: { idleMs: 5000 },
      retries: { attempts: 2 },
    });
    const settings = await resolveProviderSettings(
      {
        env: { OPENAI_API_KEY: 'env-openai-key', OPENAI_BASE_URL: 'http://env.example/v1', ANTHROPIC_BASE_URL: '', OLLAMA_HOST: 'env-host:5678' },
        openai: { baseUrl: 'http://option.example/v1/' },
        retries: { attempts: 5 },
      },
      dir,
    );
    expect(settings.openai).toEqual({ apiKey: 'env-openai-key', baseUrl: 'http://option.example/v1' });
    // An empty variable counts as unset.
    expect(settings.anthropic).toEqual({ apiKey: 'file-anthropic-key', baseUrl: 'http://file-anthropic.example' });
    expect(settings.ollama).toEqual({ host: 'http://env-host:5678' });
    expect(settings.timeouts).toEqual({ idleMs: 5000 });
    expect(settings.retries).toEqual({ attempts: 5 });
    expect(settings.file).toBe(join(dir, 'providers.json'));
  });

  it('refuses a providers.json with keys that others may read, and says how to fix it', async () => {
    const path = writeSettings({ openai: { apiKey: 'sk-file-secret-key' } }, 0o644);
    const err = await failure(resolveProviderSettings({ env: {} }, dir));
    expect(err.code).toBe('unavailable');
    expect(err.message).toBe(`provider settings ${path} hold API keys but other users may read the file (mode 0644): run chmod 600 ${path}`);
    expect(err.message).not.toContain('sk-file-secret-key');
    chmodSync(path, 0o600);
    expect((await resolveProviderSettings({ env: {} }, dir)).openai.apiKey).toBe('sk-file-secret-key');
    // Without keys the mode does not matter.
    writeSettings({ ollama: { host: 'box:1' } }, 0o644);
    expect((await resolveProviderSettings({ env: {} }, dir)).ollama.host).toBe('http://box:1');
  });

  it('reports a broken providers.json without quoting it, and an unknown field by name', async () => {
    writeSettings('{"openai": {"apiKey": "sk-half-written');
    const broken = await failure(resolveProviderSettings({ env: {} }, dir));
    expect(broken.message).toBe(`provider settings ${join(dir, 'providers.json')} are not valid JSON`);
    writeSettings({ openai: { api_key: 'sk-wrong-field' } });
    const unknown = await failure(resolveProviderSettings({ env: {} }, dir));
    expect(unknown.code).toBe('invalid_request');
    expect(unknown.message).toContain('unknown field "api_key"');
    expect(unknown.message).not.toContain('sk-wrong-field');
    expect((await resolveProviderSettings({ env: {}, file: false }, dir)).file).toBeUndefined();
  });

  it('checks base URLs and names the setting, not the value', async () => {
    const err = await failure(resolveProviderSettings({ env: { OPENAI_BASE_URL: 'https://user:sk-pasted-key@proxy.example/v1' } }, dir));
    expect(err.message).toBe('OPENAI_BASE_URL must not hold credentials; configure the API key instead');
    expect((await failure(resolveProviderSettings({ env: { ANTHROPIC_BASE_URL: 'not a url' } }, dir))).message).toBe('ANTHROPIC_BASE_URL is not a valid URL');
  });

  it('describes the settings for logs without the keys', async () => {
    const settings = await resolveProviderSettings({ env: { OPENAI_API_KEY: 'sk-describe-secret' } }, dir);
    const described = JSON.stringify(describeProviderSettings(settings));
    expect(described).not.toContain('sk-describe-secret');
    expect(describeProviderSettings(settings)).toMatchObject({ openai_key_set: true, anthropic_key_set: false, openai_base_url: 'https://api.openai.com/v1' });
  });

  it('createSentinelApi registers the providers and tools and logs the settings without keys', async () => {
    const lines: string[] = [];
    const api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: 'providers-config-secret-0123456789',
      adminPassword: 'admin-password-for-tests',
      logger: createJsonLogger({ write: (line) => lines.push(line) }),
      providers: { env: {}, openai: { apiKey: 'sk-startup-secret-key' } },
    });
    try {
      expect(api.providers.names()).toEqual(['anthropic', 'echo', 'ollama', 'openai']);
      expect(api.tools.names()).toEqual(['calculator', 'current_time', 'http_fetch', 'web_search']);
      const configured = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'model providers configured');
      expect(configured).toMatchObject({ openai_key_set: true, anthropic_key_set: false });
      expect(lines.join('')).not.toContain('sk-startup-secret-key');
    } finally {
      await api.close();
    }
  });
});
