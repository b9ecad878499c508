/**
 * The pure parts of the registry: Docker-like references, registry URLs, WWW-Authenticate
 * challenges, token expiry, Link paging, Accept negotiation for NDJSON progress.
 */
import { describe, expect, it } from 'vitest';
import { SentinelError } from '@sentinel/api-core';
import { parseWwwAuthenticate, TokenCache } from '../src/registry/auth.js';
import { nextLink } from '../src/registry/client.js';
import { formatRegistryReference, isLoopbackHost, parseRegistryLocation, parseRegistryReference } from '../src/registry/reference.js';
import { acceptsNdjson } from '../src/routes/registry.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

function errorOf(fn: () => unknown): SentinelError {
  try {
    fn();
  } catch (err) {
    return err as SentinelError;
  }
  throw new Error('expected a throw');
}

describe('parseRegistryReference', () => {
  it('reads repositories, tags and digests the way Docker does', () => {
    expect(parseRegistryReference('demo/helper')).toEqual({ registry: undefined, repository: 'demo/helper', tag: undefined, digest: undefined });
    expect(parseRegistryReference('demo/helper:v1')).toEqual({ registry: undefined, repository: 'demo/helper', tag: 'v1', digest: undefined });
    expect(parseRegistryReference(`demo/helper@${DIGEST}`)).toEqual({ registry: undefined, repository: 'demo/helper', tag: undefined, digest: DIGEST });
    expect(parseRegistryReference(`demo/helper:v1@${DIGEST}`)).toEqual({ registry: undefined, repository: 'demo/helper', tag: 'v1', digest: DIGEST });
    expect(parseRegistryReference('a__b/c--d.e_f')).toMatchObject({ repository: 'a__b/c--d.e_f' });
  });

  it('takes the first component as a registry only when it has a dot or a port, or is localhost', () => {
    expect(parseRegistryReference('localhost:5000/demo/helper:v1')).toEqual({ registry: 'localhost:5000', repository: 'demo/helper', tag: 'v1', digest: undefined });
    expect(parseRegistryReference('localhost/demo')).toMatchObject({ registry: 'localhost', repository: 'demo' });
    expect(parseRegistryReference('ghcr.io/acme/agents/helper')).toMatchObject({ registry: 'ghcr.io', repository: 'acme/agents/helper', tag: undefined });
    expect(parseRegistryReference('127.0.0.1:5000/x:latest')).toMatchObject({ registry: '127.0.0.1:5000', repository: 'x', tag: 'latest' });
    // A single component is never a registry, even with a dot.
    expect(parseRegistryReference('helper.v2')).toMatchObject({ registry: undefined, repository: 'helper.v2' });
    expect(parseRegistryReference('acme/helper')).toMatchObject({ registry: undefined, repository: 'acme/helper' });
  });

  it('formats back what it parsed', () => {
    for (const ref of ['demo/helper', 'demo/helper:v1', `localhost:5000/demo/helper:v1@${DIGEST}`, `ghcr.io/a/b@${DIGEST}`]) {
      expect(formatRegistryReference(parseRegistryReference(ref))).toBe(ref);
    }
  });

  it('refuses malformed references with a 400 that says what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['Demo/helper', /not a valid repository path component/],
      ['demo//helper', /not a valid repository path component/],
      ['demo/helper:', /a tag is 1 to 128 characters/],
      ['demo/helper:-bad', /a tag is 1 to 128 characters/],
      ['demo/helper@sha256:abc', /digest must be sha256/],
      ['demo/helper@md5:0123', /digest must be sha256/],
      ['host:99999/x', /not a valid registry host/],
      ['-host.io/x', /not a valid registry host/],
      [`a/${'b'.repeat(300)}`, /longer than 255/],
      ['x'.repeat(600), /longer than 512/],
    ];
    for (const [ref, message] of cases) {
      const err = errorOf(() => parseRegistryReference(ref));
      expect(err.code, ref).toBe('invalid_request');
      expect(err.message, ref).toMatch(message);
    }
  });
});

