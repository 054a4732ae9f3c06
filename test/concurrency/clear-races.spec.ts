import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptedSessionService, EnvKeyProvider, KeyRing } from '../../src/index.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import {
  openThrowawayStore,
  storeBackendsUnderTest,
  type OpenThrowawayStore,
} from '../support/throwaway-store.js';

const CHILD_SCRIPT = resolve(import.meta.dirname, 'clear-races.child.mjs');
const REPLY_MARK = '@@nes ';

const APPENDERS = 3;
const SESSIONS = 2;
/** How long each child appends or clears. */
const RACE_MS = 3_000;
/** Longest a child may take to start, race and exit. */
const CHILD_TIMEOUT_MS = 60_000;

interface ChildError {
  name: string;
  code: string;
  retryable: boolean;
  message: string;
}

interface ChildResult {
  calls: number;
  succeeded: number;
  errors: ChildError[];
}

/** Runs one child to completion and returns its result line; a crash or hang fails the test. */
function runChild(config: Record<string, unknown>): Promise<ChildResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CHILD_SCRIPT], {
      env: { ...process.env, NES_CHILD_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-8_000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((candidate) => candidate.startsWith(REPLY_MARK));
      if (code === 0 && line) {
        resolvePromise(JSON.parse(line.slice(REPLY_MARK.length)) as ChildResult);
      } else {
        reject(new Error(`child exited (code ${code}, signal ${signal}); stderr:\n${stderr}`));
      }
    });
  });
}

const BACKENDS = await storeBackendsUnderTest();

let library: CompiledLibrary;
beforeAll(() => {
  library = compileLibrary();
}, 60_000);
afterAll(() => library?.dispose());

for (const { name, type, available } of BACKENDS) {
  describe.skipIf(!available)(`appends racing clears in separate processes on ${name}`, () => {
    let target: OpenThrowawayStore;
    const rootKey = newRootKeyEntry();

    beforeAll(async () => {
      target = await openThrowawayStore(type, { busyTimeoutMs: 30_000 });
    });
    afterAll(async () => {
      await target?.dispose();
    });

    it(`${APPENDERS} appending processes and one clearing process: only retryable errors, one active key, every item readable`, async () => {
      const sessionIds = Array.from({ length: SESSIONS }, () => `clear-race-${randomUUID()}`);
      const base = {
        entryUrl: library.entryUrl,
        backend: target.location,
        rootKey,
        sessionIds,
        durationMs: RACE_MS,
      };
      const results = await Promise.all([
        ...Array.from({ length: APPENDERS }, (_, writer) =>
          runChild({ ...base, role: 'append', writer }),
        ),
        runChild({ ...base, role: 'clear', writer: APPENDERS }),
      ]);
      const appenders = results.slice(0, APPENDERS);
      const clearer = results[APPENDERS];
      const errors = results.flatMap((result) => result.errors);
      if (errors.length > 0) {
        // Shown, not failed: retryable errors are allowed, but should stay rare.
        const kinds = new Set(errors.map((error) => `${error.code}: ${error.message}`));
        process.stderr.write(
          `[clear-races] ${name}: ${errors.length} retryable error(s):\n  ${[...kinds].join('\n  ')}\n`,
        );
      }
      // A lost race is never reported as tampering, and never as a caller's final answer.
      expect(errors.filter((error) => error.code === 'INTEGRITY')).toEqual([]);
      expect(errors.filter((error) => !error.retryable)).toEqual([]);
      // The race really happened: appends and clears both went through, many times.
      expect(appenders.every((result) => result.succeeded > 0)).toBe(true);
      expect(clearer.succeeded).toBeGreaterThan(1);

      const keyRing = new KeyRing(
        target.storage,
        new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
      );
      const service = new EncryptedSessionService(target.storage, keyRing);
      for (const sessionId of sessionIds) {
        const ref = { tenantId: 'default', sessionId };
        expect(
          await target.tamper.countActiveKeys(ref),
          `active keys of ${sessionId}`,
        ).toBeLessThanOrEqual(1);
        // Every item left after the last clear opens: none sealed under a destroyed key.
        const items = await (await service.open(sessionId)).getItems();
        expect(items).toHaveLength(await target.tamper.countItems(ref));
      }
      keyRing.clear();
    }, 90_000);
  });
}
