/**
 * A real OpenID provider on loopback for the OIDC specs: `oidc-provider` (the certified Node
 * implementation) issuing client-credentials access tokens as JWTs through resource indicators.
 * Key rotation swaps in a provider with a new signing key behind the same address, so the
 * published JWKS changes the way a real issuer's does. Every JWKS request is counted.
 */
import { createHmac, createPrivateKey, generateKeyPairSync, randomBytes, sign, type JsonWebKey } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

/** The audience (resource server) the provider issues tokens for by default. */
export const OIDC_AUDIENCE = 'sentinel-api';
/** The default resource indicator; its tokens name {@link OIDC_AUDIENCE}. */
export const OIDC_RESOURCE = 'https://api.sentinel.test/';
/** A resource whose tokens name another audience. */
export const OTHER_RESOURCE = 'https://other.sentinel.test/';
/** Resources whose tokens are signed with RS256 and EdDSA instead of ES256. */
export const RS256_RESOURCE = 'https://api.sentinel.test/rs256';
export const EDDSA_RESOURCE = 'https://api.sentinel.test/eddsa';
/** Every scope a client may be granted (ours, plus one of the issuer's own). */
const ALL_SCOPES = 'agents:read agents:write agents:chat images:read images:write registry:pull registry:push keys:write admin profile';

export interface OidcClientSpec {
  clientId: string;
  /** Extra claims every access token of this client carries (e.g. a groups claim, preferred_username). */
  claims?: Record<string, unknown>;
}

export interface SigningKey {
  kid: string;
  alg: 'ES256' | 'RS256' | 'EdDSA';
  /** The private JWK (with kid, alg, use). */
  jwk: JsonWebKey & { kid: string; alg: string; use: string };
}

export interface RunningOidcProvider {
  /** `http://127.0.0.1:<port>`, exactly as tokens carry it in `iss`. */
  issuer: string;
  /** A client-credentials access token for `clientId` (secret known to the helper). */
  token(clientId: string, options?: { scope?: string; resource?: string }): Promise<string>;
  /** The ES256 key tokens are signed with now. */
  currentKey(): SigningKey;
  /** Publishes a new ES256 signing key (the old one stays published, as issuers do during a rollover). */
  rotateKeys(): SigningKey;
  /** How many times the JWKS has been fetched. */
  jwksRequests(): number;
  close(): Promise<void>;
}