describe('parseRegistryLocation', () => {
  it('accepts http(s) URLs with an optional namespace', () => {
    expect(parseRegistryLocation('https://registry.example.com')).toEqual({ origin: 'https://registry.example.com', host: 'registry.example.com', namespace: '' });
    expect(parseRegistryLocation('http://127.0.0.1:5000/team/agents/')).toEqual({ origin: 'http://127.0.0.1:5000', host: '127.0.0.1:5000', namespace: 'team/agents' });
    expect(parseRegistryLocation('https://ghcr.io/acme')).toMatchObject({ host: 'ghcr.io', namespace: 'acme' });
  });

  it('reads a bare host as HTTPS, except loopback hosts (plain HTTP, like Docker)', () => {
    expect(parseRegistryLocation('registry.example.com/ns').origin).toBe('https://registry.example.com');
    expect(parseRegistryLocation('localhost:5000').origin).toBe('http://localhost:5000');
    expect(parseRegistryLocation('127.0.0.1:5000').origin).toBe('http://127.0.0.1:5000');
    expect(isLoopbackHost('[::1]:5000')).toBe(true);
    expect(isLoopbackHost('10.0.0.1:5000')).toBe(false);
  });

  it('refuses credentials in the URL, queries, other schemes and bad namespaces', () => {
    expect(errorOf(() => parseRegistryLocation('https://user:secret@registry.example.com')).message).toMatch(/credentials in the username\/password options/);
    expect(errorOf(() => parseRegistryLocation('https://registry.example.com?x=1')).message).toMatch(/no query/);
    expect(errorOf(() => parseRegistryLocation('ftp://registry.example.com')).message).toMatch(/only http:\/\/ and https:\/\//);
    expect(errorOf(() => parseRegistryLocation('https://registry.example.com/Bad')).message).toMatch(/bad namespace/);
    // The message never echoes the password back.
    expect(errorOf(() => parseRegistryLocation('https://user:hunter2@registry.example.com')).code).toBe('invalid_request');
  });
});

describe('parseWwwAuthenticate', () => {
  it('reads a bearer challenge with quoted parameters', () => {
    const [challenge] = parseWwwAuthenticate('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"');
    expect(challenge).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' },
    });
  });

  it('reads several challenges, unquoted values and escapes', () => {
    const challenges = parseWwwAuthenticate(['Basic realm="a \\"quoted\\" realm"', 'Bearer realm=https://x/token, error=invalid_token']);
    expect(challenges.map((c) => c.scheme)).toEqual(['basic', 'bearer']);
    expect(challenges[0]?.params.realm).toBe('a "quoted" realm');
    expect(challenges[1]?.params).toEqual({ realm: 'https://x/token', error: 'invalid_token' });
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate('Negotiate abc==, Basic realm="r"').map((c) => c.scheme)).toEqual(['negotiate', 'basic']);
  });
});

describe('TokenCache', () => {
  it('keeps a token until shortly before it expires (60 s by default)', () => {
    let now = 1_000_000;
    const cache = new TokenCache(() => now);
    const key = TokenCache.key('https://auth/token', 'svc', 'repository:a:pull');
    cache.set(key, 't1');
    expect(cache.get(key)).toBe('t1');
    now += 54_000;
    expect(cache.get(key)).toBe('t1');
    now += 2_000; // within the 5 s margin of the 60 s default
    expect(cache.get(key)).toBeUndefined();
    cache.set(key, 't2', 3600);
    now += 3_000_000;
    expect(cache.get(key)).toBe('t2');
    expect(cache.get(TokenCache.key('https://auth/token', 'svc', 'repository:a:pull,push'))).toBeUndefined();
  });
});

describe('paging and negotiation helpers', () => {
  it('finds the next link of a Link header', () => {
    expect(nextLink('</v2/_catalog?last=b&n=2>; rel="next"')).toBe('/v2/_catalog?last=b&n=2');
    expect(nextLink('<https://x/prev>; rel="prev", <https://x/next>; rel=next')).toBe('https://x/next');
    expect(nextLink(undefined)).toBeUndefined();
    expect(nextLink('<https://x/prev>; rel="prev"')).toBeUndefined();
  });

  it('streams progress only when NDJSON is acceptable', () => {
    expect(acceptsNdjson('application/x-ndjson')).toBe(true);
    expect(acceptsNdjson('application/json, application/x-ndjson;q=0.5')).toBe(true);
    expect(acceptsNdjson('application/x-ndjson;q=0')).toBe(false);
    expect(acceptsNdjson('application/json')).toBe(false);
    expect(acceptsNdjson(undefined)).toBe(false);
  });
});
