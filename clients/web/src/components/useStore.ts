import { useEffect, useState } from 'preact/hooks';
import type { ChatStore } from '../store.js';

/** Re-renders the component whenever the store changes. */
export function useStore(store: ChatStore): number {
  const [version, setVersion] = useState(store.snapshot);
  useEffect(() => store.subscribe(() => setVersion(store.snapshot)), [store]);
  return version;
}
