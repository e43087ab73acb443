import type { Message } from '@parley/client';
import { ParleyApiError } from '@parley/client';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { ChatStore, ConversationState } from '../store.js';
import { title } from '../store.js';
import { Composer } from './Composer.js';
import { EditHistory } from './EditHistory.js';
import { Members } from './Members.js';
import { MessageItem, PendingItem } from './MessageItem.js';

interface Props {
  store: ChatStore;
  state: ConversationState;
}

/** One conversation: its history (scrolling back loads older pages), who is typing, and the composer. */
export function ConversationView({ store, state }: Props) {
  const { conversation } = state;
  const listRef = useRef<HTMLDivElement>(null);
  const topRef = useRef<HTMLLIElement>(null);
  const anchor = useRef<{ height: number; top: number } | null>(null);
  const stickToBottom = useRef(true);
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const [editing, setEditing] = useState<Message | null>(null);
  const [history, setHistory] = useState<Message | null>(null);
  const [showMembers, setShowMembers] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);

  const messages = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
  const pending = [...store.pending.values()].filter((p) => p.conversationId === conversation.id);
  const typing = store.typingIn(state);
  const myRole = conversation.participants.find((p) => p.user_id === store.me)?.role ?? 'member';

  function loadOlder(auto = false): void {
    const list = listRef.current;
    if (!list || state.loadingOlder || !state.hasOlder) return;
    if (auto && Date.now() < state.olderRetryAt) return;
    // Keep what the reader looks at in place while older messages are added above it.
    anchor.current = { height: list.scrollHeight, top: list.scrollTop };
    // A failure is shown at the top of the history, with a button to try again (see the history edge below).
    store.loadOlder(conversation.id, auto).catch(() => {});
  }

  useEffect(() => {
    const list = listRef.current;
    const top = topRef.current;
    if (!list || !top) return;
    const observer = new IntersectionObserver(() => {
      // Judged on the geometry now: an entry may have been queued before the first page scrolled the list down.
      const nearTop = top.getBoundingClientRect().bottom >= list.getBoundingClientRect().top - 200;
      if (nearTop && state.oldestSeq !== null) loadOlder(true);
    }, { root: list, rootMargin: '200px 0px 0px 0px' });
    observer.observe(top);
    return () => observer.disconnect();
  });

  useLayoutEffect(() => {
    const list = listRef.current;
    if (!list) return;
    if (anchor.current && !state.loadingOlder) {
      list.scrollTop = list.scrollHeight - anchor.current.height + anchor.current.top;
      anchor.current = null;
    } else if (stickToBottom.current) {
      list.scrollTop = list.scrollHeight;
    }
  });

  // On the newest message (the count stays the same once the store drops the oldest as new ones come).
  const newestId = messages.at(-1)?.id;
  useEffect(() => {
    if (newestId !== undefined) store.markRead();
  }, [newestId]);

  /** Runs an action of the user's; a refusal is shown. Returns whether it succeeded. */
  async function act(action: () => Promise<void>): Promise<boolean> {
    setProblem(null);
    try {
      await action();
      return true;
    } catch (error) {
      setProblem(error instanceof ParleyApiError ? (error.detail ?? error.code) : String(error));
      return false;
    }
  }

  return (
    <section class="conversation-view" aria-labelledby="conversation-title">
      <header class="conversation-head">
        <button type="button" class="back quiet" onClick={() => void store.open(null)} aria-label="Back to conversations">
          ←
        </button>
        <h2 id="conversation-title">{title(conversation, store.me)}</h2>
        <button type="button" class="quiet" aria-expanded={showMembers} onClick={() => setShowMembers(!showMembers)}>
          {conversation.type === 'group' ? `Members (${conversation.participants.length})` : 'Details'}
        </button>
      </header>
      {showMembers && <Members store={store} state={state} onProblem={setProblem} />}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      <div
        class="messages"
        ref={listRef}
        role="log"
        aria-label={`Messages with ${title(conversation, store.me)}`}
        aria-busy={state.loadingOlder}
        tabIndex={0}
        onScroll={(e) => {
          const list = e.currentTarget;
          const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
          stickToBottom.current = atBottom;
          // Messages below the fold are not read yet: they are reported read once scrolled to.
          // Back at the bottom, what was scrolled back through is dropped again (the store keeps the newest).
          store.setReadingLatest(atBottom);
        }}
      >
        <ol class="message-list">
        <li ref={topRef} class="history-edge">
          {state.loadingOlder ? (
            <span role="status">Loading older messages…</span>
          ) : state.olderError !== null && state.hasOlder ? (
            <>
              <span class="error" data-testid="history-error">
                Could not load {state.oldestSeq === null ? 'the messages' : 'older messages'} ({state.olderError}).
              </span>{' '}
              <button type="button" class="quiet" onClick={() => loadOlder()}>
                Try again
              </button>
            </>
          ) : state.hasOlder && state.oldestSeq !== null ? (
            <button type="button" class="quiet" onClick={() => loadOlder()}>
              Load older messages
            </button>
          ) : state.oldestSeq !== null ? (
            <span>The beginning of the conversation</span>
          ) : null}
        </li>
        {messages.map((message) => (
          <MessageItem
            key={message.id}
            store={store}
            state={state}
            message={message}
            canDelete={message.sender_id === store.me || (conversation.type === 'group' && myRole !== 'member')}
            onReply={() => {
              setEditing(null);
              setReplyTo(message);
            }}
            onEdit={() => {
              setReplyTo(null);
              setEditing(message);
            }}
            onDelete={() => {
              if (confirm('Delete this message for everyone?')) void act(() => store.remove(message));
            }}
            onHistory={() => setHistory(message)}
          />
        ))}
        {pending.map((p) => (
          <PendingItem key={p.clientMessageId} store={store} pending={p} />
        ))}
        </ol>
      </div>
      <p class="typing" aria-live="polite" data-testid="typing">
        {typing.length === 0 ? '' : `${typing.join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…`}
      </p>
      <Composer
        key={editing?.id ?? 'new'}
        store={store}
        state={state}
        replyTo={replyTo}
        editing={editing}
        onCancel={() => {
          setReplyTo(null);
          setEditing(null);
        }}
        onSubmit={async (text) => {
          stickToBottom.current = true;
          if (editing) {
            // A refused edit (past the edit window, say) keeps the text and the editing mode, with the reason shown.
            const target = editing;
            if (!(await act(() => store.edit(target, text)))) return false;
            setEditing(null);
          } else {
            store.send(conversation.id, text, replyTo?.id ?? null);
            setReplyTo(null);
          }
          return true;
        }}
      />
      {history && <EditHistory store={store} message={history} onClose={() => setHistory(null)} />}
    </section>
  );
}
