import type { Message, MessageVersion } from '@parley/client';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ChatStore } from '../store.js';

/** The earlier versions of an edited message, oldest first, and the current one. */
export function EditHistory({ store, message, onClose }: { store: ChatStore; message: Message; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [versions, setVersions] = useState<MessageVersion[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    dialog.current?.showModal();
    store.client.getMessageEdits(message.id).then((edits) => setVersions(edits.edits), (e: unknown) => setProblem(String(e)));
  }, [message.id]);

  return (
    <dialog ref={dialog} class="history" aria-labelledby="history-title" onClose={onClose}>
      <h2 id="history-title">Edit history</h2>
      {problem && <p class="error">{problem}</p>}
      {versions === null && !problem && <p role="status">Loading…</p>}
      {versions && (
        <ol data-testid="history">
          {versions.map((v) => (
            <li key={v.version}>
              <span class="content">{v.content}</span>{' '}
              <time dateTime={v.created_at}>{new Date(v.created_at).toLocaleString()}</time>
            </li>
          ))}
          <li>
            <span class="content">{message.content}</span> <span class="hint">(now)</span>
          </li>
        </ol>
      )}
      <button type="button" onClick={() => dialog.current?.close()}>
        Close
      </button>
    </dialog>
  );
}
