/**
 * Test support for the registry specs: the real `docker-registry` start-up (shared with the SDK
 * specs, in @sentinel/test-support/docker-registry, re-exported here), a test-owned token server
 * for its token auth, and a loopback proxy in front of it that can slow responses down or
 * tamper with blobs.
 */
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { requireDockerRegistry, startDockerRegistry, type RegistryOptions, type RunningRegistry, type TokenAuthConfig } from '@sentinel/test-support/docker-registry';

/** Starts a node:http server on 127.0.0.1:0 and returns it with its base URL. */
export async function listenLoopback(handler: http.RequestListener): Promise<{ server: http.Server; url: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface ProxyOptions {
  /** Called per request before it is forwarded; resolve when it may go on (slow-downs). */
  beforeForward?: (req: http.IncomingMessage) => Promise<void> | void;
  /** Rewrites a buffered response body for matching requests (tampering). */
  rewriteBody?: (req: http.IncomingMessage, body: Buffer) => Buffer | undefined;
  /**
   * Drips the whole response (status line, headers, body) of matching requests onto the socket
   * a few bytes at a time: a registry that is slow enough never to trip a per-read timeout.
   */
  drip?: { match: (req: http.IncomingMessage) => boolean; bytesPerSecond: number };
}

/** Writes `bytes` to `socket` at about `bytesPerSecond` (one write every 100 ms), then ends it; stops when the peer goes. */
function dripTo(socket: import('node:net').Socket, bytes: Buffer, bytesPerSecond: number): void {
  const step = Math.max(1, Math.round(bytesPerSecond / 10));
  let offset = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || offset >= bytes.byteLength) {
      clearInterval(timer);
      if (!socket.destroyed) socket.end();
      return;
    }
    socket.write(bytes.subarray(offset, offset + step));
    offset += step;
  }, 100);
  socket.once('close', () => clearInterval(timer));
}

export interface RunningProxy {
  url: string;
  /** Requests seen, as `METHOD path`. */
  requests: string[];
  /** Requests whose client hung up before the proxy answered them. */
  abandoned: string[];
  close(): Promise<void>;
}

/**
 * A loopback HTTP proxy in front of `target` (a registry): forwards every request, optionally
 * holding it back first or rewriting the response body. It rewrites the registry's absolute
 * Location headers so uploads keep going through the proxy.
 */
export async function startProxy(target: string, options: ProxyOptions = {}): Promise<RunningProxy> {
  const requests: string[] = [];
  const abandoned: string[] = [];
  const targetUrl = new URL(target);
  let selfUrl = '';
  const running = await listenLoopback((req, res) => {
    const line = `${req.method} ${req.url}`;
    requests.push(line);
    let clientGone = false;
    res.on('close', () => {
      if (!res.writableFinished) {
        clientGone = true;
        abandoned.push(line);
      }
    });
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      await options.beforeForward?.(req);
      if (clientGone) return;
      const headers = { ...req.headers, host: targetUrl.host };
      const upstream = http.request(target + (req.url ?? '/'), { method: req.method, headers }, (upRes) => {
        const outHeaders = { ...upRes.headers };
        const location = outHeaders.location;
        if (typeof location === 'string' && location.startsWith(target)) outHeaders.location = selfUrl + location.slice(target.length);
        const drip = options.drip;
        if (drip?.match(req)) {
          const parts: Buffer[] = [];
          upRes.on('data', (chunk: Buffer) => parts.push(chunk));
          upRes.on('end', () => {
            const body = req.method === 'HEAD' ? Buffer.alloc(0) : Buffer.concat(parts);
            const lines = [`HTTP/1.1 ${upRes.statusCode ?? 502} ${upRes.statusMessage ?? ''}`];
            for (const [key, value] of Object.entries(outHeaders)) {
              if (value === undefined || ['connection', 'keep-alive', 'transfer-encoding', 'content-length'].includes(key)) continue;
              for (const one of Array.isArray(value) ? value : [value]) lines.push(`${key}: ${one}`);
            }
            lines.push(`content-length: ${req.method === 'HEAD' ? (upRes.headers['content-length'] ?? '0') : body.byteLength}`, 'connection: close');
            // Raw bytes straight to the socket: node:http would send the headers in one piece.
            dripTo(req.socket, Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]), drip.bytesPerSecond);
          });
          return;
        }
        const rewrite = options.rewriteBody;
        if (!rewrite) {
          res.writeHead(upRes.statusCode ?? 502, outHeaders);
          upRes.pipe(res);
          return;
        }
        const parts: Buffer[] = [];
        upRes.on('data', (chunk: Buffer) => parts.push(chunk));
        upRes.on('end', () => {
          const original = Buffer.concat(parts);
          const body = rewrite(req, original) ?? original;
          if (outHeaders['content-length'] !== undefined) outHeaders['content-length'] = String(body.byteLength);
          res.writeHead(upRes.statusCode ?? 502, outHeaders);
          res.end(req.method === 'HEAD' ? undefined : body);
        });
      });
      upstream.on('error', () => res.destroy());
      upstream.end(Buffer.concat(chunks));
    })().catch(() => res.destroy());
  });
  selfUrl = running.url;
  return { url: running.url, requests, abandoned, close: running.close };
}

