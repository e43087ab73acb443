import { ErrorCodes } from './wire.js';

/**
 * The server refused a request: an HTTP ProblemDetails answer, or an `error` frame answering a socket send.
 * `code` is stable and machine-readable (`ErrorCodes`); `detail` is for humans.
 */
export class ParleyApiError extends Error {
  override readonly name = 'ParleyApiError';

  constructor(
    /** The stable error code, e.g. `not_found`, `validation_failed`, `idempotency_conflict`. */
    readonly code: string,
    /** The server's explanation. */
    readonly detail: string | null,
    /** The HTTP status; null when the error came in a WebSocket `error` frame. */
    readonly status: number | null = null,
    /** Per-field messages of a validation failure (snake_case field names); empty otherwise. */
    readonly errors: Readonly<Record<string, readonly string[]>> = {},
    /** How long to wait before retrying, in milliseconds (429 and 503 carry it). */
    readonly retryAfterMs: number | null = null,
  ) {
    super(status === null ? `${code}: ${detail ?? ''}` : `${status} ${code}: ${detail ?? ''}`);
  }
}

/**
 * The realtime connection cannot go on by itself: the server refused the credentials, or closed the socket with a
 * code that asks the client to change something (1009, Parley's 4xxx errors).
 */
export class ParleyConnectionError extends Error {
  override readonly name = 'ParleyConnectionError';

  constructor(
    message: string,
    /** The close code the server sent, when it closed the socket. */
    readonly closeCode: number | null = null,
    /** The error code of a refused connection (e.g. `unauthenticated`), when a probe over REST told it. */
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** The code a status stands for when the answer is not ProblemDetails (a proxy's page). */
export function defaultCode(status: number): string {
  switch (status) {
    case 401:
      return ErrorCodes.Unauthenticated;
    case 403:
      return ErrorCodes.Forbidden;
    case 404:
      return ErrorCodes.NotFound;
    case 410:
      return ErrorCodes.CursorExpired;
    case 429:
      return ErrorCodes.RateLimited;
    case 503:
      return ErrorCodes.ServiceUnavailable;
    default:
      return status >= 500 ? ErrorCodes.InternalError : ErrorCodes.InvalidRequest;
  }
}
