import { useState } from 'preact/hooks';
import type { ChatStore } from '../store.js';
import { title } from '../store.js';
import { NewConversation } from './NewConversation.js';

/** The user's conversations, most recent first, with unread counts and the last message. */
export function ConversationList({ store }: { store: ChatStore }) {
  const [creating, setCreating] = useState(false);
  const items = store.sorted();
  return (
    <>
      <div class="sidebar-head">
        <h2>Conversations</h2>
        <button type="button" onClick={() => setCreating(!creating)} aria-expanded={creating}>
          New
        </button>
      </div>
      {creating && <NewConversation store={store} onDone={() => setCreating(false)} />}
      {items.length === 0 && !creating && <p class="empty">No conversations yet.</p>}
      <ul class="conversations">
        {items.map(({ conversation }) => {
          const last = conversation.last_message;
          const preview = !last ? 'No messages yet' : last.deleted_at ? 'Message deleted' : `${last.sender_id === store.me ? 'You' : last.sender_id}: ${last.content ?? `(${last.message_type})`}`;
          const unread = conversation.unread_count;
          return (
            <li key={conversation.id}>
              <button
                type="button"
                class="conversation"
                aria-current={store.activeId === conversation.id ? 'true' : undefined}
                data-testid={`conversation-${title(conversation, store.me)}`}
                onClick={() => void store.open(conversation.id)}
              >
                <span class="title">{title(conversation, store.me)}</span>
                {unread > 0 && (
                  <span class="badge" data-testid="unread" aria-label={`${unread} unread`}>
                    {unread}
                  </span>
                )}
                <span class="preview">{preview}</span>
              </button>
            </li>
          );
        })}
      </ul>
      {store.moreConversations && (
        <button type="button" class="quiet" onClick={() => void store.loadConversationsRetrying(true)}>
          More conversations
        </button>
      )}
    </>
  );
}
