/**
 * What a device keeps between runs: the server's `cursor` (every event of its conversations up to it was applied)
 * and, per conversation, the last applied `seq` (to detect a gap or a repeat in the first events after a restart).
 */
export interface DeliveryCheckpoint {
  cursor: string;
  positions: Record<string, number>;
}

/**
 * Where the realtime connection persists its checkpoint. It saves only after the app consumed every event the
 * checkpoint covers, one save at a time, newest last. Implement it for your own storage (IndexedDB, AsyncStorage on
 * React Native, a file).
 */
export interface CursorStore {
  /** The last saved checkpoint, or null on a device's first run. */
  load(): DeliveryCheckpoint | null | Promise<DeliveryCheckpoint | null>;
  /** Replaces the saved checkpoint. */
  save(checkpoint: DeliveryCheckpoint): void | Promise<void>;
}

/** Keeps the checkpoint in memory: resume works across reconnects, not across reloads of the page or process. */
export class MemoryCursorStore implements CursorStore {
  checkpoint: DeliveryCheckpoint | null = null;

  load(): DeliveryCheckpoint | null {
    return this.checkpoint;
  }

  save(checkpoint: DeliveryCheckpoint): void {
    this.checkpoint = checkpoint;
  }
}

/** The part of the Web Storage API the store uses (`localStorage`, `sessionStorage`, or a stand-in). */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Keeps the checkpoint in `localStorage` (or another Web Storage) under `key`: a reloaded page resumes where it
 * stopped. Use one key per user and device. A value that is not a checkpoint reads as none.
 */
export class LocalStorageCursorStore implements CursorStore {
  private readonly storage: KeyValueStorage;

  constructor(
    readonly key: string,
    storage?: KeyValueStorage,
  ) {
    const chosen = storage ?? (globalThis as { localStorage?: KeyValueStorage }).localStorage;
    if (!chosen) throw new TypeError('No localStorage here: pass a storage.');
    this.storage = chosen;
  }

  load(): DeliveryCheckpoint | null {
    const text = this.storage.getItem(this.key);
    if (text === null) return null;
    try {
      const value = JSON.parse(text) as Partial<DeliveryCheckpoint>;
      return typeof value.cursor === 'string' && typeof value.positions === 'object' && value.positions !== null
        ? { cursor: value.cursor, positions: value.positions }
        : null;
    } catch {
      return null;
    }
  }

  save(checkpoint: DeliveryCheckpoint): void {
    this.storage.setItem(this.key, JSON.stringify(checkpoint));
  }

  /** Forgets the checkpoint (sign-out): the next connection starts as a new device. */
  clear(): void {
    this.storage.removeItem(this.key);
  }
}
