// Starts a real Parley server (the built src/Parley.Server) for integration and browser tests: Development
// environment (the development signing key, the app at /app), SQLite in a fresh directory, a free loopback port.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

export interface RunningParley {
  url: string;
  directory: string;
  stop(): Promise<void>;
  log(): string;
}

/** The server's build output; built here when missing (./test.sh builds it first). */
function serverDll(): string {
  const dll = process.env.PARLEY_SERVER_DLL ?? join(repositoryRoot, 'src/Parley.Server/bin/Debug/net10.0/Parley.Server.dll');
  if (!existsSync(dll)) {
    const build = spawnSync('dotnet', ['build', join(repositoryRoot, 'src/Parley.Server'), '-v', 'q', '-nologo'], { stdio: 'inherit' });
    if (build.status !== 0) throw new Error('Building src/Parley.Server failed.');
  }
  return dll;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? done(address.port) : fail(new Error('no port'))));
    });
  });
}

/** Starts a server with `settings` (`--Key=value` pairs) and waits until /ready answers 200. */
export async function startParley(settings: Record<string, string> = {}): Promise<RunningParley> {
  const dll = serverDll();
  const directory = mkdtempSync(join(tmpdir(), 'parley-js-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(directory, 'server.log');
  const out = openSync(logFile, 'a');
  const args = [dll, '--urls', url, ...Object.entries(settings).map(([k, v]) => `--${k}=${v}`)];
  const child: ChildProcess = spawn('dotnet', args, {
    cwd: directory,
    env: { ...process.env, ASPNETCORE_ENVIRONMENT: 'Development', DOTNET_NOLOGO: '1' },
    stdio: ['ignore', out, out],
  });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Parley exited with ${child.exitCode} before it was ready:\n${log()}`);
    try {
      const response = await fetch(`${url}/ready`);
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Parley was not ready within 60 s:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    url,
    directory,
    log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      if (!process.env.PARLEY_KEEP_TEST_DATA) rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** A development token for `userId`, minted by the server (App enabled, development key). */
export async function developmentToken(url: string, userId: string): Promise<string> {
  const response = await fetch(`${url}/app/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: userId }),
  });
  if (!response.ok) throw new Error(`POST /app/token answered ${response.status}: ${await response.text()}`);
  return ((await response.json()) as { token: string }).token;
}
