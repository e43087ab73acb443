import { LocalStorageCursorStore, ParleyClient, ParleyConnectionError, ParleyRealtime } from '@parley/client';
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { Session } from '../session.js';
import { credentialsFor, saveSession } from '../session.js';
import { ChatStore, title } from '../store.js';
import { ConnectionBanner } from './ConnectionBanner.js';
import { ConversationList } from './ConversationList.js';
import { ConversationView } from './ConversationView.js';
import { useStore } from './useStore.js';

interface Props {
  session: Session;
  onSignOut: (reason: string | null) => void;
}

/** The signed-in app: one REST client, one realtime connection and the store they feed. */
export function Chat({ session, onSignOut }: Props) {
  const store = useMemo(() => {
    const client = new ParleyClient({ baseUrl: new URL('..', location.href).href, credentials: credentialsFor(session) });
    const realtime = new ParleyRealtime(client, {
      deviceId: session.deviceId,
      // Per tab, like the session: a reload resumes from where this tab was.
      cursorStore: new LocalStorageCursorStore(`parley.cursor.${session.userId ?? 'gateway'}.${session.deviceId}`, sessionStorage),
    });
    return new ChatStore(client, realtime, session.userId);
  }, [session]);
  useStore(store);
  const [failure, setFailure] = useState<string | null>(null);
  // The conversation named in the address (#c=...) when the page loaded: opened once the list is in.
  const [wanted] = useState(() => new URLSearchParams(location.hash.slice(1)).get('c'));

  useEffect(() => {
    const { realtime } = store;
    let stopped = false;
    const signOut = (reason: string): void => {
      if (stopped) return;
      stopped = true;
      onSignOut(reason);
    };
    const unsubscribe = [
      realtime.onEvent((event) => store.apply(event)),
      realtime.onStateChange((change) => {
        store.onConnection(change);
        // Refused for good after it was up (a pasted token that expired, a terminal close code): nothing this tab can do
        // would bring it back, so sign out with the reason rather than sit on "Disconnected" with sends failing.
        if (change.state === 'failed' && change.error instanceof ParleyConnectionError) signOut(`Signed out: ${change.error.message}`);
      }),
    ];
    (async () => {
      try {
        await realtime.connect();
        if (stopped) return;
        if (realtime.userId && store.me !== realtime.userId) {
          // The server says who we are: a gateway sign-in knows nothing before, and a token's sub read here may differ.
          store.me = realtime.userId;
          session.userId = realtime.userId;
          saveSession(session);
        }
        await store.loadConversationsRetrying();
        if (wanted && store.conversations.has(wanted)) await store.open(wanted);
      } catch (error) {
        if (stopped) return;
        if (error instanceof ParleyConnectionError) signOut(`Signed out: ${error.message}`);
        else setFailure(error instanceof Error ? error.message : String(error));
      }
    })();
    const onVisible = (): void => {
      if (document.visibilityState === 'visible') store.markRead();
    };
    document.addEventListener('visibilitychange', onVisible);
    // Messages waiting to send live in this tab's memory only: closing or reloading it now would lose them.
    const onLeave = (event: BeforeUnloadEvent): void => {
      if (store.waitingToSend > 0) event.preventDefault();
    };
    window.addEventListener('beforeunload', onLeave);
    return () => {
      stopped = true;
      store.close();
      document.removeEventListener('visibilitychange', onVisible);
      window.removeEventListener('beforeunload', onLeave);
      unsubscribe.forEach((u) => u());
      void realtime.close();
    };
  }, [store]);

  const active = store.activeId ? store.conversations.get(store.activeId) : undefined;
  // Failed messages whose conversation view is gone (the user was removed from it) would otherwise sit unseen.
  const orphans = store.orphans();
  useEffect(() => {
    document.title = active ? `${title(active.conversation, store.me)} · Parley` : 'Parley';
    if (active) history.replaceState(null, '', `#c=${active.conversation.id}`);
    else if (store.connection.state === 'live' && location.hash) history.replaceState(null, '', location.pathname);
  }, [active?.conversation.id]);

  return (
    <div class="app" data-view={active ? 'conversation' : 'list'}>
      <header class="top">
        <span class="brand" aria-hidden="true">
          Parley
        </span>
        <ConnectionBanner store={store} />
        <span class="me">
          Signed in as <strong data-testid="me">{store.me ?? '…'}</strong>
        </span>
        <button
          type="button"
          class="quiet"
          onClick={() => {
            // Signing out drops what still waits to send: ask first, as closing the tab does.
            const waiting = store.waitingToSend;
            if (waiting > 0 && !window.confirm(`${waiting} message(s) not sent yet will be lost. Sign out anyway?`)) return;
            onSignOut(null);
          }}
        >
          Sign out
        </button>
      </header>
      {(failure || store.notice || orphans.length > 0) && (
        <div class="alerts">
          {(failure || store.notice) && (
            <p class="error" role="alert">
              {failure ?? store.notice}
            </p>
          )}
          {orphans.length > 0 && (
            <ul class="orphans" aria-label="Messages not sent" data-testid="orphans">
              {orphans.map((p) => (
                <li key={p.clientMessageId}>
                  <span class="error-text" role="alert">
                    Not sent ({p.error}): “{p.content}”
                  </span>{' '}
                  <button type="button" class="link" onClick={() => store.dismissPending(p.clientMessageId)}>
                    Dismiss
                  </button>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      <nav class="sidebar" aria-label="Conversations">
        <ConversationList store={store} />
      </nav>
      <main class="pane">
        {active ? (
          <ConversationView key={active.conversation.id} store={store} state={active} />
        ) : (
          <p class="empty">Choose a conversation, or start one.</p>
        )}
      </main>
    </div>
  );
}
