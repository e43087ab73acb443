import { describe, expect, it } from 'vitest';
import { AckPacer } from '../../src/acks.js';
import { backoffDelay } from '../../src/backoff.js';
import { LocalStorageCursorStore, MemoryCursorStore } from '../../src/cursor-store.js';
import type { PositionedFrame } from '../../src/events.js';
import { newClientMessageId } from '../../src/realtime.js';
import { newMessageFrame } from './scripted-server.js';

describe('backoffDelay', () => {
  it('doubles per attempt up to the maximum, with half of each delay random', () => {
    expect(backoffDelay(0, 500, 30_000, 0)).toBe(250);
    expect(backoffDelay(0, 500, 30_000, 0.999)).toBeCloseTo(499.75);
    expect(backoffDelay(3, 500, 30_000, 0)).toBe(2000);
    expect(backoffDelay(20, 500, 30_000, 0)).toBe(15_000);
    expect(backoffDelay(20, 500, 30_000, 0.999)).toBeLessThan(30_000);
  });
});

describe('newClientMessageId', () => {
  it('makes a version 4 UUID from getRandomValues where randomUUID is missing (a browser page served over plain HTTP)', () => {
    const original = Object.getOwnPropertyDescriptor(globalThis, 'crypto')!;
    const real = globalThis.crypto;
    Object.defineProperty(globalThis, 'crypto', { value: { getRandomValues: real.getRandomValues.bind(real) }, configurable: true });
    try {
      const ids = new Set(Array.from({ length: 100 }, () => newClientMessageId()));
      expect(ids.size).toBe(100);
      for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    } finally {
      Object.defineProperty(globalThis, 'crypto', original);
    }
  });
});

describe('AckPacer', () => {
  const event = (conversationId: string, seq: number): PositionedFrame => newMessageFrame(conversationId, seq) as PositionedFrame;

  it('acknowledges the highest consumed seq per conversation, once', () => {
    const acks = new AckPacer(() => 0);
    acks.consumedEvent(event('a', 1), 'alice');
    acks.consumedEvent(event('a', 2), 'alice');
    acks.consumedEvent(event('b', 7), 'alice');
    const sent: [string, number][] = [];

    expect(acks.flush((c, s) => sent.push([c, s]) > 0)).toBe(false);
    expect(sent).toEqual([
      ['a', 2],
      ['b', 7],
    ]);
    expect(acks.flush(() => true)).toBe(false);
  });

  it('sends at most 80 acks a second and keeps the rest due', () => {
    let now = 0;
    const acks = new AckPacer(() => now);
    for (let i = 0; i < 100; i++) acks.consumedEvent(event(`c${i}`, 1), 'alice');
    let sent = 0;

    expect(acks.flush(() => ++sent > 0)).toBe(true);
    expect(sent).toBe(80);
    expect(acks.flush(() => ++sent > 0)).toBe(true);
    expect(sent).toBe(80);

    now = 1000;
    expect(acks.flush(() => ++sent > 0)).toBe(false);
    expect(sent).toBe(100);
  });

  it('makes acks sent on a socket that died due again on the next one', () => {
    const acks = new AckPacer(() => 0);
    acks.consumedEvent(event('a', 3), 'alice');
    acks.flush(() => true);

    acks.socketOpened();

    const sent: number[] = [];
    acks.flush((_, s) => sent.push(s) > 0);
    expect(sent).toEqual([3]);
  });

  it('does not acknowledge the user\'s own removal, nor positions of a restored checkpoint', () => {
    const acks = new AckPacer(() => 0);
    acks.restore({ a: 5 });
    const removed = {
      type: 'participant_removed',
      payload: { conversation_id: 'b', seq: 4, user_id: 'alice', removed_by: 'bob', timestamp: 't' },
    } as PositionedFrame;

    expect(acks.consumedEvent(event('a', 5), 'alice')).toBe(false);
    expect(acks.consumedEvent(removed, 'alice')).toBe(false);
    expect(acks.hasDue).toBe(false);
  });
});

describe('cursor stores', () => {
  it('keeps the checkpoint in memory', () => {
    const store = new MemoryCursorStore();
    store.save({ cursor: 'k', positions: { a: 1 } });
    expect(store.load()).toEqual({ cursor: 'k', positions: { a: 1 } });
  });

  it('keeps the checkpoint in a web storage under its key and reads anything else as none', () => {
    const map = new Map<string, string>();
    const storage = {
      getItem: (k: string) => map.get(k) ?? null,
      setItem: (k: string, v: string) => void map.set(k, v),
      removeItem: (k: string) => void map.delete(k),
    };
    const store = new LocalStorageCursorStore('parley:alice', storage);

    expect(store.load()).toBeNull();
    store.save({ cursor: 'k', positions: { a: 2 } });
    expect(JSON.parse(map.get('parley:alice')!)).toEqual({ cursor: 'k', positions: { a: 2 } });
    expect(new LocalStorageCursorStore('parley:alice', storage).load()).toEqual({ cursor: 'k', positions: { a: 2 } });

    map.set('parley:alice', '{not json');
    expect(store.load()).toBeNull();
    map.set('parley:alice', '{"cursor": 5}');
    expect(store.load()).toBeNull();
    store.clear();
    expect(map.has('parley:alice')).toBe(false);
  });
});
