import { afterAll, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  type SessionRef,
  type SessionStorage,
  type StoredItem,
} from '../../src/index.js';
import {
  sqlServerHarness,
  sqliteHarness,
  type HarnessFactory,
} from '../support/session-harness.js';
import { sqlServerUp } from '../support/sql-server-support.js';

const MiB = 1024 * 1024;
const postgres = sqlServerHarness('postgres');
const mariadb = sqlServerHarness('mysql');
afterAll(async () => {
  await postgres.dispose();
  await mariadb.dispose();
});

/** What a call rejected with (fails the test when it resolves). */
async function thrownBy(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (error: unknown) => error,
  );
}

/** A session row plus an appender of raw ciphertext at the storage port. */
async function rawSession(storage: SessionStorage, sessionId: string) {
  const ref: SessionRef = { tenantId: 'default', sessionId };
  await storage.transaction(ref, (scope) =>
    scope.session.insertIfAbsent({
      ...ref,
      subjectId: null,
      createdAt: 1,
      lastActivityAt: 1,
      nextSeq: 1,
      itemTtlSeconds: null,
      legalHold: false,
    }),
  );
  let seq = 0;
  const item = (bytes: number): StoredItem => ({
    seq: ++seq,
    dekId: '00000000-0000-4000-8000-000000000000',
    expiresAt: null,
    createdAt: 1,
    ciphertext: Buffer.alloc(bytes, 0x5a),
  });
  return {
    ref,
    append: (bytes: number) =>
      storage.transaction(ref, (scope) => scope.items.insertMany([item(bytes)])),
  };
}

describe.skipIf(!(await sqlServerUp('mysql')))('large items on mariadb', () => {
  it.each([
    ['the server refuses the packet (ER_NET_PACKET_TOO_LARGE)', 8 * MiB],
    ['the server resets the connection', 16.5 * MiB],
  ])(
    'maps a statement over max_allowed_packet to InvalidArgumentError when %s',
    async (_, bytes) => {
      const harness = await mariadb.factory();
      try {
        const { append } = await rawSession(harness.storage, `large-${bytes}`);
        // Just under half of the default 16 MiB max_allowed_packet still fits.
        await append(8 * MiB - 4096);
        const error = await thrownBy(append(bytes));
        expect(error).toBeInstanceOf(InvalidArgumentError);
        expect((error as Error).message).toMatch(/max_allowed_packet.*maxItemBytes/);
      } finally {
        await harness.close();
      }
    },
    60_000,
  );
});

const engines: Array<[string, HarnessFactory, boolean]> = [
  ['sqlite', sqliteHarness, true],
  ['postgres', postgres.factory, await sqlServerUp('postgres')],
];
describe.each(engines)('large items on %s', (name, factory, up) => {
  it.skipIf(!up)(
    'stores and reads back a 32 MiB ciphertext (far above the default maxItemBytes)',
    async () => {
      const harness = await factory();
      try {
        const { ref, append } = await rawSession(harness.storage, `large-${name}`);
        await append(32 * MiB);
        const [stored] = await harness.storage.read(ref, (scope) => scope.items.listVisible(2, 1));
        expect(stored!.ciphertext.length).toBe(32 * MiB);
      } finally {
        await harness.close();
      }
    },
    60_000,
  );
});
