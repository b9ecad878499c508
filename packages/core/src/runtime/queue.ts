/**
 * The per-agent queues of the runtime: each agent runs one turn at a time, in arrival order;
 * at most `limit` messages wait behind the running one (past it, `agent_busy`). The queue knows
 * nothing of what a turn does: it hands each turn at the front to `run` and starts the next
 * once that settled.
 */
import { SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { abortTurn, endUnstarted, newTurn, type SubmitResult, type Turn, type TurnAbortReason, type TurnListener, type TurnRequest } from './turn.js';

/** What the queues need from the rest of the runtime. */
export interface AgentQueuesOptions {
  /** Messages that may wait per agent beyond the one being answered. */
  limit: number;
  /** Runs one turn to its end, terminal callback included; never rejects. */
  run(turn: Turn): Promise<void>;
  /**
   * Called when an agent gets a queue (its first turn here); the function it returns, if any,
   * is called when the queue goes (its last turn ended). The coordination listens to other
   * instances for the agent in between.
   */
  watch(agentId: string): (() => void) | undefined;
  logger: Logger;
}

interface AgentSlot {
  running?: Turn;
  queue: Turn[];
  /** What {@link AgentQueuesOptions.watch} returned. */
  unwatch?: () => void;
}

/** Every agent's queue of turns (an agent with no turn has none). */
export class AgentQueues {
  private readonly slots = new Map<string, AgentSlot>();

  constructor(private readonly options: AgentQueuesOptions) {}

  /** Queues a new turn, or refuses it with `agent_busy` (nothing is called on `listener` then). */
  submit(agentId: string, request: TurnRequest, listener: TurnListener): SubmitResult {
    const full = this.refusal(agentId);
    if (full) return { accepted: false, error: full };
    let slot = this.slots.get(agentId);
    slot ??= this.newSlot(agentId);
    const turn = newTurn(agentId, request, listener);
    slot.queue.push(turn);
    this.pump(agentId, slot);
    return { accepted: true, responseId: turn.responseId };
  }

  /** The `agent_busy` error a submit for the agent would get now, or undefined. */
  refusal(agentId: string): SentinelError | undefined {
    const { limit } = this.options;
    const slot = this.slots.get(agentId);
    if (slot?.running && slot.queue.length >= limit) return new SentinelError('agent_busy', `agent is busy: ${limit} messages are already waiting`);
    return undefined;
  }

  /**
   * Cancels the message `messageId` (of `owner` only, when given): a queued one is removed and
   * ends with reason `cancelled`; the running one is aborted. False when no such message is
   * queued or running.
   */
  cancel(agentId: string, messageId: string, owner?: object): boolean {
    const slot = this.slots.get(agentId);
    if (!slot) return false;
    const matches = (t: Turn) => t.request.messageId === messageId && (owner === undefined || t.request.owner === owner);
    const index = slot.queue.findIndex(matches);
    if (index !== -1) {
      const [turn] = slot.queue.splice(index, 1);
      if (turn) endUnstarted(turn, 'cancelled', this.options.logger);
      return true;
    }
    if (slot.running && matches(slot.running)) {
      abortTurn(slot.running, 'cancelled');
      return true;
    }
    return false;
  }

  /** Removes the queued (not running) turns of `owner` without any callback. Returns how many. */
  dropQueued(agentId: string, owner: object): number {
    const slot = this.slots.get(agentId);
    if (!slot) return 0;
    const kept = slot.queue.filter((t) => t.request.owner !== owner);
    const dropped = slot.queue.length - kept.length;
    for (const turn of slot.queue) if (turn.request.owner === owner) turn.done = true;
    slot.queue = kept;
    return dropped;
  }

  /** Messages waiting (beyond the running one) for the agent. */
  queuedCount(agentId: string): number {
    return this.slots.get(agentId)?.queue.length ?? 0;
  }

  /** Turns waiting and running over every agent (read at metrics scrape time; one pass over the agents with turns). */
  stats(): { queued: number; running: number } {
    let queued = 0;
    let running = 0;
    for (const slot of this.slots.values()) {
      queued += slot.queue.length;
      if (slot.running) running++;
    }
    return { queued, running };
  }

  /** True while a turn of the agent is running. */
  isBusy(agentId: string): boolean {
    return this.slots.get(agentId)?.running !== undefined;
  }

  /** Ends the agent's queued turns with `reason`, aborts the running one; returns its settle promise. */
  abortAgent(agentId: string, reason: TurnAbortReason): Promise<void> | undefined {
    const slot = this.slots.get(agentId);
    if (!slot) return undefined;
    const queued = slot.queue;
    slot.queue = [];
    for (const turn of queued) endUnstarted(turn, reason, this.options.logger);
    if (!slot.running) return undefined;
    abortTurn(slot.running, reason);
    return slot.running.settled;
  }

  /** {@link abortAgent} for every agent with turns; returns the settle promises of the running ones. */
  abortAll(reason: TurnAbortReason): Promise<void>[] {
    const running: Promise<void>[] = [];
    for (const agentId of [...this.slots.keys()]) {
      const settled = this.abortAgent(agentId, reason);
      if (settled) running.push(settled);
    }
    return running;
  }

  /** Drops the agent's queue if no turn is running or waiting (a deleted agent's, say). */
  dropIfIdle(agentId: string): void {
    const slot = this.slots.get(agentId);
    if (slot && !slot.running && slot.queue.length === 0) this.dropSlot(agentId, slot);
  }

  private pump(agentId: string, slot: AgentSlot): void {
    if (slot.running) return;
    const next = slot.queue.shift();
    if (!next) {
      this.dropSlot(agentId, slot);
      return;
    }
    slot.running = next;
    next.settled = this.options.run(next).finally(() => {
      slot.running = undefined;
      this.pump(agentId, slot);
    });
  }

  private newSlot(agentId: string): AgentSlot {
    const slot: AgentSlot = { queue: [] };
    const unwatch = this.options.watch(agentId);
    if (unwatch) slot.unwatch = unwatch;
    this.slots.set(agentId, slot);
    return slot;
  }

  private dropSlot(agentId: string, slot: AgentSlot): void {
    if (this.slots.get(agentId) !== slot) return;
    this.slots.delete(agentId);
    slot.unwatch?.();
  }
}
