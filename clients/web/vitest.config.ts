import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        // The app's store against a scripted client and connection: races between REST answers and events, timers.
        resolve: {
          alias: { '@parley/client': fileURLToPath(new URL('../typescript/src/index.ts', import.meta.url)) },
        },
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 10_000,
        },
      },
      {
        // Browser tests: Debian's Chromium driven by playwright-core against a real Parley the global set-up starts.
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/browser/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
