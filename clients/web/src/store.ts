// The app's state: conversations, their messages, receipts and typing, built from REST loads and the realtime
// events of @parley/client. Every change is idempotent (by message id, by seq, watermarks as maxima), because a
// load and the events that follow it may carry the same thing (docs/delivery.md, rules 7 and 8). A REST answer may
// also be older than events already applied (it was read before they committed): see `changedAt`.
import type {
  ConnectionStateChange,
  Conversation,
  Mention,
  Message,
  ParleyClient,
  ParleyEvent,
  ParleyRealtime,
} from '@parley/client';
import { newClientMessageId, ParleyApiError } from '@parley/client';

/** A message this tab sent that the server has not acknowledged yet (queued while offline, or in flight). */
export interface PendingMessage {
  clientMessageId: string;
  conversationId: string;
  content: string;
  replyToId: string | null;
  mentions: Mention[];
  createdAt: number;
  error: string | null;
}

export interface ConversationState {
  conversation: Conversation;
  messages: Map<string, Message>;
  /** History: the lowest seq loaded and whether older messages exist; null before the first page. */
  oldestSeq: number | null;
  hasOlder: boolean;
  loadingOlder: boolean;
  /** The last history load failed: why, and when a scroll may try again (a click tries at once). */
  olderError: string | null;
  olderRetryAt: number;
  olderFailures: number;
  /** Highest read and delivered seq per member (receipts are watermarks). */
  read: Map<string, number>;
  delivered: Map<string, number>;
  /** Members typing now, with when their indicator lapses. */
  typing: Map<string, number>;
  /** Loaded before a `sync_reset`: it may have missed events, so the next REST answer replaces it and its history. */
  stale: boolean;
  /** The event clock when an event of this conversation was last applied. */
  touchedAt: number;
}

export type Tick = 'queued' | 'sent' | 'delivered' | 'read';

const pageSize = 30;

/**
 * How many messages a conversation keeps in memory (the newest, by seq): one that is not open keeps a screenful, the
 * open one more while the reader is at its newest messages, and all it has while the reader is scrolled back (until
 * they return to the bottom or switch away). What is dropped loads again as older history when scrolled back to.
 */
export const messageBounds = { notOpen: 50, open: 500 };

export class ChatStore {
  readonly conversations = new Map<string, ConversationState>();
  readonly pending = new Map<string, PendingMessage>();
  connection: ConnectionStateChange = { state: 'idle' };
  activeId: string | null = null;
  /** Whether the open conversation is scrolled to its newest messages: only then are they reported read. */
  readingLatest = true;
  moreConversations: string | null = null;
  notice: string | null = null;
  private version = 0;
  private readonly listeners = new Set<() => void>();
  /** Counts the events applied; a REST request notes it when it begins, to tell which events its answer may predate. */
  private clock = 0;
  /**
   * Per conversation, the clock of the latest event that changed what a REST answer says about it beyond what seqs
   * reconcile: its members, the user's own reads and sends (the unread count), deletions. An answer begun before that
   * may not show the change: it is not applied, and a load begun now is (kept after the conversation is gone, so
   * that an old answer does not bring back a conversation the user left).
   */
  private readonly changedAt = new Map<string, number>();
  /** Per conversation, when the newest REST answer applied began (a 404 included). */
  private readonly answeredAt = new Map<string, number>();
  /** The clock of the latest `sync_reset`. */
  private resetAt = 0;
  private readonly fetching = new Map<string, { startedAt: number; promise: Promise<ConversationState | null> }>();
  /** Loads that failed for a passing reason, retried with back-off (by conversation id; '*' is a reload, 'list' and 'list-more' the list's pages). */
  private readonly retries = new Map<string, ReturnType<typeof setTimeout>>();
  /** The back-off of each failing load, kept until it succeeds. */
  private readonly retryDelay = new Map<string, number>();
  /** Per conversation, the read receipt due (debounced) and the newest seq the reader had in view. */
  private readonly readDue = new Map<string, { timer: ReturnType<typeof setTimeout>; upTo: number }>();
  /** Per conversation, the read receipt sent on the current socket and not confirmed yet. */
  private readonly readAsked = new Map<string, number>();
  private closed = false;

  constructor(
    readonly client: ParleyClient,
    readonly realtime: ParleyRealtime,
    public me: string | null,
    private readonly typingBoundMs = 60_000,
  ) {}

