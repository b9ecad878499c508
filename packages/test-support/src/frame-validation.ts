/**
 * A validator of server frames compiled once from the AsyncAPI document: the `send` operations
 * of the channel a socket URL names give the messages, the frame's `type` picks one, and ajv
 * checks the frame against its payload schema. frame-watch.ts applies it to every client socket.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { buildAsyncApiDocument, type AsyncApiDocument } from '@sentinel/api-core';

// ajv-formats is CommonJS: its module.exports is the plugin function.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

type Json = Record<string, unknown>;

interface ChannelCheck {
  name: string;
  address: RegExp;
  /** Validators of the frames the server sends on this channel, by `type`. */
  byType: Map<string, ValidateFunction>;
}

/** Checks server frames against a document; `check` answers a problem or undefined. */
export interface FrameValidator {
  /** The channel a socket URL names, or undefined when it is not one of the document's. */
  channelOf(url: string): string | undefined;
  /** Undefined when `text` is a frame the document describes for the channel `url` names. */
  check(url: string, text: string): string | undefined;
}

/** Resolves a local `#/a/b` reference in `doc`. */
function resolve(doc: Json, value: unknown): Json {
  const ref = (value as { $ref?: unknown } | undefined)?.$ref;
  if (typeof ref !== 'string') return value as Json;
  if (!ref.startsWith('#/')) throw new Error(`only local references are supported, got ${ref}`);
  let node: unknown = doc;
  for (const part of ref.slice(2).split('/')) node = (node as Json | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  if (node === undefined) throw new Error(`dangling reference ${ref}`);
  return resolve(doc, node);
}

function addressPattern(address: string): RegExp {
  const source = address
    .split(/(\{[^}]+\})/)
    .map((part) => (part.startsWith('{') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`);
}

/** Compiles the payload schema of every message the server sends, once. */
export function compileFrameValidator(doc: AsyncApiDocument): FrameValidator {
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
  addFormats(ajv);
  const compiled = new Map<Json, ValidateFunction>();
  const channels = new Map<string, ChannelCheck>();
  const channelEntries = Object.entries((doc.channels ?? {}) as Record<string, Json>);
  for (const [name, channel] of channelEntries) {
    channels.set(name, { name, address: addressPattern(String(channel.address)), byType: new Map() });
  }
  for (const [operationId, operation] of Object.entries((doc.operations ?? {}) as Record<string, Json>)) {
    if (operation.action !== 'send') continue;
    const channelRef = (operation.channel as { $ref: string }).$ref;
    const check = channels.get(channelRef.replace('#/channels/', ''));
    if (!check) throw new Error(`operation ${operationId}: unknown channel ${channelRef}`);
    for (const ref of (operation.messages ?? []) as Json[]) {
      const message = resolve(doc, ref);
      const payload = resolve(doc, message.payload);
      const type = (payload.properties as Record<string, { const?: unknown }> | undefined)?.type?.const;
      if (typeof type !== 'string') throw new Error(`message ${String(message.name)}: its payload has no "type" const`);
      if (check.byType.has(type)) throw new Error(`channel ${check.name}: two messages for type "${type}"`);
      let validate = compiled.get(payload);
      if (!validate) compiled.set(payload, (validate = ajv.compile(payload)));
      check.byType.set(type, validate);
    }
  }
  const channelFor = (url: string): ChannelCheck | undefined => {
    const pathname = new URL(url).pathname;
    return [...channels.values()].find((channel) => channel.address.test(pathname));
  };
  return {
    channelOf: (url) => channelFor(url)?.name,
    check(url, text) {
      const channel = channelFor(url);
      if (!channel) return undefined;
      let frame: unknown;
      try {
        frame = JSON.parse(text);
      } catch {
        return `not JSON: ${text.slice(0, 200)}`;
      }
      const type = (frame as { type?: unknown } | null)?.type;
      const validate = typeof type === 'string' ? channel.byType.get(type) : undefined;
      if (!validate) return `no message for type ${JSON.stringify(type)} on channel ${channel.name} (described: ${[...channel.byType.keys()].join(', ')})`;
      if (validate(frame)) return undefined;
      return `does not match message "${type}" of channel ${channel.name}: ${ajv.errorsText(validate.errors, { separator: '; ' })}`;
    },
  };
}

let shared: FrameValidator | undefined;

/** The validator of the document the core generates (the one `GET /v1/asyncapi.json` serves). */
export function frameValidator(): FrameValidator {
  return (shared ??= compileFrameValidator(buildAsyncApiDocument()));
}
