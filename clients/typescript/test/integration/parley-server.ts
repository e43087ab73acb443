import type { TestProject } from 'vitest/node';
import { startParley } from '../support/parley-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    parleyUrl: string;
  }
}

/** One real Parley (Development: the development signing key mints tokens) for the integration tests. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startParley();
  project.provide('parleyUrl', server.url);
  return () => server.stop();
}
