/**
 * The run journal (docs/ARCHITECTURE.md#runs): the frames of every live run of this instance.
 * Each frame gets the run's next `seq`, is delivered at once to the run's local subscribers
 * and kept in memory while the run lives, and is written to the Store in batches, never a
 * COMMIT per chunk: every `flushIntervalMs` while frames wait, and at the end, where the
 * terminal frame goes in the same group commit as the run's final status (and the turn's
 * other end writes). The terminal frame reaches subscribers only once that is durable, like
 * `stream_end` always did. With a shared bus each written batch is published
 * (`{kind: 'run_frames'}`) so subscribers on other instances go live.
 */
import type { EventBus } from '../bus.js';
import { isSentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { ServerFrame } from '../protocol/frames.js';
import type { Store } from '../store/types.js';
import type { RunFrameRow, RunPatch, RunRecord, RunStatus } from './types.js';

/** A frame of a live run: with the frame object as well as its text when it was built here. */
export interface JournaledFrame extends RunFrameRow {
  /** The frame the JSON was made from (absent for a frame read back from the Store or the bus). */
  readonly frame?: ServerFrame;
}

/** A subscriber of a run's frames. Must not throw (a throw is logged and ignored). */
export type RunFrameListener = (frame: JournaledFrame) => void;

export interface RunJournalOptions {
  store: Store;
  bus: EventBus;
  /** Default: silent. */
  logger?: Logger;
  /**
   * Write frames to the Store (and publish them on a shared bus). Default true. `false` exists
   * only for the benchmark's baseline (`runs: { journal: false }`): frames then live in memory
   * only while the run does, and nothing can be resumed from another socket once it ended or
   * from another instance at all.
   */
  enabled?: boolean;
  /** Longest time a frame of a live run waits before it is written, in ms. Default 200. */
  flushIntervalMs?: number;
}

/** True for the JSON of a terminal frame (`stream_end` or `error`): every frame starts with its type. */
export function isTerminalFrameJson(json: string): boolean {
  return json.startsWith('{"type":"stream_end"') || json.startsWith('{"type":"error"');
}

/** The frame object of a journaled frame (parsed when it came as text only). */
export function frameOf(entry: JournaledFrame): ServerFrame {
  return entry.frame ?? (JSON.parse(entry.json) as ServerFrame);
}

/** One live run of this instance: its frames so far and its subscribers. */
export class LiveRun {
  readonly runId: string;
  readonly agentId: string;
  private readonly frames: JournaledFrame[] = [];
  /** Index in `frames` of the first frame not yet handed to the Store. */
  private unwritten = 0;
  private readonly listeners = new Set<RunFrameListener>();
  private timer: NodeJS.Timeout | undefined;
  private ending: Promise<RunRecord | null> | undefined;
  private finished = false;
  /** Index in `frames` of the first frame held back until the end writes are durable (none: undefined). */
  private heldFrom: number | undefined;
  /** Seqs before the first frame in memory: a run continued after an approval starts after its journaled frames. */
  readonly baseSeq: number;
  /** Set once the run paused for an approval: its turn ended, the run goes on later (maybe elsewhere). */
  paused = false;
  private resolveSettled!: () => void;
  /** Resolves once the terminal frame was delivered (never rejects). */
  readonly settled: Promise<void>;
  /** Resolves once the run's row is in the Store (never rejects). */
  readonly stored: Promise<void>;

  constructor(
    run: RunRecord,
    private readonly journal: RunJournal,
    stored: Promise<unknown>,
    baseSeq = 0,
  ) {
    this.stored = stored.then(
      () => undefined,
      () => undefined,
    );
    this.runId = run.id;
    this.agentId = run.agent_id;
    this.baseSeq = baseSeq;
    this.settled = new Promise((resolve) => (this.resolveSettled = resolve));
  }

  /** The highest seq assigned so far (0: none). */
  get lastSeq(): number {
    return this.baseSeq + this.frames.length;
  }

  /** True once the terminal frame is on its way (no more frames are taken). */
  get ended(): boolean {
    return this.ending !== undefined;
  }

  /**
   * Journals the next frame: `build` gets its seq and returns the frame and its JSON (exactly
   * `JSON.stringify(frame)`). Delivered to subscribers at once. Ignored once the run ended.
   */
  append(build: (seq: number) => { frame: ServerFrame; json: string }): void {
    if (this.ending) return;
    const seq = this.lastSeq + 1;
    const { frame, json } = build(seq);
    const entry: JournaledFrame = { seq, json, frame };
    this.frames.push(entry);
    this.deliver(entry);
    this.timer ??= this.journal.scheduleFlush(this);
  }

  /** Hands the frames not yet written to the Store (e.g. before the run waits for an approval). */
  flush(): Promise<void> {
    this.clearTimer();
    const batch = this.takeUnwritten();
    return batch.length === 0 ? Promise.resolve() : this.journal.write(this, batch);
  }

  /**
   * Ends the run: the terminal frame (`build`) and every frame not written yet go to the Store
   * with `patch` (the run's final state, compare-and-set from `fromStatus`), issued now so they
   * share the caller's group commit; the terminal frame is delivered once both are durable.
   * Resolves to the updated run (null when the compare-and-set found another status). A second
   * call returns the first one's promise. `patch` null: nothing is written (the agent and its
   * runs are being deleted), the frame is only delivered.
   */
  end(build: (seq: number) => { frame: ServerFrame; json: string }, patch: RunPatch | null, fromStatus: RunStatus[]): Promise<RunRecord | null> {
    return this.close([build], patch, fromStatus);
  }

  /**
   * Pauses the run for a person's decision: `builds` (its `tool_approval_required` frames) and
   * every frame not written yet go to the Store with `patch` (status `requires_action`),
   * compare-and-set from `fromStatus`; the frames are delivered once that is durable (a client
   * that sees them can decide at once), then this live run settles without a terminal frame.
   * Its subscribers follow the run in the Store from there (RunService.subscribe).
   */
  pause(builds: ((seq: number) => { frame: ServerFrame; json: string })[], patch: RunPatch, fromStatus: RunStatus[]): Promise<RunRecord | null> {
    this.paused = true;
    return this.close(builds, patch, fromStatus);
  }

  private close(builds: ((seq: number) => { frame: ServerFrame; json: string })[], patch: RunPatch | null, fromStatus: RunStatus[]): Promise<RunRecord | null> {
    if (this.ending) return this.ending;
    this.clearTimer();
    this.heldFrom = this.frames.length;
    for (const build of builds) {
      const seq = this.lastSeq + 1;
      const { frame, json } = build(seq);
      this.frames.push({ seq, json, frame });
    }
    const held = this.frames.slice(this.heldFrom);
    const batch = this.takeUnwritten();
    const written = patch === null ? Promise.resolve(null) : this.journal.finish(this, batch, { ...patch, last_seq: this.lastSeq }, fromStatus);
    this.ending = written.then((record) => {
      for (const entry of held) this.deliver(entry);
      this.finished = true;
      this.listeners.clear();
      this.resolveSettled();
      return record;
    });
    return this.ending;
  }

  /**
   * Delivers the frames after `since` at once, then every new one until the terminal frame.
   * Returns the unsubscribe function.
   */
  subscribe(since: number, listener: RunFrameListener): () => void {
    // The last frames are in `frames` before they may be delivered (see close()).
    const replayUpTo = this.heldFrom !== undefined && !this.finished ? this.heldFrom : this.frames.length;
    for (let i = Math.max(0, since - this.baseSeq); i < replayUpTo; i++) this.call(listener, this.frames[i]!);
    if (this.finished) return () => {};
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The text of the answer streamed so far (the chunks' content). */
  partialContent(): string {
    let content = '';
    for (const entry of this.frames) if (entry.frame?.type === 'stream_chunk') content += entry.frame.content;
    return content;
  }

  private takeUnwritten(): JournaledFrame[] {
    const batch = this.frames.slice(this.unwritten);
    this.unwritten = this.frames.length;
    return batch;
  }

  /** Called by the journal's timer. */
  flushNow(): void {
    this.timer = undefined;
    if (this.ending) return;
    void this.flush();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private deliver(entry: JournaledFrame): void {
    for (const listener of this.listeners) this.call(listener, entry);
  }

  private call(listener: RunFrameListener, entry: JournaledFrame): void {
    try {
      listener(entry);
    } catch (err) {
      this.journal.logger.error('run frame subscriber failed', { run_id: this.runId, error: err instanceof Error ? err.message : String(err) });
    }
  }
}

/** The journal of this instance's live runs (see the top of this file). */
export class RunJournal {
  readonly logger: Logger;
  private readonly store: Store;
  private readonly bus: EventBus;
  private readonly enabled: boolean;
  private readonly flushIntervalMs: number;
  private readonly live = new Map<string, LiveRun>();

  constructor(options: RunJournalOptions) {
    this.store = options.store;
    this.bus = options.bus;
    this.logger = options.logger ?? silentLogger;
    this.enabled = options.enabled ?? true;
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
  }

  /** True when frames are written to the Store (see {@link RunJournalOptions.enabled}). */
  get journaling(): boolean {
    return this.enabled;
  }

  /**
   * Starts the journal of a run of this instance: a new one (`stored` resolves once its row is
   * in the Store; default: it is), or (`afterSeq`, its `last_seq`) one continued after an
   * approval, whose frames are published on every bus (its subscribers may follow it through
   * the Store, see RunService.subscribe).
   */
  open(run: RunRecord, stored: Promise<unknown> = Promise.resolve(), afterSeq = 0): LiveRun {
    const live = new LiveRun(run, this, stored, afterSeq);
    this.live.set(run.id, live);
    // Only this one: a run continued after an approval opens a new live run under the same id.
    void live.settled.then(() => {
      if (this.live.get(run.id) === live) this.live.delete(run.id);
    });
    return live;
  }

  /** The live run `runId` of this instance, if it is one. */
  get(runId: string): LiveRun | undefined {
    return this.live.get(runId);
  }

  /** Every live run of this instance. */
  liveRuns(): LiveRun[] {
    return [...this.live.values()];
  }

  /**
   * Ends a run no live turn holds (its server went away): journals `frame` after the run's
   * last seq with `patch`, compare-and-set from `fromStatus`. Resolves to the updated run, or
   * null when its status had changed meanwhile (then nothing is journaled either).
   */
  async endOrphan(run: RunRecord, build: (seq: number) => { json: string }, patch: RunPatch, fromStatus: RunStatus[]): Promise<RunRecord | null> {
    const seq = run.last_seq + 1;
    const updated = await this.store.updateRun(run.id, { ...patch, last_seq: seq }, { fromStatus });
    if (!updated) return null;
    // After the compare-and-set: only the instance that made the transition writes the frame.
    const frame = { seq, json: build(seq).json };
    if (this.enabled) {
      await this.store.appendRunFrames(run.id, [frame]);
      // Its subscribers follow it through the Store and the bus, on this instance too.
      this.publish(run.agent_id, run.id, [frame], true);
    }
    return updated;
  }

  /**
   * Journals one frame of a run no live turn holds (an approval decision, the end of an expired
   * approval) after the run's last seq. Two instances appending at once take the same seq; the
   * one that loses reads the run again and takes the next. Published on every bus: the run's
   * subscribers follow it through the Store.
   */
  async appendDetached(runId: string, agentId: string, build: (seq: number) => ServerFrame): Promise<void> {
    if (!this.enabled) return;
    for (let attempt = 0; ; attempt++) {
      const run = await this.store.getRun(runId);
      if (!run) return;
      const seq = run.last_seq + 1;
      const frame = { seq, json: JSON.stringify(build(seq)) };
      try {
        await this.store.appendRunFrames(runId, [frame]);
      } catch (err) {
        if (attempt < 4 && isSentinelError(err) && err.code === 'conflict') continue;
        throw err;
      }
      this.publish(agentId, runId, [frame], true);
      return;
    }
  }

  /** @internal The timer of a run's next batch. */
  scheduleFlush(live: LiveRun): NodeJS.Timeout {
    const timer = setTimeout(() => live.flushNow(), this.flushIntervalMs);
    timer.unref();
    return timer;
  }

  /** @internal Writes one batch of a run's frames, then publishes it. A failure is logged: the frames stay live. */
  async write(live: LiveRun, batch: JournaledFrame[]): Promise<void> {
    if (!this.enabled) return;
    try {
      await this.store.appendRunFrames(live.runId, batch);
      this.publish(live.agentId, live.runId, batch, live.baseSeq > 0);
    } catch (err) {
      this.logger.error('cannot journal run frames', { run_id: live.runId, error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** @internal The end writes of a run (see {@link LiveRun.end}); never rejects. */
  async finish(live: LiveRun, batch: JournaledFrame[], patch: RunPatch, fromStatus: RunStatus[]): Promise<RunRecord | null> {
    // Both issued before either is awaited: one group commit (SQLite), one round trip each (PostgreSQL).
    // The store reads seq and json only: no copies of the entries.
    const frames = this.enabled ? this.store.appendRunFrames(live.runId, batch) : undefined;
    const updated = this.store.updateRun(live.runId, patch, { fromStatus });
    const [framesOutcome, updateOutcome] = await Promise.allSettled([frames, updated]);
    if (framesOutcome.status === 'rejected') {
      this.logger.error('cannot journal run frames', { run_id: live.runId, error: errorText(framesOutcome.reason) });
    } else if (this.enabled) {
      this.publish(live.agentId, live.runId, batch, live.baseSeq > 0 || live.paused);
    }
    if (updateOutcome.status === 'rejected') {
      this.logger.error('cannot store the end of a run', { run_id: live.runId, error: errorText(updateOutcome.reason) });
      return null;
    }
    return updateOutcome.value;
  }

  /** `always`: also on an in-process bus, for a run whose local subscribers follow it through the Store (paused or continued). */
  private publish(agentId: string, runId: string, batch: readonly RunFrameRow[], always = false): void {
    // Usually only other instances need it: local subscribers of a live run are served from memory.
    if (!this.bus.shared && !always) return;
    this.bus.publish(agentId, { kind: 'run_frames', run_id: runId, frames: batch.map(plain) });
  }
}

function plain(frame: RunFrameRow): RunFrameRow {
  return { seq: frame.seq, json: frame.json };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
