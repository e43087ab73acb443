import { AckPacer } from './acks.js';
import { backoffDelay } from './backoff.js';
import type { ParleyClient, SyncPage } from './client.js';
import type { CursorStore, DeliveryCheckpoint } from './cursor-store.js';
import { MemoryCursorStore } from './cursor-store.js';
import type { DeliveryItem } from './delivery.js';
import { DeliveryState } from './delivery.js';
import { ParleyApiError, ParleyConnectionError } from './errors.js';
import { EventStream } from './event-stream.js';
import type { ParleyEvent, ParleyEventType, PositionedFrame } from './events.js';
import { isPositioned, positionOf } from './events.js';
import type { Message, SendMessageRequest } from './model.js';
import type { PendingSend } from './outbox.js';
import { Outbox, sendKey } from './outbox.js';
import type { ClientFrame, ConnectedPayload, ServerFrame } from './protocol.js';
import { CloseCodes, ErrorCodes, Subprotocol } from './wire.js';

/** The part of the WebSocket API the connection uses: the browser's, Node's (20+ global or `ws`) and React Native's all have it. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/**
 * A WebSocket constructor. The third argument carries `{ headers }` for implementations that can send headers
 * (Node's `ws`: `X-User-ID` of header credentials); browsers ignore it, and bearer tokens go in the URL.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: { headers: Record<string, string> }) => WebSocketLike;

export type ConnectionState = 'idle' | 'connecting' | 'catching_up' | 'live' | 'reconnecting' | 'offline' | 'failed' | 'closed';

export interface ConnectionStateChange {
  state: ConnectionState;
  /** The close code of the socket that ended, when the server sent one. */
  closeCode?: number;
  /** For `reconnecting`: when the next attempt starts. */
  retryInMs?: number;
  /** Why the socket ended or the connection failed. */
  error?: unknown;
}

export interface Logger {
  debug(message: string, ...details: unknown[]): void;
  info(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
}

export interface ParleyRealtimeOptions {
  /** This device's id (`device_id`) when the token carries none: one logical connection per device, stable across runs. */
  deviceId?: string;
  /** Where the delivery checkpoint lives; in memory by default (`LocalStorageCursorStore` survives reloads). */
  cursorStore?: CursorStore;
  /** The WebSocket implementation; `globalThis.WebSocket` by default (pass `ws` on Node 20). */
  WebSocket?: WebSocketConstructor;
  /** First reconnect delay; doubles per failed attempt up to `maxReconnectDelayMs`. Default 500 ms. */
  initialReconnectDelayMs?: number;
  /** Default 30 s. */
  maxReconnectDelayMs?: number;
  /** Consumed events are acknowledged with one cumulative `ack` per conversation per batch. Default 100 ms. */
  ackDelayMs?: number;
  /**
   * Wait before resending a message refused with `rate_limited`, `service_unavailable` or `internal_error` (after
   * `internal_error` it doubles per refusal, and the send fails after the third retry). Default 1 s.
   */
  sendRetryDelayMs?: number;
  /** A `ping` goes out when nothing arrived for this long; zero disables. Default 15 s. */
  keepAliveIntervalMs?: number;
  /** A connection whose ping goes unanswered this long is dropped and re-established. Default 15 s. */
  keepAliveTimeoutMs?: number;
  /** Events per page of `GET /api/v1/sync` when filling a gap. Default 500. */
  syncPageSize?: number;
  /**
   * Follow the browser's `online`/`offline` events, as hints: `offline` closes the socket at once (a dead network may
   * keep a socket looking open for minutes), and `online` reconnects without waiting for the back-off. While the
   * browser says it is offline the state is `offline`, but connecting goes on with the usual back-off: a server on
   * this machine or the LAN may answer all the same. Default: on wherever `window` has these events.
   */
  watchNetwork?: boolean;
  logger?: Logger;
  /** Clock and randomness; tests replace them. */
  now?: () => number;
  random?: () => number;
}

type PayloadOf<K extends ParleyEventType> = Extract<ParleyEvent, { type: K }>['payload'];

const gapRetryInitialMs = 100;
const gapRetryMaxMs = 5000;
const stableConnectionMs = 5000;
const closeTimeoutMs = 2000;

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** How one socket ended. */
interface SocketEnd {
  opened: boolean;
  code: number | null;
  reason: string;
  error: unknown;
  /** Reconnect at once (a refused cursor was reset). */
  restart: boolean;
}

/** Close codes that ask the client to change something: reconnecting would not help. */
function isTerminalClose(code: number): boolean {
  return (
    [1002, 1003, 1007, 1008, CloseCodes.MessageTooBig, 1010].includes(code) ||
    (code >= 4000 && code < 5000 && code !== CloseCodes.SlowConsumer && code !== CloseCodes.TokenExpired)
  );
}

/**
 * One device's realtime connection to Parley, following docs/delivery.md: it reconnects with jittered back-off,
 * resumes from its persisted cursor, applies each conversation's events once and in order (filling gaps over REST),
 * acknowledges what the app consumed, and resends unacknowledged messages with the same `client_message_id` until the
 * server acknowledges them.
 *
 * Events reach the app through handlers (`on`, `onEvent`) and async iterators (`events()`), all of them, one event at
 * a time: an event counts as applied once every handler returned (or its promise settled) and every iterator asked for
 * the next one; only then is it acknowledged (its sender gets `message_delivered`) and covered by a saved cursor.
 */
export class ParleyRealtime {
  private readonly options: Required<Omit<ParleyRealtimeOptions, 'deviceId' | 'WebSocket' | 'watchNetwork'>> & {
    deviceId: string | undefined;
  };
  private readonly log: Logger;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly delivery: DeliveryState;
  private readonly stream: EventStream;
  private readonly outbox: Outbox;
  private readonly acks: AckPacer;
  private readonly stateListeners = new Set<(change: ConnectionStateChange) => void>();

