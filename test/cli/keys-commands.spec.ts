import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI_EXIT } from '../../src/cli/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import {
  newCliStore,
  runCommand,
  seedExpiredItems,
  takeLease,
  type CliStore,
} from './cli-store.js';

/*
 * `keys status` and `keys rewrap` as the bin runs them, on a real SQLite file whose data keys
 * the module's app wrapped under root key k1; the commands run with k2 added and made active.
 */

const REWRAP_JOB = 'nest-encrypted-sessions:kek-rewrap';
const ROTATION_JOB = 'nest-encrypted-sessions:key-rotation';

describe('keys status and keys rewrap', () => {
  let store: CliStore;
  let env: NodeJS.ProcessEnv;

  beforeEach(async () => {
    store = newCliStore();
    await seedExpiredItems(store, 0);
    env = {
      ...store.env,
      SESSION_KEYS: `${newRootKeyEntry('k2')},${store.keys}`,
      SESSION_ACTIVE_KEY: 'k2',
    };
  });
  afterEach(() => store.dispose());

  /** `keys status --json`, parsed. */
  async function status(): Promise<{
    activeKekId: string;
    dataKeysByKek: Record<string, number>;
    remaining: number;
    rotationPolicy: { maxAgeDays: number | null; maxItems: number | null };
    dataKeys: Record<string, number | null>;
  }> {
    const result = await runCommand(['keys', 'status', '--json'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    return JSON.parse(result.stdout);
  }

  it('status --json counts the data keys on each root key and shows the rotation policy', async () => {
    const before = await status();
    expect(before.activeKekId).toBe('env:k2');
    expect(before.dataKeysByKek['env:k1']).toBeGreaterThan(0);
    expect(before.dataKeysByKek['env:k2']).toBeUndefined();
    expect(before.remaining).toBe(before.dataKeysByKek['env:k1']);
    expect(before.rotationPolicy).toEqual({ maxAgeDays: 90, maxItems: null });
    // The audit trail's own keys are counted per root key, not among the sessions' keys.
    expect(before.dataKeys).toEqual({
      activeKeys: expect.any(Number),
      oldestActiveKeyAgeMs: expect.any(Number),
      activeKeysPastMaxAge: 0,
      retiringKeys: 0,
      rotationLagMs: null,
    });
    expect(before.dataKeys.activeKeys).toBeGreaterThan(0);
    expect(before.dataKeys.activeKeys).toBeLessThan(before.dataKeysByKek['env:k1']);
  });

  it('rewrap --json moves every data key to the active root key under the job lease', async () => {
    const { remaining } = await status();
    const result = await runCommand(['keys', 'rewrap', '--json'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(JSON.parse(result.stdout)).toMatchObject({
      job: REWRAP_JOB,
      outcome: 'done',
      result: { rewrapped: remaining, failed: 0, remaining: 0 },
    });
    expect(await status()).toMatchObject({ remaining: 0, dataKeysByKek: { 'env:k2': remaining } });
  });

  it('prints a line for a person: what is left, then nothing to do once all moved', async () => {
    const before = await runCommand(['keys', 'status'], env);
    expect(before.stdout).toMatch(/^active root key: env:k2\n {2}env:k1: \d+ data key\(s\)\n/);
    expect(before.stdout).toContain('data key(s) on an older root key: run keys rewrap\n');
    expect(before.stdout).toContain(
      "data key rotation: after 90 day(s), at the session's next write\n",
    );
    expect(before.stdout).toMatch(
      /\n\d+ active data key\(s\), the oldest 0 day\(s\) old, 0 past the age limit; none retiring\n$/,
    );
    const rewrap = await runCommand(['keys', 'rewrap'], env);
    expect(rewrap.code).toBe(CLI_EXIT.ok);
    expect(rewrap.stdout).toMatch(
      /^rewrapped \d+ data key\(s\) to the active root key, 0 already moved, 0 failed; none left on an older root key\n$/,
    );
    const again = await runCommand(['keys', 'rewrap'], env);
    expect(again.stdout).toBe('nothing to do: every data key is wrapped by the active root key\n');
    const after = await runCommand(['keys', 'status'], env);
    expect(after.stdout).toContain('every data key is on the active root key\n');
  });

  it('draws a progress bar on a terminal, and clears it before the summary', async () => {
    const terminal = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
    let drawn = '';
    terminal.on('data', (chunk: Buffer) => (drawn += chunk.toString('utf8')));
    const result = await runCommand(['keys', 'rewrap'], env, { terminal });
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(drawn).toMatch(/rewrap \[[#.]+\] (\d+)\/\1 \| rewrapped \1 \| moved 0 \| failed 0/);
    expect(drawn.endsWith('\u001b[2K')).toBe(true);
  });

  it('rewrap exits 4 and moves nothing while another replica holds the lease', async () => {
    const before = await status();
    await takeLease(store, REWRAP_JOB, 'other-replica');
    const result = await runCommand(['keys', 'rewrap'], env);
    expect(result.code).toBe(CLI_EXIT.leaseHeld);
    expect(result.stderr).toMatch(
      /^skipped: another replica holds .*\(other-replica\).*retry later\n$/,
    );
    // Nothing moved (the ages in dataKeys grow with the clock).
    const { dataKeys: _ages, ...unchanged } = before;
    expect(await status()).toMatchObject(unchanged);
  });

  it("rotate --session rotates that session's key now, re-encrypts its item and destroys the old key", async () => {
    const operator = ['--session', 'kept', '--tenant', 'clinic', '--actor', 'ops-7'];
    const result = await runCommand(['keys', 'rotate', ...operator, '--json'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(JSON.parse(result.stdout)).toMatchObject({
      job: ROTATION_JOB,
      outcome: 'done',
      result: { retiringKeys: 1, reencrypted: 1, destroyed: 1, unreadable: 0, complete: true },
    });
    const again = await runCommand(['keys', 'rotate'], env);
    expect(again.code).toBe(CLI_EXIT.ok);
    expect(again.stdout).toBe(
      're-encrypted 0 item(s) of 0 retiring data key(s), destroyed 0 key(s), kept 0 unreadable item(s) and 0 held key(s), in 0 batch(es)\n',
    );
  });

  it('rotate --session exits 3 without --actor, rotating nothing', async () => {
    const result = await runCommand(['keys', 'rotate', '--session', 'kept'], env);
    expect(result.code).toBe(CLI_EXIT.cannotRun);
    expect(result.stderr).toContain('--actor');
    const after = await runCommand(['keys', 'rotate', '--json'], env);
    expect(JSON.parse(after.stdout).result).toMatchObject({ retiringKeys: 0 });
  });
});
