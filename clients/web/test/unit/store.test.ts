// The app's store against a scripted REST client and realtime connection: every answer is held until the test
// releases it, so the races between REST answers and events can be played in any order.
import type { Conversation, ConversationList, Message, MessagePage, ParleyClient, ParleyEvent, ParleyRealtime, SendMessageRequest } from '@parley/client';
import { ParleyApiError } from '@parley/client';
import { afterEach, describe, expect, it } from 'vitest';
import { ChatStore, messageBounds } from '../../src/store.js';

const T = '2026-11-24T01:49:40.770Z';

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** REST calls the store made, each answered when the test says. History pages answer at once from `history`. */
class ScriptedClient {
  readonly lists: Deferred<ConversationList>[] = [];
  readonly gets: { id: string; answer: Deferred<Conversation> }[] = [];
  readonly history = new Map<string, Message[]>();

  listConversations(): Promise<ConversationList> {
    const answer = deferred<ConversationList>();
    this.lists.push(answer);
    return answer.promise;
  }

  getConversation(id: string): Promise<Conversation> {
    const answer = deferred<Conversation>();
    this.gets.push({ id, answer });
    return answer.promise;
  }

  listMessages(id: string, options: { limit?: number; before?: number } = {}): Promise<MessagePage> {
    const older = [...(this.history.get(id) ?? [])].filter((m) => options.before === undefined || m.seq < options.before).sort((a, b) => b.seq - a.seq);
    const messages = older.slice(0, options.limit ?? older.length);
    return Promise.resolve({ messages, has_more: older.length > messages.length, next_cursor: null });
  }
}

/** The realtime connection's sends (held until the test settles them) and read receipts. */
class ScriptedRealtime {
  readonly sends: { request: SendMessageRequest; answer: Deferred<Message> }[] = [];
  readonly receipts: string[] = [];

  send(request: SendMessageRequest): Promise<Message> {
    const answer = deferred<Message>();
    this.sends.push({ request, answer });
    return answer.promise;
  }

  sendReadReceipt(messageId: string): boolean {
    this.receipts.push(messageId);
    return true;
  }

  sendTyping(): boolean {
    return true;
  }
}

function message(conversationId: string, seq: number, extra: Partial<Message> = {}): Message {
  return {
    id: `${conversationId}-m${seq}`,
    conversation_id: conversationId,
    seq,
    sender_id: 'alice',
    message_type: 'text',
    content: `message ${seq}`,
    reply_to_id: null,
    mentions: null,
    media: null,
    location: null,
    client_message_id: null,
    created_at: T,
    edited_at: null,
    deleted_at: null,
    ...extra,
  };
}

function conversation(id: string, members: string[], lastSeq: number, extra: Partial<Conversation> = {}): Conversation {
  return {
    id,
    type: 'group',
    name: id,
    created_by: 'alice',
    created_at: T,
    last_activity_at: T,
    last_seq: lastSeq,
    participants: members.map((user_id) => ({ user_id, role: user_id === 'alice' ? 'owner' : 'member', joined_at: T })),
    last_message: lastSeq > 1 ? message(id, lastSeq) : null,
    unread_count: 0,
    read_up_to_seq: lastSeq,
    last_read_message_id: null,
    ...extra,
  };
}

const newMessage = (m: Message): ParleyEvent => ({ type: 'new_message', payload: { message: m, timestamp: T } });
const added = (conversationId: string, seq: number, userId: string): ParleyEvent => ({
  type: 'participant_added',
  payload: { conversation_id: conversationId, seq, user_id: userId, role: 'member', added_by: 'alice', timestamp: T },
});
const removed = (conversationId: string, seq: number, userId: string): ParleyEvent => ({
  type: 'participant_removed',
  payload: { conversation_id: conversationId, seq, user_id: userId, removed_by: 'alice', timestamp: T },
});
const created = (c: Conversation): ParleyEvent => ({ type: 'conversation_created', payload: { conversation: c, seq: 1, timestamp: T } });

const stores: ChatStore[] = [];

afterEach(() => {
  for (const store of stores.splice(0)) store.close();
});

function rig(): { store: ChatStore; client: ScriptedClient; realtime: ScriptedRealtime } {
  const client = new ScriptedClient();
  const realtime = new ScriptedRealtime();
  const store = new ChatStore(client as unknown as ParleyClient, realtime as unknown as ParleyRealtime, 'bob');
  stores.push(store);
  return { store, client, realtime };
}

