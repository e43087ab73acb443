import { defineConfig } from 'vitest/config';

// Browser tests: Debian's Chromium driven by playwright-core against a real Parley the global set-up starts.
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    environment: 'node',
    globalSetup: ['test/browser/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
