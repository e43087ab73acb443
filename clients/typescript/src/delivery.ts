import type { ParleyEvent, PositionedFrame } from './events.js';
import { positionOf } from './events.js';

/**
 * One item of the ordered stream the app consumes: an event (a `hidden_event` is consumed silently), or a cursor
 * that may be persisted once every item before it was consumed.
 */
export type DeliveryItem = { kind: 'event'; event: ParleyEvent | PositionedFrame } | { kind: 'cursor'; cursor: string };

export type OfferResult = 'applied' | 'duplicate' | 'buffered';

interface Position {
  applied: number;
  removed: boolean;
  /** First seen through an event that may have had unseen predecessors: everything is buffered until resolved. */
  startUnknown: boolean;
  /** The cursor version when the start became unknown. */
  unknownSince: number;
  buffer: Map<number, PositionedFrame> | null;
}

/**
 * The rules for clients of docs/delivery.md as a state machine without I/O: per conversation the last applied seq;
 * duplicates dropped; events after a gap buffered until the gap is filled; the user's own removal stops a
 * conversation's positions and being added again restarts them; cursors released to the stream only when nothing
 * they cover is still held back.
 */
export class DeliveryState {
  private readonly positions = new Map<string, Position>();
  private buffered = 0;
  private pendingReset: string | null = null;

  /** This device's user (from `connected`): its own joining and removal move positions differently. */
  userId: string | null = null;

  /** The newest cursor the server gave, persisted or not: where a reconnect or a REST fill starts. */
  latestCursor: string | null = null;

  /** Counts the cursors received: tells whether a cursor came after a conversation's start became unknown. */
  cursorVersion = 0;

  constructor(private readonly output: (item: DeliveryItem) => void) {}

  /** Some conversation holds events back behind a missing position. */
  get hasGaps(): boolean {
    return this.buffered > 0;
  }

  /** The last applied seq of a conversation. */
  applied(conversationId: string): number | undefined {
    return this.positions.get(conversationId)?.applied;
  }

  restore(cursor: string, positions: Readonly<Record<string, number>>): void {
    this.latestCursor = cursor;
    for (const [conversationId, seq] of Object.entries(positions)) {
      this.positions.set(conversationId, newPosition(seq));
    }
  }

  /** Rule 2 (and 3, 4): apply in order once, buffer after a gap. */
  offer(e: PositionedFrame): OfferResult {
    const { conversation_id: conversationId, seq } = positionOf(e);
    let position = this.positions.get(conversationId);
    if (!position) {
      // Rule 3: a conversation not seen yet starts at its creation (seq 1) or the user's own joining. Any other first
      // event may have had predecessors this socket missed (written through another instance): it waits until a
      // sync from the cursor (or a catch-up) shows where the conversation starts.
      const certain = seq === 1 || this.isOwnJoining(e);
      position = newPosition(seq - 1);
      position.startUnknown = !certain;
      position.unknownSince = this.cursorVersion;
      this.positions.set(conversationId, position);
    } else if (seq > position.applied + 1 && (position.removed || this.isOwnJoining(e))) {
      // Rule 4: after its removal a device has no positions in the conversation; being added again starts them anew
      // at that participant_added (the removal and the re-adding may both have happened offline).
      this.dropBuffer(position);
      position.applied = seq - 1;
      position.startUnknown = false;
    }

    if (position.startUnknown) return this.hold(position, seq, e);
    if (seq <= position.applied) return 'duplicate';
    if (seq > position.applied + 1) return this.hold(position, seq, e);

    this.apply(position, seq, e);
    this.drain(position);
    return 'applied';
  }

  /**
   * Conversations whose start is unknown learn it from a complete read from a cursor (a sync that reached the end, or
   * a catch-up): it holds every event after that cursor, and a cursor never covers an event the socket was not given.
   * So the lowest seq buffered is the start once the read includes the first event that arrived, or once it began
   * at a cursor received after that event. `synced` is the highest seq per conversation in the read (null for a
   * catch-up, which includes everything); `fromVersion` the cursor version it began at.
   */
  resolveStarts(synced: ReadonlyMap<string, number> | null, fromVersion = 0): void {
    for (const [conversationId, position] of this.positions) {
      if (
        position.startUnknown &&
        (synced === null || fromVersion > position.unknownSince || (synced.get(conversationId) ?? 0) >= position.applied + 1)
      ) {
        this.resolveStart(position);
      }
    }
  }

  /** Receipts and typing are not positioned: straight through. */
  emit(e: ParleyEvent): void {
    this.output({ kind: 'event', event: e });
  }