  // --- subscription (Preact components re-render on every change) --------------------------------------------------

  get snapshot(): number {
    return this.version;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    this.version++;
    for (const listener of this.listeners) listener();
  }

  // --- loading ------------------------------------------------------------------------------------------------------

  /** Loads the conversation list (after `connected`, rule 8), merging with what events brought meanwhile. */
  async loadConversations(more = false): Promise<void> {
    const startedAt = this.clock;
    const page = await this.client.listConversations({ limit: 50, ...(more && this.moreConversations ? { cursor: this.moreConversations } : {}) });
    for (const conversation of page.conversations) this.mergeAnswer(conversation, startedAt);
    this.moreConversations = page.next_cursor;
    this.changed();
  }

  /**
   * The first load after `connected`, or the next page of the list: one that fails for a passing reason (a 503 during a
   * database failover, a network blip) is retried with back-off instead of leaving the list empty until a reload.
   */
  async loadConversationsRetrying(more = false): Promise<void> {
    const key = more ? 'list-more' : 'list';
    try {
      await this.loadConversations(more);
      this.succeeded(key);
    } catch (error) {
      if (error instanceof ParleyApiError && (error.status === 401 || error.status === 403)) throw error;
      this.retryLater(key, error, () => this.loadConversationsRetrying(more));
    }
  }

  /**
   * Everything again, after `sync_reset`: what this tab knew may be stale. A load that fails is retried with back-off
   * (the event that asked for it is consumed either way: the loads bring what it carried), while later events go on
   * being applied: the answers are merged like any other, never over what those events brought.
   */
  async reload(): Promise<void> {
    const startedAt = this.clock;
    const active = this.activeId;
    let page: Awaited<ReturnType<ParleyClient['listConversations']>>;
    let open: Conversation | null;
    try {
      [page, open] = await Promise.all([
        this.client.listConversations({ limit: 50 }),
        active === null
          ? Promise.resolve(null)
          : this.client.getConversation(active).catch((error: unknown) => {
              if (error instanceof ParleyApiError && error.status === 404) return null;
              throw error;
            }),
      ]);
      this.succeeded('*');
    } catch (error) {
      this.retryLater('*', error, () => this.reload());
      return;
    }
    // Merged in place, with no render in between: the open conversation (on the first page of the list or not)
    // stays open, and its view keeps the draft, the reply and the edit under way.
    const listed = new Set(page.conversations.map((c) => c.id));
    for (const conversation of page.conversations) this.mergeAnswer(conversation, startedAt);
    if (open && open.id === this.activeId) {
      this.mergeAnswer(open, startedAt);
      listed.add(open.id);
    }
    // Known from before the reset and not on the first page: left meanwhile, or simply older. Kept (and loaded again)
    // when open, holding messages waiting to send, or moved by an event since this began; forgotten otherwise.
    for (const [id, state] of this.conversations) {
      if (!state.stale || listed.has(id) || id === this.activeId) continue;
      if (state.touchedAt > startedAt || [...this.pending.values()].some((p) => p.conversationId === id)) void this.fetchConversation(id);
      else this.conversations.delete(id);
    }
    this.moreConversations = page.next_cursor;
    // The one open now (the reader may have opened another while this loaded): reloaded, or fetched if not listed.
    const now = this.activeId;
    this.changed();
    if (now !== null) {
      let state = this.conversations.get(now);
      if (!state || state.stale) state = (await this.fetchConversation(now)) ?? undefined;
      if (state && state.oldestSeq === null) await this.loadOlder(now).catch(() => {});
    }
    this.markRead();
  }

  /** Stops the retries (the tab signed out). */
  close(): void {
    this.closed = true;
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
    for (const due of this.readDue.values()) clearTimeout(due.timer);
    this.readDue.clear();
  }

  async open(conversationId: string | null): Promise<void> {
    const previous = this.activeId === null ? undefined : this.conversations.get(this.activeId);
    this.activeId = conversationId;
    this.readingLatest = true;
    // The one left keeps only its newest messages (whatever of its history the reader had scrolled back through).
    if (previous && previous.conversation.id !== conversationId) this.bound(previous);
    this.changed();
    if (conversationId === null) return;
    const state = this.conversations.get(conversationId) ?? (await this.fetchConversation(conversationId));
    // A first page that fails is shown with its reason and a button to try again (loadOlder keeps both).
    if (state && state.oldestSeq === null) await this.loadOlder(conversationId).catch(() => {});
    this.markRead();
  }

