// WebSocket frames (docs/websocket.md): `{"type", "payload"}` in both directions; payload fields are snake_case.
import type { Conversation, Message, ParticipantRole, SendMessageRequest, Timestamp, Uuid } from './model.js';

// Server -> client payloads.

export interface ConnectedPayload {
  connection_id: string;
  user_id: string;
  device_id: string;
  heartbeat_interval_ms: number;
  acks: boolean;
  cursor: string;
}

export interface ConversationCreatedPayload {
  conversation: Conversation;
  seq: number;
  timestamp: Timestamp;
}

export interface NewMessagePayload {
  message: Message;
  timestamp: Timestamp;
}

/** `seq` is the edit's position; `message.seq` the creation's. */
export interface MessageEditedPayload {
  message: Message;
  conversation_id: Uuid;
  seq: number;
  timestamp: Timestamp;
}

export interface MessageDeletedPayload {
  message_id: Uuid;
  conversation_id: Uuid;
  seq: number;
  deleted_by: string;
  timestamp: Timestamp;
}

/** `message_delivered` and `message_read`: a watermark, "up to and including `up_to_seq`"; apply it as a maximum. */
export interface ReceiptPayload {
  conversation_id: Uuid;
  user_id: string;
  message_id: Uuid;
  up_to_seq: number;
  timestamp: Timestamp;
}

export interface TypingPayload {
  conversation_id: Uuid;
  user_id: string;
  is_typing: boolean;
  timestamp: Timestamp;
}

export interface PresencePayload {
  user_id: string;
  online: boolean;
  last_seen_at: Timestamp | null;
  timestamp: Timestamp;
}

export interface ParticipantAddedPayload {
  conversation_id: Uuid;
  seq: number;
  user_id: string;
  role: ParticipantRole;
  added_by: string;
  timestamp: Timestamp;
}

export interface ParticipantRemovedPayload {
  conversation_id: Uuid;
  seq: number;
  user_id: string;
  removed_by: string;
  timestamp: Timestamp;
}

export interface ParticipantUpdatedPayload {
  conversation_id: Uuid;
  seq: number;
  user_id: string;
  role: ParticipantRole;
  updated_by: string;
  timestamp: Timestamp;
}

/** A position whose event the member may not see: nothing to apply, but the position is filled. */
export interface HiddenEventPayload {
  conversation_id: Uuid;
  seq: number;
  timestamp: Timestamp;
}

/** `cursor` and `sync_complete`. */
export interface CursorPayload {
  cursor: string;
}

export interface SyncResetPayload {
  cursor: string;
  reason: string;
}

export interface MessageAckPayload {
  client_message_id: string;
  message: Message;
}

export interface PongPayload {
  timestamp: Timestamp;
}

/** `id` echoes the client frame's id; `client_message_id` names the send that failed. */
export interface ErrorPayload {
  code: string;
  message: string;
  id: string | number | null;
  client_message_id: string | null;
}

/** Every server frame type and its payload. */
export interface ServerPayloads {
  connected: ConnectedPayload;
  conversation_created: ConversationCreatedPayload;
  new_message: NewMessagePayload;
  message_edited: MessageEditedPayload;
  message_deleted: MessageDeletedPayload;
  message_delivered: ReceiptPayload;
  message_read: ReceiptPayload;
  typing: TypingPayload;
  presence: PresencePayload;
  participant_added: ParticipantAddedPayload;
  participant_removed: ParticipantRemovedPayload;
  participant_updated: ParticipantUpdatedPayload;
  hidden_event: HiddenEventPayload;
  sync_complete: CursorPayload;
  sync_reset: SyncResetPayload;
  cursor: CursorPayload;
  message_ack: MessageAckPayload;
  pong: PongPayload;
  error: ErrorPayload;
}

export type ServerFrameType = keyof ServerPayloads;

/** A server frame, discriminated by `type`. */
export type ServerFrame = { [K in ServerFrameType]: { type: K; payload: ServerPayloads[K] } }[ServerFrameType];

// Client -> server payloads.

export interface ReadReceiptFramePayload {
  message_id: Uuid;
}

export interface TypingFramePayload {
  conversation_id: Uuid;
  is_typing: boolean;
}

export interface AckFramePayload {
  conversation_id: Uuid;
  seq: number;
}

export interface ResumeFramePayload {
  cursor: string;
}

/** Every client frame type and its payload (`ping` takes anything). */
export interface ClientPayloads {
  read_receipt: ReadReceiptFramePayload;
  typing: TypingFramePayload;
  ping: Record<never, never>;
  ack: AckFramePayload;
  resume: ResumeFramePayload;
  send_message: SendMessageRequest & { client_message_id: string };
}

export type ClientFrameType = keyof ClientPayloads;

export type ClientFrame = { [K in ClientFrameType]: { type: K; id?: string | number; payload: ClientPayloads[K] } }[ClientFrameType];
