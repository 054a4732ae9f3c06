import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import {
  EncryptedSessionService,
  EnvKeyProvider,
  KeyRing,
  MemorySessionStorage,
  TypeOrmSessionStorage,
  dialectFor,
  openSqliteDataSource,
  runSessionMigrations,
  type KeyProvider,
  type KeyRingOptions,
  type SessionStorage,
} from '../../src/index.js';
import { newRootKeyEntry } from './test-keys.js';

/** Everything a session test needs, on one backend. */
export interface SessionHarness {
  readonly backend: string;
  readonly storage: SessionStorage;
  readonly provider: KeyProvider;
  readonly keyRing: KeyRing;
  readonly service: EncryptedSessionService;
  /** The SQL DataSource, for tests that tamper with rows directly. */
  readonly dataSource?: DataSource;
  /** The SQLite file, when there is one. */
  readonly databasePath?: string;
  close(): Promise<void>;
}

export interface HarnessOptions {
  keyRing?: KeyRingOptions;
  provider?: KeyProvider;
}

/** Builds a harness on a backend; one per test file or test. */
export type HarnessFactory = (options?: HarnessOptions) => Promise<SessionHarness>;

function assemble(
  backend: string,
  storage: SessionStorage,
  options: HarnessOptions,
  extra: { dataSource?: DataSource; databasePath?: string; cleanup?: () => void },
): SessionHarness {
  const provider =
    options.provider ?? new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
  const keyRing = new KeyRing(storage, provider, options.keyRing);
  return {
    backend,
    storage,
    provider,
    keyRing,
    service: new EncryptedSessionService(storage, keyRing),
    dataSource: extra.dataSource,
    databasePath: extra.databasePath,
    async close() {
      await storage.close();
      keyRing.clear();
      extra.cleanup?.();
    },
  };
}

export const memoryHarness: HarnessFactory = async (options = {}) =>
  assemble('memory', new MemorySessionStorage(), options, {});

export const sqliteHarness: HarnessFactory = async (options = {}) => {
  const directory = mkdtempSync(join(tmpdir(), 'nes-sqlite-'));
  const databasePath = join(directory, 'sessions.sqlite');
  const dataSource = await openSqliteDataSource({ path: databasePath, synchronous: 'NORMAL' });
  await runSessionMigrations(dataSource, dialectFor(dataSource));
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
  return assemble('sqlite', storage, options, {
    dataSource,
    databasePath,
    cleanup: () => rmSync(directory, { recursive: true, force: true }),
  });
};

/** A user message item, as the agents SDK stores it. */
export const userMessage = (content: string) => ({ role: 'user' as const, content });
export const assistantMessage = (text: string) => ({
  role: 'assistant' as const,
  status: 'completed' as const,
  content: [{ type: 'output_text' as const, text }],
});
