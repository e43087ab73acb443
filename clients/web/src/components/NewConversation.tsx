import { ParleyApiError } from '@parley/client';
import { useState } from 'preact/hooks';
import type { ChatStore } from '../store.js';

/** Starts a direct conversation with one user, or a group. */
export function NewConversation({ store, onDone }: { store: ChatStore; onDone: () => void }) {
  const [type, setType] = useState<'direct' | 'group'>('direct');
  const [people, setPeople] = useState('');
  const [name, setName] = useState('');
  const [problem, setProblem] = useState<string | null>(null);

  async function create(event: Event): Promise<void> {
    event.preventDefault();
    setProblem(null);
    const ids = people.split(/[\s,]+/).filter((p) => p.length > 0);
    try {
      const conversation = await store.client.createConversation(
        type === 'direct' ? { type, participant_ids: ids.slice(0, 1) } : { type, participant_ids: ids, name: name.trim() || null },
      );
      await store.loadConversations();
      await store.open(conversation.id);
      onDone();
    } catch (error) {
      setProblem(error instanceof ParleyApiError ? (error.detail ?? error.code) : String(error));
    }
  }

  return (
    <form class="new-conversation" onSubmit={create}>
      <fieldset>
        <legend>Kind</legend>
        <label>
          <input type="radio" name="type" value="direct" checked={type === 'direct'} onChange={() => setType('direct')} /> Direct
        </label>
        <label>
          <input type="radio" name="type" value="group" checked={type === 'group'} onChange={() => setType('group')} /> Group
        </label>
      </fieldset>
      {type === 'group' && (
        <>
          <label for="group-name">Group name</label>
          <input id="group-name" value={name} maxLength={128} onInput={(e) => setName(e.currentTarget.value)} />
        </>
      )}
      <label for="people">{type === 'direct' ? 'User id' : 'Members (user ids, separated by commas)'}</label>
      <input id="people" required value={people} onInput={(e) => setPeople(e.currentTarget.value)} placeholder={type === 'direct' ? 'bob' : 'bob, carol'} />
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      <div class="actions">
        <button type="submit">Start</button>
        <button type="button" class="quiet" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}
