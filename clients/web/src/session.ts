// Signing in: how this server lets the app in (settings.json), and the credentials of the signed-in tab.
import { newClientMessageId, ParleyCredentials } from '@parley/client';

/** `development`: the server mints tokens for any user id; `jwt`: paste a token; `gateway`: a gateway in front signs the browser in. */
export type SignInMode = 'development' | 'jwt' | 'gateway';

/** Who is signed in, kept per tab (sessionStorage): two windows of one browser can be two users. */
export interface Session {
  mode: SignInMode;
  /** Known at once for development tokens and pasted tokens (their `sub`); in gateway mode from the server's `connected`. */
  userId: string | null;
  token: string | null;
  /** Milliseconds since the epoch, when known. */
  expiresAt: number | null;
  /** This tab's device: one logical connection per tab, stable across reloads. */
  deviceId: string;
}

const sessionKey = 'parley.session';

/** The server's answer to `GET settings.json` beside the app. */
export async function loadSignInMode(): Promise<SignInMode> {
  const response = await fetch('./settings.json', { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(`settings.json answered ${response.status}`);
  const settings = (await response.json()) as { sign_in: SignInMode };
  return settings.sign_in;
}

/** A development token for `userId` (servers that sign with the documented development key only). */
export async function mintDevelopmentToken(userId: string): Promise<{ token: string; expiresAt: number }> {
  const response = await fetch('./token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ user_id: userId }),
  });
  const body = (await response.json().catch(() => ({}))) as { token?: string; expires_at?: string; detail?: string };
  if (!response.ok || !body.token) throw new Error(body.detail ?? `The server refused to make a token (${response.status}).`);
  return { token: body.token, expiresAt: Date.parse(body.expires_at ?? '') || Date.now() + 3_600_000 };
}

/** The `sub` and `exp` of a JWT, read without checking it (the server checks it). */
export function readToken(token: string): { sub: string | null; exp: number | null } {
  try {
    const part = token.split('.')[1] ?? '';
    // base64url of UTF-8: atob gives one character per byte, which TextDecoder turns back into text (a sub like "josé").
    const bytes = Uint8Array.from(atob(part.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    const json = JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown; exp?: unknown };
    return { sub: typeof json.sub === 'string' ? json.sub : null, exp: typeof json.exp === 'number' ? json.exp * 1000 : null };
  } catch {
    return { sub: null, exp: null };
  }
}

export function loadSession(): Session | null {
  try {
    const text = sessionStorage.getItem(sessionKey);
    return text ? (JSON.parse(text) as Session) : null;
  } catch {
    return null;
  }
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(sessionKey, JSON.stringify(session));
}

export function clearSession(): void {
  sessionStorage.removeItem(sessionKey);
}

/** Not `crypto.randomUUID`: it exists only in secure contexts, and the app may be served over plain HTTP on a LAN. */
export function newDeviceId(): string {
  return `web-${newClientMessageId().replaceAll('-', '').slice(-8)}`;
}

/**
 * The credentials of a session. Development tokens are minted again when they near their expiry or the server
 * refuses them (a 401, or the socket closing with 4003): the package asks this provider on every request and every
 * connection attempt. A pasted token cannot be renewed: once refused, the connection fails and the app signs out.
 */
export function credentialsFor(session: Session): ParleyCredentials {
  if (session.mode === 'gateway') return ParleyCredentials.none();
  return ParleyCredentials.bearer(async ({ forceRefresh }) => {
    const stale = session.expiresAt !== null && session.expiresAt - Date.now() < 60_000;
    if (session.mode === 'development' && session.userId && (forceRefresh || stale || !session.token)) {
      const minted = await mintDevelopmentToken(session.userId);
      session.token = minted.token;
      session.expiresAt = minted.expiresAt;
      saveSession(session);
    }
    return session.token ?? '';
  });
}