/** Lets every promise chain that can move on do so. */
function settle(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function listed(r: ReturnType<typeof rig>, ...conversations: Conversation[]): Promise<void> {
  const loading = r.store.loadConversations();
  r.client.lists.at(-1)!.resolve({ conversations, next_cursor: null });
  await loading;
}

function members(store: ChatStore, id: string): string[] {
  return store.conversations.get(id)!.conversation.participants.map((p) => p.user_id);
}

describe('ChatStore', () => {
  it('does not let a list answer begun before a member was added take the member away again', async () => {
    const r = rig();
    const loading = r.store.loadConversations();

    // Bob's list is on its way when Carol is added to G: the event's load of G shows her.
    const applying = r.store.apply(added('G', 3, 'carol'));
    await settle();
    r.client.gets[0]!.answer.resolve(conversation('G', ['alice', 'bob', 'carol'], 3));
    await applying;
    expect(members(r.store, 'G')).toEqual(['alice', 'bob', 'carol']);

    // The list answer was read before: it must not replace her (it is loaded again instead).
    r.client.lists[0]!.resolve({ conversations: [conversation('G', ['alice', 'bob'], 2)], next_cursor: null });
    await loading;
    expect(members(r.store, 'G')).toEqual(['alice', 'bob', 'carol']);
    await settle();
    for (const get of r.client.gets.slice(1)) get.answer.resolve(conversation('G', ['alice', 'bob', 'carol'], 3));
    await settle();
    expect(members(r.store, 'G')).toEqual(['alice', 'bob', 'carol']);
  });

  it('does not answer an event with a load of the conversation begun before it', async () => {
    const r = rig();
    // The reader opens G (named in the address, say) before the list brought it: a load of G is on its way.
    const opening = r.store.open('G');
    await settle();
    expect(r.client.gets).toHaveLength(1);

    // Carol is added: her event needs a load begun after it, not the one under way.
    const adding = r.store.apply(added('G', 3, 'carol'));
    await settle();
    expect(r.client.gets).toHaveLength(2);
    r.client.gets[1]!.answer.resolve(conversation('G', ['alice', 'bob', 'carol'], 3));
    await adding;
    expect(members(r.store, 'G')).toEqual(['alice', 'bob', 'carol']);

    // The older load lands last: it is not applied (and is not asked again, the newer one stands).
    r.client.gets[0]!.answer.resolve(conversation('G', ['alice', 'bob'], 2));
    await opening;
    expect(members(r.store, 'G')).toEqual(['alice', 'bob', 'carol']);
    expect(r.client.gets).toHaveLength(2);
  });

  it('does not bring back a conversation the user was removed from with a list answer begun before', async () => {
    const r = rig();
    await listed(r, conversation('G', ['alice', 'bob'], 2));
    const loading = r.store.loadConversations();

    await r.store.apply(removed('G', 3, 'bob'));
    r.client.lists[1]!.resolve({ conversations: [conversation('G', ['alice', 'bob'], 2)], next_cursor: null });
    await loading;
    expect(r.store.conversations.has('G')).toBe(false);
    // Asked again instead: no longer a member.
    await settle();
    r.client.gets[0]!.answer.reject(new ParleyApiError('not_found', 'Conversation not found.', 404));
    await settle();
    expect(r.store.conversations.has('G')).toBe(false);
  });

  it('keeps what events brought while a reload retried after a sync_reset was on its way', async () => {
    const r = rig();
    await listed(r, conversation('G', ['alice', 'bob'], 2), conversation('Old', ['alice', 'bob'], 2));
    // The reload that the reset asks for fails (the network blinked): the event is consumed, the reload retried later.
    const resetting = r.store.apply({ type: 'sync_reset', payload: { reason: 'cursor_expired' } });
    await settle();
    r.client.lists[1]!.reject(new TypeError('fetch failed'));
    await resetting;

    // The retry (what its timer runs) is on its way while events go on.
    const reloading = r.store.reload();
    await r.store.apply(created(conversation('New', ['alice', 'bob'], 1)));
    await r.store.apply(newMessage(message('G', 3)));
    r.client.lists[2]!.resolve({ conversations: [conversation('G', ['alice', 'bob'], 2, { unread_count: 1, read_up_to_seq: 1 })], next_cursor: null });
    await reloading;

    expect([...r.store.conversations.keys()].sort()).toEqual(['G', 'New']);
    const g = r.store.conversations.get('G')!;
    // Message 2 as the reload brought it (the copy from before the reset may have missed an edit), 3 from its event.
    expect([...g.messages.values()].map((m) => m.seq).sort()).toEqual([2, 3]);
    expect(g.conversation.last_message?.seq).toBe(3);
    expect(g.conversation.last_seq).toBe(3);
    expect(g.conversation.unread_count).toBe(2);
  });

  it('reports read the conversation that was open when a message came, even when another is opened at once', async () => {
    const r = rig();
    r.client.history.set('A', [message('A', 1), message('A', 2)]);
    r.client.history.set('B', [message('B', 1)]);
    await listed(r, conversation('A', ['alice', 'bob'], 2, { read_up_to_seq: 0, unread_count: 2 }), conversation('B', ['alice', 'bob'], 1));
    await r.store.open('A');
    await settle(200);
    expect(r.realtime.receipts).toEqual(['A-m2']);

    // A message arrives in A while the reader looks at it (no unread count: its receipt is due), and the reader opens B
    // within the debounce.
    await r.store.apply(newMessage(message('A', 3)));
    await r.store.open('B');
    await settle(200);

    expect(r.realtime.receipts).toContain('A-m3');
    expect(r.store.conversations.get('A')!.conversation.unread_count).toBe(0);
  });

  it('does not count as unread a message whose read receipt from another device came first', async () => {
    const r = rig();
    await listed(r, conversation('G', ['alice', 'bob'], 2, { read_up_to_seq: 2, unread_count: 0 }));

    // Bob read message 3 on his phone; this device, catching up, gets that receipt before the message itself.
    await r.store.apply({ type: 'message_read', payload: { conversation_id: 'G', user_id: 'bob', message_id: 'G-m3', up_to_seq: 3, timestamp: T } });
    await r.store.apply(newMessage(message('G', 3)));
    await r.store.apply(newMessage(message('G', 4)));

    expect(r.store.conversations.get('G')!.conversation.unread_count).toBe(1);
  });

  it('does not report read what arrived after the reader left the conversation', async () => {
    const r = rig();
    r.client.history.set('A', [message('A', 1)]);
    r.client.history.set('B', [message('B', 1)]);
    await listed(r, conversation('A', ['alice', 'bob'], 1), conversation('B', ['alice', 'bob'], 1));
    await r.store.open('A');
    await settle(200);

    await r.store.apply(newMessage(message('A', 2)));
    await r.store.open('B');
    await r.store.apply(newMessage(message('A', 3)));
    await settle(200);

    expect(r.realtime.receipts).toContain('A-m2');
    expect(r.realtime.receipts).not.toContain('A-m3');
    expect(r.store.conversations.get('A')!.conversation.unread_count).toBe(1);
  });

  it('lists a message that failed in a conversation the user was removed from apart, to dismiss, and does not count it as waiting', async () => {
    const r = rig();
    await listed(r, conversation('G', ['alice', 'bob'], 2));
    r.store.send('G', 'Written offline', null);
    expect(r.store.waitingToSend).toBe(1);

    // Back online: the catch-up says Bob was removed, and the server refuses the send.
    await r.store.apply(removed('G', 3, 'bob'));
    r.realtime.sends[0]!.answer.reject(new ParleyApiError('not_found', 'Conversation not found.'));
    await settle();

    expect(r.store.waitingToSend).toBe(0);
    expect(r.store.orphans().map((p) => p.content)).toEqual(['Written offline']);
    r.store.dismissPending(r.store.orphans()[0]!.clientMessageId);
    expect(r.store.pending.size).toBe(0);
  });

  it('sends a failed message again as the same message', async () => {
    const r = rig();
    await listed(r, conversation('G', ['alice', 'bob'], 2));
    r.store.send('G', 'Hello', null);
    r.realtime.sends[0]!.answer.reject(new ParleyApiError('internal_error', 'Something went wrong.'));
    await settle();
    const [pending] = [...r.store.pending.values()];
    expect(pending!.error).toBe('Something went wrong.');
    expect(r.store.waitingToSend).toBe(0);

    r.store.retryPending(pending!.clientMessageId);
    expect(pending!.error).toBeNull();
    expect(r.realtime.sends[1]!.request).toEqual(r.realtime.sends[0]!.request);
    r.realtime.sends[1]!.answer.resolve(message('G', 3, { sender_id: 'bob', content: 'Hello', client_message_id: pending!.clientMessageId }));
    await settle();
    expect(r.store.pending.size).toBe(0);
    expect(r.store.conversations.get('G')!.messages.get('G-m3')?.content).toBe('Hello');
  });

  describe('bounds the messages kept in memory', () => {
    /** The seqs of the messages a conversation keeps, lowest first. */
    const seqs = (store: ChatStore, id: string): number[] => [...store.conversations.get(id)!.messages.values()].map((m) => m.seq).sort((a, b) => a - b);
    const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

    async function receive(r: ReturnType<typeof rig>, id: string, from: number, to: number): Promise<void> {
      for (const seq of range(from, to)) {
        const m = message(id, seq);
        r.client.history.set(id, [...(r.client.history.get(id) ?? []), m]);
        await r.store.apply(newMessage(m));
      }
    }

    it('keeps the newest of a conversation that is not open, and loads what it dropped again when scrolled back', async () => {
      expect(messageBounds.notOpen).toBe(50);
      const r = rig();
      r.client.history.set('G', range(1, 100).map((seq) => message('G', seq)));
      await listed(r, conversation('G', ['alice', 'bob'], 100), conversation('B', ['alice', 'bob'], 1));
      await r.store.open('G');
      expect(seqs(r.store, 'G')).toEqual(range(71, 100));
      await r.store.open('B');
      await settle(200);

      await receive(r, 'G', 101, 300);
      const g = r.store.conversations.get('G')!;
      expect(seqs(r.store, 'G')).toEqual(range(251, 300));
      expect(g.oldestSeq).toBe(251);
      expect(g.hasOlder).toBe(true);
      expect(g.conversation.unread_count).toBe(200);
      expect(g.conversation.last_message?.seq).toBe(300);

      // Opened again and scrolled back: the history goes on from the oldest message kept.
      await r.store.open('G');
      await r.store.loadOlder('G');
      expect(seqs(r.store, 'G')).toEqual(range(221, 300));
      expect(g.hasOlder).toBe(true);
    });

    it('keeps the newest 500 of the open conversation while the reader is at the bottom', async () => {
      expect(messageBounds.open).toBe(500);
      const r = rig();
      await listed(r, conversation('G', ['alice', 'bob'], 1));
      await r.store.open('G');
      const g = r.store.conversations.get('G')!;
      expect(g.hasOlder).toBe(false);

      await receive(r, 'G', 2, 601);
      expect(seqs(r.store, 'G')).toEqual(range(102, 601));
      // It had the whole conversation; now older messages are there to load again.
      expect(g.oldestSeq).toBe(102);
      expect(g.hasOlder).toBe(true);
      await settle(200);
      expect(r.realtime.receipts.at(-1)).toBe('G-m601');
      expect(g.conversation.unread_count).toBe(0);
    });

    it('keeps everything of the open conversation while the reader is scrolled back, until they return or switch away', async () => {
      const r = rig();
      await listed(r, conversation('G', ['alice', 'bob'], 1), conversation('B', ['alice', 'bob'], 1));
      await r.store.open('G');
      await receive(r, 'G', 2, 501);
      r.store.setReadingLatest(false);
      await receive(r, 'G', 502, 700);
      expect(seqs(r.store, 'G')).toEqual(range(2, 700));
      expect(r.store.conversations.get('G')!.conversation.unread_count).toBe(199);

      // Back at the bottom: the newest 500 again.
      r.store.setReadingLatest(true);
      expect(seqs(r.store, 'G')).toEqual(range(201, 700));

      // Scrolled back again, then another conversation opened: the one left keeps its newest 50.
      r.store.setReadingLatest(false);
      await receive(r, 'G', 701, 750);
      expect(seqs(r.store, 'G')).toHaveLength(550);
      await r.store.open('B');
      expect(seqs(r.store, 'G')).toEqual(range(701, 750));
      expect(r.store.conversations.get('G')!.oldestSeq).toBe(701);
    });

    it('never drops a message waiting to be sent or failed', async () => {
      const r = rig();
      await listed(r, conversation('G', ['alice', 'bob'], 1), conversation('B', ['alice', 'bob'], 1));
      await r.store.open('B');
      r.store.send('G', 'Waiting', null);
      r.store.send('G', 'Failing', null);
      r.realtime.sends[1]!.answer.reject(new ParleyApiError('internal_error', 'Something went wrong.'));
      await settle();

      await receive(r, 'G', 2, 201);
      expect(seqs(r.store, 'G')).toEqual(range(152, 201));
      expect([...r.store.pending.values()].map((p) => [p.content, p.error])).toEqual([
        ['Waiting', null],
        ['Failing', 'Something went wrong.'],
      ]);

      // Acknowledged after the trimming: it is the newest, and kept.
      const waiting = r.realtime.sends[0]!;
      waiting.answer.resolve(message('G', 202, { sender_id: 'bob', content: 'Waiting', client_message_id: waiting.request.client_message_id }));
      await settle();
      expect(seqs(r.store, 'G')).toEqual(range(153, 202));
      expect(r.store.conversations.get('G')!.messages.get('G-m202')?.content).toBe('Waiting');
      expect([...r.store.pending.values()].map((p) => p.content)).toEqual(['Failing']);
    });
  });
});
