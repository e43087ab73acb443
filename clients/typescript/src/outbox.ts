import { ParleyApiError } from './errors.js';
import type { Message } from './model.js';
import { ErrorCodes } from './wire.js';

/** A message sent over the socket and not acknowledged yet: resent with the same frame (and `client_message_id`) until it is. */
export interface PendingSend {
  /**
   * What identifies the send (`sendKey`): a `client_message_id` is the sender's per conversation, and another device
   * of the user may use the same one elsewhere. Also the frame's `id`, which the server echoes in an `error`.
   */
  readonly key: string;
  readonly clientMessageId: string;
  /** The serialized `send_message` frame, the same bytes on every attempt. */
  readonly frame: string;
  resolve(message: Message): void;
  reject(error: unknown): void;
  /** When a send refused for a passing reason is due again (ms, the clock's); null while it waits for the next connection only. */
  retryAt: number | null;
  /** How often the server answered `internal_error` so far. */
  internalErrors: number;
}

/** The key of a send: its conversation and `client_message_id`. */
export function sendKey(conversationId: string, clientMessageId: string): string {
  return `${conversationId.toLowerCase()}:${clientMessageId}`;
}

/** Refusals that pass: the same send succeeds later. */
const passing = new Set<string>([ErrorCodes.RateLimited, ErrorCodes.ServiceUnavailable]);

/**
 * `internal_error` may be a passing failure or a send the server can never store (docs/delivery.md): it is retried
 * this many times, the delay doubling each time, and then the send fails with it.
 */
export const internalErrorRetries = 3;

/**
 * The sends waiting for their acknowledgement, in the order they were made, and the socket they go out on: every
 * unacknowledged send goes out again when a socket attaches, and after passing refusals, until `message_ack` (or the
 * sender's own `new_message` carrying its id) arrives, so a message is stored once however often it is sent.
 */
export class Outbox {
  private readonly sends = new Map<string, PendingSend>();
  private sender: ((frame: string) => boolean) | null = null;
  private closedWith: unknown = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly now: () => number,
    private readonly retryDelayMs: number,
  ) {}

  get size(): number {
    return this.sends.size;
  }

  /** A socket is live: every unacknowledged send goes out again, same frame, in order. */
  attach(sender: (frame: string) => boolean): void {
    this.sender = sender;
    for (const send of this.sends.values()) send.retryAt = null;
    this.sendInOrder([...this.sends.values()]);
  }

  /** The socket ended: nothing goes out until the next one. */
  detach(): void {
    this.sender = null;
  }

  add(send: PendingSend): void {
    if (this.closedWith !== null) throw this.closedWith;
    if (this.sends.has(send.key)) {
      throw new Error(`A send with client_message_id '${send.clientMessageId}' is already waiting for its acknowledgement.`);
    }
    this.sends.set(send.key, send);
    const retryAt = this.latestRetry();
    if (retryAt !== null) {
      // An earlier send waits for its retry (refused in passing): this one waits with it and goes out after it, or it
      // would be stored first and everyone would see the two in reverse order.
      send.retryAt = retryAt;
      this.scheduleRetry();
    } else if (this.sender) {
      this.sendInOrder([send]);
    }
  }

  /** The app stopped waiting: no more resends (a copy already sent may still be stored). */
  remove(send: PendingSend): void {
    if (this.sends.get(send.key) === send) this.sends.delete(send.key);
  }

  /** `message_ack`, or the sender's own `new_message` carrying the id: the send of that conversation is stored. */
  acknowledged(message: Message): void {
    if (!message.client_message_id) return;
    const key = sendKey(message.conversation_id, message.client_message_id);
    const send = this.sends.get(key);
    if (!send) return;
    this.sends.delete(key);
    send.resolve(message);
  }

  /**
   * An `error` frame about a send, named by the frame id the server echoes (this client's frames all carry one), or
   * without it by its `client_message_id`: passing refusals are retried after the retry delay, `internal_error` a
   * few times with back-off, others fail it. Returns false when no send waits with that id.
   */
  refused(frameId: string | null, clientMessageId: string | null, code: string, detail: string | null): boolean {
    const send = frameId !== null
      ? this.sends.get(frameId)
      : [...this.sends.values()].find((s) => s.clientMessageId === clientMessageId);
    if (!send) return false;
    if (passing.has(code)) {
      send.retryAt = this.now() + this.retryDelayMs;
      this.scheduleRetry();
    } else if (code === ErrorCodes.InternalError && send.internalErrors < internalErrorRetries) {
      send.retryAt = this.now() + this.retryDelayMs * 2 ** send.internalErrors;
      send.internalErrors++;
      this.scheduleRetry();
    } else {
      this.sends.delete(send.key);
      send.reject(new ParleyApiError(code, detail));
    }
    return true;
  }

  /** The latest retry time of the sends waiting for one; null when none waits. */
  private latestRetry(): number | null {
    let latest: number | null = null;
    for (const send of this.sends.values()) if (send.retryAt !== null && (latest === null || send.retryAt > latest)) latest = send.retryAt;
    return latest;
  }

  /** No more sends: every waiting one fails with `error`, and so does every later one. */
  close(error: unknown): void {
    this.closedWith ??= error;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const waiting = [...this.sends.values()];
    this.sends.clear();
    for (const send of waiting) send.reject(error);
  }

  private resendDue(): void {
    this.retryTimer = null;
    const now = this.now();
    const due = [...this.sends.values()].filter((s) => s.retryAt !== null && s.retryAt <= now);
    for (const send of due) send.retryAt = null;
    if (this.sender) this.sendInOrder(due);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.closedWith !== null) return;
    let next = Number.POSITIVE_INFINITY;
    for (const send of this.sends.values()) if (send.retryAt !== null && send.retryAt < next) next = send.retryAt;
    if (next === Number.POSITIVE_INFINITY) return;
    this.retryTimer = setTimeout(() => this.resendDue(), Math.max(0, next - this.now()));
  }

  /** Sends in order; from the first the socket refuses on, all wait for the retry delay (so the order holds). */
  private sendInOrder(sends: PendingSend[]): void {
    for (let i = 0; i < sends.length; i++) {
      if (!this.sender || !this.sender(sends[i]!.frame)) {
        const retryAt = this.now() + this.retryDelayMs;
        for (let j = i; j < sends.length; j++) sends[j]!.retryAt = retryAt;
        this.scheduleRetry();
        return;
      }
    }
  }
}
