// Fails when the committed bundle (src/Parley.Server/WebApp/bundle) is not what the sources build: the app or
// @parley/client changed without `npm run build` in clients/web. Builds into a temporary directory and compares
// every file, byte for byte.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = fileURLToPath(new URL('..', import.meta.url));
const committed = fileURLToPath(new URL('../../../src/Parley.Server/WebApp/bundle', import.meta.url));
const fresh = mkdtempSync(join(tmpdir(), 'parley-bundle-'));

function files(root) {
  const found = new Map();
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else found.set(relative(root, path), readFileSync(path));
    }
  };
  walk(root);
  return found;
}

const vite = join(dirname(createRequire(import.meta.url).resolve('vite/package.json')), 'bin/vite.js');
execFileSync(process.execPath, [vite, 'build', '--outDir', fresh, '--emptyOutDir', '--logLevel', 'warn'], { cwd: web, stdio: 'inherit' });

const want = files(fresh);
const have = files(committed);
const problems = [];
for (const [path, content] of want) {
  if (!have.has(path)) problems.push(`missing: ${path}`);
  else if (!have.get(path).equals(content)) problems.push(`differs: ${path}`);
}
for (const path of have.keys()) if (!want.has(path)) problems.push(`not built from the sources: ${path}`);
rmSync(fresh, { recursive: true, force: true });

if (problems.length > 0) {
  console.error('The committed web app bundle is stale (src/Parley.Server/WebApp/bundle):');
  for (const problem of problems) console.error(`  ${problem}`);
  console.error('Rebuild it with `npm run build` in clients/web and commit the result (docs/web-app.md).');
  process.exit(1);
}
console.log(`The committed web app bundle matches its sources (${want.size} files).`);
