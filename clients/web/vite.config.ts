import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The app is built into the server's WebApp/bundle, which the server embeds and serves at /app (docs/web-app.md).
// The bundle is committed: `npm run build` here after changing the app or @parley/client, and `npm run check-bundle`
// (part of ./test.sh) fails while the committed bundle differs from what the sources build.
export const bundleDir = fileURLToPath(new URL('../../src/Parley.Server/WebApp/bundle', import.meta.url));

export default defineConfig({
  // Relative URLs: the app works under /app/ and behind a proxy that adds a path prefix.
  base: './',
  resolve: {
    // Built from the package's sources, so the bundle depends on nothing that has to be built first.
    alias: { '@parley/client': fileURLToPath(new URL('../typescript/src/index.ts', import.meta.url)) },
  },
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: bundleDir,
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // No data: URLs and no inline script: the server's Content-Security-Policy allows only the app's own files.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: {
    // `npm run dev`: the app on Vite's dev server, talking to a Parley on :8083.
    proxy: {
      '/api': 'http://localhost:8083',
      '/app/settings.json': 'http://localhost:8083',
      '/app/token': 'http://localhost:8083',
      '/ws': { target: 'ws://localhost:8083', ws: true },
    },
  },
});
