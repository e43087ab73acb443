/** Asked for a token before every request and every connection attempt: cache it, and return a fresh one when `forceRefresh` is set (the server refused the last one) or before it expires. */
export type TokenProvider = (context: { forceRefresh: boolean }) => string | Promise<string>;

/**
 * How the client authenticates (docs/authentication.md): a bearer token (JWT) from a provider, a service API key,
 * the trusted headers of `Auth:Mode=Header`, or nothing (a gateway in front of Parley authenticates the browser).
 */
export class ParleyCredentials {
  private constructor(
    private readonly tokenProvider: TokenProvider | null,
    private readonly fixedHeaders: Readonly<Record<string, string>>,
  ) {}

  /** A bearer token, fixed or from a provider. On the WebSocket it travels as `access_token` (browsers cannot set headers there). */
  static bearer(token: string | TokenProvider): ParleyCredentials {
    if (typeof token === 'string') {
      if (token.length === 0) throw new TypeError('The token is empty.');
      return new ParleyCredentials(() => token, {});
    }
    return new ParleyCredentials(token, {});
  }

  /** The service role with an API key (`X-Api-Key`), for an application's back end. */
  static apiKey(key: string): ParleyCredentials {
    return new ParleyCredentials(null, { 'X-Api-Key': key });
  }

  /**
   * `X-User-ID` (and `X-Device-ID`) for an `Auth:Mode=Header` deployment. Browsers cannot set them on a WebSocket:
   * there use `none()` and let the gateway add them; in Node pass a WebSocket that takes headers (`ws`).
   */
  static headers(userId: string, deviceId?: string): ParleyCredentials {
    return new ParleyCredentials(null, deviceId ? { 'X-User-ID': userId, 'X-Device-ID': deviceId } : { 'X-User-ID': userId });
  }

  /** No credentials: a gateway in front of Parley authenticates the caller (for example with a cookie) and adds the headers. */
  static none(): ParleyCredentials {
    return new ParleyCredentials(null, {});
  }

  /** Whether a refused request may succeed with a refreshed token. */
  get refreshable(): boolean {
    return this.tokenProvider !== null;
  }

  /** The token for this attempt, or null without a bearer token. */
  async token(forceRefresh = false): Promise<string | null> {
    return this.tokenProvider ? await this.tokenProvider({ forceRefresh }) : null;
  }

  /** The headers of one request. */
  async headers(forceRefresh = false): Promise<Record<string, string>> {
    const token = await this.token(forceRefresh);
    return token === null ? { ...this.fixedHeaders } : { Authorization: `Bearer ${token}` };
  }

  /** Headers a WebSocket may carry when its implementation can set them (Node's `ws`); the token goes in the URL instead. */
  socketHeaders(): Record<string, string> {
    return { ...this.fixedHeaders };
  }
}
