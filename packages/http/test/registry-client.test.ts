/**
 * The OCI distribution client and back end against a real registry process (Debian's
 * `docker-registry`, CNCF distribution 2.8): anonymous, htpasswd basic auth, and token
 * (bearer) auth with a test-owned token server; digest verification through a tampering proxy;
 * the faults a user must be told about clearly.
 */
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildAgentImage,
  DistributionBackend,
  OCI_MANIFEST_MEDIA_TYPE,
  parseAgentDefinition,
  RegistryClient,
  type BlobProgressEvent,
} from '@sentinel/api-core';
import {
  createSigningIdentity,
  digestOf,
  listenLoopback,
  startDockerRegistry,
  startProxy,
  startTokenServer,
  tempDir,
  type RunningRegistry,
  type RunningTokenServer,
} from './registry-support.js';

const CREATED = '2026-03-01T00:00:00.000Z';

function agentImage(name: string, tag = 'v1', description = `the ${name} agent`) {
  return buildAgentImage(parseAgentDefinition({ name, tag, description, model: 'echo/echo' }), CREATED);
}

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

/** Pushes a container-image-shaped manifest (not an agent) with the plain client. */
async function pushContainerImage(client: RegistryClient, repository: string, tag: string): Promise<string> {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const configDigest = digestOf(config);
  await client.uploadBlob(repository, configDigest, config);
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] }),
  );
  return client.putManifest(repository, tag, manifest);
}

describe('an anonymous registry', () => {
  let registry: RunningRegistry;
  let backend: DistributionBackend;

  beforeAll(async () => {
    registry = await startDockerRegistry();
    backend = new DistributionBackend({ url: registry.url });
  });
  afterAll(async () => {
    await backend.close();
    await registry?.stop();
  });

  it('pushes blobs then the manifest, skips blobs it already has, and pulls back verified bytes', async () => {
    const image = agentImage('demo/helper');
    const first: BlobProgressEvent[] = [];
    await backend.push(image, { repository: 'demo/helper', tag: 'v1' }, { onProgress: (e) => first.push(e) });
    expect(first.filter((e) => e.status === 'verified').map((e) => e.kind)).toEqual(['config', 'layer', 'manifest']);
    expect(first.filter((e) => e.status === 'exists')).toEqual([]);

    const second: BlobProgressEvent[] = [];
    await backend.push(image, { repository: 'demo/helper', tag: 'stable' }, { onProgress: (e) => second.push(e) });
    expect(second.filter((e) => e.status === 'exists').map((e) => e.kind)).toEqual(['config', 'layer']);
    expect(second.some((e) => e.status === 'uploading' && e.kind !== 'manifest')).toBe(false);

    for (const reference of ['v1', 'stable', image.digest]) {
      const pulled = await backend.pull('demo/helper', reference);
      expect(pulled.digest).toBe(image.digest);
      expect(pulled.manifest.toString('utf8')).toBe(image.manifest);
      expect(pulled.config.toString('utf8')).toBe(image.config);
    }
    expect((await backend.listTags('demo/helper')).sort()).toEqual(['stable', 'v1']);
    expect(await backend.describeTag('demo/helper', 'v1')).toEqual({ digest: image.digest, description: 'the demo/helper agent', agent: true });
  });

  it('pages the catalog through its Link header', async () => {
    for (const name of ['paging/a', 'paging/b', 'paging/c']) await backend.push(agentImage(name), { repository: name, tag: 'latest' });
    const client = backend.registryClient;
    const firstPage = await client.catalogPage({ n: 2 });
    expect(firstPage.repositories).toHaveLength(2);
    expect(firstPage.next).toBe(firstPage.repositories[1]);
    const all = await client.listRepositories();
    expect(all).toEqual(expect.arrayContaining(['paging/a', 'paging/b', 'paging/c', 'demo/helper']));
    expect(new Set(all).size).toBe(all.length);
  });

  it('tells unknown repositories, tags and manifests apart (not_found)', async () => {
    // distribution answers MANIFEST_UNKNOWN for a manifest of an unknown repository, and NAME_UNKNOWN for its tag list.
    expect(await rejection(backend.pull('demo/nothing', 'v1'))).toEqual(expect.objectContaining({ code: 'not_found', message: `tag "v1" not found in ${registry.host}/demo/nothing` }));
    expect(await rejection(backend.listTags('demo/nothing'))).toEqual(
      expect.objectContaining({ code: 'not_found', message: `repository demo/nothing not found in registry ${registry.host}` }),
    );
    expect(await rejection(backend.pull('demo/helper', 'v404'))).toEqual(expect.objectContaining({ code: 'not_found', message: `tag "v404" not found in ${registry.host}/demo/helper` }));
    const missing = `sha256:${'0'.repeat(64)}`;
    expect((await rejection(backend.pull('demo/helper', missing))).message).toBe(`manifest ${missing} not found in ${registry.host}/demo/helper`);
  });

  it('refuses a manifest that is not an agent image before fetching its blobs', async () => {
    await pushContainerImage(backend.registryClient, 'containers/web', 'latest');
    const err = await rejection(backend.pull('containers/web', 'latest'));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toBe(
      `${registry.host}/containers/web:latest is not an agent image: its config media type is application/vnd.oci.image.config.v1+json, not application/vnd.sentinel.agent.config.v1+json`,
    );
    expect(await backend.describeTag('containers/web', 'latest')).toMatchObject({ agent: false, description: '' });
  });

  it('says a registry is unreachable, with the reason', async () => {
    const closed = await listenLoopback(() => undefined);
    const url = closed.url;
    await closed.close();
    const client = new RegistryClient({ url });
    try {
      const err = await rejection(client.getManifest('demo/helper', 'v1'));
      expect(err.code).toBe('upstream_error');
      expect(err.message).toBe(`registry ${new URL(url).host} is unreachable: ECONNREFUSED`);
    } finally {
      await client.close();
    }
  });

  it('cancels a request when its signal aborts', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await rejection(backend.pull('demo/helper', 'v1', { signal: controller.signal }));
    expect((err as unknown as Error).name).toBe('AbortError');
  });
});

