/**
 * The bounded send queue of one socket (docs/ARCHITECTURE.md#the-protocol). Frames go straight to `ws` while the
 * socket's `bufferedAmount` is under the high-water mark; above it they wait here, in order,
 * and flow again as the socket drains. A consumer whose queue grows past its cap is closed
 * with 1008 and the queue is dropped, so a client that stops reading costs at most
 * `maxQueuedBytes + highWaterMarkBytes` of server memory, never more.
 *
 * Waking up: the underlying socket's `'drain'` event, not ws's per-frame send callback. One
 * listener per stall costs nothing on the fast path, while a callback per frame would allocate
 * a closure for every delivery of a fan-out. `'drain'` only fires when a write has returned
 * false, which is always the case once `bufferedAmount` passed the mark in the socket itself;
 * when the bytes sit elsewhere (ws's deflate queue, or a mark below the socket's own 16 KiB)
 * a short timer polls instead.
 *
 * Batching: all frames sent in one tick go out under one cork/uncork of the socket, i.e. one
 * writev instead of one syscall per frame (measured for a broadcast: ~95k → ~450k
 * deliveries/s).
 *
 * Memory: an idle socket costs what its queue object costs, and thousands of idle sockets are
 * the common case. So nothing is allocated per queue up front: the array appears with the
 * first frame that has to wait, the wake-up function with the first stall, and the per-tick
 * uncork goes through `process.nextTick(fn, queue)` instead of a bound closure per socket.
 *
 * Coalescing: under backpressure (a frame has to wait) a `stream_chunk` that follows a waiting
 * `stream_chunk` of the same response is merged into it instead of queued behind it: one frame
 * with both texts, the first one's `chunk_index` and `timestamp`. A slow reader gets fewer,
 * larger chunks (their indexes then skip) with exactly the same text, in order, and the queue
 * holds text instead of a frame envelope per word. Only the newest waiting frame takes merges,
 * so nothing ever moves past another frame (an event or tool result between chunks stays
 * between them). The merged frame is serialized once, when it leaves the queue.
 */
import type { Duplex } from 'node:stream';
import type { Outgoing, ServerFrame, StreamChunkFrame } from '@sentinel/api-core';
import type { WebSocket } from 'ws';
import { CLOSE_POLICY_VIOLATION } from './close-codes.js';

/** Counters shared by every queue of one attached transport (see WebSocketHandle.stats). */
export interface SendQueueCounters {
  /** The largest number of bytes any one socket has had waiting in its queue. */
  peakQueuedBytes: number;
  /** Sockets closed with 1008 because their consumer was too slow. */
  slowConsumerCloses: number;
  /** `stream_chunk` frames merged into the waiting chunk before them instead of queued (see the file comment). */
  coalescedChunks: number;
}

/** Settings shared by every queue of one attached transport (one object, not one per socket). */
export interface SendQueueOptions {
  /** `bufferedAmount` at or above which frames wait in the queue. */
  highWaterMarkBytes: number;
  /** Queue size past which the socket is closed with 1008. */
  maxQueuedBytes: number;
  counters: SendQueueCounters;
}

/** Told once when the queue closes its socket as too slow. */
export interface SlowConsumerListener {
  onTooSlow(): void;
}

/** Close reason sent with 1008. */
export const TOO_SLOW_REASON = 'consumer too slow';

/**
 * A `stream_chunk` waiting in the queue: later chunks of the same response are appended to its
 * content until it leaves. `bytes` is what it counts in the queue (the original frame's JSON
 * plus each merged text's escaped JSON), subtracted as such when it leaves.
 */
class WaitingChunk {
  /** The frame's JSON while nothing was merged into it (then serialized again when sent). */
  #json: string | undefined;
  #content: string;
  constructor(
    public frame: StreamChunkFrame,
    json: string,
    public bytes: number,
  ) {
    this.#json = json;
    this.#content = frame.content;
  }

