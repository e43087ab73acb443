import type { TestProject } from 'vitest/node';
import { startParley } from '../../../typescript/test/support/parley-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    parleyUrl: string;
  }
}

/**
 * One Parley (Development: the app at /app, development tokens) for the browser tests; a clock skew of one second, so
 * that a token lapses (and is refused) within a test's time.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startParley({ 'Auth:Jwt:ClockSkew': '00:00:01' });
  project.provide('parleyUrl', server.url);
  return async () => {
    if (process.env.PARLEY_PRINT_SERVER_LOG) console.log(server.log());
    await server.stop();
  };
}
