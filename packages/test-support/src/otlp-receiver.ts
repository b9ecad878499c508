/**
 * A loopback OTLP/HTTP trace receiver for tests: `POST /v1/traces` with the JSON encoding
 * (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json`, gzip or not), decoded into flat spans, as an
 * OpenTelemetry collector would receive them. It answers `{}` (a full success), so the exporter
 * sees a real collector; anything else on the wire (protobuf, other paths) is refused with 415/404
 * and counted, so a misconfigured exporter fails the test instead of exporting nowhere.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** One attribute value as OTLP/JSON writes it (`AnyValue`). */
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
}

interface KeyValue {
  key: string;
  value: AnyValue;
}

/** Span kinds by their OTLP number. */
const KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const;

export type ReceivedAttribute = string | number | boolean | ReceivedAttribute[];

/** A received span, flattened with its resource and scope. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: (typeof KINDS)[number];
  attributes: Record<string, ReceivedAttribute>;
  /** 0 unset, 1 ok, 2 error. */
  statusCode: number;
  startNs: bigint;
  endNs: bigint;
  scope: string;
  resource: Record<string, ReceivedAttribute>;
}

function valueOf(value: AnyValue): ReceivedAttribute {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(valueOf);
  return '';
}

function attributesOf(list: KeyValue[] | undefined): Record<string, ReceivedAttribute> {
  const out: Record<string, ReceivedAttribute> = {};
  for (const { key, value } of list ?? []) out[key] = valueOf(value);
  return out;
}

/** OTLP/JSON ids are hex; some encoders write base64 (the protobuf JSON mapping): accept both. */
function hexId(id: string | undefined): string {
  if (id === undefined || id === '') return '';
  return /^[0-9a-f]+$/i.test(id) ? id.toLowerCase() : Buffer.from(id, 'base64').toString('hex');
}

interface ExportRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: Array<{
      scope?: { name?: string };
      spans?: Array<{
        traceId?: string;
        spanId?: string;
        parentSpanId?: string;
        name?: string;
        kind?: number;
        attributes?: KeyValue[];
        status?: { code?: number };
        startTimeUnixNano?: string | number;
        endTimeUnixNano?: string | number;
      }>;
    }>;
  }>;
}

/** Flattens one `ExportTraceServiceRequest` (JSON) into spans. */
export function decodeTraceExport(body: ExportRequest): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of body.resourceSpans ?? []) {
    const resource = attributesOf(resourceSpans.resource?.attributes);
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        spans.push({
          traceId: hexId(span.traceId),
          spanId: hexId(span.spanId),
          parentSpanId: hexId(span.parentSpanId),
          name: span.name ?? '',
          kind: KINDS[span.kind ?? 0] ?? 'UNSPECIFIED',
          attributes: attributesOf(span.attributes),
          statusCode: span.status?.code ?? 0,
          startNs: BigInt(span.startTimeUnixNano ?? 0),
          endNs: BigInt(span.endTimeUnixNano ?? 0),
          scope: scopeSpans.scope?.name ?? '',
          resource,
        });
      }
    }
  }
  return spans;
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Export requests received (each may hold many spans). */
  exports = 0;
  /** Requests refused (wrong path, method or encoding). */
  refused = 0;
  /** Base URL, e.g. `http://127.0.0.1:4318`: the value for OTEL_EXPORTER_OTLP_ENDPOINT. */
  url = '';
  private readonly server: Server;
  private waiters: Array<() => void> = [];

  private constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          this.refused++;
          res.writeHead(404).end();
          return;
        }
        if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
          this.refused++;
          res.writeHead(415, { 'content-type': 'text/plain' }).end('this receiver takes OTLP/JSON only');
          return;
        }
        let raw = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
        try {
          this.spans.push(...decodeTraceExport(JSON.parse(raw.toString('utf8')) as ExportRequest));
        } catch {
          this.refused++;
          res.writeHead(400, { 'content-type': 'application/json' }).end('{}');
          return;
        }
        this.exports++;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        for (const wake of this.waiters.splice(0)) wake();
      });
    });
  }

  /** Starts a receiver on 127.0.0.1, port 0. */
  static async start(): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver();
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}`;
    return receiver;
  }

  /** Resolves once `predicate` holds on the spans received so far; rejects after `timeoutMs` (default 10 s) listing what came. */
  async waitFor(predicate: (spans: ReceivedSpan[]) => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.spans)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the OTLP receiver never got ${what}; spans so far: ${this.spans.map((s) => s.name).join(', ') || 'none'}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The spans of one trace. */
  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((span) => span.traceId === traceId);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