  // Checkpoints: the positions the app consumed, the newest checkpoint due and whether a save runs.
  private readonly consumedPositions = new Map<string, number>();
  private checkpointDue: DeliveryCheckpoint | null = null;
  private saving: Promise<void> | null = null;

  private currentState: ConnectionState = 'idle';
  private socket: Session | null = null;
  private connected = false;
  private catchingUp = false;
  private connectedInfo: ConnectedPayload | null = null;
  private started = false;
  private closed = false;
  private offline = false;
  /** The browser said the network is back since the last attempt began: the next one starts at once. */
  private networkBack = false;
  private refreshToken = false;
  private wake: (() => void) | null = null;
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  private gapsRunning = false;
  private gapsWanted = false;
  private firstLive: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void };
  private runLoop: Promise<void> = Promise.resolve();
  private removeNetworkListeners: (() => void) | null = null;

  constructor(
    private readonly client: ParleyClient,
    options: ParleyRealtimeOptions = {},
  ) {
    this.options = {
      deviceId: options.deviceId,
      cursorStore: options.cursorStore ?? new MemoryCursorStore(),
      initialReconnectDelayMs: options.initialReconnectDelayMs ?? 500,
      maxReconnectDelayMs: options.maxReconnectDelayMs ?? 30_000,
      ackDelayMs: options.ackDelayMs ?? 100,
      sendRetryDelayMs: options.sendRetryDelayMs ?? 1000,
      keepAliveIntervalMs: options.keepAliveIntervalMs ?? 15_000,
      keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? 15_000,
      syncPageSize: options.syncPageSize ?? 500,
      logger: options.logger ?? silent,
      now: options.now ?? (() => Date.now()),
      random: options.random ?? Math.random,
    };
    this.log = this.options.logger;
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!impl) throw new TypeError('No WebSocket implementation here: pass options.WebSocket (for example the ws package).');
    this.WebSocketImpl = impl;
    this.delivery = new DeliveryState((item) => this.stream.push(item));
    this.stream = new EventStream(
      (item, stage) => this.onStreamItem(item, stage),
      (error) => this.log.error('parley: an event handler threw', error),
    );
    this.outbox = new Outbox(this.options.now, this.options.sendRetryDelayMs);
    this.acks = new AckPacer(this.options.now);
    this.firstLive = deferred();
    // Nobody may be waiting for the first live moment (connect() was not awaited): a failure must not go unhandled.
    this.firstLive.promise.catch(() => {});

