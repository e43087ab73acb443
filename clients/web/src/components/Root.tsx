import { useEffect, useState } from 'preact/hooks';
import type { Session, SignInMode } from '../session.js';
import { clearSession, loadSession, loadSignInMode } from '../session.js';
import { Chat } from './Chat.js';
import { SignIn } from './SignIn.js';

/** Signed in (a session in this tab) or not. */
export function Root() {
  const [mode, setMode] = useState<SignInMode | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [session, setSession] = useState<Session | null>(() => loadSession());

  useEffect(() => {
    loadSignInMode().then(setMode, (e: unknown) => setError(`Cannot reach the server: ${String(e)}`));
  }, []);

  if (session) {
    return (
      <Chat
        key={`${session.userId}:${session.deviceId}`}
        session={session}
        onSignOut={(reason) => {
          clearSession();
          setSession(null);
          setError(reason);
        }}
      />
    );
  }
  return <SignIn mode={mode} error={error} onSignedIn={setSession} />;
}
