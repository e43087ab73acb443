/**
 * Reconnect delays: `initial` × 2^`attempt`, capped at `max`, with "equal jitter" (half fixed, half random). After
 * an outage the clients of a deployment spread their attempts over the window instead of arriving together, and
 * none retries at once.
 * @param attempt 0 for the first retry.
 * @param random a uniform value in [0, 1).
 */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min(initialMs * 2 ** Math.min(Math.max(attempt, 0), 40), maxMs);
  return ceiling / 2 + (ceiling / 2) * random;
}
