// Wire names (frame types, error codes, close codes) and the fields of every payload and object, in one place.
// The field lists are checked against the TypeScript types at compile time (below) and against the server's
// own types by the wire-contract test (docs/wire-contract.json), so a renamed field fails a build or a test.
import type {
  AddParticipantsRequest,
  ClientConfig,
  Conversation,
  ConversationList,
  CreateConversationRequest,
  EditMessageRequest,
  Location,
  Media,
  Mention,
  Message,
  MessageEdits,
  MessagePage,
  MessageVersion,
  Participant,
  ReadState,
  SendMessageRequest,
  TypingRequest,
  UpdateParticipantRequest,
  UserPresence,
} from './model.js';
import type { SyncPage } from './client.js';
import type { ClientFrameType, ClientPayloads, ServerFrameType, ServerPayloads } from './protocol.js';

/** Server -> client frame types. */
export const ServerFrameTypes = {
  Connected: 'connected',
  ConversationCreated: 'conversation_created',
  NewMessage: 'new_message',
  MessageEdited: 'message_edited',
  MessageDeleted: 'message_deleted',
  MessageDelivered: 'message_delivered',
  MessageRead: 'message_read',
  Typing: 'typing',
  Presence: 'presence',
  ParticipantAdded: 'participant_added',
  ParticipantRemoved: 'participant_removed',
  ParticipantUpdated: 'participant_updated',
  HiddenEvent: 'hidden_event',
  SyncComplete: 'sync_complete',
  SyncReset: 'sync_reset',
  Cursor: 'cursor',
  MessageAck: 'message_ack',
  Pong: 'pong',
  Error: 'error',
} as const satisfies Record<string, ServerFrameType>;

/** Client -> server frame types. */
export const ClientFrameTypes = {
  ReadReceipt: 'read_receipt',
  Typing: 'typing',
  Ping: 'ping',
  Ack: 'ack',
  Resume: 'resume',
  SendMessage: 'send_message',
} as const satisfies Record<string, ClientFrameType>;

/** The WebSocket subprotocol Parley accepts (and echoes). */
export const Subprotocol = 'parley.v1';

