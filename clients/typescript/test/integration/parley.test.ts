// @parley/client against a real Parley server (started by the global set-up): REST, realtime delivery, receipts,
// resume, resent sends, token refresh and header credentials, with Node's `ws` as the WebSocket.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { WebSocket as NodeWebSocket } from 'ws';
import { ParleyClient } from '../../src/client.js';
import { ParleyCredentials } from '../../src/credentials.js';
import { MemoryCursorStore } from '../../src/cursor-store.js';
import { ParleyApiError } from '../../src/errors.js';
import type { ParleyEvent } from '../../src/events.js';
import type { Message } from '../../src/model.js';
import type { ParleyRealtimeOptions, WebSocketConstructor, WebSocketLike } from '../../src/realtime.js';
import { ParleyRealtime } from '../../src/realtime.js';
import { developmentToken, startParley } from '../support/parley-server.js';

const url = inject('parleyUrl');
const wait = { timeout: 15_000, interval: 20 };
const open: ParleyRealtime[] = [];
let run = 0;

afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

/** A user id of this test, so that tests sharing the server do not see each other's conversations. */
function user(name: string): string {
  return `${name}-${process.pid}-${++run}`;
}

function client(userId: string): ParleyClient {
  return new ParleyClient({ baseUrl: url, credentials: ParleyCredentials.bearer(() => developmentToken(url, userId)) });
}

async function connect(
  rest: ParleyClient,
  options: ParleyRealtimeOptions = {},
): Promise<{ realtime: ParleyRealtime; events: ParleyEvent[]; messages: () => Message[] }> {
  const realtime = new ParleyRealtime(rest, { WebSocket: NodeWebSocket as unknown as WebSocketConstructor, ackDelayMs: 10, ...options });
  open.push(realtime);
  const events: ParleyEvent[] = [];
  realtime.onEvent((e) => void events.push(e));
  await realtime.connect();
  const messages = (): Message[] => events.flatMap((e) => (e.type === 'new_message' ? [e.payload.message] : []));
  return { realtime, events, messages };
}

describe('REST', () => {
  it('creates a conversation, sends, edits with history, deletes and pages history', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const rest = client(alice);

    const conversation = await rest.createConversation({ type: 'direct', participant_ids: [bob] });
    const sent = await rest.sendMessage({ conversation_id: conversation.id, content: 'Hello', client_message_id: 'hello-1' });
    const retried = await rest.sendMessage({ conversation_id: conversation.id, content: 'Hello', client_message_id: 'hello-1' });
    const edited = await rest.editMessage(sent.id, { content: 'Hello!' });
    const edits = await rest.getMessageEdits(sent.id);
    const second = await rest.sendMessage({ conversation_id: conversation.id, content: 'Bye' });
    const tombstone = await rest.deleteMessage(second.id);
    const page = await rest.listMessages(conversation.id, { limit: 10 });

    expect(retried.id).toBe(sent.id);
    expect(edited.edited_at).not.toBeNull();
    expect(edits.edits.map((v) => v.content)).toEqual(['Hello']);
    expect(tombstone).toMatchObject({ content: null, deleted_at: expect.any(String) });
    expect(page.messages.map((m) => m.content)).toEqual([null, 'Hello!']);
    expect((await client(bob).listConversations()).conversations.map((c) => c.id)).toEqual([conversation.id]);
  });

  it('rejects with the ProblemDetails code, status and field errors', async () => {
    const [alice, bob, eve] = [user('alice'), user('bob'), user('eve')];
    const conversation = await client(alice).createConversation({ type: 'direct', participant_ids: [bob] });

    const notMember = await client(eve).getConversation(conversation.id).catch((e: unknown) => e);
    const invalid = await client(alice).sendMessage({ conversation_id: conversation.id, content: '' }).catch((e: unknown) => e);

    expect(notMember).toBeInstanceOf(ParleyApiError);
    expect(notMember).toMatchObject({ status: 404, code: 'not_found' });
    expect(invalid).toMatchObject({ status: 400, code: 'validation_failed' });
    expect(Object.keys((invalid as ParleyApiError).errors)).toContain('content');
  });

  it('refreshes a refused token once and succeeds', async () => {
    const alice = user('alice');
    const asked: boolean[] = [];
    const rest = new ParleyClient({
      baseUrl: url,
      credentials: ParleyCredentials.bearer(async ({ forceRefresh }) => {
        asked.push(forceRefresh);
        return forceRefresh ? await developmentToken(url, alice) : 'expired-or-revoked';
      }),
    });

    expect((await rest.listConversations()).conversations).toEqual([]);
    expect(asked).toEqual([false, true]);
  });
});

