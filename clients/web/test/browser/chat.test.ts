// The chat app in a real browser: Debian's Chromium, two browser contexts as two users, against a real Parley.
// Each step builds on the one before (one conversation throughout); a failing step saves a screenshot of every
// page to clients/test-results/.
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Locator, Page, WebSocketRoute } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';

const url = inject('parleyUrl');
const chromiumPath = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium';
const results = resolve(dirname(fileURLToPath(import.meta.url)), '../../../test-results');
const wait = { timeout: 15_000 };

let browser: Browser;
const pages = new Map<string, Page>();
const contexts = new Map<string, BrowserContext>();
/** Uncaught errors and Content-Security-Policy violations: the app must have none. */
const problems: string[] = [];

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

afterAll(async () => {
  await browser?.close();
});

afterEach(async (context) => {
  if (context.task.result?.state !== 'fail') return;
  mkdirSync(results, { recursive: true });
  const name = context.task.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
  for (const [user, page] of pages) {
    await page.screenshot({ path: join(results, `${name}-${user}.png`), fullPage: true }).catch(() => {});
  }
  console.error(`Screenshots of the failed step are in ${results}.`);
});

async function open(label: string, viewport = { width: 1100, height: 760 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`${label}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) problems.push(`${label}: ${message.text()}`);
  });
  pages.set(label, page);
  contexts.set(label, context);
  return page;
}

/** Opens a browser context (`label` names it in screenshots) and signs `user` in; `prepare` runs before the app loads. */
async function signIn(
  user: string,
  label = user,
  viewport?: { width: number; height: number },
  prepare?: (page: Page) => Promise<void>,
): Promise<Page> {
  const page = await open(label, viewport);
  await prepare?.(page);
  await page.goto(`${url}/app`);
  await page.getByLabel('User id').fill(user);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect.poll(() => page.getByTestId('connection').innerText(), wait).toContain('Connected');
  await expect.poll(() => page.getByTestId('me').innerText(), wait).toBe(user);
  return page;
}

/** `page`'s user starts a direct conversation with `other`, and it opens. */
async function startDirect(page: Page, other: string): Promise<void> {
  const before = new URL(page.url()).hash;
  await page.getByRole('button', { name: 'New' }).click();
  await page.getByLabel('User id').fill(other);
  await page.getByRole('button', { name: 'Start' }).click();
  await expect.poll(() => page.getByRole('heading', { name: other }).count(), wait).toBe(1);
  // The address names the conversation a moment after it shows (an effect): tests read its id from there.
  await expect.poll(() => new URL(page.url()).hash, wait).not.toBe(before);
}

function composer(page: Page): Locator {
  return page.getByRole('textbox', { name: 'Message' });
}

async function send(page: Page, text: string): Promise<void> {
  await composer(page).fill(text);
  await composer(page).press('Enter');
}

/** The texts of the stored messages shown, oldest first (pending ones apart). */
function shown(page: Page): Promise<string[]> {
  return page.locator('[data-testid=message]:not([data-pending]) [data-testid=content]').allInnerTexts();
}

/** An HS256 token signed with the development key (as the server's Development settings accept), lapsing in `seconds`. */
function developmentToken(sub: string, seconds: number): string {
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ sub, iss: 'parley-dev', aud: 'parley', iat: now, nbf: now, exp: now + seconds })}`;
  const signature = createHmac('sha256', 'parley-development-signing-key-not-for-production-use').update(body).digest('base64url');
  return `${body}.${signature}`;
}

function message(page: Page, text: string): Locator {
  return page.locator('[data-testid=message]', { has: page.getByTestId('content').getByText(text, { exact: true }) });
}

async function tick(page: Page, text: string): Promise<string | null> {
  return await message(page, text).getByTestId('tick').getAttribute('data-tick');
}

describe('the chat app', () => {
  let alice: Page;
  let erinSocket: WebSocketRoute | null = null;
  let erinCursor: string | null = null;
  let bob: Page;

  it('signs two users in with development tokens, in two browser contexts', async () => {
    alice = await signIn('alice');
    bob = await signIn('bob');
  });

  it('connects when the browser says it is offline but the server answers (airplane mode, a server on this machine)', async () => {
    // The app used to sit on "Offline" with an empty list: navigator.onLine is a hint, not a verdict.
    const page = await signIn('oscar', 'oscar', undefined, async (p) => {
      await p.addInitScript(() => Object.defineProperty(Navigator.prototype, 'onLine', { get: () => false, configurable: true }));
    });
    expect(await page.evaluate(() => navigator.onLine)).toBe(false);
    await expect.poll(() => page.getByText('No conversations yet.').count(), wait).toBe(1);
    await page.close();
    pages.delete('oscar');
  });

  it('starts a direct conversation and delivers a message, with an unread count and the last message in the list', async () => {
    await startDirect(alice, 'bob');
    await send(alice, 'Hello Bob');

    const entry = bob.getByTestId('conversation-alice');
    await expect.poll(() => entry.innerText(), wait).toContain('alice: Hello Bob');
    await expect.poll(() => entry.getByTestId('unread').innerText(), wait).toBe('1');
    // Bob's device received it: Alice sees it delivered before Bob even opens the conversation.
    await expect.poll(() => tick(alice, 'Hello Bob'), wait).toBe('delivered');
  });

  it('marks the message read once Bob opens the conversation', async () => {
    await bob.getByTestId('conversation-alice').click();
    await expect.poll(() => shown(bob), wait).toEqual(['Hello Bob']);
    await expect.poll(() => tick(alice, 'Hello Bob'), wait).toBe('read');
    await expect.poll(() => bob.getByTestId('conversation-alice').getByTestId('unread').count(), wait).toBe(0);
  });

  it('shows who is typing, and stops when the message is sent', async () => {
    await composer(bob).pressSequentially('Hi Al', { delay: 20 });
    await expect.poll(() => alice.getByTestId('typing').innerText(), wait).toBe('bob is typing…');
    await composer(bob).pressSequentially('ice', { delay: 20 });
    await composer(bob).press('Enter');
    await expect.poll(() => shown(alice), wait).toEqual(['Hello Bob', 'Hi Alice']);
    await expect.poll(() => alice.getByTestId('typing').innerText(), wait).toBe('');
  });

  it('keeps showing who is typing for as long as they type', async () => {
    // "typing: true" is broadcast once and refreshes only keep it alive on the server: the indicator used to lapse
    // after 6 s while the typer went on.
    await composer(bob).pressSequentially('A long thought, typed slowly', { delay: 300 });
    expect(await alice.getByTestId('typing').innerText()).toBe('bob is typing…');
    await composer(bob).fill('');
    await expect.poll(() => alice.getByTestId('typing').innerText(), wait).toBe('');
  });

  it('replies with a mention', async () => {
    await message(bob, 'Hello Bob').getByRole('button', { name: 'Reply to alice' }).click();
    await send(bob, 'Good to see you @alice');

    const reply = message(alice, 'Good to see you @alice');
    await expect.poll(() => reply.getByTestId('reply-quote').innerText(), wait).toBe('alice: Hello Bob');
    await expect.poll(() => reply.getByTestId('mention').innerText(), wait).toBe('@alice');
  });

  it('edits a message, shown with its history on the other side', async () => {
    await message(alice, 'Hello Bob').getByRole('button', { name: 'Edit your message' }).click();
    const editor = alice.getByRole('textbox', { name: 'Edit message' });
    await editor.fill('Hello Bob!');
    await editor.press('Enter');

    await expect.poll(() => shown(bob), wait).toEqual(['Hello Bob!', 'Hi Alice', 'Good to see you @alice']);
    await message(bob, 'Hello Bob!').getByTestId('edited').click();
    await expect.poll(() => bob.getByTestId('history').innerText(), wait).toContain('Hello Bob');
    await bob.getByRole('button', { name: 'Close' }).click();
  });

  it('deletes a message for everyone', async () => {
    await send(alice, 'A regrettable message');
    await expect.poll(() => shown(bob), wait).toContain('A regrettable message');

    alice.once('dialog', (dialog) => void dialog.accept());
    await message(alice, 'A regrettable message').getByRole('button', { name: 'Delete the message' }).click();

    await expect.poll(() => shown(bob), wait).toEqual(['Hello Bob!', 'Hi Alice', 'Good to see you @alice', 'This message was deleted.']);
  });

  it('brings what was sent while Bob was offline once, in order, when he is back', async () => {
    await contexts.get('bob')!.setOffline(true);
    await expect.poll(() => bob.getByTestId('connection').innerText(), wait).toContain('Offline');

    for (const text of ['While you were away 1', 'While you were away 2', 'While you were away 3']) await send(alice, text);
    await expect.poll(() => shown(alice), wait).toContain('While you were away 3');
    // Offline for real: nothing reaches Bob's page now.
    await bob.waitForTimeout(500);
    expect(await shown(bob)).not.toContain('While you were away 1');

    await contexts.get('bob')!.setOffline(false);
    await expect.poll(() => bob.getByTestId('connection').innerText(), wait).toContain('Connected');
    await expect.poll(() => shown(bob), wait).toEqual([
      'Hello Bob!',
      'Hi Alice',
      'Good to see you @alice',
      'This message was deleted.',
      'While you were away 1',
      'While you were away 2',
      'While you were away 3',
    ]);
    await expect.poll(() => tick(alice, 'While you were away 3'), wait).toBe('read');
  });

  it('sends what Bob wrote offline when he is back, exactly once', async () => {
    await contexts.get('bob')!.setOffline(true);
    await expect.poll(() => bob.getByTestId('connection').innerText(), wait).toContain('Offline');

    await send(bob, 'Written offline');
    await expect.poll(() => bob.locator('[data-pending] [data-testid=tick]').getAttribute('data-tick'), wait).toBe('queued');
    await expect.poll(() => bob.getByTestId('connection').innerText(), wait).toContain('1 waiting to send');
    await alice.waitForTimeout(500);
    expect(await shown(alice)).not.toContain('Written offline');

    await contexts.get('bob')!.setOffline(false);
    await expect.poll(() => shown(alice), wait).toContain('Written offline');
    await expect.poll(() => bob.locator('[data-pending]').count(), wait).toBe(0);
    await alice.waitForTimeout(500);
    expect((await shown(alice)).filter((t) => t === 'Written offline')).toHaveLength(1);
    expect((await shown(bob)).filter((t) => t === 'Written offline')).toHaveLength(1);
    // Also after a reload, from the server's history.
    await alice.reload();
    await expect.poll(() => alice.getByRole('heading', { name: 'bob' }).count(), wait).toBe(1);
    await expect.poll(() => shown(alice), wait).toContain('Written offline');
    expect((await shown(alice)).filter((t) => t === 'Written offline')).toHaveLength(1);
  });

  it('loads older messages when scrolling back', async () => {
    // 60 more messages from Alice over REST, so that Bob's first page does not hold them all.
    const conversationId = await alice.evaluate(() => new URLSearchParams(location.hash.slice(1)).get('c'));
    const token = await alice.evaluate(() => (JSON.parse(sessionStorage.getItem('parley.session')!) as { token: string }).token);
    for (let i = 1; i <= 60; i++) {
      const response = await fetch(`${url}/api/v1/messages`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ conversation_id: conversationId, message_type: 'text', content: `Backlog ${i}`, client_message_id: `backlog-${i}` }),
      });
      expect(response.status, await response.clone().text()).toBe(201);
    }

    // A fresh tab for Bob: it loads history page by page.
    const bobAgain = await signIn('bob', 'bob-second-tab');
    await bobAgain.getByTestId('conversation-alice').click();
    await expect.poll(async () => (await shown(bobAgain)).length, wait).toBeGreaterThanOrEqual(30);
    // Scrolled to the newest: nothing more loads until the reader scrolls back.
    await bobAgain.waitForTimeout(500);
    expect((await shown(bobAgain)).length).toBeLessThan(60);

    const log = bobAgain.getByRole('log');
    await expect
      .poll(async () => {
        await log.evaluate((element) => (element.scrollTop = 0));
        return (await shown(bobAgain)).length;
      }, wait)
      .toBe(68);
    const texts = await shown(bobAgain);
    expect(texts.slice(0, 2)).toEqual(['Hello Bob!', 'Hi Alice']);
    expect(texts.slice(-2)).toEqual(['Backlog 59', 'Backlog 60']);
    await expect.poll(() => bobAgain.getByText('The beginning of the conversation').count(), wait).toBe(1);
  });

  it('creates a group, adds and removes a member', async () => {
    await alice.getByRole('button', { name: 'New' }).click();
    await alice.getByLabel('Group', { exact: true }).check();
    await alice.getByLabel('Group name', { exact: true }).fill('Weekend');
    await alice.getByLabel('Members (user ids, separated by commas)', { exact: true }).fill('bob');
    await alice.getByRole('button', { name: 'Start' }).click();
    await expect.poll(() => alice.getByRole('heading', { name: 'Weekend' }).count(), wait).toBe(1);
    await send(alice, 'Plans for Saturday?');

    await expect.poll(() => bob.getByTestId('conversation-Weekend').innerText(), wait).toContain('alice: Plans for Saturday?');
    await bob.getByTestId('conversation-Weekend').click();
    await expect.poll(() => shown(bob), wait).toEqual(['Plans for Saturday?']);
    await expect.poll(() => tick(alice, 'Plans for Saturday?'), wait).toBe('read');

    // Bob's load of the group that the addition triggers fails once (the network blinked): it is retried, and the
    // new member shows up all the same (the event that asked for the load is not lost with it).
    const oneConversation = /\/api\/v1\/conversations\/[0-9a-f-]{36}$/;
    let dropped = 0;
    await bob.route(oneConversation, async (route) => {
      if (route.request().method() === 'GET' && dropped === 0) {
        dropped++;
        await route.abort('connectionreset');
      } else {
        await route.fallback();
      }
    });
    await alice.getByRole('button', { name: /Members/ }).click();
    await alice.getByLabel('Add members').fill('carol');
    await alice.getByRole('button', { name: 'Add', exact: true }).click();
    await bob.getByRole('button', { name: /Members/ }).click();
    await expect.poll(() => bob.getByTestId('member-carol').count(), wait).toBe(1);
    await expect.poll(() => bob.getByRole('button', { name: /Members \(3\)/ }).count(), wait).toBe(1);
    expect(dropped).toBe(1);
    // Carol joined after the message and never sees it: it stays read by everyone who can.
    await expect.poll(() => alice.getByRole('button', { name: /Members \(3\)/ }).count(), wait).toBe(1);
    expect(await tick(alice, 'Plans for Saturday?')).toBe('read');
    await bob.unroute(oneConversation);

    await alice.getByRole('button', { name: 'Remove carol' }).click();
    await expect.poll(() => bob.getByTestId('member-carol').count(), wait).toBe(0);
  });

  it('works on a phone-sized viewport: the list, then the conversation, and back', async () => {
    const phone = await signIn('bob', 'bob-phone', { width: 390, height: 800 });
    await expect.poll(() => phone.getByTestId('conversation-alice').isVisible(), wait).toBe(true);
    await phone.getByTestId('conversation-alice').click();
    await expect.poll(() => composer(phone).isVisible(), wait).toBe(true);
    expect(await phone.getByRole('navigation', { name: 'Conversations' }).isVisible()).toBe(false);
    await send(phone, 'From my phone');
    await alice.getByTestId('conversation-bob').click();
    await expect.poll(() => shown(alice), wait).toContain('From my phone');
    await phone.getByRole('button', { name: 'Back to conversations' }).click();
    await expect.poll(() => phone.getByRole('navigation', { name: 'Conversations' }).isVisible(), wait).toBe(true);
  });

  it('signs in with a pasted token, and signs out', async () => {
    const response = await fetch(`${url}/app/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: 'carol' }),
    });
    const { token } = (await response.json()) as { token: string };
    const page = await open('carol');
    await page.goto(`${url}/app`);

    await page.getByRole('button', { name: 'Use a token instead' }).click();
    await page.getByLabel('Bearer token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByTestId('connection').innerText(), wait).toContain('Connected');
    expect(await page.getByTestId('me').innerText()).toBe('carol');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect.poll(() => page.getByLabel('User id').count(), wait).toBe(1);
  });

  it('reports messages read only once they are scrolled to, not while the reader is further back', async () => {
    const grace = developmentToken('grace', 3600);
    const api = async (token: string, path: string, body?: object): Promise<Record<string, unknown>> => {
      const response = await fetch(`${url}/api/v1${path}`, {
        method: body ? 'POST' : 'GET',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      expect(response.ok, await response.clone().text()).toBe(true);
      return (await response.json()) as Record<string, unknown>;
    };
    const conversationId = (await api(grace, '/conversations', { type: 'direct', participant_ids: ['henry'] })).id as string;
    for (let i = 1; i <= 40; i++) await api(grace, '/messages', { conversation_id: conversationId, message_type: 'text', content: `Earlier ${i}` });
    const henry = await signIn('henry');
    const henryToken = await henry.evaluate(() => (JSON.parse(sessionStorage.getItem('parley.session')!) as { token: string }).token);
    const unread = async (): Promise<number> => (await api(henryToken, `/conversations/${conversationId}`)).unread_count as number;
    await henry.getByTestId('conversation-grace').click();
    await expect.poll(unread, wait).toBe(0);

    // Henry scrolls back; Grace writes: the new message is below the fold, so it stays unread.
    await henry.getByRole('log').evaluate((element) => (element.scrollTop = 0));
    await henry.waitForTimeout(500);
    await api(grace, '/messages', { conversation_id: conversationId, message_type: 'text', content: 'Below the fold' });
    await expect.poll(() => shown(henry), wait).toContain('Below the fold');
    await henry.waitForTimeout(1000);
    expect(await unread()).toBe(1);

    await henry.getByRole('log').evaluate((element) => (element.scrollTop = element.scrollHeight));
    await expect.poll(unread, wait).toBe(0);

    // What the app does not display (media, places) is named, not an empty bubble.
    await api(grace, '/messages', {
      conversation_id: conversationId,
      message_type: 'image',
      media: { url: 'https://cdn.example.com/cat.png', mime_type: 'image/png', size_bytes: 1234, file_name: 'cat.png' },
    });
    await expect.poll(() => henry.getByTestId('attachment').allInnerTexts(), wait).toContain('Image: cat.png');
  });

  it('asks before a tab with messages still waiting to send is closed', async () => {
    const ivan = await signIn('ivan');
    await ivan.getByRole('button', { name: 'New' }).click();
    await ivan.locator('#people').fill('judy');
    await ivan.getByRole('button', { name: 'Start' }).click();
    await expect.poll(() => ivan.getByRole('heading', { name: 'judy' }).count(), wait).toBe(1);
    await contexts.get('ivan')!.setOffline(true);
    await expect.poll(() => ivan.getByTestId('connection').innerText(), wait).toContain('Offline');
    await send(ivan, 'Not sent yet');
    await expect.poll(() => ivan.locator('[data-pending]').count(), wait).toBe(1);

    const dialog = ivan.waitForEvent('dialog');
    await ivan.close({ runBeforeUnload: true });
    const asked = await dialog;
    expect(asked.type()).toBe('beforeunload');
    await asked.accept();
    pages.delete('ivan');
  });

  it('lists a message that failed in a conversation the user was removed from, to dismiss, and then closes without asking', async () => {
    const api = async (method: string, path: string, body?: object): Promise<Response> => {
      const response = await fetch(`${url}/api/v1${path}`, {
        method,
        headers: { Authorization: `Bearer ${developmentToken('alice', 600)}`, 'Content-Type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      expect(response.ok, await response.clone().text()).toBe(true);
      return response;
    };
    const kate = await signIn('kate');
    const group = (await (await api('POST', '/conversations', { type: 'group', name: 'Book club', participant_ids: ['kate'] })).json()) as { id: string };
    await kate.getByTestId('conversation-Book club').click();
    await expect.poll(() => kate.getByRole('heading', { name: 'Book club' }).count(), wait).toBe(1);

    // Written offline; meanwhile Kate is removed. Back online, the send is refused and the conversation goes away.
    await contexts.get('kate')!.setOffline(true);
    await expect.poll(() => kate.getByTestId('connection').innerText(), wait).toContain('Offline');
    await send(kate, 'Anyone there?');
    await expect.poll(() => kate.locator('[data-pending]').count(), wait).toBe(1);
    await api('DELETE', `/conversations/${group.id}/participants/kate`);
    await contexts.get('kate')!.setOffline(false);

    const orphans = kate.getByTestId('orphans');
    await expect.poll(() => orphans.innerText().catch(() => ''), wait).toContain('Anyone there?');
    expect(await kate.getByTestId('conversation-Book club').count()).toBe(0);
    await orphans.getByRole('button', { name: 'Dismiss' }).click();
    await expect.poll(() => orphans.count(), wait).toBe(0);

    let asked = false;
    kate.on('dialog', (dialog) => {
      asked = true;
      void dialog.accept();
    });
    await kate.close({ runBeforeUnload: true });
    await expect.poll(() => kate.isClosed(), wait).toBe(true);
    expect(asked).toBe(false);
    pages.delete('kate');
  });

  it('signs out, saying why, when a pasted token expires', async () => {
    // A token that lapses in a few seconds (the test server allows a clock skew of one second): the socket is closed
    // at its expiry (4003) and the same token is refused on reconnecting. The tab used to sit on "Disconnected".
    const page = await open('frank');
    await page.goto(`${url}/app`);
    await page.getByRole('button', { name: 'Use a token instead' }).click();
    await page.getByLabel('Bearer token').fill(developmentToken('frank', 4));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByTestId('connection').innerText(), wait).toContain('Connected');

    await expect.poll(() => page.getByLabel('User id').count(), { timeout: 30_000 }).toBe(1);
    await expect.poll(() => page.getByRole('alert').innerText(), wait).toContain('Signed out');
  });

  it('cancels a reply from the keyboard', async () => {
    await alice.getByTestId('conversation-bob').click();
    // Alice left this conversation since its backlog came: the tab kept its newest 50 messages, and scrolling back
    // loads the older ones again.
    await expect
      .poll(async () => {
        await alice.getByRole('log').evaluate((element) => (element.scrollTop = 0));
        return await message(alice, 'Hi Alice').count();
      }, wait)
      .toBe(1);
    await message(alice, 'Hi Alice').getByRole('button', { name: 'Reply to bob' }).click();
    await expect.poll(() => alice.getByText('Replying to bob: Hi Alice').count(), wait).toBe(1);

    await composer(alice).press('Escape');

    await expect.poll(() => alice.getByText('Replying to bob: Hi Alice').count(), wait).toBe(0);
  });

  it('reports a read again when its receipt went into a socket that had died', async () => {
    // A receipt written into a socket that looked open but was dead (a laptop waking from sleep) counted as sent: the
    // sender never saw the message read. Here the first receipt is swallowed and the socket then dropped.
    let swallowed = 0;
    const tablet = await signIn('dave', 'dave-tablet', undefined, (page) =>
      page.routeWebSocket(/\/ws/, (ws) => {
        const server = ws.connectToServer();
        ws.onMessage((frame) => {
          if (swallowed === 0 && typeof frame === 'string' && frame.includes('"read_receipt"')) {
            swallowed++;
            setTimeout(() => void ws.close({ code: 1012 }), 300);
            return;
          }
          server.send(frame);
        });
      }),
    );
    await startDirect(alice, 'dave');
    await send(alice, 'Are you there, Dave?');
    await expect.poll(() => tablet.getByTestId('conversation-alice').innerText(), wait).toContain('Are you there, Dave?');

    await tablet.getByTestId('conversation-alice').click();
    await expect.poll(() => shown(tablet), wait).toEqual(['Are you there, Dave?']);
    await expect.poll(() => swallowed, wait).toBe(1);
    await expect.poll(() => tick(alice, 'Are you there, Dave?'), wait).toBe('read');
  });

  it('shows a history load that failed with a way to try again, without loading in a loop', async () => {
    const erin = await signIn('erin', 'erin', undefined, (page) =>
      page.routeWebSocket(/\/ws/, (ws) => {
        const server = ws.connectToServer();
        server.onMessage((frame) => {
          if (typeof frame === 'string' && frame.includes('"cursor"')) erinCursor = JSON.parse(frame).payload.cursor ?? erinCursor;
          ws.send(frame);
        });
        erinSocket = ws;
      }),
    );
    await startDirect(alice, 'erin');
    // More than a page of history (30), sent over REST as alice.
    const conversationId = new URL(alice.url()).hash.replace('#c=', '');
    for (let i = 0; i < 35; i++) {
      const response = await fetch(`${url}/api/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${developmentToken('alice', 600)}`, 'content-type': 'application/json' },
        body: JSON.stringify({ conversation_id: conversationId, message_type: 'text', content: `m${i}`, client_message_id: `history-${i}` }),
      });
      expect(response.status).toBe(201);
    }
    await send(alice, 'Hello Erin');
    await expect.poll(() => erin.getByTestId('conversation-alice').innerText(), wait).toContain('Hello Erin');

    // Every history load fails (offline on a train): one try when the conversation opens, then only after a back-off.
    const history = /\/api\/v1\/conversations\/[0-9a-f-]{36}\/messages/;
    let tries = 0;
    await erin.route(history, async (route) => {
      tries++;
      await route.abort('internetdisconnected');
    });
    await erin.getByTestId('conversation-alice').click();
    await expect.poll(() => erin.getByTestId('history-error').count(), wait).toBe(1);
    await erin.waitForTimeout(1_500);
    expect(tries).toBeLessThanOrEqual(2);

    // Now the first page loads and the next one fails; with the top of the list in view the reader sits there, and
    // loading older messages was tried again as fast as fetch could fail.
    await erin.unroute(history);
    let olderTries = 0;
    const older = /\/api\/v1\/conversations\/[0-9a-f-]{36}\/messages\?.*before=/;
    await erin.route(older, async (route) => {
      olderTries++;
      await route.abort('internetdisconnected');
    });
    await erin.getByRole('button', { name: 'Try again' }).click();
    await expect.poll(async () => (await shown(erin)).at(-1), wait).toBe('Hello Erin');
    await expect.poll(() => olderTries, wait).toBeGreaterThan(0);
    await expect.poll(() => erin.getByTestId('history-error').count(), wait).toBe(1);
    await erin.waitForTimeout(3_000);
    expect(olderTries).toBeLessThanOrEqual(3);
    await erin.unroute(older);
    await erin.getByRole('button', { name: 'Try again' }).click();
    await expect.poll(async () => (await shown(erin)).length, wait).toBe(36);
  });

  it('keeps the open conversation and its draft through a reload after sync_reset', async () => {
    const erin = pages.get('erin')!;
    await composer(erin).fill('half-written');
    expect(erinCursor).not.toBeNull();

    // The server says this device missed too much: the app reloads everything, and used to close the open conversation
    // (its draft lost) while it did.
    erinSocket!.send(JSON.stringify({ type: 'sync_reset', payload: { cursor: erinCursor, reason: 'test' } }));

    await expect.poll(() => erin.getByRole('alert').innerText(), wait).toContain('missed too much');
    expect(await composer(erin).inputValue()).toBe('half-written');
    expect(await erin.getByRole('heading', { name: 'alice' }).count()).toBe(1);
    await expect.poll(async () => (await shown(erin)).at(-1), wait).toBe('Hello Erin');
  });

  it('ran without uncaught errors or Content-Security-Policy violations', () => {
    expect(problems).toEqual([]);
  });
});
