import { useState } from 'preact/hooks';
import type { Session, SignInMode } from '../session.js';
import { mintDevelopmentToken, newDeviceId, readToken, saveSession } from '../session.js';

interface Props {
  mode: SignInMode | null;
  error: string | null;
  onSignedIn: (session: Session) => void;
}

/** Sign in as any user id (development tokens), with a token, or through the gateway. */
export function SignIn({ mode, error, onSignedIn }: Props) {
  const [userId, setUserId] = useState('');
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [pasting, setPasting] = useState(false);

  function done(session: Session): void {
    saveSession(session);
    onSignedIn(session);
  }

  async function signInAs(event: Event): Promise<void> {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const id = userId.trim();
      const minted = await mintDevelopmentToken(id);
      done({ mode: 'development', userId: id, token: minted.token, expiresAt: minted.expiresAt, deviceId: newDeviceId() });
    } catch (e) {
      setProblem(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  function signInWithToken(event: Event): void {
    event.preventDefault();
    const value = token.trim();
    const claims = readToken(value);
    if (!claims.sub) {
      setProblem('That does not look like a JWT with a sub claim.');
      return;
    }
    done({ mode: 'jwt', userId: claims.sub, token: value, expiresAt: claims.exp, deviceId: newDeviceId() });
  }

  const showToken = mode === 'jwt' || pasting;
  return (
    <main class="sign-in">
      <h1>Parley</h1>
      <p class="lead">A self-hosted chat back end. Sign in to try it: open a second window to talk to yourself as someone else.</p>
      {(error || problem) && (
        <p class="error" role="alert">
          {problem ?? error}
        </p>
      )}
      {mode === null && !error && <p role="status">Asking the server how to sign in…</p>}
      {mode === 'development' && !pasting && (
        <form onSubmit={signInAs}>
          <label for="user-id">User id</label>
          <input
            id="user-id"
            name="user-id"
            autoComplete="username"
            required
            maxLength={128}
            pattern="\S+"
            title="No spaces"
            placeholder="alice"
            value={userId}
            onInput={(e) => setUserId(e.currentTarget.value)}
          />
          <button type="submit" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
          <p class="hint">
            This server signs tokens with the development key, so any user id works.{' '}
            <button type="button" class="link" onClick={() => setPasting(true)}>
              Use a token instead
            </button>
          </p>
        </form>
      )}
      {showToken && (
        <form onSubmit={signInWithToken}>
          <label for="token">Bearer token</label>
          <textarea id="token" name="token" required rows={4} value={token} onInput={(e) => setToken(e.currentTarget.value)} />
          <p class="hint">A JWT this server accepts, e.g. from <code>dotnet run --project src/Parley.Server -- token alice</code>.</p>
          <button type="submit">Sign in</button>
          {pasting && (
            <button type="button" class="link" onClick={() => setPasting(false)}>
              Back
            </button>
          )}
        </form>
      )}
      {mode === 'gateway' && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            done({ mode: 'gateway', userId: null, token: null, expiresAt: null, deviceId: newDeviceId() });
          }}
        >
          <p>This server trusts the gateway in front of it to sign you in.</p>
          <button type="submit">Continue</button>
        </form>
      )}
    </main>
  );
}
