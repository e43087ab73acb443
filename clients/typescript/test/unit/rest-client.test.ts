import { describe, expect, it } from 'vitest';
import { ParleyClient } from '../../src/client.js';
import { ParleyCredentials } from '../../src/credentials.js';
import { ParleyApiError } from '../../src/errors.js';
import { ScriptedServer } from './scripted-server.js';

function setUp(credentials = ParleyCredentials.bearer('t0')): { server: ScriptedServer; client: ParleyClient } {
  const server = new ScriptedServer();
  const client = new ParleyClient({ baseUrl: 'http://parley.test/base', credentials, fetch: server.fetch });
  return { server, client };
}

describe('ParleyClient', () => {
  it('sends snake_case bodies with the bearer token under the base path', async () => {
    const { server, client } = setUp();
    server.rest = () => ({ status: 201, body: { id: 'm1' } });

    const sent = await client.sendMessage({ conversation_id: 'c1', content: 'Hello', client_message_id: 'k1' });

    expect(sent).toEqual({ id: 'm1' });
    const request = server.requests[0]!;
    expect(request.method).toBe('POST');
    expect(request.url.pathname).toBe('/base/api/v1/messages');
    expect(request.headers.Authorization).toBe('Bearer t0');
    expect(request.body).toEqual({ message_type: 'text', conversation_id: 'c1', content: 'Hello', client_message_id: 'k1' });
  });

  it('turns ProblemDetails into ParleyApiError with code, field errors and Retry-After', async () => {
    const { server, client } = setUp();
    server.rest = () => ({
      status: 429,
      headers: { 'Retry-After': '3' },
      body: { status: 429, title: 'Too Many Requests', detail: 'Slow down.', code: 'rate_limited', errors: { content: ['too long'] } },
    });

    const error = await client.getConversation('c1').catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ParleyApiError);
    expect(error).toMatchObject({ status: 429, code: 'rate_limited', detail: 'Slow down.', errors: { content: ['too long'] }, retryAfterMs: 3000 });
  });

  it('describes an error without ProblemDetails by its status', async () => {
    const { server, client } = setUp();
    server.rest = () => ({ status: 503, headers: { 'Content-Type': 'text/html' }, body: '<h1>down</h1>' });

    await expect(client.getConfig()).rejects.toMatchObject({ status: 503, code: 'service_unavailable' });
  });

  it('asks the token provider for a fresh token once when the server refuses one', async () => {
    const asked: boolean[] = [];
    const { server, client } = setUp(ParleyCredentials.bearer(({ forceRefresh }) => (asked.push(forceRefresh), forceRefresh ? 'fresh' : 'stale')));
    server.rest = (_m, _u) =>
      server.requests.at(-1)!.headers.Authorization === 'Bearer fresh'
        ? { status: 200, body: { cursor: 'k' } }
        : { status: 401, body: { code: 'unauthenticated' } };

    expect(await client.getSyncCursor()).toBe('k');
    expect(asked).toEqual([false, true]);
  });

  it('builds queries and path segments safely and reads 204 as nothing', async () => {
    const { server, client } = setUp(ParleyCredentials.headers('alice', 'web-1'));
    server.rest = (method) => (method === 'DELETE' ? { status: 204 } : { status: 200, body: { messages: [], has_more: false, next_cursor: null } });

    await client.listMessages('c1', { before: 40, limit: 10 });
    await client.removeParticipant('c1', 'bob smith');

    expect(server.requests[0]!.url.search).toBe('?before=40&limit=10');
    expect(server.requests[0]!.headers['X-User-ID']).toBe('alice');
    expect(server.requests[0]!.headers['X-Device-ID']).toBe('web-1');
    expect(server.requests[1]!.url.pathname).toBe('/base/api/v1/conversations/c1/participants/bob%20smith');
  });
});