  /**
   * Whether the open conversation is scrolled to its newest messages (the view says so as the reader scrolls): back
   * there, it is reported read and keeps only its newest messages again.
   */
  setReadingLatest(atBottom: boolean): void {
    if (this.readingLatest === atBottom) return;
    this.readingLatest = atBottom;
    if (!atBottom) return;
    const state = this.activeId === null ? undefined : this.conversations.get(this.activeId);
    if (state && this.bound(state)) this.changed();
    this.markRead();
  }

  /**
   * The next page back in history (infinite scroll). A load that fails is kept with its reason; scrolling (`auto`)
   * tries again only after a back-off, so a reader parked at the top of an offline tab does not load in a loop.
   */
  async loadOlder(conversationId: string, auto = false): Promise<void> {
    const state = this.conversations.get(conversationId);
    if (!state || state.loadingOlder || (state.oldestSeq !== null && !state.hasOlder)) return;
    if (auto && Date.now() < state.olderRetryAt) return;
    state.loadingOlder = true;
    this.changed();
    try {
      const page = await this.client.listMessages(conversationId, {
        limit: pageSize,
        ...(state.oldestSeq !== null ? { before: state.oldestSeq } : {}),
      });
      for (const message of page.messages) this.upsertMessage(state, message);
      const lowest = page.messages.reduce((low, m) => Math.min(low, m.seq), Number.POSITIVE_INFINITY);
      state.oldestSeq = Math.min(state.oldestSeq ?? Number.POSITIVE_INFINITY, lowest === Number.POSITIVE_INFINITY ? 0 : lowest);
      state.hasOlder = page.has_more;
      state.olderError = null;
      state.olderRetryAt = 0;
      state.olderFailures = 0;
    } catch (error) {
      state.olderError = describe(error);
      state.olderRetryAt = Date.now() + Math.min(2_000 * 2 ** state.olderFailures, 30_000);
      state.olderFailures++;
      throw error;
    } finally {
      state.loadingOlder = false;
      this.changed();
    }
  }

  /**
   * The conversation as the server has it now. A load already under way is joined if it began after the latest event
   * that changed the conversation (not skipped: an event waiting for it would otherwise find nothing); one begun
   * before may not show that change, so a new one starts. One that fails for a passing reason (the network, a 503) is
   * retried with back-off until it succeeds, so the event that asked for it is not lost: the conversation, its newest
   * message and its unread count come with the retry; meanwhile null.
   */
  private fetchConversation(conversationId: string): Promise<ConversationState | null> {
    const running = this.fetching.get(conversationId);
    if (running && !this.changedSince(conversationId, running.startedAt)) return running.promise;
    const startedAt = this.clock;
    const promise = this.fetchConversationOnce(conversationId, startedAt).finally(() => {
      if (this.fetching.get(conversationId) === entry) this.fetching.delete(conversationId);
    });
    const entry = { startedAt, promise };
    this.fetching.set(conversationId, entry);
    return promise;
  }

  private async fetchConversationOnce(conversationId: string, startedAt: number): Promise<ConversationState | null> {
    try {
      const conversation = await this.client.getConversation(conversationId);
      this.succeeded(conversationId);
      // An event changed the conversation while this was on its way: the answer may predate it.
      if (this.changedSince(conversationId, startedAt)) return await this.reloadChanged(conversationId);
      this.mergeConversation(conversation, startedAt);
      this.changed();
    } catch (error) {
      // Not (or no longer) a member: the conversation is not ours to show (unless the user was added since this began).
      if (error instanceof ParleyApiError && error.status === 404) {
        this.succeeded(conversationId);
        if (this.changedSince(conversationId, startedAt)) return await this.reloadChanged(conversationId);
        this.answered(conversationId, startedAt);
        this.conversations.delete(conversationId);
        this.changed();
      } else {
        this.retryLater(conversationId, error, async () => {
          const state = await this.fetchConversation(conversationId);
          if (state && this.activeId === conversationId && state.oldestSeq === null) await this.loadOlder(conversationId);
        });
      }
    }
    return this.conversations.get(conversationId) ?? null;
  }

