import type { ServerPayloads } from './protocol.js';

/** Frame types of durable conversation events: each has a position (`conversation_id`, `seq`). */
export const ConversationEventTypes = [
  'conversation_created',
  'new_message',
  'message_edited',
  'message_deleted',
  'participant_added',
  'participant_removed',
  'participant_updated',
] as const;

export type ConversationEventType = (typeof ConversationEventTypes)[number];

type Frame<K extends keyof ServerPayloads> = { type: K; payload: ServerPayloads[K] };

/** A durable change of a conversation: every position reaches the device once and in order. */
export type ConversationEvent = { [K in ConversationEventType]: Frame<K> }[ConversationEventType];

/** Receipt watermarks: apply them as a maximum (they may repeat). */
export type ReceiptEvent = Frame<'message_delivered'> | Frame<'message_read'>;

/** Another member started or stopped typing. */
export type TypingEvent = Frame<'typing'>;

/** A user who shares a conversation with this user came online or went offline. */
export type PresenceEvent = Frame<'presence'>;

/**
 * The device's position could not be resumed (`sync_reset`, or REST sync answered 410): events were missed. Reload
 * conversations over REST; the events that follow may already be part of what you load (apply them idempotently).
 */
export interface SyncResetEvent {
  type: 'sync_reset';
  payload: { reason: string };
}

/** What the realtime connection hands to the app: the server's frames, once each, in per-conversation order. */
export type ParleyEvent = ConversationEvent | ReceiptEvent | TypingEvent | PresenceEvent | SyncResetEvent;

export type ParleyEventType = ParleyEvent['type'];

/** A positioned frame as the delivery rules see it: the app's conversation events, and `hidden_event`, which only fills a position. */
export type PositionedFrame = ConversationEvent | Frame<'hidden_event'>;

/** The position of a conversation event. */
export interface Position {
  conversation_id: string;
  seq: number;
}

const positioned = new Set<string>([...ConversationEventTypes, 'hidden_event']);

/** Whether a frame is a conversation event (or `hidden_event`). */
export function isPositioned(frame: { type: string }): frame is PositionedFrame {
  return positioned.has(frame.type);
}

/** The position of a conversation event: `new_message` takes the message's, the others carry their own. */
export function positionOf(event: PositionedFrame): Position {
  switch (event.type) {
    case 'new_message':
      return { conversation_id: event.payload.message.conversation_id, seq: event.payload.message.seq };
    case 'conversation_created':
      return { conversation_id: event.payload.conversation.id, seq: event.payload.seq };
    default:
      return { conversation_id: event.payload.conversation_id, seq: event.payload.seq };
  }
}