function signingKey(alg: SigningKey['alg']): SigningKey {
  const kid = `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`;
  const pair =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ed25519');
  return { kid, alg, jwk: { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

/** The provider's storage, in memory and per provider (its built-in one warns on every start). */
function memoryAdapter(): new (name: string) => object {
  const store = new Map<string, Record<string, unknown>>();
  return class {
    constructor(readonly name: string) {}
    key(id: string): string {
      return `${this.name}:${id}`;
    }
    upsert(id: string, payload: Record<string, unknown>): Promise<void> {
      store.set(this.key(id), payload);
      return Promise.resolve();
    }
    find(id: string): Promise<Record<string, unknown> | undefined> {
      return Promise.resolve(store.get(this.key(id)));
    }
    findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      return Promise.resolve([...store.values()].find((p) => p.uid === uid));
    }
    findByUserCode(code: string): Promise<Record<string, unknown> | undefined> {
      return Promise.resolve([...store.values()].find((p) => p.userCode === code));
    }
    consume(id: string): Promise<void> {
      const payload = store.get(this.key(id));
      if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
      return Promise.resolve();
    }
    destroy(id: string): Promise<void> {
      store.delete(this.key(id));
      return Promise.resolve();
    }
    revokeByGrantId(grantId: string): Promise<void> {
      for (const [k, p] of store) if (p.grantId === grantId) store.delete(k);
      return Promise.resolve();
    }
  };
}

function secretOf(clientId: string): string {
  return `secret-of-${clientId}-0123456789abcdef`;
}

/**
 * Starts a provider on 127.0.0.1 (port 0) with the given clients. Tokens last `accessTokenTtl`
 * seconds (default 300).
 */
export async function startOidcProvider(options: { clients: OidcClientSpec[]; accessTokenTtl?: number }): Promise<RunningOidcProvider> {
  let jwksCount = 0;
  let listener: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server: Server = createServer((req, res) => {
    if (req.url !== undefined && req.url.startsWith('/jwks')) jwksCount += 1;
    if (listener === undefined) {
      res.statusCode = 503;
      res.end();
      return;
    }
    listener(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const claimsOf = new Map(options.clients.map((c) => [c.clientId, c.claims ?? {}]));
  const rsa = signingKey('RS256');
  const ed = signingKey('EdDSA');
  let keys: SigningKey[] = [signingKey('ES256')];

  const build = (): void => {
    const current = keys[0] as SigningKey;
    const provider = new Provider(issuer, {
      clients: options.clients.map((c) => ({
        client_id: c.clientId,
        client_secret: secretOf(c.clientId),
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: ALL_SCOPES,
      })),
      adapter: memoryAdapter() as never,
      cookies: { keys: ['oidc-test-cookie-key-0123456789'] },
      ttl: { ClientCredentials: options.accessTokenTtl ?? 300 },
      scopes: ['openid', ...ALL_SCOPES.split(' ')],
      jwks: { keys: [...keys.map((k) => k.jwk), rsa.jwk, ed.jwk] as never },
      enabledJWA: { idTokenSigningAlgValues: ['ES256', 'RS256', 'EdDSA'] } as never,
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        introspection: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => OIDC_RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => {
            const alg = resource === RS256_RESOURCE ? 'RS256' : resource === EDDSA_RESOURCE ? 'EdDSA' : 'ES256';
            const kid = alg === 'RS256' ? rsa.kid : alg === 'EdDSA' ? ed.kid : current.kid;
            return {
              scope: ALL_SCOPES,
              audience: resource === OTHER_RESOURCE ? 'other-api' : OIDC_AUDIENCE,
              accessTokenFormat: 'jwt',
              accessTokenTTL: options.accessTokenTtl ?? 300,
              jwt: { sign: { alg, kid } },
            };
          },
        },
      },
      extraTokenClaims: (_ctx, token) => {
        const clientId = (token as { clientId?: string }).clientId;
        return clientId === undefined ? undefined : claimsOf.get(clientId);
      },
    });
    listener = provider.callback() as (req: IncomingMessage, res: ServerResponse) => void;
  };
  build();

  return {
    issuer,
    async token(clientId, tokenOptions = {}) {
      const form = new URLSearchParams({ grant_type: 'client_credentials', resource: tokenOptions.resource ?? OIDC_RESOURCE });
      if (tokenOptions.scope !== undefined) form.set('scope', tokenOptions.scope);
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${clientId}:${secretOf(clientId)}`).toString('base64')}`,
        },
        body: form.toString(),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (res.status !== 200 || typeof body.access_token !== 'string') {
        throw new Error(`token endpoint answered ${res.status}: ${body.error ?? ''} ${body.error_description ?? ''}`);
      }
      return body.access_token;
    },
    currentKey: () => keys[0] as SigningKey,
    rotateKeys() {
      keys = [signingKey('ES256'), ...keys];
      build();
      return keys[0] as SigningKey;
    },
    jwksRequests: () => jwksCount,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A fresh signing key the provider does not know (for unknown-kid and forged tokens). */
export function unpublishedKey(alg: SigningKey['alg'] = 'ES256'): SigningKey {
  return signingKey(alg);
}

/**
 * Signs a JWT by hand, as an attacker or a misbehaving issuer would: with `key` for
 * ES256/RS256/EdDSA, with `secret` for HS256, or unsigned for `none`.
 */
export function signJwt(
  header: { alg: 'ES256' | 'RS256' | 'EdDSA' | 'HS256' | 'none'; kid?: string },
  payload: Record<string, unknown>,
  signer: { key?: SigningKey; secret?: string } = {},
): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode({ typ: 'at+jwt', ...header })}.${encode(payload)}`;
  if (header.alg === 'none') return `${input}.`;
  if (header.alg === 'HS256') return `${input}.${createHmac('sha256', signer.secret ?? '').update(input).digest('base64url')}`;
  if (signer.key === undefined) throw new Error(`${header.alg} needs a key`);
  const key = createPrivateKey({ key: signer.key.jwk, format: 'jwk' });
  const data = Buffer.from(input);
  const signature =
    header.alg === 'EdDSA'
      ? sign(null, data, key)
      : header.alg === 'ES256'
        ? sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })
        : sign('sha256', data, key);
  return `${input}.${signature.toString('base64url')}`;
}