  /**
   * `connected` of a socket: a reset this client found (`resetOnNextConnect`) is told now, when the socket is
   * subscribed; otherwise a socket that presented no cursor starts from the one it was given.
   */
  connected(cursor: string | null, presentedCursor: boolean): void {
    const reason = this.pendingReset;
    // A socket that presented a cursor (read just before the reset became due) is caught up first: told now, the
    // server's own sync_reset for that cursor would make it a second reset (see syncComplete).
    if (reason !== null && !(presentedCursor && cursor !== null)) this.reset(cursor, reason);
    else if (!presentedCursor && cursor !== null) this.onCursor(cursor);
  }

  /** `sync_complete`: the catch-up held everything after the presented cursor; a reset still due is told now. */
  syncComplete(cursor: string): void {
    this.resolveStarts(null);
    const reason = this.pendingReset;
    if (reason !== null) this.reset(cursor, reason);
    else this.onCursor(cursor);
  }

  /** A cursor covers every event carried before it. It is released to the stream only when none of them is held back; returns whether it was. */
  onCursor(cursor: string): boolean {
    // A socket about to be replaced after a reset: the next one brings the position to start from.
    if (this.pendingReset !== null) return false;
    this.latestCursor = cursor;
    this.cursorVersion++;
    if (this.hasGaps) return false;
    this.output({ kind: 'cursor', cursor });
    return true;
  }

  /** Rule 7: the position could not be resumed. Forget every position; continue from the fresh cursor, if any. */
  reset(freshCursor: string | null, reason: string): void {
    this.forget();
    this.pendingReset = null;
    this.output({ kind: 'event', event: { type: 'sync_reset', payload: { reason } } });
    if (freshCursor !== null) this.onCursor(freshCursor);
  }

  /**
   * Rule 7 found by this client, not by the server: a cursor refused before the upgrade or by REST sync. Every
   * position is forgotten at once, so the next socket connects without a cursor, but the app is told (`sync_reset`)
   * only at that socket's `connected` (see `connected`): it is subscribed by then, so nothing committed while the app
   * reloads is missed. Told at once, the app could reload before the socket is there, and a message committed in
   * between would reach it neither way.
   */
  resetOnNextConnect(reason: string): void {
    this.forget();
    this.pendingReset = reason;
  }

  private forget(): void {
    this.positions.clear();
    this.buffered = 0;
    this.latestCursor = null;
  }

  /** Gives up on the missing positions (nothing can fill them) and applies what was held back, in order; returns the positions skipped. */
  skipGaps(): number {
    let skipped = 0;
    for (const position of this.positions.values()) {
      if (position.startUnknown) this.resolveStart(position);
      while (position.buffer && position.buffer.size > 0) {
        const first = lowestKey(position.buffer);
        skipped += first - position.applied - 1;
        position.applied = first - 1;
        this.drain(position);
      }
    }
    return skipped;
  }

  private isOwnJoining(e: PositionedFrame): boolean {
    return e.type === 'participant_added' && e.payload.user_id === this.userId;
  }

  private hold(position: Position, seq: number, e: PositionedFrame): OfferResult {
    position.buffer ??= new Map();
    if (position.buffer.has(seq)) return 'duplicate';
    position.buffer.set(seq, e);
    this.buffered++;
    return 'buffered';
  }

  private apply(position: Position, seq: number, e: PositionedFrame): void {
    position.applied = seq;
    position.removed = e.type === 'participant_removed' && e.payload.user_id === this.userId;
    this.output({ kind: 'event', event: e });
  }

  private drain(position: Position): void {
    const buffer = position.buffer;
    while (buffer && buffer.size > 0) {
      const seq = lowestKey(buffer);
      const next = buffer.get(seq)!;
      if (seq === position.applied + 1 || position.removed) {
        // Held back past our own removal: we were added again, and positions restart there.
        buffer.delete(seq);
        this.buffered--;
        this.apply(position, seq, next);
      } else {
        return;
      }
    }
  }

  private resolveStart(position: Position): void {
    position.startUnknown = false;
    if (position.buffer && position.buffer.size > 0) {
      position.applied = lowestKey(position.buffer) - 1;
      this.drain(position);
    }
  }

  private dropBuffer(position: Position): void {
    if (position.buffer) {
      this.buffered -= position.buffer.size;
      position.buffer.clear();
    }
  }
}

function newPosition(applied: number): Position {
  return { applied, removed: false, startUnknown: false, unknownSince: 0, buffer: null };
}

function lowestKey(map: Map<number, unknown>): number {
  let lowest = Number.POSITIVE_INFINITY;
  for (const key of map.keys()) if (key < lowest) lowest = key;
  return lowest;
}