  private retryLater(key: string, error: unknown, retry: () => Promise<void>): void {
    if (this.closed || this.retries.has(key)) return;
    const delayMs = Math.min((this.retryDelay.get(key) ?? 500) * 2, 30_000);
    this.retryDelay.set(key, delayMs);
    this.notice = `Could not load from the server (${describe(error)}); retrying in ${Math.round(delayMs / 1000)} s.`;
    const timer = setTimeout(() => {
      this.retries.delete(key);
      if (!this.closed) void retry().catch(() => {});
    }, delayMs);
    this.retries.set(key, timer);
    this.changed();
  }

  private succeeded(key: string): void {
    // A retry still scheduled is not needed any more (it would load everything again: a reload clears the view).
    const timer = this.retries.get(key);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.retries.delete(key);
    }
    if (!this.retryDelay.delete(key)) return;
    if (this.retryDelay.size === 0 && this.notice?.startsWith('Could not load')) this.notice = null;
  }

  private changedSince(conversationId: string, startedAt: number): boolean {
    return (this.changedAt.get(conversationId) ?? 0) > startedAt;
  }

  private answered(conversationId: string, startedAt: number): void {
    if (startedAt > (this.answeredAt.get(conversationId) ?? -1)) this.answeredAt.set(conversationId, startedAt);
  }

  /**
   * An answer came that an event overtook: the conversation as an answer begun after that event has it, which is
   * there already when one was applied, or comes with a load begun now (or one under way that began after it).
   */
  private reloadChanged(conversationId: string): Promise<ConversationState | null> {
    if (!this.changedSince(conversationId, this.answeredAt.get(conversationId) ?? -1)) {
      return Promise.resolve(this.conversations.get(conversationId) ?? null);
    }
    return this.fetchConversation(conversationId);
  }

  /** A REST answer begun at `startedAt`: merged, or, when an event changed the conversation since, not (see `reloadChanged`). */
  private mergeAnswer(conversation: Conversation, startedAt: number): void {
    if (this.changedSince(conversation.id, startedAt)) void this.reloadChanged(conversation.id);
    else this.mergeConversation(conversation, startedAt);
  }

  /**
   * Merges what the server says about a conversation (a REST answer begun at `startedAt` that no change has
   * overtaken, or the snapshot of `conversation_created`): members and name as it says; seqs, the last message, the
   * last activity and the user's read watermark never go back; messages that came as events after it was read are
   * counted on top of its unread count.
   */
  private mergeConversation(conversation: Conversation, startedAt: number): ConversationState {
    this.answered(conversation.id, startedAt);
    const existing = this.conversations.get(conversation.id);
    if (!existing) {
      const state: ConversationState = {
        conversation,
        messages: new Map(),
        oldestSeq: null,
        hasOlder: true,
        loadingOlder: false,
        olderError: null,
        olderRetryAt: 0,
        olderFailures: 0,
        read: new Map(),
        delivered: new Map(),
        typing: new Map(),
        stale: false,
        touchedAt: 0,
      };
      if (conversation.last_message) state.messages.set(conversation.last_message.id, conversation.last_message);
      if (this.me) state.read.set(this.me, conversation.read_up_to_seq);
      this.conversations.set(conversation.id, state);
      return state;
    }
    if (existing.stale && startedAt >= this.resetAt) {
      // Loaded before a sync_reset, so its messages may have missed edits and deletes: those this answer covers go,
      // and the history loads again when shown. Later ones came as events since.
      for (const [id, message] of existing.messages) if (message.seq <= conversation.last_seq) existing.messages.delete(id);
      if (existing.conversation.last_message && existing.conversation.last_message.seq <= conversation.last_seq) existing.conversation.last_message = null;
      Object.assign(existing, { stale: false, oldestSeq: null, hasOlder: true, olderError: null, olderRetryAt: 0, olderFailures: 0 });
    }
    // Messages that arrived as events after this answer was made are counted on top of its unread count.
    const later = [...existing.messages.values()].filter(
      (m) => m.seq > conversation.last_seq && m.sender_id !== this.me && m.deleted_at === null && m.seq > conversation.read_up_to_seq,
    ).length;
    const lastMessage = newest(existing.conversation.last_message, conversation.last_message);
    const before = existing.conversation;
    const readBefore = before.read_up_to_seq > conversation.read_up_to_seq;
    existing.conversation = {
      ...conversation,
      last_seq: Math.max(conversation.last_seq, before.last_seq),
      last_message: lastMessage,
      last_activity_at: before.last_activity_at > conversation.last_activity_at ? before.last_activity_at : conversation.last_activity_at,
      read_up_to_seq: readBefore ? before.read_up_to_seq : conversation.read_up_to_seq,
      last_read_message_id: readBefore ? before.last_read_message_id : conversation.last_read_message_id,
      unread_count: conversation.unread_count + later,
    };
    if (conversation.last_message) {
      this.upsertMessage(existing, conversation.last_message);
      this.bound(existing);
    }
    if (this.me) existing.read.set(this.me, Math.max(existing.read.get(this.me) ?? 0, conversation.read_up_to_seq));
    return existing;
  }

  // --- realtime events ----------------------------------------------------------------------------------------------

  /** Applies one event from the realtime connection (each arrives once, in per-conversation order). */
  async apply(event: ParleyEvent): Promise<void> {
    const now = ++this.clock;
    const conversationId = conversationOf(event);
    if (conversationId !== null) {
      const touched = this.conversations.get(conversationId);
      if (touched) touched.touchedAt = now;
      if (changesAnswers(event, this.me)) this.changedAt.set(conversationId, now);
    }
    switch (event.type) {
      case 'conversation_created':
        // Already known: from an answer read after the creation, as new or newer.
        if (!this.conversations.has(event.payload.conversation.id)) this.mergeConversation(event.payload.conversation, now);
        break;
      case 'new_message': {
        const message = event.payload.message;
        const state = this.conversations.get(message.conversation_id) ?? (await this.fetchConversation(message.conversation_id));
        if (!state) return;
        const isNew = message.seq > state.conversation.last_seq;
        this.upsertMessage(state, message);
        this.bound(state);
        state.typing.delete(message.sender_id);
        if (message.client_message_id && message.sender_id === this.me) this.pending.delete(message.client_message_id);
        // A message this user's read watermark already covers (read on another device, whose receipt came first: a
        // receipt may overtake its message during a catch-up or across instances) is not unread.
        if (isNew && message.sender_id !== this.me && message.seq > ((this.me && state.read.get(this.me)) || 0)) {
          if (this.activeId === message.conversation_id && isVisible() && this.readingLatest) this.markRead();
          else state.conversation.unread_count++;
        }
        // Sending moves the sender's read watermark, without a message_read event: whoever sent this has read
        // everything before it.
        state.read.set(message.sender_id, Math.max(state.read.get(message.sender_id) ?? 0, message.seq));
        if (message.sender_id === this.me) state.conversation.unread_count = 0;
        break;
      }
      case 'message_edited': {
        const state = this.conversations.get(event.payload.conversation_id);
        if (!state) return;
        const edited = event.payload.message;
        // A message older than the history loaded comes with that history, edited, when it is scrolled to; shown now it
        // would sit right above the oldest loaded message as if nothing were between them.
        if (state.messages.has(edited.id) || (state.oldestSeq !== null && edited.seq >= state.oldestSeq)) this.upsertMessage(state, edited);
        this.seen(state, event.payload.seq);
        break;
      }
      case 'message_deleted': {
        const state = this.conversations.get(event.payload.conversation_id);
        if (!state) return;
        const message = state.messages.get(event.payload.message_id);
        if (message) {
          this.upsertMessage(state, { ...message, content: null, mentions: null, media: null, location: null, deleted_at: event.payload.timestamp });
        }
        this.seen(state, event.payload.seq);
        // A deleted unread message counts no more: the server knows exactly.
        if (state.conversation.unread_count > 0) await this.fetchConversation(state.conversation.id);
        break;
      }
      case 'participant_added':
      case 'participant_updated':
        await this.fetchConversation(event.payload.conversation_id);
        break;
      case 'participant_removed':
        if (event.payload.user_id === this.me) {
          this.conversations.delete(event.payload.conversation_id);
          if (this.activeId === event.payload.conversation_id) this.activeId = null;
        } else {
          await this.fetchConversation(event.payload.conversation_id);
        }
        break;
      case 'message_delivered':
      case 'message_read': {
        const state = this.conversations.get(event.payload.conversation_id);
        if (!state) return;
        const marks = event.type === 'message_read' ? state.read : state.delivered;
        const { user_id: userId, up_to_seq: upTo } = event.payload;
        marks.set(userId, Math.max(marks.get(userId) ?? 0, upTo));
        if (event.type === 'message_read' && userId === this.me) {
          // Read on another device: the exact count comes from the server unless everything was read.
          if (upTo >= state.conversation.last_seq) state.conversation.unread_count = 0;
          else await this.fetchConversation(state.conversation.id);
        }
        break;
      }
      case 'typing': {
        const state = this.conversations.get(event.payload.conversation_id);
        if (!state) return;
        if (event.payload.is_typing) {
          // "true" comes once: refreshes keep it alive on the server, which broadcasts "false" when the typer stops,
          // sends, or lets it lapse. The bound here is for a "false" that never comes (its server went away).
          state.typing.set(event.payload.user_id, Date.now() + this.typingBoundMs);
          setTimeout(() => this.changed(), this.typingBoundMs + 50);
        } else {
          state.typing.delete(event.payload.user_id);
        }
        break;
      }
      case 'sync_reset': {
        const notice = 'This device missed too much while away; reloaded.';
        this.notice = notice;
        this.resetAt = now;
        for (const state of this.conversations.values()) state.stale = true;
        await this.reload();
        setTimeout(() => {
          if (this.notice !== notice) return;
          this.notice = null;
          this.changed();
        }, 15_000);
        break;
      }
    }
    this.changed();
  }

  onConnection(change: ConnectionStateChange): void {
    this.connection = change;
    // A read receipt is not queued while disconnected, and one written into a dying socket is lost: report what
    // was read, and not confirmed, once the connection is back.
    if (change.state === 'live') {
      this.readAsked.clear();
      this.markRead();
    } else {
      // Typing is not replayed: an end missed while the connection was down would leave an indicator up for good.
      for (const state of this.conversations.values()) state.typing.clear();
    }
    this.changed();
  }

  private seen(state: ConversationState, seq: number): void {
    state.conversation.last_seq = Math.max(state.conversation.last_seq, seq);
  }

  private upsertMessage(state: ConversationState, message: Message): void {
    const existing = state.messages.get(message.id);
    const kept = existing ? newerVersion(existing, message) : message;
    state.messages.set(message.id, kept);
    this.seen(state, message.seq);
    const last = state.conversation.last_message;
    if (!last || kept.seq >= last.seq) {
      state.conversation.last_message = kept;
      if (!last || kept.seq > last.seq) state.conversation.last_activity_at = kept.created_at;
    }
  }

  /**
   * Drops the oldest messages of a conversation beyond its bound (`messageBounds`), when a message was added or the
   * reader moved; a no-op (a size check) within it. The history then starts at the oldest message kept: `oldestSeq`
   * rises to it and `hasOlder` is set, so scrolling back loads what was dropped again. Nothing else depends on the
   * messages dropped: unread counts and receipts are counts and watermarks by seq, the newest message (the last
   * message, what is reported read) is kept, messages waiting to send or failed are in `pending`, and a reply to a
   * message not in memory is quoted as "an earlier message". Not while a page of history is on its way (it would
   * land below a gap). Returns whether it dropped any.
   */
  private bound(state: ConversationState): boolean {
    const open = state.conversation.id === this.activeId;
    if (open && !this.readingLatest) return false;
    const bound = open ? messageBounds.open : messageBounds.notOpen;
    const excess = state.messages.size - bound;
    if (excess <= 0 || state.loadingOlder) return false;
    const lowestKept = [...state.messages.values()].map((m) => m.seq).sort((a, b) => a - b)[excess]!;
    for (const [id, m] of state.messages) if (m.seq < lowestKept) state.messages.delete(id);
    if (state.oldestSeq !== null && lowestKept > state.oldestSeq) {
      state.oldestSeq = lowestKept;
      state.hasOlder = true;
    }
    return true;
  }

  // --- actions ------------------------------------------------------------------------------------------------------

  /**
   * Sends over the socket; offline it waits in the connection's outbox and goes out on reconnect, once (the same
   * client_message_id on every attempt). Shown as pending until the server acknowledges it.
   */
  send(conversationId: string, content: string, replyToId: string | null): void {
    const state = this.conversations.get(conversationId);
    const mentions = state ? findMentions(content, state.conversation.participants.map((p) => p.user_id).filter((u) => u !== this.me)) : [];
    const pending: PendingMessage = {
      clientMessageId: newClientMessageId(),
      conversationId,
      content,
      replyToId,
      mentions,
      createdAt: Date.now(),
      error: null,
    };
    this.pending.set(pending.clientMessageId, pending);
    this.changed();
    this.submit(pending);
  }

  /** Sends a message that failed again, as the same message (same body and client_message_id: stored once at most). */
  retryPending(clientMessageId: string): void {
    const pending = this.pending.get(clientMessageId);
    if (!pending || pending.error === null) return;
    pending.error = null;
    this.changed();
    this.submit(pending);
  }

  dismissPending(clientMessageId: string): void {
    this.pending.delete(clientMessageId);
    this.changed();
  }

  /** Messages still on their way (not failed): what closing the tab or signing out would lose. */
  get waitingToSend(): number {
    return [...this.pending.values()].filter((p) => p.error === null).length;
  }

  /** Messages that failed in a conversation no longer shown (the user was removed from it): listed apart, to dismiss. */
  orphans(): PendingMessage[] {
    return [...this.pending.values()].filter((p) => p.error !== null && !this.conversations.has(p.conversationId));
  }

  private submit(pending: PendingMessage): void {
    this.realtime
      .send({
        conversation_id: pending.conversationId,
        content: pending.content,
        reply_to_id: pending.replyToId,
        mentions: pending.mentions.length > 0 ? pending.mentions : null,
        client_message_id: pending.clientMessageId,
      })
      .then((message) => {
        this.pending.delete(pending.clientMessageId);
        const target = this.conversations.get(message.conversation_id);
        if (target) {
          this.upsertMessage(target, message);
          this.bound(target);
        }
        this.changed();
      })
      .catch((error: unknown) => {
        pending.error = describe(error);
        this.changed();
      });
  }

  async edit(message: Message, content: string): Promise<void> {
    const state = this.conversations.get(message.conversation_id);
    const mentions = state ? findMentions(content, state.conversation.participants.map((p) => p.user_id).filter((u) => u !== this.me)) : [];
    const edited = await this.client.editMessage(message.id, { content, mentions: mentions.length > 0 ? mentions : null });
    if (state) this.upsertMessage(state, edited);
    this.changed();
  }

  async remove(message: Message): Promise<void> {
    const tombstone = await this.client.deleteMessage(message.id);
    const state = this.conversations.get(message.conversation_id);
    if (state) this.upsertMessage(state, tombstone);
    this.changed();
  }

  /**
   * Reports the open conversation read up to its newest message (debounced), when the page is visible and the
   * conversation is scrolled to its newest messages (not while the user reads further back). What is reported is what
   * the reader had in view: that conversation up to that message, even if another is open by the time it goes out.
   */
  markRead(): void {
    const conversationId = this.activeId;
    const state = conversationId === null ? undefined : this.conversations.get(conversationId);
    if (conversationId === null || !state || !this.me || !isVisible() || !this.readingLatest) return;
    const upTo = newestIn(state)?.seq ?? 0;
    const due = this.readDue.get(conversationId);
    if (due) {
      due.upTo = Math.max(due.upTo, upTo);
      return;
    }
    const entry = {
      upTo,
      timer: setTimeout(() => {
        this.readDue.delete(conversationId);
        this.reportRead(conversationId, entry.upTo);
      }, 150),
    };
    this.readDue.set(conversationId, entry);
  }

  private reportRead(conversationId: string, upTo: number): void {
    const state = this.conversations.get(conversationId);
    if (!state || !this.me) return;
    const newestMessage = newestIn(state, upTo);
    // Messages that came after it was in view (another conversation was open by then) stay unread.
    const unread = [...state.messages.values()].filter((m) => m.seq > upTo && m.sender_id !== this.me && m.deleted_at === null).length;
    if (!newestMessage || (state.read.get(this.me) ?? 0) >= newestMessage.seq) {
      if (state.conversation.unread_count !== unread) {
        state.conversation.unread_count = unread;
        this.changed();
      }
      return;
    }
    // Asked once per socket: the server's message_read echo (or a later REST load) is what moves state.read, so a
    // receipt written into a socket that had silently died is asked again once the connection is back.
    if ((this.readAsked.get(conversationId) ?? 0) >= newestMessage.seq) return;
    if (this.realtime.sendReadReceipt(newestMessage.id)) {
      this.readAsked.set(conversationId, newestMessage.seq);
      state.conversation.unread_count = unread;
      this.changed();
    }
  }

  /** The tick of one of the user's own messages: read or delivered when every other member got that far. */
  tick(state: ConversationState, message: Message): Tick {
    // Members who joined after the message cannot see it and never report it: they do not hold its tick back.
    const others = state.conversation.participants
      .filter((p) => p.user_id !== this.me && p.joined_at <= message.created_at)
      .map((p) => p.user_id);
    if (others.length === 0) return 'sent';
    const read = Math.min(...others.map((u) => state.read.get(u) ?? 0));
    if (read >= message.seq) return 'read';
    const delivered = Math.min(...others.map((u) => Math.max(state.delivered.get(u) ?? 0, state.read.get(u) ?? 0)));
    return delivered >= message.seq ? 'delivered' : 'sent';
  }

  typingIn(state: ConversationState): string[] {
    const now = Date.now();
    return [...state.typing.entries()].filter(([user, until]) => until > now && user !== this.me).map(([user]) => user);
  }

  /** Conversations, most recent activity first. */
  sorted(): ConversationState[] {
    return [...this.conversations.values()].sort((a, b) => b.conversation.last_activity_at.localeCompare(a.conversation.last_activity_at));
  }
}

