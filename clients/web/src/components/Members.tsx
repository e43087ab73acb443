import { useState } from 'preact/hooks';
import type { ChatStore, ConversationState } from '../store.js';

/** The members and their roles; owners and admins add and remove members; anyone leaves a group. */
export function Members({ store, state, onProblem }: { store: ChatStore; state: ConversationState; onProblem: (p: string | null) => void }) {
  const { conversation } = state;
  const [adding, setAdding] = useState('');
  const myRole = conversation.participants.find((p) => p.user_id === store.me)?.role ?? 'member';
  const manages = conversation.type === 'group' && myRole !== 'member';

  async function run(action: () => Promise<unknown>): Promise<void> {
    onProblem(null);
    try {
      // The participant_* events that follow update the list, here and on every member's devices.
      await action();
    } catch (error) {
      onProblem(error instanceof Error ? error.message : String(error));
    }
  }

  return (
    <section class="members" aria-label="Members">
      <ul>
        {conversation.participants.map((p) => (
          <li key={p.user_id} data-testid={`member-${p.user_id}`}>
            <span>{p.user_id === store.me ? `${p.user_id} (you)` : p.user_id}</span>
            <span class="role">{p.role}</span>
            {manages && p.user_id !== store.me && (myRole === 'owner' || p.role === 'member') && (
              <button type="button" class="link" onClick={() => void run(() => store.client.removeParticipant(conversation.id, p.user_id))}>
                Remove {p.user_id}
              </button>
            )}
          </li>
        ))}
      </ul>
      {manages && (
        <form
          class="add-member"
          onSubmit={(e) => {
            e.preventDefault();
            const ids = adding.split(/[\s,]+/).filter((x) => x.length > 0);
            setAdding('');
            void run(() => store.client.addParticipants(conversation.id, ids));
          }}
        >
          <label for="add-member">Add members</label>
          <input id="add-member" value={adding} placeholder="carol" onInput={(e) => setAdding(e.currentTarget.value)} />
          <button type="submit">Add</button>
        </form>
      )}
      {conversation.type === 'group' && store.me && (
        <button
          type="button"
          class="quiet"
          onClick={() => {
            if (confirm('Leave this group?')) void run(() => store.client.removeParticipant(conversation.id, store.me!));
          }}
        >
          Leave group
        </button>
      )}
    </section>
  );
}
