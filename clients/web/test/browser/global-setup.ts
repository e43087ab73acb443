import type { TestProject } from 'vitest/node';
import { startParley } from '../../../typescript/test/support/parley-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    parleyUrl: string;
  }
}

/** One Parley (Development: the app at /app, development tokens) for the browser tests. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startParley();
  project.provide('parleyUrl', server.url);
  return async () => {
    if (process.env.PARLEY_PRINT_SERVER_LOG) console.log(server.log());
    await server.stop();
  };
}
