import { describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import { parseNdjson } from '../src/providers/ndjson.js';
import { parseSse, type SseEvent } from '../src/providers/sse.js';

const encoder = new TextEncoder();

/** Bytes delivered in the given reads, exactly as split. */
async function* reads(...parts: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield typeof part === 'string' ? encoder.encode(part) : part;
}

async function events(...parts: (string | Uint8Array)[]): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const event of parseSse(reads(...parts))) out.push(event);
  return out;
}

/** Every way of cutting `bytes` into two reads. */
function allSplits(text: string): Uint8Array[][] {
  const bytes = encoder.encode(text);
  const splits: Uint8Array[][] = [];
  for (let i = 0; i <= bytes.length; i++) splits.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return splits;
}

describe('SSE parser (WHATWG event stream rules)', () => {
  it('reads data, event and id fields, and a blank line dispatches', async () => {
    expect(await events('event: add\ndata: 73857293\nid: 7\n\ndata: plain\n\n')).toEqual([
      { event: 'add', data: '73857293', id: '7' },
      { event: 'message', data: 'plain', id: '7' },
    ]);
  });

  it('joins multi-line data with LF and strips only one leading space', async () => {
    expect(await events('data: first\ndata:second\ndata:  third\n\n')).toEqual([{ event: 'message', data: 'first\nsecond\n third', id: '' }]);
  });

  it('accepts CRLF, LF and CR line ends, mixed', async () => {
    expect(await events('data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n')).toEqual([
      { event: 'message', data: 'a', id: '' },
      { event: 'message', data: 'b', id: '' },
      { event: 'message', data: 'c', id: '' },
      { event: 'message', data: 'd', id: '' },
    ]);
  });

  it('skips comments, unknown fields and retry, drops a BOM and data-less events', async () => {
    const parsed = await events('\uFEFF: keep-alive\nretry: 1000\nfoo: bar\nevent: nothing\n\ndata: x\n\n');
    expect(parsed).toEqual([{ event: 'message', data: 'x', id: '' }]);
  });

  it('a field without a colon has an empty value; an id with NUL is ignored', async () => {
    expect(await events('data\n\nid: ok\ndata: 1\n\nid: bad\u0000\ndata: 2\n\n')).toEqual([
      { event: 'message', data: '', id: '' },
      { event: 'message', data: '1', id: 'ok' },
      { event: 'message', data: '2', id: 'ok' },
    ]);
  });

  it('drops an unterminated event at the end of the stream', async () => {
    expect(await events('data: done\n\ndata: half')).toEqual([{ event: 'message', data: 'done', id: '' }]);
  });

  it('gives the same events however the bytes are cut into reads (CRLF and multi-byte UTF-8 included)', async () => {
    const text = 'event: delta\r\ndata: {"text":"héllo → 世界 🎉"}\r\n\r\ndata: second\r\rdata: third\n\n';
    const expected = await events(text);
    expect(expected.map((e) => e.data)).toEqual(['{"text":"héllo → 世界 🎉"}', 'second', 'third']);
    for (const split of allSplits(text)) expect(await events(...split)).toEqual(expected);
    // And one byte per read.
    const bytes = encoder.encode(text);
    expect(await events(...Array.from(bytes, (b) => Uint8Array.of(b)))).toEqual(expected);
  });

  it('fails with upstream_error on an oversized line instead of growing without bound', async () => {
    const stream = parseSse(reads(`data: ${'x'.repeat(200)}`), { maxEventChars: 100, source: 'test' });
    await expect((async () => { for await (const _ of stream) { /* drain */ } })()).rejects.toSatisfy(
      (err: unknown) => isSentinelError(err) && err.code === 'upstream_error' && /longer than 100/.test(err.message),
    );
  });
});

describe('NDJSON parser', () => {
  it('reads one value per line across split reads, skips blank lines, reads a last unterminated line', async () => {
    const values: unknown[] = [];
    for await (const value of parseNdjson(reads('{"a":1}\n{"b"', ':2}\r\n\n', '{"c":"ü"}'))) values.push(value);
    expect(values).toEqual([{ a: 1 }, { b: 2 }, { c: 'ü' }]);
  });

  it('a line that is not JSON is an upstream_error', async () => {
    const run = async () => {
      for await (const _ of parseNdjson(reads('{"ok":true}\nnot json\n'), { source: 'ollama' })) {
        /* drain */
      }
    };
    await expect(run()).rejects.toSatisfy((err: unknown) => isSentinelError(err) && err.code === 'upstream_error' && err.message.startsWith('ollama:'));
  });
});
