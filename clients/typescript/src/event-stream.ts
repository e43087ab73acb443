import type { DeliveryItem } from './delivery.js';
import type { ParleyEvent } from './events.js';

/** A consumer of the stream: it has the event once the returned promise settles. */
type Consumer = (event: ParleyEvent) => void | Promise<void>;

/**
 * The ordered stream between the delivery rules and the app: items are handed out one at a time, each to every
 * handler and every iterator, and the next one only once all of them are done with it. "Done" is when a handler's
 * returned promise settles, or when an iterator asks for its next item (or stops). Only then does an event count as
 * consumed (`onConsumed`): it may be acknowledged, and a cursor after it persisted.
 *
 * Items wait while nothing consumes (register handlers before connecting). A browser's WebSocket cannot be paused,
 * so the queue is not bounded: keep handlers quick, or hand long work off.
 */
export class EventStream {
  private readonly items: DeliveryItem[] = [];
  private readonly handlers = new Set<Consumer>();
  private readonly iterators = new Set<StreamIterator>();
  private pumping = false;
  private ended: { error: unknown } | null = null;

  constructor(
    private readonly onItem: (item: DeliveryItem, stage: 'before' | 'consumed') => void,
    private readonly onHandlerError: (error: unknown) => void,
  ) {}

  /** Items not handed out yet. */
  get pending(): number {
    return this.items.length;
  }

  push(item: DeliveryItem): void {
    this.items.push(item);
    void this.pump();
  }

  subscribe(handler: Consumer): () => void {
    this.handlers.add(handler);
    void this.pump();
    return () => this.handlers.delete(handler);
  }

  iterate(): AsyncIterableIterator<ParleyEvent> {
    const iterator = new StreamIterator(this.ended, () => this.iterators.delete(iterator));
    if (!this.ended) this.iterators.add(iterator);
    void this.pump();
    return iterator;
  }

  /** Ends every iterator (with `error` when the connection failed) once the items already queued were handed out. */
  end(error: unknown = null): void {
    this.ended ??= { error };
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.items.length > 0 && (this.handlers.size > 0 || this.iterators.size > 0 || this.items[0]!.kind === 'cursor')) {
        const item = this.items.shift()!;
        this.onItem(item, 'before');
        if (item.kind === 'event' && item.event.type !== 'hidden_event') {
          const event = item.event as ParleyEvent;
          const deliveries: Promise<void>[] = [];
          for (const handler of this.handlers) deliveries.push(this.callHandler(handler, event));
          for (const iterator of this.iterators) deliveries.push(iterator.deliver(event));
          await Promise.all(deliveries);
        }
        this.onItem(item, 'consumed');
      }
      if (this.ended && this.items.length === 0) {
        for (const iterator of this.iterators) iterator.finish(this.ended.error);
        this.iterators.clear();
      }
    } finally {
      this.pumping = false;
    }
  }

  private async callHandler(handler: Consumer, event: ParleyEvent): Promise<void> {
    try {
      await handler(event);
    } catch (error) {
      // The app's code: reported, and the event still counts as handed over.
      this.onHandlerError(error);
    }
  }
}

/** One `for await` loop over the stream. Asking for the next item means the previous one was consumed. */
class StreamIterator implements AsyncIterableIterator<ParleyEvent> {
  private current: { event: ParleyEvent; done: () => void; handedOut: boolean } | null = null;
  private waiter: { resolve: (r: IteratorResult<ParleyEvent>) => void; reject: (e: unknown) => void } | null = null;

  constructor(
    private ended: { error: unknown } | null,
    private readonly unregister: () => void,
  ) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<ParleyEvent> {
    return this;
  }

  deliver(event: ParleyEvent): Promise<void> {
    return new Promise<void>((done) => {
      this.current = { event, done, handedOut: false };
      if (this.waiter) {
        const waiter = this.waiter;
        this.waiter = null;
        this.current.handedOut = true;
        waiter.resolve({ value: event, done: false });
      }
    });
  }

  finish(error: unknown): void {
    this.ended ??= { error };
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = null;
      if (error) waiter.reject(error);
      else waiter.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<ParleyEvent>> {
    this.release();
    if (this.current) {
      this.current.handedOut = true;
      return Promise.resolve({ value: this.current.event, done: false });
    }
    if (this.ended) {
      return this.ended.error ? Promise.reject(this.ended.error) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<ParleyEvent>> {
    // Leaving the loop after an event counts as having consumed it; one delivered but not handed out is let go too.
    this.unregister();
    this.current?.done();
    this.current = null;
    this.finish(null);
    this.ended ??= { error: null };
    return Promise.resolve({ value: undefined, done: true });
  }

  private release(): void {
    if (this.current?.handedOut) {
      const current = this.current;
      this.current = null;
      current.done();
    }
  }
}
