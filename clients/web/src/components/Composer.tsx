import type { Message } from '@parley/client';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ChatStore, ConversationState } from '../store.js';

interface Props {
  store: ChatStore;
  state: ConversationState;
  replyTo: Message | null;
  editing: Message | null;
  onCancel: () => void;
  /** Sends or edits; false when that was refused, and the text is given back to edit. */
  onSubmit: (text: string) => Promise<boolean>;
}

/** How often a running typing indicator is refreshed, and how long after the last key it stops. */
const typingRefreshMs = 2500;
const typingIdleMs = 4000;

/** Writes a message (or an edit): Enter sends, Shift+Enter starts a new line, Escape cancels a reply or an edit, Tab takes a suggested mention. */
export function Composer({ store, state, replyTo, editing, onCancel, onSubmit }: Props) {
  const [text, setText] = useState(editing?.content ?? '');
  const [caret, setCaret] = useState(0);
  const input = useRef<HTMLTextAreaElement>(null);
  const typingSentAt = useRef(0);
  const idle = useRef<ReturnType<typeof setTimeout> | null>(null);
  const conversationId = state.conversation.id;

  useEffect(() => {
    input.current?.focus();
  }, [replyTo?.id, editing?.id]);
  useEffect(() => () => stopTyping(), []);

  const query = /(?:^|\s)@([^\s@]*)$/.exec(text.slice(0, caret));
  const suggestions = query
    ? state.conversation.participants.map((p) => p.user_id).filter((u) => u !== store.me && u.startsWith(query[1]!)).slice(0, 5)
    : [];

  function stopTyping(): void {
    if (idle.current !== null) clearTimeout(idle.current);
    idle.current = null;
    if (typingSentAt.current !== 0) {
      store.realtime.sendTyping(conversationId, false);
      typingSentAt.current = 0;
    }
  }

  function typed(value: string): void {
    setText(value);
    if (editing) return;
    if (value.trim() === '') {
      stopTyping();
      return;
    }
    if (Date.now() - typingSentAt.current > typingRefreshMs && store.realtime.sendTyping(conversationId, true)) typingSentAt.current = Date.now();
    if (idle.current !== null) clearTimeout(idle.current);
    idle.current = setTimeout(stopTyping, typingIdleMs);
  }

  function mention(userId: string): void {
    const start = caret - (query?.[1]?.length ?? 0);
    const value = `${text.slice(0, start)}${userId} ${text.slice(caret)}`;
    setText(value);
    const position = start + userId.length + 1;
    setCaret(position);
    requestAnimationFrame(() => input.current?.setSelectionRange(position, position));
    input.current?.focus();
  }

  async function submit(): Promise<void> {
    const value = text.trim();
    if (value === '') return;
    // Sending a message ends the typing indicator on the server; edits never started one.
    if (idle.current !== null) clearTimeout(idle.current);
    idle.current = null;
    typingSentAt.current = 0;
    setText('');
    if (!(await onSubmit(value))) setText(value);
  }

  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      {(replyTo || editing) && (
        <div class="composer-context">
          <span>
            {editing ? 'Editing your message' : `Replying to ${replyTo!.sender_id}: ${replyTo!.content ?? ''}`}
          </span>
          <button type="button" class="link" onClick={onCancel}>
            Cancel
          </button>
        </div>
      )}
      {suggestions.length > 0 && (
        <ul class="suggestions" aria-label="Mention a member">
          {suggestions.map((u) => (
            <li key={u}>
              <button type="button" onClick={() => mention(u)}>
                @{u}
              </button>
            </li>
          ))}
        </ul>
      )}
      <label for="composer-input" class="visually-hidden">
        {editing ? 'Edit message' : 'Message'}
      </label>
      <textarea
        id="composer-input"
        ref={input}
        rows={1}
        maxLength={4096}
        placeholder={editing ? 'Edit your message' : 'Write a message (@ to mention)'}
        value={text}
        onInput={(e) => {
          typed(e.currentTarget.value);
          setCaret(e.currentTarget.selectionStart);
        }}
        onKeyUp={(e) => setCaret(e.currentTarget.selectionStart)}
        onClick={(e) => setCaret(e.currentTarget.selectionStart)}
        onBlur={stopTyping}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            void submit();
          } else if (e.key === 'Escape' && (replyTo || editing)) {
            e.preventDefault();
            onCancel();
          } else if (e.key === 'Tab' && suggestions.length > 0) {
            e.preventDefault();
            mention(suggestions[0]!);
          }
        }}
      />
      <button type="submit" disabled={text.trim() === ''}>
        {editing ? 'Save' : 'Send'}
      </button>
    </form>
  );
}
