import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { AgentInputItem } from '@openai/agents-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptedSessionService, EnvKeyProvider, KeyRing } from '../../src/index.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';
import { userMessage } from '../support/session-harness.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import {
  openThrowawayStore,
  storeBackendsUnderTest,
  type OpenThrowawayStore,
  type StoreLocation,
} from '../support/throwaway-store.js';

/*
 * Crash safety of the data key rotation job: a process re-encrypting retiring keys is killed
 * with SIGKILL at a random point, KILLS times per backend (20 in all); after each kill every
 * item of every session still opens, and a last process finishes from what the data says:
 * every item there once, in order, readable, every retiring key destroyed.
 */

const CHILD_SCRIPT = fileURLToPath(new URL('../support/key-rotation.child.mjs', import.meta.url));
const REPLY_MARK = '@@nes ';
const KILLS = 10;
const SESSIONS = 24;
/** Generation 1 seals this many items; the next append starts generation 2. */
const ITEMS_PER_KEY = 40;
const LEASE_TTL_MS = 600;
const rootKey = newRootKeyEntry('k1');

const BACKENDS = (await storeBackendsUnderTest()).filter((backend) =>
  ['sqlite', 'postgres'].includes(backend.type),
);

let library: CompiledLibrary;
beforeAll(() => {
  library = compileLibrary();
}, 60_000);
afterAll(() => library?.dispose());

const textsOf = (list: AgentInputItem[]) =>
  list.map((item) => (item as { content: string }).content);
const expectedTexts = (session: number) =>
  Array.from({ length: ITEMS_PER_KEY + 10 }, (_, n) => `s${session}-${n}`);

/** A rotation process; resolves with how it ended, or kills it `killAfterMs` after it is ready. */
function runRotationProcess(
  location: StoreLocation,
  killAfterMs: number | undefined,
): Promise<{ killed: boolean; done: boolean; errors: string }> {
  const child = spawn(process.execPath, [CHILD_SCRIPT], {
    env: {
      ...process.env,
      NES_CHILD_CONFIG: JSON.stringify({
        entryUrl: library.entryUrl,
        backend: location,
        rootKey,
        leaseTtlMs: LEASE_TTL_MS,
        batchSize: 1,
      }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errors = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (errors = (errors + chunk).slice(-4000)));
  let done = false;
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (!line.startsWith(REPLY_MARK)) return;
    const event = JSON.parse(line.slice(REPLY_MARK.length)) as { event: string };
    if (event.event === 'done') done = true;
    if (event.event === 'ready' && killAfterMs !== undefined) {
      setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    }
  });
  return new Promise((resolve) => {
    child.on('exit', (code, signal) =>
      resolve({ killed: signal === 'SIGKILL' && !done, done: done && code === 0, errors }),
    );
  });
}

for (const { name, type, available } of BACKENDS) {
  describe.skipIf(!available)(`data key rotation killed mid-run on ${name}`, () => {
    let store: OpenThrowawayStore;

    /** Every session's items, read through a cold key ring: each must open. */
    async function readEverySession(): Promise<string[][]> {
      const keyRing = new KeyRing(
        store.storage,
        new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
      );
      const service = new EncryptedSessionService(store.storage, keyRing);
      try {
        const all: string[][] = [];
        for (let session = 0; session < SESSIONS; session++) {
          all.push(textsOf(await (await service.open(`s${session}`)).getItems()));
        }
        return all;
      } finally {
        keyRing.clear();
      }
    }

    /** Whether some session's generation 1 has lost part of its items, not all, to generation 2. */

    async function someKeyHalfMoved(): Promise<boolean> {
      const rows = await store.dataSource!.query<Array<{ left: number | string }>>(
        `SELECT COUNT(*) AS "left" FROM "nes_items" i JOIN "nes_data_keys" k ON k."dek_id" = i."dek_id" WHERE k."generation" = 1 GROUP BY i."session_id"`,
      );

      return rows.some(({ left }) => Number(left) > 0 && Number(left) < ITEMS_PER_KEY);
    }

    beforeAll(async () => {
      store = await openThrowawayStore(type);
      const keyRing = new KeyRing(
        store.storage,
        new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
        { rotationMaxItems: ITEMS_PER_KEY },
      );
      const service = new EncryptedSessionService(store.storage, keyRing);
      for (let session = 0; session < SESSIONS; session++) {
        const opened = await service.open(`s${session}`);
        for (let from = 0; from < ITEMS_PER_KEY + 10; from += 10) {
          await opened.addItems(
            Array.from({ length: 10 }, (_, n) => userMessage(`s${session}-${from + n}`)),
          );
        }
      }
      keyRing.clear();
    }, 120_000);
    afterAll(async () => {
      await store?.dispose();
    });

    it(`loses, duplicates and strands nothing across ${KILLS} kill -9s and a final run`, async () => {
      const expected = Array.from({ length: SESSIONS }, (_, session) => expectedTexts(session));
      let killedMidRun = 0;
      let killedMidKey = 0;
      for (let kill = 0; kill < KILLS; kill++) {
        const ended = await runRotationProcess(store.location, 5 + Math.floor(Math.random() * 60));
        if (ended.killed) killedMidRun++;
        if (await someKeyHalfMoved()) killedMidKey++;
        expect(await readEverySession()).toEqual(expected);
        // The dead process's lease lapses before the next one can act.
        await sleep(LEASE_TTL_MS);
      }
      expect(killedMidRun).toBe(KILLS);
      // The kills caught a key with part of its items moved: the state a crash must survive.
      expect(killedMidKey).toBeGreaterThan(0);
      const last = await runRotationProcess(store.location, undefined);
      expect(last.done, last.errors).toBe(true);
      expect(await readEverySession()).toEqual(expected);
      for (let session = 0; session < SESSIONS; session++) {
        const states = await store.storage.read(
          { tenantId: 'default', sessionId: `s${session}` },
          async (scope) => (await scope.dataKeys.listAll!()).map((key) => key.state),
        );
        expect(states).toEqual(['destroyed', 'active']);
      }
    }, 180_000);
  });
}