describe('realtime', () => {
  it('delivers a message once to the other member and reports it delivered and read', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const conversation = await client(alice).createConversation({ type: 'direct', participant_ids: [bob] });
    const a = await connect(client(alice), { deviceId: 'laptop' });
    const b = await connect(client(bob), { deviceId: 'phone' });

    const stored = await a.realtime.send({ conversation_id: conversation.id, content: 'Hi Bob' });

    await expect.poll(() => b.messages().map((m) => m.content), wait).toEqual(['Hi Bob']);
    await expect.poll(() => a.events.some((e) => e.type === 'message_delivered' && e.payload.up_to_seq >= stored.seq), wait).toBe(true);
    expect(b.realtime.sendReadReceipt(stored.id)).toBe(true);
    await expect.poll(() => a.events.some((e) => e.type === 'message_read' && e.payload.user_id === bob && e.payload.up_to_seq === stored.seq), wait).toBe(true);
    // Alice's own devices get her message too, once.
    await expect.poll(() => a.messages().map((m) => m.id), wait).toEqual([stored.id]);
  });

  it('shows typing to the other member', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const conversation = await client(alice).createConversation({ type: 'direct', participant_ids: [bob] });
    const a = await connect(client(alice));
    const b = await connect(client(bob));

    expect(a.realtime.sendTyping(conversation.id, true)).toBe(true);

    await expect.poll(() => b.events.find((e) => e.type === 'typing')?.payload, wait).toMatchObject({ user_id: alice, is_typing: true });
  });

  it('resumes from the saved cursor and gets what it missed, once and in order', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const rest = client(alice);
    const conversation = await rest.createConversation({ type: 'direct', participant_ids: [bob] });
    await rest.sendMessage({ conversation_id: conversation.id, content: 'before' });
    const store = new MemoryCursorStore();
    const first = await connect(client(bob), { cursorStore: store, deviceId: 'phone' });
    await rest.sendMessage({ conversation_id: conversation.id, content: 'while connected' });
    // A device without a cursor may also be given 'before' (rule 3: its start is read from the stream); never twice.
    await expect.poll(() => first.messages().map((m) => m.content).filter((c) => c === 'while connected'), wait).toEqual(['while connected']);
    // Acknowledged and covered by a saved cursor before the device goes away.
    await expect.poll(() => store.checkpoint?.positions[conversation.id], wait).toBeGreaterThanOrEqual(3);
    await first.realtime.close();

    for (const text of ['away 1', 'away 2', 'away 3']) await rest.sendMessage({ conversation_id: conversation.id, content: text });
    const second = await connect(client(bob), { cursorStore: store, deviceId: 'phone' });

    await expect.poll(() => second.messages().map((m) => m.content), wait).toEqual(['away 1', 'away 2', 'away 3']);
  });

  it('resends a send whose acknowledgement was lost under the same client_message_id, and the message is stored once', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const conversation = await client(alice).createConversation({ type: 'direct', participant_ids: [bob] });
    const b = await connect(client(bob));
    // A network that loses what the server answers the first send with: the socket dies before the client sees it.
    let dropped = false;
    let sends = 0;
    class LossyWebSocket implements WebSocketLike {
      onopen: WebSocketLike['onopen'] = null;
      onmessage: WebSocketLike['onmessage'] = null;
      onclose: WebSocketLike['onclose'] = null;
      onerror: WebSocketLike['onerror'] = null;
      private readonly inner: NodeWebSocket;
      constructor(address: string, protocols?: string | string[], options?: { headers: Record<string, string> }) {
        this.inner = new NodeWebSocket(address, protocols, options);
        this.inner.onopen = (e) => this.onopen?.(e);
        this.inner.onerror = (e) => this.onerror?.(e);
        this.inner.onclose = (e) => this.onclose?.({ code: e.code, reason: e.reason });
        let dead = false;
        this.inner.onmessage = (e) => {
          // Frames already read from the network when the socket died are lost with it.
          if (dead) return;
          if (!dropped && String(e.data).includes('"once-1"')) {
            dropped = dead = true;
            this.inner.terminate();
            return;
          }
          this.onmessage?.({ data: e.data });
        };
      }
      get readyState(): number {
        return this.inner.readyState;
      }
      send(data: string): void {
        if (data.includes('"send_message"')) sends++;
        this.inner.send(data);
      }
      close(code?: number, reason?: string): void {
        this.inner.close(code, reason);
      }
    }
    const a = await connect(client(alice), { WebSocket: LossyWebSocket, initialReconnectDelayMs: 50 });

    const stored = await a.realtime.send({ conversation_id: conversation.id, content: 'exactly once', client_message_id: 'once-1' });

    expect(dropped).toBe(true);
    expect(sends).toBe(2);
    const history = await client(alice).listMessages(conversation.id);
    expect(history.messages.filter((m) => m.client_message_id === 'once-1').map((m) => m.id)).toEqual([stored.id]);
    await expect.poll(() => b.messages().map((m) => m.content), wait).toEqual(['exactly once']);
  });

  it('connects with header credentials to a server behind a gateway (Auth:Mode=Header)', async () => {
    const server = await startParley({ 'Auth:Mode': 'Header' });
    try {
      const rest = new ParleyClient({ baseUrl: server.url, credentials: ParleyCredentials.headers('alice', 'gateway-device') });
      const conversation = await rest.createConversation({ type: 'direct', participant_ids: ['bob'] });
      const a = await connect(rest);

      await a.realtime.send({ conversation_id: conversation.id, content: 'through the gateway' });

      expect(a.realtime.userId).toBe('alice');
      expect(a.realtime.connection?.device_id).toBe('gateway-device');
      await a.realtime.close();
    } finally {
      await server.stop();
    }
  });
});
