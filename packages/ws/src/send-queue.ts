/**
 * The bounded send queue of one socket (DESIGN.md §9). Frames go straight to `ws` while the
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
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { CLOSE_POLICY_VIOLATION } from './close-codes.js';

/** Counters shared by every queue of one attached transport (see WebSocketHandle.stats). */
export interface SendQueueCounters {
  /** The largest number of bytes any one socket has had waiting in its queue. */
  peakQueuedBytes: number;
  /** Sockets closed with 1008 because their consumer was too slow. */
  slowConsumerCloses: number;
}

export interface SendQueueOptions {
  /** `bufferedAmount` at or above which frames wait in the queue. */
  highWaterMarkBytes: number;
  /** Queue size past which the socket is closed with 1008. */
  maxQueuedBytes: number;
  counters: SendQueueCounters;
  /** Called once when the queue closes the socket as too slow. */
  onTooSlow?: () => void;
}

/** Close reason sent with 1008. */
export const TOO_SLOW_REASON = 'consumer too slow';

// How often to look again when no 'drain' event is coming (see the file comment).
const DRAIN_POLL_MS = 5;
// Compact the array once this many sent entries sit before the head.
const COMPACT_AFTER = 1024;

export class SendQueue {
  private readonly ws: WebSocket;
  private readonly socket: Duplex;
  private readonly options: SendQueueOptions;
  private queue: string[] = [];
  private head = 0;
  private queuedBytes = 0;
  private corked = false;
  private waiting = false;
  private closed = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
  private readonly flush = (): void => {
    this.waiting = false;
    this.pollTimer = undefined;
    this.drainQueue();
  };

  /** `socket` is the raw connection under `ws` (the one handed to `handleUpgrade`). */
  constructor(ws: WebSocket, socket: Duplex, options: SendQueueOptions) {
    this.ws = ws;
    this.socket = socket;
    this.options = options;
  }

  /** Bytes waiting in the queue right now. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** Sends `text` as one text frame, now or once the socket drains. Ignored once closed. */
  send(text: string): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    if (this.head === this.queue.length && this.ws.bufferedAmount < this.options.highWaterMarkBytes) {
      this.write(text);
      return;
    }
    const bytes = Buffer.byteLength(text);
    if (this.queuedBytes + bytes > this.options.maxQueuedBytes) {
      this.closeTooSlow();
      return;
    }
    this.queue.push(text);
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
    if (this.ws.readyState === this.ws.OPEN) {
      for (let i = this.head; i < this.queue.length; i++) this.write(this.queue[i] as string);
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
      process.nextTick(this.uncork);
    }
    this.ws.send(text);
  }

  private drainQueue(): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    while (this.head < this.queue.length && this.ws.bufferedAmount < this.options.highWaterMarkBytes) {
      const text = this.queue[this.head] as string;
      this.queue[this.head] = '';
      this.head++;
      this.queuedBytes -= Buffer.byteLength(text);
      this.write(text);
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      this.queuedBytes = 0;
      return;
    }
    if (this.head >= COMPACT_AFTER) {
      this.queue = this.queue.slice(this.head);
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
    if (this.socket.writableNeedDrain) this.socket.once('drain', this.flush);
    else this.pollTimer = setTimeout(this.flush, DRAIN_POLL_MS);
  }

  private stopWaiting(): void {
    this.socket.off('drain', this.flush);
    if (this.pollTimer !== undefined) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.waiting = false;
  }

  private dropQueue(): void {
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
  }

  private closeTooSlow(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopWaiting();
    this.dropQueue();
    this.options.counters.slowConsumerCloses++;
    this.options.onTooSlow?.();
    // The close frame waits behind what the socket already buffers; a peer that never reads
    // it is destroyed after ws's close timeout (the transport's closeTimeoutMs).
    this.ws.close(CLOSE_POLICY_VIOLATION, TOO_SLOW_REASON);
  }
}