/** Stable error codes (docs/errors.md): `code` of ProblemDetails and of `error` frames. */
export const ErrorCodes = {
  InvalidRequest: 'invalid_request',
  ValidationFailed: 'validation_failed',
  InvalidId: 'invalid_id',
  Unauthenticated: 'unauthenticated',
  Forbidden: 'forbidden',
  NotSender: 'not_sender',
  EditWindowExpired: 'edit_window_expired',
  NotFound: 'not_found',
  MethodNotAllowed: 'method_not_allowed',
  DirectConversation: 'direct_conversation',
  MessageDeleted: 'message_deleted',
  ParticipantLimit: 'participant_limit',
  IdempotencyConflict: 'idempotency_conflict',
  InvalidCursor: 'invalid_cursor',
  CursorExpired: 'cursor_expired',
  PayloadTooLarge: 'payload_too_large',
  UnsupportedMediaType: 'unsupported_media_type',
  UnsupportedSubprotocol: 'unsupported_subprotocol',
  RateLimited: 'rate_limited',
  ServiceUnavailable: 'service_unavailable',
  InternalError: 'internal_error',
  InvalidFrame: 'invalid_frame',
  UnknownType: 'unknown_type',
  ResumeTooLate: 'resume_too_late',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** WebSocket close codes Parley uses (docs/websocket.md). */
export const CloseCodes = {
  Normal: 1000,
  GoingAway: 1001,
  MessageTooBig: 1009,
  TryAgainLater: 1013,
  SlowConsumer: 4001,
  TokenExpired: 4003,
} as const;

/** The fields of each server frame's payload. */
export const ServerPayloadFields = {
  connected: ['connection_id', 'user_id', 'device_id', 'heartbeat_interval_ms', 'acks', 'cursor'],
  conversation_created: ['conversation', 'seq', 'timestamp'],
  new_message: ['message', 'timestamp'],
  message_edited: ['message', 'conversation_id', 'seq', 'timestamp'],
  message_deleted: ['message_id', 'conversation_id', 'seq', 'deleted_by', 'timestamp'],
  message_delivered: ['conversation_id', 'user_id', 'message_id', 'up_to_seq', 'timestamp'],
  message_read: ['conversation_id', 'user_id', 'message_id', 'up_to_seq', 'timestamp'],
  typing: ['conversation_id', 'user_id', 'is_typing', 'timestamp'],
  presence: ['user_id', 'online', 'last_seen_at', 'timestamp'],
  participant_added: ['conversation_id', 'seq', 'user_id', 'role', 'added_by', 'timestamp'],
  participant_removed: ['conversation_id', 'seq', 'user_id', 'removed_by', 'timestamp'],
  participant_updated: ['conversation_id', 'seq', 'user_id', 'role', 'updated_by', 'timestamp'],
  hidden_event: ['conversation_id', 'seq', 'timestamp'],
  sync_complete: ['cursor'],
  sync_reset: ['cursor', 'reason'],
  cursor: ['cursor'],
  message_ack: ['client_message_id', 'message'],
  pong: ['timestamp'],
  error: ['code', 'message', 'id', 'client_message_id'],
} as const satisfies { [K in ServerFrameType]: readonly (keyof ServerPayloads[K])[] };

/** The fields of each client frame's payload. */
export const ClientPayloadFields = {
  read_receipt: ['message_id'],
  typing: ['conversation_id', 'is_typing'],
  ping: [],
  ack: ['conversation_id', 'seq'],
  resume: ['cursor'],
  send_message: [
    'conversation_id',
    'message_type',
    'content',
    'reply_to_id',
    'mentions',
    'media',
    'location',
    'client_message_id',
  ],
} as const satisfies { [K in ClientFrameType]: readonly (keyof ClientPayloads[K])[] };

interface Objects {
  message: Message;
  mention: Mention;
  media: Media;
  location: Location;
  message_version: MessageVersion;
  message_edits: MessageEdits;
  message_page: MessagePage;
  participant: Participant;
  conversation: Conversation;
  conversation_list: ConversationList;
  read_state: ReadState;
  user_presence: UserPresence;
  client_config: ClientConfig;
  sync_page: SyncPage;
  create_conversation_request: CreateConversationRequest;
  send_message_request: SendMessageRequest;
  edit_message_request: EditMessageRequest;
  add_participants_request: AddParticipantsRequest;
  update_participant_request: UpdateParticipantRequest;
  typing_request: TypingRequest;
}

/** The fields of each REST object and request body. */
export const ObjectFields = {
  message: [
    'id',
    'conversation_id',
    'seq',
    'sender_id',
    'message_type',
    'content',
    'reply_to_id',
    'mentions',
    'media',
    'location',
    'client_message_id',
    'created_at',
    'edited_at',
    'deleted_at',
  ],
  mention: ['user_id', 'offset', 'length'],
  media: ['url', 'mime_type', 'size_bytes', 'width', 'height', 'duration_ms', 'file_name', 'thumbnail_url'],
  location: ['latitude', 'longitude', 'name'],
  message_version: ['version', 'content', 'mentions', 'created_at', 'replaced_at'],
  message_edits: ['message_id', 'edits'],
  message_page: ['messages', 'has_more', 'next_cursor'],
  participant: ['user_id', 'role', 'joined_at'],
  conversation: [
    'id',
    'type',
    'name',
    'created_by',
    'created_at',
    'last_activity_at',
    'last_seq',
    'participants',
    'last_message',
    'unread_count',
    'read_up_to_seq',
    'last_read_message_id',
  ],
  conversation_list: ['conversations', 'next_cursor'],
  read_state: ['conversation_id', 'user_id', 'last_read_message_id', 'read_up_to_seq', 'delivered_up_to_seq', 'unread_count'],
  user_presence: ['user_id', 'online', 'last_seen_at'],
  client_config: [
    'max_content_length',
    'edit_window_seconds',
    'max_request_bytes',
    'max_frame_bytes',
    'max_group_participants',
    'max_mentions',
    'max_conversation_name_length',
    'max_page_size',
    'heartbeat_interval_ms',
    'typing_timeout_ms',
    'send_rate_per_second',
    'send_burst',
    'typing_max_conversation_size',
  ],
  sync_page: ['events', 'next_cursor', 'has_more'],
  create_conversation_request: ['type', 'participant_ids', 'name', 'owner_id'],
  send_message_request: [
    'conversation_id',
    'message_type',
    'content',
    'reply_to_id',
    'mentions',
    'media',
    'location',
    'client_message_id',
  ],
  edit_message_request: ['content', 'mentions'],
  add_participants_request: ['user_ids'],
  update_participant_request: ['role'],
  typing_request: ['is_typing'],
} as const satisfies { [K in keyof Objects]: readonly (keyof Objects[K])[] };

// Completeness, at compile time: every field of each type is listed above (`satisfies` already checks that every
// listed name is a field). A type that gains a field without its list gains a name in these unions, and the
// `true` assignments below stop compiling.
type Unlisted<T, Listed extends readonly PropertyKey[]> = Exclude<keyof T, Listed[number]>;
type AllListed<Types, Lists extends { [K in keyof Types]: readonly PropertyKey[] }> = [
  { [K in keyof Types]: Unlisted<Types[K], Lists[K]> }[keyof Types],
] extends [never]
  ? true
  : false;
const serverFieldsComplete: AllListed<ServerPayloads, typeof ServerPayloadFields> = true;
const clientFieldsComplete: AllListed<ClientPayloads, typeof ClientPayloadFields> = true;
const objectFieldsComplete: AllListed<Objects, typeof ObjectFields> = true;
void serverFieldsComplete;
void clientFieldsComplete;
void objectFieldsComplete;
