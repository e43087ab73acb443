import type { PositionedFrame } from './events.js';
import { positionOf } from './events.js';

/**
 * Which cumulative acks are due and how fast they may go out: per conversation the highest `seq` the app consumed;
 * an ack is due when it moved; at most `maxPerWindow` ack frames per `windowMs` (the server limits ack frames per
 * socket, `Realtime:AckFramesPerSecond`, 100 a second, and an ack names one conversation); acks sent on a socket that
 * died are due again on the next one (repeating a watermark is harmless).
 */
export class AckPacer {
  static readonly maxPerWindow = 80;
  static readonly windowMs = 1000;

  private readonly consumed = new Map<string, number>();
  private readonly due = new Set<string>();
  private readonly sentOnSocket = new Set<string>();
  private windowStart = Number.NEGATIVE_INFINITY;
  private windowCount = 0;

  constructor(private readonly now: () => number) {}

  get hasDue(): boolean {
    return this.due.size > 0;
  }

  /** The positions of a stored checkpoint: consumed before this run, never acknowledged again. */
  restore(positions: Readonly<Record<string, number>>): void {
    for (const [conversationId, seq] of Object.entries(positions)) this.consumed.set(conversationId, seq);
  }

  /** The app consumed `e`; returns whether an ack became due. `userId`: after its own removal the server would refuse the ack. */
  consumedEvent(e: PositionedFrame, userId: string | null): boolean {
    const { conversation_id: conversationId, seq } = positionOf(e);
    if (seq <= (this.consumed.get(conversationId) ?? 0)) return false;
    this.consumed.set(conversationId, seq);
    if (e.type === 'participant_removed' && e.payload.user_id === userId) {
      this.due.delete(conversationId);
      return false;
    }
    this.due.add(conversationId);
    return true;
  }

  /** A sync reset: positions start over, nothing is due. */
  forget(): void {
    this.consumed.clear();
    this.due.clear();
    this.sentOnSocket.clear();
  }

  /** A new socket: acks sent on the previous one may have died with it. */
  socketOpened(): void {
    for (const id of this.sentOnSocket) this.due.add(id);
    this.sentOnSocket.clear();
  }

  /** Hands due acks to `send`, as many as the current window allows; returns whether acks remain due. */
  flush(send: (conversationId: string, seq: number) => boolean): boolean {
    if (this.due.size === 0) return false;
    const now = this.now();
    if (now - this.windowStart >= AckPacer.windowMs) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    for (const conversationId of [...this.due].slice(0, Math.max(0, AckPacer.maxPerWindow - this.windowCount))) {
      const seq = this.consumed.get(conversationId) ?? 0;
      if (seq > 0) {
        if (!send(conversationId, seq)) return true;
        this.sentOnSocket.add(conversationId);
        this.windowCount++;
      }
      this.due.delete(conversationId);
    }
    return this.due.size > 0;
  }
}