/** `@user` mentions of members in `content`, at UTF-16 offsets (JavaScript string indices, as the API counts them). */
export function findMentions(content: string, members: string[]): Mention[] {
  const mentions: Mention[] = [];
  for (const userId of [...members].sort((a, b) => b.length - a.length)) {
    let from = 0;
    for (;;) {
      const at = content.indexOf(`@${userId}`, from);
      if (at < 0) break;
      const end = at + userId.length + 1;
      const before = at === 0 ? ' ' : content[at - 1]!;
      const after = end >= content.length ? ' ' : content[end]!;
      const overlaps = mentions.some((m) => at < m.offset + m.length && m.offset < end);
      if (/\s|[([{"']/.test(before) && !/[\w@.-]/.test(after) && !overlaps) mentions.push({ user_id: userId, offset: at, length: end - at });
      from = end;
    }
  }
  return mentions.sort((a, b) => a.offset - b.offset);
}

export function title(conversation: Conversation, me: string | null): string {
  if (conversation.type === 'group') return conversation.name || conversation.participants.map((p) => p.user_id).join(', ');
  return conversation.participants.find((p) => p.user_id !== me)?.user_id ?? me ?? 'Direct conversation';
}

/** The newest message loaded in a conversation, at or below `upTo`. */
function newestIn(state: ConversationState, upTo = Number.POSITIVE_INFINITY): Message | null {
  let found: Message | null = null;
  for (const m of state.messages.values()) if (m.seq <= upTo && (found === null || m.seq > found.seq)) found = m;
  return found;
}

/** The conversation an event is about; null for those about none (presence, sync_reset). */
function conversationOf(event: ParleyEvent): string | null {
  switch (event.type) {
    case 'conversation_created':
      return event.payload.conversation.id;
    case 'new_message':
      return event.payload.message.conversation_id;
    case 'presence':
    case 'sync_reset':
      return null;
    default:
      return event.payload.conversation_id;
  }
}

/** Whether an event changes what a REST answer about its conversation says in a way seqs do not reconcile (see `changedAt`). */
function changesAnswers(event: ParleyEvent, me: string | null): boolean {
  switch (event.type) {
    case 'participant_added':
    case 'participant_updated':
    case 'participant_removed':
    case 'message_deleted':
      return true;
    case 'new_message':
      return event.payload.message.sender_id === me;
    case 'message_read':
      return event.payload.user_id === me;
    default:
      return false;
  }
}

function newest(a: Message | null, b: Message | null): Message | null {
  if (!a) return b;
  if (!b) return a;
  return b.seq > a.seq ? b : b.seq === a.seq ? newerVersion(a, b) : a;
}

/** Of two copies of one message, the later version: a tombstone wins, then the later edit. */
function newerVersion(a: Message, b: Message): Message {
  if (a.deleted_at) return a;
  if (b.deleted_at) return b;
  return (b.edited_at ?? '') >= (a.edited_at ?? '') ? b : a;
}

function describe(error: unknown): string {
  return error instanceof ParleyApiError ? (error.detail ?? error.code) : error instanceof Error ? error.message : String(error);
}

function isVisible(): boolean {
  return typeof document === 'undefined' || document.visibilityState !== 'hidden';
}
