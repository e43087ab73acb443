import type { ChatStore } from '../store.js';

const labels: Record<string, string> = {
  idle: 'Starting',
  connecting: 'Connecting…',
  catching_up: 'Catching up…',
  live: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  failed: 'Disconnected',
  closed: 'Disconnected',
};

/** Where the connection is, and what happens to messages sent now. */
export function ConnectionBanner({ store }: { store: ChatStore }) {
  const { state, retryInMs } = store.connection;
  const queued = store.waitingToSend;
  let text = labels[state] ?? state;
  if (state === 'reconnecting' && retryInMs && retryInMs > 1000) text = `Reconnecting in ${Math.round(retryInMs / 1000)} s…`;
  if (state !== 'live' && queued > 0) text += ` · ${queued} waiting to send`;
  if (state === 'offline') text += ' · messages are sent when you are back';
  return (
    <span class="connection" data-state={state} role="status" aria-live="polite" data-testid="connection">
      <span class="dot" aria-hidden="true" />
      {text}
    </span>
  );
}
