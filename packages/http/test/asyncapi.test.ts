/**
 * `GET /v1/asyncapi.json` over real sockets, on the standalone server and on every mounted
 * host: public, valid AsyncAPI 3.0 for the real parser, and made of the very schemas the
 * WebSocket transport uses (the endpoint table, the client-frame schemas it validates with,
 * the server-frame schemas), with this server first in `servers`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Parser } from '@asyncapi/parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  CHAT_ENDPOINT,
  EVENTS_ENDPOINT,
  SERVER_FRAME_SCHEMAS,
  WEBSOCKET_CLOSE_CODES,
  buildAsyncApiDocument,
  createSentinelApi,
  sentinelVersion,
  type SentinelApi,
} from '@sentinel/api-core';
import { HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';

type Json = Record<string, any>;

// The severities of @stoplight/spectral (which the parser runs): 0 error, 1 warning, 2 information, 3 hint.
const ERROR = 0;
const WARNING = 1;

describe.each(HOSTS)('GET /v1/asyncapi.json on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let host: MountedApi;
  let doc: Json;
  let contentType: string | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-asyncapi-'));
    api = await createSentinelApi({ dataDir: dir, adminPassword: 'asyncapi-admin-password' });
    host = await mountApi(hostName, api);
    // No Authorization header: the document is public.
    const res = await request(`${host.baseUrl}/v1/asyncapi.json`);
    expect(res.statusCode).toBe(200);
    contentType = res.headers['content-type'] as string | undefined;
    doc = (await res.body.json()) as Json;
  });

  afterAll(async () => {
    await host?.close();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is JSON that @asyncapi/parser accepts with no errors and no warnings', async () => {
    expect(contentType).toMatch(/^application\/json/);
    expect(doc.asyncapi).toBe('3.0.0');
    const { document, diagnostics } = await new Parser().parse(JSON.stringify(doc));
    const shown = diagnostics.map((d) => `${d.severity} ${d.code}: ${d.message} at ${d.path.join('.')}`);
    expect(diagnostics.filter((d) => d.severity === ERROR || d.severity === WARNING), shown.join('\n')).toEqual([]);
    expect(document).toBeDefined();
    expect(document?.channels().all().map((c) => c.address())).toEqual(['/v1/agents/{id}/chat', '/v1/agents/{id}/events']);
  });

  it('names this server first, as the request addressed it, then the default one', () => {
    const { host: hostPort } = new URL(host.baseUrl);
    expect(Object.keys(doc.servers)[0]).toBe('this');
    expect(doc.servers.this).toMatchObject({ host: hostPort, protocol: 'ws' });
    expect(doc.servers.local).toMatchObject({ host: 'localhost:8080', protocol: 'ws' });
  });

  it('is the document the core generates, in the server’s version', () => {
    const { servers: _ignored, ...rest } = doc;
    const { servers: _default, ...expected } = buildAsyncApiDocument({ version: sentinelVersion() });
    expect(rest).toEqual(expected);
    expect(doc.info.version).toBe(sentinelVersion());
  });

  it('describes both channels with their path parameter, ws binding and query parameters', () => {
    expect(doc.channels.chat).toMatchObject({ address: '/v1/agents/{id}/chat', parameters: { id: { description: 'agent id' } } });
    expect(doc.channels.events).toMatchObject({ address: '/v1/agents/{id}/events', parameters: { id: { description: 'agent id' } } });
    expect(doc.channels.chat.bindings.ws).toMatchObject({ method: 'GET', query: { type: 'object', properties: {} } });
    expect(doc.channels.events.bindings.ws).toMatchObject({ method: 'GET', query: { properties: { since: { type: 'integer', minimum: 0 } } } });
  });

  it('has one message per frame type, each with the very schema the transport uses', () => {
    const payloadOf = (channel: string, operation: string): Record<string, unknown> =>
      Object.fromEntries(
        (doc.operations[operation].messages as Array<{ $ref: string }>).map(({ $ref }) => {
          const name = $ref.replace(`#/channels/${channel}/messages/`, '');
          expect(doc.channels[channel].messages[name]).toEqual({ $ref: `#/components/messages/${name}` });
          const message = doc.components.messages[name];
          return [message.name, message.payload];
        }),
      );
    expect(doc.operations.chatReceive.action).toBe('receive');
    expect(doc.operations.chatSend.action).toBe('send');
    expect(doc.operations.eventsSend.action).toBe('send');
    // Read-only: the events channel takes no frames from clients.
    expect(doc.operations.eventsReceive).toBeUndefined();
    expect(payloadOf('chat', 'chatReceive')).toEqual(CHAT_ENDPOINT.clientFrames);
    expect(payloadOf('chat', 'chatSend')).toEqual(CHAT_ENDPOINT.serverFrames);
    expect(payloadOf('events', 'eventsSend')).toEqual(EVENTS_ENDPOINT.serverFrames);
    // Every server frame type is described, and each exactly once.
    const names = Object.values(doc.components.messages as Record<string, { name: string }>).map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(expect.arrayContaining([...Object.keys(SERVER_FRAME_SCHEMAS), ...Object.keys(CHAT_ENDPOINT.clientFrames)]));
    expect(names).toHaveLength(Object.keys(SERVER_FRAME_SCHEMAS).length + Object.keys(CHAT_ENDPOINT.clientFrames).length);
  });

  it('requires a credential each way it can be given (header, subprotocol, one-time ticket), and lists the close codes', () => {
    expect(doc.components.securitySchemes.bearerHeader).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.securitySchemes.ticket).toMatchObject({ type: 'httpApiKey', in: 'query', name: 'ticket' });
    expect(doc.components.securitySchemes.bearerSubprotocol).toMatchObject({ type: 'httpApiKey', in: 'header', name: 'Sec-WebSocket-Protocol' });
    expect(doc.components.securitySchemes.bearerSubprotocol.description).toContain('sentinel.v1, bearer.<jwt>');
    for (const operation of Object.values(doc.operations as Record<string, Json>)) {
      expect(operation.security).toEqual([
        { $ref: '#/components/securitySchemes/bearerHeader' },
        { $ref: '#/components/securitySchemes/bearerSubprotocol' },
        { $ref: '#/components/securitySchemes/ticket' },
      ]);
    }
    for (const channel of ['chat', 'events']) {
      for (const { code, meaning } of Object.values(WEBSOCKET_CLOSE_CODES)) {
        expect(doc.channels[channel]['x-close-codes'][String(code)]).toBe(meaning);
        expect(doc.channels[channel].description).toContain(`\`${code}\``);
      }
    }
  });
});
