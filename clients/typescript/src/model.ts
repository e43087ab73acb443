// Objects of the REST API and of frame payloads (docs/api.md), exactly as they are on the wire: snake_case
// names, RFC 3339 timestamps as strings, absent values null. wire.ts lists their fields for the wire-contract test.

/** A UUID (conversation and message ids are UUIDv7). */
export type Uuid = string;

/** An RFC 3339 timestamp in UTC with milliseconds, e.g. `2026-11-24T01:49:40.770Z`. */
export type Timestamp = string;

export type MessageType = 'text' | 'image' | 'video' | 'audio' | 'file' | 'location' | 'system';
export type ConversationType = 'direct' | 'group';
export type ParticipantRole = 'owner' | 'admin' | 'member';

/** A mention of a member inside `content`, in UTF-16 code units (JavaScript string indices). */
export interface Mention {
  user_id: string;
  offset: number;
  length: number;
}

export interface Media {
  url: string;
  mime_type: string;
  size_bytes: number;
  width: number | null;
  height: number | null;
  duration_ms: number | null;
  file_name: string | null;
  thumbnail_url: string | null;
}

export interface Location {
  latitude: number;
  longitude: number;
  name: string | null;
}

/**
 * A message. `seq` is the position of its creation in its conversation. A deleted message is a tombstone:
 * `content`, `mentions`, `media` and `location` are null and `deleted_at` is set.
 */
export interface Message {
  id: Uuid;
  conversation_id: Uuid;
  seq: number;
  sender_id: string;
  message_type: MessageType;
  content: string | null;
  reply_to_id: Uuid | null;
  mentions: Mention[] | null;
  media: Media | null;
  location: Location | null;
  client_message_id: string | null;
  created_at: Timestamp;
  edited_at: Timestamp | null;
  deleted_at: Timestamp | null;
}

export interface Participant {
  user_id: string;
  role: ParticipantRole;
  joined_at: Timestamp;
}

/** A conversation as the caller sees it: `unread_count`, `read_up_to_seq`, `last_read_message_id` and `last_activity_at` are the caller's own. */
export interface Conversation {
  id: Uuid;
  type: ConversationType;
  name: string | null;
  created_by: string;
  created_at: Timestamp;
  last_activity_at: Timestamp;
  last_seq: number;
  participants: Participant[];
  last_message: Message | null;
  unread_count: number;
  read_up_to_seq: number;
  last_read_message_id: Uuid | null;
}

export interface ConversationList {
  conversations: Conversation[];
  next_cursor: string | null;
}

/** A page of messages, newest first (oldest first when paging with `after`); `next_cursor` is the seq for the next page. */
export interface MessagePage {
  messages: Message[];
  has_more: boolean;
  next_cursor: number | null;
}

export interface MessageVersion {
  version: number;
  content: string | null;
  mentions: Mention[] | null;
  created_at: Timestamp;
  replaced_at: Timestamp;
}

export interface MessageEdits {
  message_id: Uuid;
  edits: MessageVersion[];
}

export interface ReadState {
  conversation_id: Uuid;
  user_id: string;
  last_read_message_id: Uuid | null;
  read_up_to_seq: number;
  delivered_up_to_seq: number;
  unread_count: number;
}

/** `GET /api/v1/users/{user_id}/presence`: online while any device is connected; otherwise when the last one left (null if unknown). */
export interface UserPresence {
  user_id: string;
  online: boolean;
  last_seen_at: Timestamp | null;
}

export interface ClientConfig {
  max_content_length: number;
  edit_window_seconds: number;
  max_request_bytes: number;
  max_frame_bytes: number;
  max_group_participants: number;
  max_mentions: number;
  max_conversation_name_length: number;
  max_page_size: number;
  heartbeat_interval_ms: number;
  typing_timeout_ms: number;
  send_rate_per_second: number;
  send_burst: number;
  /** Typing indicators are broadcast only in conversations with at most this many members. */
  typing_max_conversation_size: number;
}

// Request bodies. Optional fields may be left out (the server reads a missing field as null).

export interface CreateConversationRequest {
  type: ConversationType;
  participant_ids: string[];
  name?: string | null;
  /** Service role only: the member who owns a group created on a user's behalf. */
  owner_id?: string | null;
}

export interface SendMessageRequest {
  conversation_id: Uuid;
  message_type?: MessageType;
  content?: string | null;
  reply_to_id?: Uuid | null;
  mentions?: Mention[] | null;
  media?: Partial<Media> | null;
  location?: Location | null;
  /** The idempotency key, 1–64 of `[A-Za-z0-9._:-]`: a retry with the same key returns the original message. */
  client_message_id?: string | null;
}

export interface EditMessageRequest {
  content: string;
  mentions?: Mention[] | null;
}

export interface AddParticipantsRequest {
  user_ids: string[];
}

export interface UpdateParticipantRequest {
  role: ParticipantRole;
}

export interface TypingRequest {
  is_typing: boolean;
}
