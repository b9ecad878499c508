/**
 * What the runtime does with the other instances (docs/ARCHITECTURE.md#scale-out): each turn
 * holds the agent's {@link TurnLock} while it runs, so turns of one agent never overlap
 * anywhere; stop, delete and cancel travel as control messages on a shared bus to whichever
 * instance runs the turn, and stop and delete wait until no instance runs one. On a single
 * instance (no shared bus, the in-process lock) all of this is a no-op around the turn.
 */
import type { AgentBusMessage, AgentControlAction, EventBus } from '../bus.js';
import { SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { endUnstarted, publicFailure, terminal, type Turn, type TurnAbortReason } from './turn.js';
import { inProcessTurnLock, type TurnLease, type TurnLock } from './turn-lock.js';

/** What the coordination needs from the rest of the runtime. */
export interface CoordinationOptions {
  turnLock: TurnLock;
  /** Only a shared bus carries control messages; without one, this instance's turns only. */
  bus: EventBus | undefined;
  /** How long stop and delete wait for the other instances' turns, in ms. */
  settleTimeoutMs: number;
  logger: Logger;
  /** Applies another instance's stop or delete (or a deletion) to this instance's turns of the agent. */
  abortAgent(agentId: string, reason: TurnAbortReason): void;
  /** Applies another instance's cancel to this instance's turn of the agent. */
  cancel(agentId: string, messageId: string): void;
}

/** The turn locks and control messages between instances. */
export class Coordination {
  /** Turn locks held from `holdForRemoval` to `releaseRemoval`, so no instance runs a turn of an agent being deleted. */
  private readonly removalLeases = new Map<string, TurnLease>();

  constructor(private readonly options: CoordinationOptions) {}

  /**
   * Starts listening to the other instances' control messages for the agent; returns the
   * function that stops it, or undefined without a shared bus. Other instances' stop, delete
   * and cancel matter only while this one has turns of the agent.
   */
  watch(agentId: string): (() => void) | undefined {
    const { bus } = this.options;
    if (!bus?.shared) return undefined;
    return bus.subscribe(agentId, (message) => this.onBusMessage(agentId, message));
  }

  /** Tells the other instances to stop or delete the agent's turns (no-op without a shared bus). */
  tellOtherInstances(agentId: string, action: AgentControlAction): void {
    const { bus } = this.options;
    if (bus?.shared) bus.publish(agentId, { kind: 'control', action });
  }

  /**
   * Asks the other instances to cancel the message `messageId` of the agent wherever it is
   * queued or running. True when the request went out, which needs a shared bus.
   */
  cancelElsewhere(agentId: string, messageId: string): boolean {
    const { bus } = this.options;
    if (!bus?.shared) return false;
    bus.publish(agentId, { kind: 'control', action: 'cancel', message_id: messageId });
    return true;
  }

  /**
   * Resolves once no instance runs a turn of the agent (or after `settleTimeoutMs`): holding
   * the lock once proves the other instances' turns ended on the control message.
   */
  async awaitTurnsElsewhere(agentId: string): Promise<void> {
    const lease = await this.acquireWithin(agentId);
    await lease?.release();
  }

  /** Like {@link awaitTurnsElsewhere}, but keeps the lock until {@link releaseRemoval}: no instance starts a turn of the agent while its rows go. */
  async holdForRemoval(agentId: string): Promise<void> {
    const lease = await this.acquireWithin(agentId);
    if (lease) {
      void this.removalLeases.get(agentId)?.release();
      this.removalLeases.set(agentId, lease);
    }
  }

  /** Gives up the lock {@link holdForRemoval} took, if any. */
  releaseRemoval(agentId: string): void {
    const lease = this.removalLeases.get(agentId);
    if (lease) {
      this.removalLeases.delete(agentId);
      void lease.release();
    }
  }

  /**
   * Runs `run(turn)` holding the agent's turn lock, so it never overlaps a turn of the agent
   * on another instance. A turn that cannot get the lock ends here (cancelled, or the lock's
   * error); one that loses it mid-way is aborted and ends with {@link Turn.lockLost}.
   */
  async runLocked(turn: Turn, run: (turn: Turn) => Promise<void>): Promise<void> {
    const { logger } = this.options;
    let lease: TurnLease;
    try {
      lease = await this.options.turnLock.acquire(turn.agentId, turn.controller.signal);
    } catch (err) {
      if (turn.controller.signal.aborted) endUnstarted(turn, turn.abortReason ?? 'cancelled', logger);
      else terminal(turn, logger, (l) => l.onError(publicFailure(turn, err, logger)));
      return;
    }
    const onLost = () => {
      if (turn.controller.signal.aborted) return;
      turn.lockLost = new SentinelError('unavailable', 'the turn lost its agent lock (the event bus was unreachable for too long); send the message again');
      turn.controller.abort(turn.lockLost);
    };
    lease.lost.addEventListener('abort', onLost, { once: true });
    try {
      await run(turn);
    } finally {
      lease.lost.removeEventListener('abort', onLost);
      await lease.release();
    }
  }

  /** Control messages from any instance (this one's included: they are idempotent here). */
  private onBusMessage(agentId: string, message: AgentBusMessage): void {
    if (message.kind === 'deleted') {
      this.options.abortAgent(agentId, 'deleted');
    } else if (message.kind === 'control') {
      if (message.action === 'cancel') {
        if (message.message_id !== undefined) this.options.cancel(agentId, message.message_id);
      } else {
        this.options.abortAgent(agentId, message.action === 'stop' ? 'stopped' : 'deleted');
      }
    }
  }

  /**
   * The agent's lock, waiting at most `settleTimeoutMs`. Undefined on a single instance, or
   * when it timed out or the lock service is down: stop and delete go on regardless (the Store
   * decides what stays).
   */
  private async acquireWithin(agentId: string): Promise<TurnLease | undefined> {
    const { turnLock, settleTimeoutMs, logger } = this.options;
    if (turnLock === inProcessTurnLock) return undefined;
    try {
      return await turnLock.acquire(agentId, AbortSignal.timeout(settleTimeoutMs));
    } catch (err) {
      logger.warn('agent turns on other instances did not settle in time', { agent_id: agentId, error: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }
}
