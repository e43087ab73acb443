export { ParleyClient } from './client.js';
export type { CallOptions, ParleyClientOptions, SyncPage } from './client.js';
export { ParleyCredentials } from './credentials.js';
export type { TokenProvider } from './credentials.js';
export { LocalStorageCursorStore, MemoryCursorStore } from './cursor-store.js';
export type { CursorStore, DeliveryCheckpoint, KeyValueStorage } from './cursor-store.js';
export { ParleyApiError, ParleyConnectionError } from './errors.js';
export { ConversationEventTypes, isPositioned, positionOf } from './events.js';
export type {
  ConversationEvent,
  ConversationEventType,
  ParleyEvent,
  ParleyEventType,
  Position,
  PresenceEvent,
  ReceiptEvent,
  SyncResetEvent,
  TypingEvent,
} from './events.js';
export type * from './model.js';
export type * from './protocol.js';
export { newClientMessageId, ParleyRealtime } from './realtime.js';
export type {
  ConnectionState,
  ConnectionStateChange,
  Logger,
  ParleyRealtimeOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './realtime.js';
export {
  ClientFrameTypes,
  ClientPayloadFields,
  CloseCodes,
  ErrorCodes,
  ObjectFields,
  ServerFrameTypes,
  ServerPayloadFields,
  Subprotocol,
} from './wire.js';
export type { ErrorCode } from './wire.js';