/** A fresh temp directory; remove it with rmSync(dir, {recursive: true, force: true}). */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `sentinel-${prefix}-`));
}

// ---------------------------------------------------------------------------------------------
// Token auth: a self-signed certificate (DER built by hand: Node can sign, not issue, X.509)
// and a token server speaking the Docker token protocol.

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n >>= 8) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function der(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), derLength(body.byteLength), body]);
}

const seq = (...c: Buffer[]) => der(0x30, ...c);
const set = (...c: Buffer[]) => der(0x31, ...c);
const oid = (bytes: number[]) => der(0x06, Buffer.from(bytes));
const utf8 = (text: string) => der(0x0c, Buffer.from(text, 'utf8'));
const utcTime = (date: Date) => der(0x17, Buffer.from(`${date.toISOString().slice(2, 19).replace(/[-:T]/g, '')}Z`, 'ascii'));
const integer = (bytes: Buffer) => der(0x02, bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
// 1.2.840.10045.4.3.2 ecdsa-with-SHA256; 2.5.4.3 commonName
const ECDSA_SHA256 = seq(oid([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
const COMMON_NAME = [0x55, 0x04, 0x03];

export interface SigningIdentity {
  privateKey: KeyObject;
  /** DER of the self-signed certificate. */
  certificate: Buffer;
  /** PEM of the certificate (the registry's rootcertbundle). */
  certificatePem: string;
}

/** A P-256 key and a self-signed certificate for it, valid from an hour ago for a day. */
export function createSigningIdentity(commonName: string): SigningIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const name = seq(set(seq(oid(COMMON_NAME), utf8(commonName))));
  const now = Date.now();
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))), // version v3
    integer(randomBytes(8)),
    ECDSA_SHA256,
    name,
    seq(utcTime(new Date(now - 3_600_000)), utcTime(new Date(now + 86_400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, privateKey);
  const certificate = seq(tbs, ECDSA_SHA256, der(0x03, Buffer.from([0]), signature));
  const base64 = certificate.toString('base64').replace(/(.{64})/g, '$1\n');
  return { privateKey: createPrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' })), certificate, certificatePem: `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n` };
}

function base64url(value: Buffer | string): string {
  return Buffer.from(value).toString('base64url');
}

export interface RunningTokenServer {
  url: string;
  /** Token requests seen: the scope asked for and whether credentials came with it. */
  requests: { scope: string | null; service: string | null; authenticated: boolean }[];
  close(): Promise<void>;
}

/**
 * A token server for the Docker token protocol: GET /token?service=&scope=, Basic credentials
 * checked against `username`/`password` (wrong ones: 401; none: anonymous, granted nothing).
 * Issues ES256 JWTs with the certificate in `x5c`, granting what was asked for.
 */
export async function startTokenServer(options: { identity: SigningIdentity; issuer: string; service: string; username: string; password: string; expiresIn?: number }): Promise<RunningTokenServer> {
  const requests: RunningTokenServer['requests'] = [];
  const running = await listenLoopback((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const scope = url.searchParams.get('scope');
    const service = url.searchParams.get('service');
    const authorization = req.headers.authorization;
    requests.push({ scope, service, authenticated: authorization !== undefined });
    let granted = false;
    if (authorization !== undefined) {
      const expected = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
      if (authorization !== expected) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      granted = true;
    }
    const access = [];
    if (granted && scope) {
      // repository:name:pull,push  |  registry:catalog:*
      const [type, ...rest] = scope.split(':');
      const actions = rest.pop() ?? '';
      access.push({ type, name: rest.join(':'), actions: actions.split(',') });
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [options.identity.certificate.toString('base64')] };
    const claims = { iss: options.issuer, sub: granted ? options.username : '', aud: options.service, exp: now + (options.expiresIn ?? 300), nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(input), { key: options.identity.privateKey, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${base64url(signature)}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: options.expiresIn ?? 300, issued_at: new Date().toISOString() }));
  });
  return { url: running.url, requests, close: running.close };
}

/** sha256 digest of bytes, `sha256:<hex>`. */
export function digestOf(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
