import { describe, expect, it } from 'vitest';
import type { DeliveryItem } from '../../src/delivery.js';
import { DeliveryState } from '../../src/delivery.js';
import type { PositionedFrame } from '../../src/events.js';
import { newMessageFrame } from './scripted-server.js';

const C = 'c1';

function frame(seq: number, conversationId = C): PositionedFrame {
  return newMessageFrame(conversationId, seq) as PositionedFrame;
}

function participant(type: 'participant_added' | 'participant_removed', seq: number, userId: string): PositionedFrame {
  return {
    type,
    payload: { conversation_id: C, seq, user_id: userId, role: 'member', added_by: 'bob', removed_by: 'bob', timestamp: 't' },
  } as PositionedFrame;
}

function setUp(): { state: DeliveryState; out: DeliveryItem[]; applied: () => number[] } {
  const out: DeliveryItem[] = [];
  const state = new DeliveryState((item) => out.push(item));
  state.userId = 'alice';
  const applied = (): number[] =>
    out.flatMap((i) => (i.kind === 'event' && i.event.type === 'new_message' ? [i.event.payload.message.seq] : []));
  return { state, out, applied };
}

describe('DeliveryState', () => {
  it('applies a new conversation from seq 1 in order and drops repeats', () => {
    const { state, applied } = setUp();

    expect(state.offer(frame(1))).toBe('applied');
    expect(state.offer(frame(2))).toBe('applied');
    expect(state.offer(frame(2))).toBe('duplicate');
    expect(state.offer(frame(1))).toBe('duplicate');

    expect(applied()).toEqual([1, 2]);
  });

  it('holds events after a gap and releases them in order once it is filled', () => {
    const { state, applied } = setUp();
    state.offer(frame(1));

    expect(state.offer(frame(4))).toBe('buffered');
    expect(state.offer(frame(3))).toBe('buffered');
    expect(state.hasGaps).toBe(true);
    expect(applied()).toEqual([1]);

    expect(state.offer(frame(2))).toBe('applied');
    expect(applied()).toEqual([1, 2, 3, 4]);
    expect(state.hasGaps).toBe(false);
  });

  it('holds a cursor back while a gap is open', () => {
    const { state, out } = setUp();
    state.offer(frame(1));
    state.offer(frame(3));

    expect(state.onCursor('k1')).toBe(false);
    expect(state.latestCursor).toBe('k1');
    expect(out.filter((i) => i.kind === 'cursor')).toEqual([]);

    state.offer(frame(2));
    expect(state.onCursor('k2')).toBe(true);
    expect(out.at(-1)).toEqual({ kind: 'cursor', cursor: 'k2' });
  });

  it('holds a conversation first seen mid-way until a read from the cursor shows where it starts', () => {
    const { state, applied } = setUp();

    // Seq 5 first: 3 and 4 may exist that this socket missed.
    expect(state.offer(frame(5))).toBe('buffered');
    expect(state.offer(frame(4))).toBe('buffered');
    expect(applied()).toEqual([]);

    state.resolveStarts(new Map([[C, 5]]));
    expect(applied()).toEqual([4, 5]);
  });

  it('starts a conversation at the user\'s own joining', () => {
    const { state, out } = setUp();

    expect(state.offer(participant('participant_added', 7, 'alice'))).toBe('applied');
    expect(state.offer(frame(8))).toBe('applied');
    expect(out).toHaveLength(2);
  });

  it('stops positions at the user\'s own removal and restarts them at being added again', () => {
    const { state, applied } = setUp();
    state.offer(frame(1));
    state.offer(participant('participant_removed', 2, 'alice'));

    // Removed and re-added while away: the next position this device sees is its re-joining, far ahead.
    expect(state.offer(participant('participant_added', 9, 'alice'))).toBe('applied');
    expect(state.offer(frame(10))).toBe('applied');
    expect(applied()).toEqual([1, 10]);
  });

  it('forgets every position on a reset and continues from the fresh cursor', () => {
    const { state, out } = setUp();
    state.offer(frame(1));
    state.offer(frame(3));

    state.reset('fresh', 'cursor_expired');

    expect(state.hasGaps).toBe(false);
    expect(state.applied(C)).toBeUndefined();
    expect(out.slice(-2)).toEqual([
      { kind: 'event', event: { type: 'sync_reset', payload: { reason: 'cursor_expired' } } },
      { kind: 'cursor', cursor: 'fresh' },
    ]);
  });

  it.each([true, false])('tells a reset due while a socket resumes from a cursor read just before it once (server resets too: %s)', (serverResets) => {
    const { state, out } = setUp();
    state.resetOnNextConnect('cursor_expired');
    state.connected('k7', true);
    if (serverResets) state.reset('fresh', 'cursor_expired');
    else state.syncComplete('k9');

    expect(out).toEqual([
      { kind: 'event', event: { type: 'sync_reset', payload: { reason: 'cursor_expired' } } },
      { kind: 'cursor', cursor: serverResets ? 'fresh' : 'k9' },
    ]);
  });

  it('restores positions from a checkpoint and treats their events as repeats', () => {
    const { state, applied } = setUp();
    state.restore('saved', { [C]: 4 });

    expect(state.offer(frame(4))).toBe('duplicate');
    expect(state.offer(frame(5))).toBe('applied');
    expect(state.latestCursor).toBe('saved');
    expect(applied()).toEqual([5]);
  });

  it('skips gaps nothing can fill and applies what was held, in order', () => {
    const { state, applied } = setUp();
    state.offer(frame(1));
    state.offer(frame(5));
    state.offer(frame(4));

    expect(state.skipGaps()).toBe(2);
    expect(applied()).toEqual([1, 4, 5]);
  });

  it('keeps conversations independent', () => {
    const { state, applied } = setUp();
    state.offer(frame(1, 'a'));
    state.offer(frame(3, 'a'));

    expect(state.offer(frame(1, 'b'))).toBe('applied');
    expect(applied()).toEqual([1, 1]);
  });
});
