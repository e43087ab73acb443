import type { ParleyCredentials } from './credentials.js';
import { defaultCode, ParleyApiError } from './errors.js';
import type {
  ClientConfig,
  Conversation,
  ConversationList,
  CreateConversationRequest,
  EditMessageRequest,
  Message,
  MessageEdits,
  MessagePage,
  Participant,
  ParticipantRole,
  ReadState,
  SendMessageRequest,
  UserPresence,
  Uuid,
} from './model.js';
import type { ServerFrame } from './protocol.js';

export interface ParleyClientOptions {
  /** The server, e.g. `https://chat.example.com` (a path prefix is kept). In a page served by Parley, `location.origin`. */
  baseUrl: string;
  credentials: ParleyCredentials;
  /** A fetch implementation; the global one by default. */
  fetch?: typeof globalThis.fetch;
}

/** Per-call options. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** One page of `GET /api/v1/sync`: the frames after a cursor, in stream order. */
export interface SyncPage {
  /** Conversation events (including `hidden_event`), then receipt watermarks on the last page. */
  events: ServerFrame[];
  /** Where the next page starts; once `has_more` is false, the cursor to keep. */
  next_cursor: string;
  has_more: boolean;
}

/**
 * Typed calls of Parley's REST API (docs/api.md) for one caller. Every method rejects with `ParleyApiError` when
 * the server answers with an error; a bearer token the server refuses (401) is refreshed and the call made once more.
 */
export class ParleyClient {
  readonly baseUrl: string;
  readonly credentials: ParleyCredentials;
  private readonly fetchImpl: typeof globalThis.fetch;

  constructor(options: ParleyClientOptions) {
    // With a trailing slash, relative paths extend the base's path instead of replacing its last segment.
    this.baseUrl = options.baseUrl.endsWith('/') ? options.baseUrl : `${options.baseUrl}/`;
    this.credentials = options.credentials;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (!fetchImpl) throw new TypeError('No fetch implementation: pass options.fetch.');
    this.fetchImpl = fetchImpl.bind(globalThis);
  }

  /** `GET /api/v1/config`: the deployment's limits. */
  getConfig(options?: CallOptions): Promise<ClientConfig> {
    return this.request('GET', 'api/v1/config', undefined, options);
  }

  /** `POST /api/v1/conversations`: a new conversation, or the existing direct conversation of the pair. */
  createConversation(request: CreateConversationRequest, options?: CallOptions): Promise<Conversation> {
    return this.request('POST', 'api/v1/conversations', request, options);
  }

  /** `GET /api/v1/conversations`: the caller's conversations, most recent activity first. */
  listConversations(query: { limit?: number; cursor?: string } = {}, options?: CallOptions): Promise<ConversationList> {
    return this.request('GET', `api/v1/conversations${queryString(query)}`, undefined, options);
  }

  /** `GET /api/v1/conversations/{id}`. */
  getConversation(conversationId: Uuid, options?: CallOptions): Promise<Conversation> {
    return this.request('GET', `api/v1/conversations/${enc(conversationId)}`, undefined, options);
  }

  /** `POST /api/v1/conversations/{id}/participants`: adds members (existing ones are ignored). */
  addParticipants(conversationId: Uuid, userIds: string[], options?: CallOptions): Promise<Conversation> {
    return this.request('POST', `api/v1/conversations/${enc(conversationId)}/participants`, { user_ids: userIds }, options);
  }

  /** `PATCH /api/v1/conversations/{id}/participants/{user_id}`: changes a member's role. */
  updateParticipant(conversationId: Uuid, userId: string, role: ParticipantRole, options?: CallOptions): Promise<Participant> {
    return this.request('PATCH', `api/v1/conversations/${enc(conversationId)}/participants/${enc(userId)}`, { role }, options);
  }

  /** `DELETE /api/v1/conversations/{id}/participants/{user_id}`: removes a member; one's own id leaves. */
  async removeParticipant(conversationId: Uuid, userId: string, options?: CallOptions): Promise<void> {
    await this.request('DELETE', `api/v1/conversations/${enc(conversationId)}/participants/${enc(userId)}`, undefined, options);
  }

  /** `POST /api/v1/conversations/{id}/typing`: starts (refresh every few seconds) or stops the typing indicator. */
  async setTyping(conversationId: Uuid, isTyping: boolean, options?: CallOptions): Promise<void> {
    await this.request('POST', `api/v1/conversations/${enc(conversationId)}/typing`, { is_typing: isTyping }, options);
  }

  /** `POST /api/v1/messages`. With a `client_message_id`, a retry returns the original message instead of creating a second one. */
  sendMessage(request: SendMessageRequest, options?: CallOptions): Promise<Message> {
    return this.request('POST', 'api/v1/messages', { message_type: 'text', ...request }, options);
  }

  /** `GET /api/v1/messages/{id}`: the message, or its tombstone. */
  getMessage(messageId: Uuid, options?: CallOptions): Promise<Message> {
    return this.request('GET', `api/v1/messages/${enc(messageId)}`, undefined, options);
  }