  /** True for a chunk of the same response (a merge keeps one response's text in one frame). */
  takes(frame: StreamChunkFrame): boolean {
    return frame.response_id === this.frame.response_id && frame.message_id === this.frame.message_id;
  }

  merge(content: string, bytes: number, seq: number | undefined): void {
    this.#content += content;
    // A run's chunk keeps the seq of the last chunk merged into it: a client that resumes after
    // it must not get the merged ones again.
    if (seq !== undefined) this.frame = { ...this.frame, seq };
    this.bytes += bytes;
    this.#json = undefined;
  }

  text(): string {
    return (this.#json ??= JSON.stringify({ ...this.frame, content: this.#content }));
  }
}

type Waiting = string | WaitingChunk;

// `content` is checked too: a stand-in core (see WebSocketApi) may send frames its types do not hold.
function isChunk(frame: ServerFrame): frame is StreamChunkFrame {
  return frame.type === 'stream_chunk' && typeof frame.content === 'string';
}

// How often to look again when no 'drain' event is coming (see the file comment).
const DRAIN_POLL_MS = 5;
// Compact the array once this many sent entries sit before the head.
const COMPACT_AFTER = 1024;

export class SendQueue {
  private readonly ws: WebSocket;
  private readonly socket: Duplex;
  private readonly options: SendQueueOptions;
  private readonly listener: SlowConsumerListener | undefined;
  /** Frames waiting, from `head` on; undefined while nothing ever had to wait. */
  private queue: Waiting[] | undefined;
  private head = 0;
  private queuedBytes = 0;
  private corked = false;
  private waiting = false;
  private closed = false;
  private pollTimer: NodeJS.Timeout | undefined;
  /** Made at the first stall (see the file comment). */
  private flush: (() => void) | undefined;

  /** `socket` is the raw connection under `ws` (the one handed to `handleUpgrade`). */
  constructor(ws: WebSocket, socket: Duplex, options: SendQueueOptions, listener?: SlowConsumerListener) {
    this.ws = ws;
    this.socket = socket;
    this.options = options;
    this.listener = listener;
  }

  private static uncork(queue: SendQueue): void {
    queue.corked = false;
    queue.socket.uncork();
  }

  /** Bytes waiting in the queue right now. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** Sends `text` as one text frame, now or once the socket drains. Ignored once closed. */
  send(text: string): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    if (this.head === (this.queue?.length ?? 0) && this.ws.bufferedAmount < this.options.highWaterMarkBytes) {
      this.write(text);
      return;
    }
    const bytes = Buffer.byteLength(text);
    if (this.queuedBytes + bytes > this.options.maxQueuedBytes) {
      this.closeTooSlow();
      return;
    }
    (this.queue ??= []).push(text);
    this.queuedBytes += bytes;
    if (this.queuedBytes > this.options.counters.peakQueuedBytes) this.options.counters.peakQueuedBytes = this.queuedBytes;
    this.waitForDrain();
  }

  /**
   * Sends one frame of the core: like {@link send}, except that a `stream_chunk` which has to
   * wait is merged into a waiting chunk of the same response at the tail of the queue (see the
   * file comment).
   */
  sendFrame(out: Outgoing): void {
    const frame = out.frame;
    if (!isChunk(frame)) {
      this.send(out.json);
      return;
    }
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    const queue = this.queue;
    const waiting = queue !== undefined && this.head < queue.length;
    if (!waiting && this.ws.bufferedAmount < this.options.highWaterMarkBytes) {
      this.write(out.json);
      return;
    }
    const tail = waiting ? queue[queue.length - 1] : undefined;
    if (tail instanceof WaitingChunk && tail.takes(frame)) {
      const content = frame.content;
      // What the text adds to the merged frame's JSON (escapes included, quotes not).
      const bytes = Buffer.byteLength(JSON.stringify(content)) - 2;
      if (this.queuedBytes + bytes > this.options.maxQueuedBytes) {
        this.closeTooSlow();
        return;
      }
      tail.merge(content, bytes, frame.seq);
      this.queuedBytes += bytes;
      this.options.counters.coalescedChunks++;
      if (this.queuedBytes > this.options.counters.peakQueuedBytes) this.options.counters.peakQueuedBytes = this.queuedBytes;
      return;
    }
    const json = out.json;
    const bytes = Buffer.byteLength(json);
    if (this.queuedBytes + bytes > this.options.maxQueuedBytes) {
      this.closeTooSlow();
      return;
    }
    (this.queue ??= []).push(new WaitingChunk(frame, json, bytes));
    this.queuedBytes += bytes;
    if (this.queuedBytes > this.options.counters.peakQueuedBytes) this.options.counters.peakQueuedBytes = this.queuedBytes;
    this.waitForDrain();
  }

