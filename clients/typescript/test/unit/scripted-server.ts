// A scripted Parley for unit tests: WebSockets and REST answers the test drives frame by frame.
import { vi } from 'vitest';
import type { PositionedFrame } from '../../src/events.js';
import type { WebSocketLike } from '../../src/realtime.js';

type Json = Record<string, unknown>;

/** One socket the client opened. The test accepts or refuses it, pushes frames and reads what the client sent. */
export class ScriptedSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly url: URL;
  readonly sent: Json[] = [];
  clientClose: { code?: number; reason?: string } | null = null;

  constructor(
    url: string,
    readonly protocols: string | string[] | undefined,
    readonly options: { headers: Record<string, string> } | undefined,
  ) {
    this.url = new URL(url);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
    this.sent.push(JSON.parse(data) as Json);
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.clientClose = { code, reason };
    this.readyState = 2;
    // The server answers a client's close at once.
    queueMicrotask(() => this.closed(code ?? 1005, reason ?? ''));
  }

  /** The upgrade succeeds; `connected` is up to the test. */
  accept(): this {
    this.readyState = 1;
    this.onopen?.({});
    return this;
  }

  /** Accepts and sends `connected`. */
  connect(payload: Partial<Json> = {}): this {
    this.accept();
    return this.push('connected', {
      connection_id: 'conn-1',
      user_id: 'alice',
      device_id: 'device-1',
      heartbeat_interval_ms: 25000,
      acks: true,
      cursor: 'cursor-0',
      ...payload,
    });
  }

  push(type: string, payload: Json): this {
    if (this.readyState !== 1) throw new Error(`cannot push ${type}: the socket is not open`);
    this.onmessage?.({ data: JSON.stringify({ type, payload }) });
    return this;
  }

  /** The server closes with `code`. */
  serverClose(code: number, reason = ''): void {
    this.readyState = 2;
    this.closed(code, reason);
  }

  /** The upgrade is refused (a browser sees only an error and 1006). */
  refuse(): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: '' });
  }

  /** Frames of `type` the client sent. */
  frames(type: string): Json[] {
    return this.sent.filter((f) => f.type === type);
  }

  private closed(code: number, reason: string): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/** Hands the client scripted sockets and answers its REST calls with the test's handler. */
export class ScriptedServer {
  readonly sockets: ScriptedSocket[] = [];
  readonly requests: { method: string; url: URL; body: unknown; headers: Record<string, string> }[] = [];
  rest: (method: string, url: URL, body: unknown) => { status: number; body?: unknown; headers?: Record<string, string> } = () => ({
    status: 404,
    body: { code: 'not_found', detail: 'no route' },
  });

  readonly WebSocket = (() => {
    const server = this;
    return class extends ScriptedSocket {
      constructor(url: string, protocols?: string | string[], options?: { headers: Record<string, string> }) {
        super(url, protocols, options);
        server.sockets.push(this);
      }
    };
  })();

  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as unknown) : undefined;
    const method = init?.method ?? 'GET';
    this.requests.push({ method, url, body, headers: { ...(init?.headers as Record<string, string>) } });
    const answer = this.rest(method, url, body);
    const headers = new Headers(answer.headers);
    if (answer.body !== undefined && !headers.has('Content-Type')) {
      headers.set('Content-Type', answer.status >= 400 ? 'application/problem+json' : 'application/json');
    }
    return new Response(answer.body === undefined ? null : JSON.stringify(answer.body), { status: answer.status, headers });
  };

  /** The latest socket, once the client opened `count` of them. */
  async socket(count = this.sockets.length + 1): Promise<ScriptedSocket> {
    await vi.waitFor(() => {
      if (this.sockets.length < count) throw new Error(`waiting for socket #${count}`);
    }, { timeout: 5000, interval: 2 });
    return this.sockets[count - 1]!;
  }
}

/** A message as the server writes it. */
export function message(conversationId: string, seq: number, extra: Partial<Json> = {}): Json {
  return {
    id: `m-${conversationId}-${seq}`,
    conversation_id: conversationId,
    seq,
    sender_id: 'bob',
    message_type: 'text',
    content: `message ${seq}`,
    reply_to_id: null,
    mentions: null,
    media: null,
    location: null,
    client_message_id: null,
    created_at: '2026-11-24T01:49:40.770Z',
    edited_at: null,
    deleted_at: null,
    ...extra,
  };
}

export function newMessageFrame(conversationId: string, seq: number, extra: Partial<Json> = {}): PositionedFrame {
  return { type: 'new_message', payload: { message: message(conversationId, seq, extra), timestamp: '2026-11-24T01:49:40.771Z' } } as unknown as PositionedFrame;
}

/** Waits until `check` passes, for at most 5 s. */
export function eventually(check: () => void, timeout = 5000): Promise<void> {
  return vi.waitFor(check, { timeout, interval: 2 });
}