  /** `PUT /api/v1/messages/{id}`: edits the caller's message inside the edit window. */
  editMessage(messageId: Uuid, request: EditMessageRequest, options?: CallOptions): Promise<Message> {
    return this.request('PUT', `api/v1/messages/${enc(messageId)}`, request, options);
  }

  /** `DELETE /api/v1/messages/{id}`: deletes for everyone; returns the tombstone. */
  deleteMessage(messageId: Uuid, options?: CallOptions): Promise<Message> {
    return this.request('DELETE', `api/v1/messages/${enc(messageId)}`, undefined, options);
  }

  /** `GET /api/v1/messages/{id}/edits`: earlier versions, oldest first. */
  getMessageEdits(messageId: Uuid, options?: CallOptions): Promise<MessageEdits> {
    return this.request('GET', `api/v1/messages/${enc(messageId)}/edits`, undefined, options);
  }

  /**
   * `GET /api/v1/conversations/{id}/messages`. Neither `before` nor `after`: the newest page, newest first;
   * `before`: older than that seq, newest first; `after`: newer than that seq, oldest first.
   */
  listMessages(
    conversationId: Uuid,
    query: { limit?: number; before?: number; after?: number } = {},
    options?: CallOptions,
  ): Promise<MessagePage> {
    return this.request('GET', `api/v1/conversations/${enc(conversationId)}/messages${queryString(query)}`, undefined, options);
  }

  /** `GET /api/v1/users/{user_id}/presence`: whether a user who shares a conversation with the caller is online (404 for anyone else). */
  getPresence(userId: string, options?: CallOptions): Promise<UserPresence> {
    return this.request('GET', `api/v1/users/${enc(userId)}/presence`, undefined, options);
  }

  /** `POST /api/v1/messages/{id}/read`: the caller has read everything up to and including the message. */
  markRead(messageId: Uuid, options?: CallOptions): Promise<ReadState> {
    return this.request('POST', `api/v1/messages/${enc(messageId)}/read`, undefined, options);
  }

  /**
   * `GET /api/v1/sync`: the events after `cursor` (docs/delivery.md). Call again with `next_cursor` while `has_more`.
   * An expired cursor is 410 `cursor_expired`: reload over REST and continue from `getSyncCursor()`.
   */
  sync(cursor: string, query: { limit?: number } = {}, options?: CallOptions): Promise<SyncPage> {
    return this.request('GET', `api/v1/sync${queryString({ cursor, ...query })}`, undefined, options);
  }

  /** `GET /api/v1/sync/cursor`: the current position, to follow changes after loading state over REST. */
  async getSyncCursor(options?: CallOptions): Promise<string> {
    const answer = await this.request<{ cursor: string }>('GET', 'api/v1/sync/cursor', undefined, options);
    return answer.cursor;
  }

  private async request<T>(method: string, path: string, body: unknown, options: CallOptions | undefined): Promise<T> {
    let response = await this.send(method, path, body, false, options);
    if (response.status === 401 && this.credentials.refreshable) {
      // The token expired or was revoked: ask the provider for a fresh one, once.
      response = await this.send(method, path, body, true, options);
    }
    if (!response.ok) {
      throw await toError(response);
    }
    if (response.status === 204) {
      return undefined as T;
    }
    return (await response.json()) as T;
  }

  private async send(method: string, path: string, body: unknown, forceRefresh: boolean, options: CallOptions | undefined): Promise<Response> {
    const headers: Record<string, string> = { Accept: 'application/json', ...(await this.credentials.headers(forceRefresh)) };
    const init: RequestInit = { method, headers };
    if (options?.signal) init.signal = options.signal;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return await this.fetchImpl(new URL(path, this.baseUrl).toString(), init);
  }
}

interface ProblemDetails {
  status?: number;
  title?: string;
  detail?: string;
  code?: string;
  errors?: Record<string, string[]>;
}

/** ProblemDetails (with its `code` and field `errors`), or the bare status when the body is not one (a proxy's page). */
async function toError(response: Response): Promise<ParleyApiError> {
  let problem: ProblemDetails | null = null;
  if ((response.headers.get('Content-Type') ?? '').includes('json')) {
    try {
      problem = (await response.json()) as ProblemDetails;
    } catch {
      // Not ProblemDetails after all: the status alone describes the failure.
    }
  }
  return new ParleyApiError(
    problem?.code ?? defaultCode(response.status),
    problem?.detail ?? problem?.title ?? (response.statusText || null),
    response.status,
    problem?.errors ?? {},
    retryAfter(response.headers.get('Retry-After')),
  );
}

function retryAfter(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

function queryString(parameters: Record<string, string | number | undefined | null>): string {
  const present = Object.entries(parameters).filter((p): p is [string, string | number] => p[1] !== undefined && p[1] !== null);
  return present.length === 0 ? '' : `?${present.map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&')}`;
}
