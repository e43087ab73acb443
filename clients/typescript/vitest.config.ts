import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 10_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/integration/parley-server.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // One real server; test files use their own users and conversations.
          fileParallelism: false,
        },
      },
    ],
  },
});