describe('a registry with htpasswd basic auth', () => {
  let registry: RunningRegistry;
  beforeAll(async () => {
    registry = await startDockerRegistry({ htpasswd: { username: 'alice', password: 'alice-registry-pass' } });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('pushes and pulls with the right credentials', async () => {
    const backend = new DistributionBackend({ url: registry.url, credentials: { username: 'alice', password: 'alice-registry-pass' } });
    try {
      const image = agentImage('secure/helper');
      await backend.push(image, { repository: 'secure/helper', tag: 'v1' });
      expect((await backend.pull('secure/helper', 'v1')).digest).toBe(image.digest);
      expect(await backend.listRepositories()).toContain('secure/helper');
    } finally {
      await backend.close();
    }
  });

  it("turns the registry's 401 into a clear upstream error, never our own 401", async () => {
    const anonymous = new DistributionBackend({ url: registry.url });
    const wrong = new DistributionBackend({ url: registry.url, credentials: { username: 'alice', password: 'not-her-password' } });
    try {
      const anon = await rejection(anonymous.pull('secure/helper', 'v1'));
      expect(anon.code).toBe('upstream_error');
      expect(anon.message).toMatch(new RegExp(`^registry ${registry.host} refused anonymous access \\(HTTP 401 from GET /v2/secure/helper/manifests/v1\\); give credentials$`));
      const refused = await rejection(wrong.push(agentImage('secure/other'), { repository: 'secure/other', tag: 'v1' }));
      expect(refused.code).toBe('upstream_error');
      expect(refused.message).toMatch(new RegExp(`^registry ${registry.host} refused the credentials`));
      expect(refused.message).not.toContain('not-her-password');
    } finally {
      await anonymous.close();
      await wrong.close();
    }
  });
});

describe('a registry with token (bearer) auth and a token server', () => {
  const service = 'sentinel-test-registry';
  const issuer = 'sentinel-test-issuer';
  let registry: RunningRegistry;
  let tokens: RunningTokenServer;
  let dir: string;

  beforeAll(async () => {
    const identity = createSigningIdentity(issuer);
    dir = tempDir('token-auth');
    writeFileSync(join(dir, 'bundle.pem'), identity.certificatePem);
    tokens = await startTokenServer({ identity, issuer, service, username: 'carol', password: 'carol-token-pass' });
    registry = await startDockerRegistry({ token: { realm: `${tokens.url}/token`, service, issuer, rootCertBundle: join(dir, 'bundle.pem') } });
  });
  afterAll(async () => {
    await registry?.stop();
    await tokens?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the Bearer challenge with a token per scope, and reuses it until it expires', async () => {
    const backend = new DistributionBackend({ url: registry.url, credentials: { username: 'carol', password: 'carol-token-pass' } });
    try {
      const image = agentImage('bearer/helper');
      await backend.push(image, { repository: 'bearer/helper', tag: 'v1' });
      const afterPush = tokens.requests.length;
      expect(tokens.requests.map((r) => [r.scope, r.service, r.authenticated])).toEqual([['repository:bearer/helper:pull,push', service, true]]);
      expect((await backend.pull('bearer/helper', 'v1')).digest).toBe(image.digest);
      expect((await backend.pull('bearer/helper', image.digest)).digest).toBe(image.digest);
      // One more token for the pull scope, reused by the second pull.
      expect(tokens.requests.slice(afterPush).map((r) => r.scope)).toEqual(['repository:bearer/helper:pull']);
      expect(await backend.listRepositories()).toEqual(['bearer/helper']);
      expect(tokens.requests.at(-1)?.scope).toBe('registry:catalog:*');
    } finally {
      await backend.close();
    }
  });

  it('reports refused credentials from the token server, and anonymous tokens without access', async () => {
    const wrong = new DistributionBackend({ url: registry.url, credentials: { username: 'carol', password: 'wrong' } });
    const anonymous = new DistributionBackend({ url: registry.url });
    try {
      const refused = await rejection(wrong.pull('bearer/helper', 'v1'));
      expect(refused.code).toBe('upstream_error');
      expect(refused.message).toBe(`registry ${registry.host} refused the credentials (HTTP 401 from the token server ${new URL(tokens.url).host})`);
      const anon = await rejection(anonymous.pull('bearer/helper', 'v1'));
      expect(anon.code).toBe('upstream_error');
      expect(anon.message).toMatch(/refused anonymous access \(HTTP 401 from GET \/v2\/bearer\/helper\/manifests\/v1\); give credentials/);
      const catalog = await rejection(anonymous.listRepositories());
      expect(catalog.message).toMatch(/does not let anonymous clients read its catalog/);
    } finally {
      await wrong.close();
      await anonymous.close();
    }
  });
});

describe('digest verification through a tampering proxy', () => {
  let registry: RunningRegistry;
  beforeAll(async () => {
    registry = await startDockerRegistry();
    const backend = new DistributionBackend({ url: registry.url });
    await backend.push(agentImage('demo/tamper'), { repository: 'demo/tamper', tag: 'v1' });
    await backend.close();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('fails a pull whose config blob was altered on the way', async () => {
    const image = agentImage('demo/tamper');
    const proxy = await startProxy(registry.url, {
      rewriteBody: (req, body) => (req.url?.includes('/blobs/') ? Buffer.from(body.toString('utf8').replace('echo', 'evil')) : undefined),
    });
    const backend = new DistributionBackend({ url: proxy.url });
    try {
      const err = await rejection(backend.pull('demo/tamper', 'v1'));
      expect(err.code).toBe('upstream_error');
      expect(err.message).toMatch(new RegExp(`^digest mismatch: blob from 127\\.0\\.0\\.1:\\d+/demo/tamper is sha256:[0-9a-f]{64} \\(\\d+ bytes\\), expected ${image.config_digest}`));
    } finally {
      await backend.close();
      await proxy.close();
    }
  });

  it('fails a pull whose manifest was altered (by digest, and by tag against Docker-Content-Digest)', async () => {
    const image = agentImage('demo/tamper');
    const proxy = await startProxy(registry.url, {
      rewriteBody: (req, body) => (req.url?.includes('/manifests/') ? Buffer.from(body.toString('utf8').replace('"schemaVersion":2', '"schemaVersion": 2')) : undefined),
    });
    const backend = new DistributionBackend({ url: proxy.url });
    try {
      const byDigest = await rejection(backend.pull('demo/tamper', image.digest));
      expect(byDigest.code).toBe('upstream_error');
      expect(byDigest.message).toMatch(/^digest mismatch: the manifest of .* expected sha256:/);
      const byTag = await rejection(backend.pull('demo/tamper', 'v1'));
      expect(byTag.message).toContain(`expected ${image.digest}`);
    } finally {
      await backend.close();
      await proxy.close();
    }
  });
});