    const target = globalThis as { addEventListener?: (type: string, listener: () => void) => void; removeEventListener?: (type: string, listener: () => void) => void; navigator?: { onLine?: boolean } };
    if ((options.watchNetwork ?? true) && typeof target.addEventListener === 'function' && typeof target.removeEventListener === 'function' && target.navigator && typeof target.navigator.onLine === 'boolean') {
      const goOffline = (): void => this.networkChanged(false);
      const goOnline = (): void => this.networkChanged(true);
      target.addEventListener('offline', goOffline);
      target.addEventListener('online', goOnline);
      this.offline = target.navigator.onLine === false;
      this.removeNetworkListeners = () => {
        target.removeEventListener!('offline', goOffline);
        target.removeEventListener!('online', goOnline);
      };
    }
  }

  /** Where the connection is. */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** The user the server authenticated (from the first `connected` frame); null before. */
  get userId(): string | null {
    return this.delivery.userId;
  }

  /** What the server said in the latest `connected` frame (connection and device ids). */
  get connection(): ConnectedPayload | null {
    return this.connectedInfo;
  }

  /** Sends waiting for their acknowledgement (queued while offline, or in flight). */
  get pendingSends(): number {
    return this.outbox.size;
  }

  /**
   * Loads the checkpoint, opens the connection and resolves once it is live the first time (caught up when it
   * resumed). It then stays open, reconnecting as needed, until `close()`. Rejects with `ParleyConnectionError` when
   * the server refuses in a way retrying cannot fix. Register event handlers before calling it.
   */
  async connect(): Promise<void> {
    if (this.closed) throw new Error('The connection was closed.');
    if (this.started) throw new Error('connect() was already called.');
    this.started = true;
    const checkpoint = await this.options.cursorStore.load();
    if (checkpoint) {
      this.delivery.restore(checkpoint.cursor, checkpoint.positions);
      this.acks.restore(checkpoint.positions);
      for (const [conversationId, seq] of Object.entries(checkpoint.positions)) this.consumedPositions.set(conversationId, seq);
    }
    this.runLoop = this.run().catch((error: unknown) => this.fail(error));
    await this.firstLive.promise;
  }

  /** Calls `handler` with the payload of every event of `type`. Returns a function that unsubscribes. */
  on<K extends ParleyEventType>(type: K, handler: (payload: PayloadOf<K>) => void | Promise<void>): () => void {
    return this.stream.subscribe((event) => (event.type === type ? handler(event.payload as PayloadOf<K>) : undefined));
  }

  /** Calls `handler` with every event. Returns a function that unsubscribes. */
  onEvent(handler: (event: ParleyEvent) => void | Promise<void>): () => void {
    return this.stream.subscribe(handler);
  }

  /** The events, in the order applied; the loop ends at `close()` and throws when the connection failed. */
  events(): AsyncIterableIterator<ParleyEvent> {
    return this.stream.iterate();
  }

  /** Calls `listener` on every change of `state`. Returns a function that unsubscribes. */
  onStateChange(listener: (change: ConnectionStateChange) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /**
   * Sends a message over the socket (`send_message`) and resolves with the stored message once the server
   * acknowledges it. A `client_message_id` is generated when absent, once per request object: sending the same
   * object again (after an abort or a failed connection, a "retry" button) reuses it, so the server returns the
   * message if the first attempt stored it instead of storing a second; a new message is a new object. The same frame
   * goes out again after every reconnect, and after refusals for passing reasons, until `message_ack` arrives, so the
   * message is created once however often it is sent. While disconnected (offline) the send waits for the connection. Rejects with
   * `ParleyApiError` when the server refuses it, also after `internal_error` came back a few times (it may be a send
   * the server can never store: sending the same request again retries it as the same message); aborting `signal`
   * stops the resending (a copy already sent may still be stored).
   */
  send(request: SendMessageRequest, options: { signal?: AbortSignal } = {}): Promise<Message> {
    if (this.closed) return Promise.reject(new Error('The connection was closed.'));
    const clientMessageId = request.client_message_id ?? generatedKey(request);
    const payload = { message_type: 'text' as const, ...request, client_message_id: clientMessageId };
    return new Promise<Message>((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      // The listener goes with the send, however it ends: an app that passes one long-lived signal keeps nothing.
      const onAbort = (): void => {
        this.outbox.remove(send);
        reject(signal!.reason);
      };
      const key = sendKey(request.conversation_id, clientMessageId);
      const send: PendingSend = {
        key,
        clientMessageId,
        frame: serialize({ type: 'send_message', id: key, payload }),
        resolve: (message) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(message);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
        retryAt: null,
        internalErrors: 0,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        this.outbox.add(send);
      } catch (error) {
        signal?.removeEventListener('abort', onAbort);
        throw error;
      }
    });
  }

  /** Starts (refresh every few seconds while typing) or stops the typing indicator; false when not connected (typing is not queued). */
  sendTyping(conversationId: string, isTyping: boolean): boolean {
    return this.trySend({ type: 'typing', payload: { conversation_id: conversationId, is_typing: isTyping } });
  }

  /** Marks everything up to and including the message read; false when not connected. `ParleyClient.markRead` does it over REST. */
  sendReadReceipt(messageId: string): boolean {
    return this.trySend({ type: 'read_receipt', payload: { message_id: messageId } });
  }

  /**
   * Acknowledges what was consumed, closes the socket (1000), saves the last checkpoint and ends the event streams.
   * Sends still waiting are rejected.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.removeNetworkListeners?.();
    this.flushAcks();
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.socket?.end(CloseCodes.Normal, 'client closing');
    this.wake?.();
    await this.runLoop;
    await this.saveCheckpoints();
    const error = new Error('The connection was closed.');
    this.outbox.close(error);
    this.firstLive.reject(error);
    this.stream.end();
    this.setState({ state: 'closed' });
  }

  // --- the reconnect loop -------------------------------------------------------------------------------------------

  private async run(): Promise<void> {
    let attempt = 0;
    // A 4003 on a connection that had just opened, after one before it: the fresh token is expired as well (a fixed
    // token, a client clock behind the server's), and reconnecting at once again would storm the server.
    let tokenExpiredEarly = false;
    while (!this.closed) {
      // navigator.onLine is only a hint (false in airplane mode with the server on this machine): try all the same.
      this.networkBack = false;
      this.setState({ state: this.offline ? 'offline' : 'connecting' });
      const cursor = this.delivery.latestCursor;
      const openedAt = this.options.now();
      let end: SocketEnd;
      try {
        const session = await this.open(cursor);
        this.socket = session;
        end = await session.ended;
      } catch (error) {
        end = { opened: false, code: null, reason: '', error, restart: false };
      }
      this.socketEnded();
      if (this.closed) return;

      if (!end.opened) {
        // A browser's WebSocket does not show why an upgrade was refused: ask the REST API, which answers the same credentials and cursor.
        const verdict = await this.probe(cursor);
        if (this.closed) return;
        if (verdict === 'reset') {
          this.log.warn('parley: the server refused the cursor; reloading (sync_reset)');
          this.delivery.resetOnNextConnect(ErrorCodes.InvalidCursor);
          continue;
        }
        if (verdict === 'refresh') {
          this.refreshToken = true;
        } else if (verdict instanceof ParleyConnectionError) {
          this.fail(verdict);
          return;
        }
      } else if (end.opened) {
        this.log.info(`parley: socket ended (${end.code ?? 'no close frame'}${end.reason ? `: ${end.reason}` : ''})`);
        if (end.code !== null && isTerminalClose(end.code)) {
          this.fail(new ParleyConnectionError(`The server closed the connection with ${end.code} (${end.reason}); reconnecting would not help.`, end.code));
          return;
        }
        const stable = this.options.now() - openedAt >= stableConnectionMs;
        const expiredEarly = end.code === CloseCodes.TokenExpired && !stable;
        this.refreshToken ||= end.code === CloseCodes.TokenExpired;
        if (end.restart || (end.code === CloseCodes.TokenExpired && !(tokenExpiredEarly && expiredEarly))) {
          // A fresh token (the provider is asked again), or a resync: at once.
          tokenExpiredEarly = expiredEarly;
          attempt = 0;
          this.setState({ state: 'reconnecting', closeCode: end.code ?? undefined, retryInMs: 0, error: end.error });
          continue;
        }
        // Early 4003s in a row keep backing off, each wait longer than the one before, until a connection lasts.
        tokenExpiredEarly = expiredEarly;
        if (stable) attempt = 0;
      }

      const delay = backoffDelay(attempt++, this.options.initialReconnectDelayMs, this.options.maxReconnectDelayMs, this.options.random());
      this.setState({ state: this.offline ? 'offline' : 'reconnecting', closeCode: end.code ?? undefined, retryInMs: delay, error: end.error });
      if (!this.networkBack) await this.sleep(delay);
      if (this.networkBack) attempt = 0;
    }
  }

  /** Why a socket did not open, asked of REST: the cursor refused (reset), the token refused (refresh once, then fail), or passing. */
  private async probe(cursor: string | null): Promise<'reset' | 'refresh' | 'retry' | ParleyConnectionError> {
    try {
      if (cursor !== null) await this.client.sync(cursor, { limit: 1 });
      else await this.client.getSyncCursor();
      return 'retry';
    } catch (error) {
      if (!(error instanceof ParleyApiError)) return 'retry';
      if (cursor !== null && (error.code === ErrorCodes.InvalidCursor || error.code === ErrorCodes.CursorExpired || error.status === 410)) return 'reset';
      if (error.status === 401 || error.status === 403) {
        // The REST call already asked the provider for a fresh token once and was refused again.
        return new ParleyConnectionError(`The server refused the credentials (${error.status} ${error.code}): ${error.detail ?? ''}`, null, error.code);
      }
      return 'retry';
    }
  }

  private async open(cursor: string | null): Promise<Session> {
    const token = await this.client.credentials.token(this.refreshToken);
    this.refreshToken = false;
    const url = new URL('ws', this.client.baseUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('acks', 'true');
    if (this.options.deviceId) url.searchParams.set('device_id', this.options.deviceId);
    if (cursor !== null) url.searchParams.set('cursor', cursor);
    if (token !== null) url.searchParams.set('access_token', token);
    const socket = new this.WebSocketImpl(url.toString(), [Subprotocol], { headers: this.client.credentials.socketHeaders() });
    return new Session(socket, cursor !== null, (frame) => this.onFrame(frame), this.options, this.log);
  }

  private socketEnded(): void {
    this.socket = null;
    this.connected = false;
    this.catchingUp = false;
    this.outbox.detach();
  }

  private networkChanged(online: boolean): void {
    if (this.closed || this.offline === !online) return;
    this.offline = !online;
    this.networkBack = online;
    this.log.info(`parley: the network is ${online ? 'back' : 'gone'}`);
    if (online) this.wake?.();
    else this.socket?.abandon('the network is offline');
  }

  /** Waits `ms` or until woken (closing, the network back). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.wake === done) self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }

  private fail(error: unknown): void {
    if (this.closed) return;
    this.log.error('parley: the connection failed', error);
    this.closed = true;
    this.removeNetworkListeners?.();
    this.socket?.end(CloseCodes.Normal, 'failed');
    this.outbox.close(error);
    this.firstLive.reject(error);
    this.stream.end(error);
    this.setState({ state: 'failed', error });
  }

  private setState(change: ConnectionStateChange): void {
    this.currentState = change.state;
    if (change.state === 'live') this.firstLive.resolve();
    for (const listener of this.stateListeners) {
      try {
        listener(change);
      } catch (error) {
        this.log.error('parley: a state listener threw', error);
      }
    }
  }

  // --- frames -------------------------------------------------------------------------------------------------------

  private onFrame(frame: ServerFrame): void {
    if (isPositioned(frame)) {
      this.onConversationEvent(frame);
      return;
    }
    switch (frame.type) {
      case 'connected':
        this.onConnected(frame.payload);
        break;
      case 'message_delivered':
      case 'message_read':
      case 'typing':
      case 'presence':
        this.delivery.emit(frame);
        break;
      case 'sync_complete':
        this.catchingUp = false;
        this.delivery.syncComplete(frame.payload.cursor);
        this.becameLive();
        break;
      case 'cursor':
        this.delivery.onCursor(frame.payload.cursor);
        break;
      case 'sync_reset':
        this.log.warn(`parley: the server reset this device's position (${frame.payload.reason}); reload`);
        this.catchingUp = false;
        this.delivery.reset(frame.payload.cursor, frame.payload.reason ?? ErrorCodes.CursorExpired);
        this.becameLive();
        break;
      case 'message_ack':
        this.outbox.acknowledged(frame.payload.message);
        break;
      case 'error': {
        const { code, message, id, client_message_id: clientMessageId } = frame.payload;
        const frameId = typeof id === 'string' ? id : null;
        if ((frameId === null && !clientMessageId) || !this.outbox.refused(frameId, clientMessageId ?? null, code, message)) {
          this.log.warn(`parley: the server answered a frame with ${code}: ${message}`);
        }
        break;
      }
      default:
        // pong, and frame types a newer server may add.
        break;
    }
  }

  private onConnected(connected: ConnectedPayload): void {
    const session = this.socket;
    this.connectedInfo = connected;
    this.delivery.userId = connected.user_id;
    this.connected = true;
    // A server that knows cursors always names one in connected; one that does not ignores ours and never sends sync_complete.
    this.catchingUp = (session?.presentedCursor ?? false) && typeof connected.cursor === 'string';
    this.delivery.connected(typeof connected.cursor === 'string' ? connected.cursor : null, session?.presentedCursor ?? false);
    this.outbox.attach((frame) => this.socket?.send(frame) ?? false);
    this.acks.socketOpened();
    this.scheduleAcks();
    this.log.info(`parley: connected as ${connected.user_id} (device ${connected.device_id}${session?.presentedCursor ? ', resuming' : ''})`);
    if (this.catchingUp) this.setState({ state: 'catching_up' });
    else this.becameLive();
  }

  private onConversationEvent(e: PositionedFrame): void {
    const result = this.delivery.offer(e);
    // The message_ack of a resent message may still be on its way; its new_message already proves it stored.
    if (e.type === 'new_message' && e.payload.message.client_message_id && e.payload.message.sender_id === this.delivery.userId) {
      this.outbox.acknowledged(e.payload.message);
    }
    if (result === 'buffered') {
      const { conversation_id: conversationId, seq } = positionOf(e);
      this.log.debug(`parley: gap before ${conversationId}#${seq}${this.catchingUp ? ' (the catch-up fills it)' : ''}`);
      if (!this.catchingUp) this.fillGaps();
    }
  }

  private becameLive(): void {
    this.setState({ state: 'live' });
    this.fillGaps();
  }

  private trySend(frame: ClientFrame): boolean {
    return this.connected && this.socket !== null && this.socket.send(serialize(frame));
  }

  // --- consumption: acks and checkpoints ----------------------------------------------------------------------------

  private onStreamItem(item: DeliveryItem, stage: 'before' | 'consumed'): void {
    if (item.kind === 'cursor') {
      if (stage === 'before') {
        // Rule 5: every item before the cursor was consumed, so it may be persisted (the newest wins).
        this.checkpointDue = { cursor: item.cursor, positions: Object.fromEntries(this.consumedPositions) };
        void this.saveCheckpoints();
      }
      return;
    }
    const event = item.event;
    if (stage === 'before') {
      if (event.type === 'sync_reset') {
        this.consumedPositions.clear();
        this.acks.forget();
      }
      return;
    }
    if (isPositioned(event)) {
      const { conversation_id: conversationId, seq } = positionOf(event);
      if (seq > (this.consumedPositions.get(conversationId) ?? 0)) this.consumedPositions.set(conversationId, seq);
      if (this.acks.consumedEvent(event, this.delivery.userId)) this.scheduleAcks();
    }
  }

  private scheduleAcks(delayMs = this.options.ackDelayMs): void {
    if (this.ackTimer !== null || !this.acks.hasDue || this.closed) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      if (this.flushAcks()) this.scheduleAcks(AckPacer.windowMs);
    }, delayMs);
  }

  /** Sends due acks on the live socket; returns whether more remain due. */
  private flushAcks(): boolean {
    if (!this.connected || !this.socket) return this.acks.hasDue;
    const socket = this.socket;
    return this.acks.flush((conversationId, seq) => socket.send(serialize({ type: 'ack', payload: { conversation_id: conversationId, seq } })));
  }

  /** Saves the checkpoint due, one save at a time, newest last; a failing store is logged and tried again with the next. */
  private saveCheckpoints(): Promise<void> {
    if (this.saving) return this.saving;
    const loop = async (): Promise<void> => {
      while (this.checkpointDue) {
        const checkpoint = this.checkpointDue;
        try {
          await this.options.cursorStore.save(checkpoint);
        } catch (error) {
          this.log.error('parley: saving the checkpoint failed', error);
          if (this.checkpointDue === checkpoint) this.checkpointDue = null;
          continue;
        }
        if (this.checkpointDue === checkpoint) this.checkpointDue = null;
      }
    };
    this.saving = loop().finally(() => {
      this.saving = null;
    });
    return this.saving;
  }

  // --- gaps ---------------------------------------------------------------------------------------------------------

  /**
   * Rule 2's "fetch the missing positions": while a gap is open on a live socket that is not catching up (a catch-up
   * fills gaps by itself), read `GET /api/v1/sync` from the newest cursor, page by page, and retry with back-off
   * (100 ms to 5 s) while the gap stays open: an event may not have a stream position yet.
   */
  private fillGaps(): void {
    this.gapsWanted = true;
    if (this.gapsRunning) return;
    this.gapsRunning = true;
    void (async () => {
      try {
        let attempt = 0;
        while (this.gapsWanted && !this.closed) {
          this.gapsWanted = false;
          if (!this.delivery.hasGaps || !this.connected || this.catchingUp) continue;
          const cursor = this.delivery.latestCursor;
          if (cursor === null) {
            this.log.warn(`parley: the server gave no cursor, so gaps cannot be filled; skipped ${this.delivery.skipGaps()} positions`);
            continue;
          }
          try {
            await this.syncFrom(cursor, this.delivery.cursorVersion);
          } catch (error) {
            if (error instanceof ParleyApiError && (error.status === 410 || error.code === ErrorCodes.InvalidCursor || error.code === ErrorCodes.CursorExpired)) {
              // Rule 7: reload, and reconnect without a cursor, from the current position.
              this.delivery.resetOnNextConnect(error.code);
              this.socket?.restart();
              continue;
            }
            if (error instanceof ParleyApiError && error.status === 404) {
              this.log.warn(`parley: the server has no sync endpoint; skipped ${this.delivery.skipGaps()} positions`);
              continue;
            }
            this.log.warn('parley: filling a gap failed; retrying', error);
          }
          if (this.delivery.hasGaps) {
            await delay(backoffDelay(attempt++, gapRetryInitialMs, gapRetryMaxMs, this.options.random()));
            this.gapsWanted = true;
          } else {
            attempt = 0;
          }
        }
      } finally {
        this.gapsRunning = false;
      }
    })();
  }

  private async syncFrom(cursor: string, fromVersion: number): Promise<void> {
    let next = cursor;
    const synced = new Map<string, number>();
    for (;;) {
      const page: SyncPage = await this.client.sync(next, { limit: this.options.syncPageSize });
      if (this.closed) return;
      for (const frame of page.events) {
        if (isPositioned(frame)) {
          this.delivery.offer(frame);
          const { conversation_id: conversationId, seq } = positionOf(frame);
          synced.set(conversationId, Math.max(synced.get(conversationId) ?? 0, seq));
        } else if (frame.type === 'message_delivered' || frame.type === 'message_read' || frame.type === 'typing') {
          this.delivery.emit(frame);
        }
      }
      if (!page.has_more) this.delivery.resolveStarts(synced, fromVersion);
      // Every event up to next_cursor is in the pages read so far.
      this.delivery.onCursor(page.next_cursor);
      if (!page.has_more) return;
      next = page.next_cursor;
    }
  }
}

/**
 * One socket: parses each frame and hands it over in the order received; sends while open; pings when idle and drops
 * a connection whose ping goes unanswered.
 */
class Session {
  readonly ended: Promise<SocketEnd>;
  private finish!: (end: SocketEnd) => void;
  private opened = false;
  private done = false;
  private restartRequested = false;
  private lastFrameAt: number;
  private pingSentAt: number | null = null;
  private keepAlive: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly socket: WebSocketLike,
    readonly presentedCursor: boolean,
    onFrame: (frame: ServerFrame) => void,
    private readonly options: { keepAliveIntervalMs: number; keepAliveTimeoutMs: number; now: () => number },
    log: Logger,
  ) {
    this.ended = new Promise((resolve) => {
      this.finish = resolve;
    });
    this.lastFrameAt = options.now();
    socket.onopen = () => {
      this.opened = true;
      this.lastFrameAt = options.now();
      if (options.keepAliveIntervalMs > 0) {
        this.keepAlive = setInterval(() => this.checkAlive(), Math.min(options.keepAliveIntervalMs, options.keepAliveTimeoutMs, 1000));
      }
    };
    socket.onmessage = (event) => {
      if (this.done) return;
      this.lastFrameAt = options.now();
      this.pingSentAt = null;
      const text = typeof event.data === 'string' ? event.data : decode(event.data);
      if (text === null) return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(text) as ServerFrame;
      } catch (error) {
        // A position lost this way is a gap like any other: the next events reveal it and sync fills it.
        log.warn('parley: a frame that is not JSON was ignored', error);
        return;
      }
      if (frame === null || typeof frame !== 'object' || typeof frame.type !== 'string') return;
      onFrame(frame);
    };
    socket.onerror = () => {
      // The close event follows with the details.
    };
    socket.onclose = (event) => this.settle(event.code === 1005 || event.code === 1006 ? null : event.code, event.reason ?? '', null);
  }

  /** Sends a frame; false when the socket is not open. */
  send(frame: string): boolean {
    if (this.done || this.socket.readyState !== 1) return false;
    try {
      this.socket.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  /** Closes gracefully; the session ends when the server answers, or after a moment without an answer. */
  end(code: number, reason: string): void {
    if (this.done) return;
    try {
      this.socket.close(code, reason);
    } catch {
      // Already closing.
    }
    const timer = setTimeout(() => this.settle(null, reason, new Error('close timeout')), closeTimeoutMs);
    // In Node, a closing socket must not keep the process alive.
    (timer as { unref?: () => void }).unref?.();
  }

  /** Ends this socket so that the connection reconnects at once (after a cursor was refused). */
  restart(): void {
    this.restartRequested = true;
    this.end(CloseCodes.Normal, 'resync');
  }

  /** Gives the socket up at once (a dead network may keep it looking open for minutes); a close is attempted on the side. */
  abandon(reason: string): void {
    if (this.done) return;
    try {
      this.socket.close(CloseCodes.Normal, reason);
    } catch {
      // Already closing.
    }
    this.settle(null, reason, new Error(reason));
  }

  private checkAlive(): void {
    const now = this.options.now();
    if (this.pingSentAt !== null) {
      if (now - this.pingSentAt >= this.options.keepAliveTimeoutMs) this.abandon('keep-alive timeout');
    } else if (now - this.lastFrameAt >= this.options.keepAliveIntervalMs && this.send(serialize({ type: 'ping', payload: {} }))) {
      this.pingSentAt = now;
    }
  }

  private settle(code: number | null, reason: string, error: unknown): void {
    if (this.done) return;
    this.done = true;
    if (this.keepAlive !== null) clearInterval(this.keepAlive);
    this.socket.onopen = this.socket.onmessage = this.socket.onerror = this.socket.onclose = null;
    this.finish({ opened: this.opened, code, reason, error, restart: this.restartRequested });
  }
}

function serialize(frame: ClientFrame): string {
  return JSON.stringify(frame);
}

function decode(data: unknown): string | null {
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return null;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// The keys `send` generated, by request object (kept as long as the app keeps the request): a retry of the same request is the same message.
const generatedKeys = new WeakMap<SendMessageRequest, string>();

function generatedKey(request: SendMessageRequest): string {
  let key = generatedKeys.get(request);
  if (key === undefined) {
    key = newClientMessageId();
    generatedKeys.set(request, key);
  }
  return key;
}

/**
 * A fresh idempotency key: a UUID where the platform makes one (browsers in secure contexts, Node), else a random
 * (version 4) UUID from `getRandomValues` (browsers on plain-HTTP pages have it), else 128 bits of `Math.random`.
 */
export function newClientMessageId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string; getRandomValues?: (array: Uint8Array) => Uint8Array } }).crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  if (crypto?.getRandomValues) {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  let id = '';
  for (let i = 0; i < 4; i++) id += Math.floor(Math.random() * 0x1_0000_0000).toString(16).padStart(8, '0');
  return id;
}
