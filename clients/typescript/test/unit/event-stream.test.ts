import { describe, expect, it } from 'vitest';
import type { DeliveryItem } from '../../src/delivery.js';
import { EventStream } from '../../src/event-stream.js';
import type { ParleyEvent } from '../../src/events.js';
import { eventually, newMessageFrame } from './scripted-server.js';

const event = (seq: number): DeliveryItem => ({ kind: 'event', event: newMessageFrame('c', seq) });

function stream(): { stream: EventStream; consumed: string[]; errors: unknown[] } {
  const consumed: string[] = [];
  const errors: unknown[] = [];
  const s = new EventStream(
    (item, stage) => {
      if (stage === 'consumed') consumed.push(item.kind === 'cursor' ? `cursor ${item.cursor}` : `seq ${(item.event as { payload: { message: { seq: number } } }).payload.message.seq}`);
    },
    (error) => errors.push(error),
  );
  return { stream: s, consumed, errors };
}

describe('EventStream', () => {
  it('holds events until something consumes them, then hands them out in order', async () => {
    const { stream: s, consumed } = stream();
    s.push(event(1));
    s.push({ kind: 'cursor', cursor: 'k' });
    s.push(event(2));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(consumed).toEqual([]);

    const seen: number[] = [];
    s.subscribe((e: ParleyEvent) => void (e.type === 'new_message' && seen.push(e.payload.message.seq)));

    await eventually(() => expect(consumed).toEqual(['seq 1', 'cursor k', 'seq 2']));
    expect(seen).toEqual([1, 2]);
  });

  it('waits for every handler and every iterator before the next event', async () => {
    const { stream: s, consumed } = stream();
    let release!: () => void;
    s.subscribe(() => new Promise<void>((resolve) => (release = resolve)));
    const iterator = s.iterate();
    s.push(event(1));
    s.push(event(2));

    expect((await iterator.next()).value).toMatchObject({ type: 'new_message' });
    release();
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(consumed).toEqual([]);

    const second = iterator.next();
    await eventually(() => expect(consumed).toEqual(['seq 1']));
    release();
    expect((await second).value).toMatchObject({ payload: { message: { seq: 2 } } });
  });

  it('counts an event whose handler threw as handed over, and reports the error', async () => {
    const { stream: s, consumed, errors } = stream();
    s.subscribe(() => {
      throw new Error('app bug');
    });

    s.push(event(1));

    await eventually(() => expect(consumed).toEqual(['seq 1']));
    expect(errors).toHaveLength(1);
  });

  it('ends iterators after the queued events, with the error of a failed connection', async () => {
    const { stream: s } = stream();
    const iterator = s.iterate();
    s.push(event(1));
    s.end(new Error('failed'));

    expect((await iterator.next()).done).toBe(false);
    await expect(iterator.next()).rejects.toThrow('failed');
  });
});
