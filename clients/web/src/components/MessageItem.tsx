import type { Message } from '@parley/client';
import type { ChatStore, ConversationState, PendingMessage, Tick } from '../store.js';

const tickLabels: Record<Tick, string> = {
  queued: 'Waiting to send',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
};
const tickMarks: Record<Tick, string> = { queued: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓' };

interface Props {
  store: ChatStore;
  state: ConversationState;
  message: Message;
  canDelete: boolean;
  onReply: () => void;
  onEdit: () => void;
  onDelete: () => void;
  onHistory: () => void;
}

/** One message: who, when, what (mentions marked), what it replies to, whether it was edited, and its tick. */
export function MessageItem({ store, state, message, canDelete, onReply, onEdit, onDelete, onHistory }: Props) {
  const mine = message.sender_id === store.me;
  const deleted = message.deleted_at !== null;
  const tick = mine && !deleted ? store.tick(state, message) : null;
  const replied = message.reply_to_id ? state.messages.get(message.reply_to_id) : undefined;
  return (
    <li class={`message${mine ? ' mine' : ''}${deleted ? ' deleted' : ''}`} data-testid="message" data-seq={message.seq} data-id={message.id}>
      <div class="meta">
        <span class="sender">{mine ? 'You' : message.sender_id}</span>
        <time dateTime={message.created_at}>{formatTime(message.created_at)}</time>
      </div>
      {message.reply_to_id && (
        <blockquote class="reply-quote" data-testid="reply-quote">
          {replied ? `${replied.sender_id}: ${replied.deleted_at ? 'deleted message' : (replied.content ?? '')}` : 'an earlier message'}
        </blockquote>
      )}
      <p class="content" data-testid="content">
        {deleted ? (
          <em>This message was deleted.</em>
        ) : (
          <>
            {attachment(message) && (
              <em class="attachment" data-testid="attachment">
                {attachment(message)}
              </em>
            )}
            <Content message={message} me={store.me} />
          </>
        )}
      </p>
      <div class="footer">
        {message.edited_at && !deleted && (
          <button type="button" class="link edited" onClick={onHistory} data-testid="edited">
            edited
          </button>
        )}
        {tick && (
          <span class={`tick tick-${tick}`} data-testid="tick" data-tick={tick} title={tickLabels[tick]}>
            <span aria-hidden="true">{tickMarks[tick]}</span>
            <span class="visually-hidden">{tickLabels[tick]}</span>
          </span>
        )}
        {!deleted && (
          <span class="actions">
            <button type="button" class="link" onClick={onReply} aria-label={`Reply to ${message.sender_id}`}>
              Reply
            </button>
            {mine && (
              <button type="button" class="link" onClick={onEdit} aria-label="Edit your message">
                Edit
              </button>
            )}
            {canDelete && (
              <button type="button" class="link" onClick={onDelete} aria-label="Delete the message">
                Delete
              </button>
            )}
          </span>
        )}
      </div>
    </li>
  );
}

/** A message this tab sent that waits for the server (offline, or on its way). */
export function PendingItem({ store, pending }: { store: ChatStore; pending: PendingMessage }) {
  return (
    <li class="message mine pending" data-testid="message" data-pending="true">
      <div class="meta">
        <span class="sender">You</span>
      </div>
      <p class="content" data-testid="content">
        {pending.content}
      </p>
      <div class="footer">
        {pending.error ? (
          <>
            <span class="error-text" role="alert">
              Not sent: {pending.error}
            </span>
            <button type="button" class="link" onClick={() => store.retryPending(pending.clientMessageId)}>
              Retry
            </button>
            <button type="button" class="link" onClick={() => store.dismissPending(pending.clientMessageId)}>
              Dismiss
            </button>
          </>
        ) : (
          <span class="tick tick-queued" data-testid="tick" data-tick="queued" title={tickLabels.queued}>
            <span aria-hidden="true">{tickMarks.queued}</span>
            <span class="visually-hidden">{tickLabels.queued}</span>
          </span>
        )}
      </div>
    </li>
  );
}

/** The text with its mentions marked (offsets are UTF-16 code units, as JavaScript indexes strings). */
function Content({ message, me }: { message: Message; me: string | null }) {
  const text = message.content ?? '';
  const mentions = [...(message.mentions ?? [])].sort((a, b) => a.offset - b.offset);
  const parts = [];
  let at = 0;
  for (const mention of mentions) {
    if (mention.offset < at || mention.offset + mention.length > text.length) continue;
    parts.push(text.slice(at, mention.offset));
    parts.push(
      <mark class={`mention${mention.user_id === me ? ' me' : ''}`} data-testid="mention">
        {text.slice(mention.offset, mention.offset + mention.length)}
      </mark>,
    );
    at = mention.offset + mention.length;
  }
  parts.push(text.slice(at));
  return <>{parts}</>;
}

/**
 * What a message carries besides its text, named (this app does not show media or maps): without it an image, a file
 * or a location without a caption was an empty bubble. Text only, never a link: the URLs are the sender's to choose.
 */
function attachment(message: Message): string | null {
  switch (message.message_type) {
    case 'image':
    case 'video':
    case 'audio':
    case 'file': {
      const kind = { image: 'Image', video: 'Video', audio: 'Audio', file: 'File' }[message.message_type];
      return message.media?.file_name ? `${kind}: ${message.media.file_name}` : kind;
    }
    case 'location':
      return message.location?.name ? `Location: ${message.location.name}` : 'Location';
    default:
      return null;
  }
}

function formatTime(timestamp: string): string {
  const date = new Date(timestamp);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}