  /**
   * Closes after the frames already accepted: what is queued is handed to ws at once (at most
   * `maxQueuedBytes`, so memory stays bounded) and the close frame follows it. Idempotent.
   */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.stopWaiting();
    if (this.ws.readyState === this.ws.OPEN && this.queue !== undefined) {
      for (let i = this.head; i < this.queue.length; i++) {
        const entry = this.queue[i] as Waiting;
        this.write(typeof entry === 'string' ? entry : entry.text());
      }
    }
    this.dropQueue();
    this.ws.close(code, reason);
  }

  /** The socket went away: forget the queue and every timer. */
  dispose(): void {
    this.closed = true;
    this.stopWaiting();
    this.dropQueue();
  }

  private write(text: string): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(SendQueue.uncork, this);
    }
    this.ws.send(text);
  }

  private drainQueue(): void {
    const queue = this.queue;
    if (this.closed || this.ws.readyState !== this.ws.OPEN || queue === undefined) return;
    while (this.head < queue.length && this.ws.bufferedAmount < this.options.highWaterMarkBytes) {
      const entry = queue[this.head] as Waiting;
      queue[this.head] = '';
      this.head++;
      if (typeof entry === 'string') {
        this.queuedBytes -= Buffer.byteLength(entry);
        this.write(entry);
      } else {
        this.queuedBytes -= entry.bytes;
        this.write(entry.text());
      }
    }
    if (this.head === queue.length) {
      this.dropQueue();
      return;
    }
    if (this.head >= COMPACT_AFTER) {
      this.queue = queue.slice(this.head);
      this.head = 0;
    }
    this.waitForDrain();
  }

  private waitForDrain(): void {
    if (this.waiting) return;
    this.waiting = true;
    // While corked in this tick the socket has not tried to write yet; look again after the
    // uncork, when writableNeedDrain tells whether a 'drain' will come.
    if (this.corked) {
      process.nextTick(() => this.armWakeUp());
      return;
    }
    this.armWakeUp();
  }

  private armWakeUp(): void {
    if (this.closed) return;
    const flush = (this.flush ??= () => {
      this.waiting = false;
      this.pollTimer = undefined;
      this.drainQueue();
    });
    if (this.socket.writableNeedDrain) this.socket.once('drain', flush);
    else this.pollTimer = setTimeout(flush, DRAIN_POLL_MS);
  }

  private stopWaiting(): void {
    if (this.flush !== undefined) this.socket.off('drain', this.flush);
    if (this.pollTimer !== undefined) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.waiting = false;
  }

  private dropQueue(): void {
    this.queue = undefined;
    this.head = 0;
    this.queuedBytes = 0;
  }

  private closeTooSlow(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopWaiting();
    this.dropQueue();
    this.options.counters.slowConsumerCloses++;
    this.listener?.onTooSlow();
    // The close frame waits behind what the socket already buffers; a peer that never reads
    // it is destroyed after ws's close timeout (the transport's closeTimeoutMs).
    this.ws.close(CLOSE_POLICY_VIOLATION, TOO_SLOW_REASON);
  }
}
