import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI_EXIT } from '../../src/cli/index.js';
import { verifyErasureReceipt } from '../../src/index.js';
import { itemRows, newCliStore, runCommand, seedExpiredItems, type CliStore } from './cli-store.js';

/*
 * `erase`, `erase replay` and `hold place | release | list | export` as the bin runs them, on
 * a real SQLite file the module's app wrote first (sessions visit-1 and visit-2 of tenant
 * clinic, three items each, and one kept item in session kept).
 */

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('erase and hold', () => {
  let store: CliStore;
  let env: NodeJS.ProcessEnv;

  beforeEach(async () => {
    store = newCliStore();
    await seedExpiredItems(store, 0);
    env = { ...store.env, AUDIT_CHECKPOINT_PRIVATE_KEY: privatePem };
  });
  afterEach(() => store.dispose());

  const operator = ['--actor', 'ops-7', '--tenant', 'clinic'];

  it('erase --session --json prints a receipt signed with the checkpoint key', async () => {
    const result = await runCommand(
      ['erase', '--session', 'kept', '--reason', 'subject-request', ...operator, '--json'],
      env,
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    const receipt = JSON.parse(result.stdout);
    expect(receipt).toMatchObject({ scope: 'session', sessionIds: ['kept'], itemsDeleted: 1 });
    expect(receipt.actor).toEqual({ type: 'user', id: 'ops-7' });
    expect(verifyErasureReceipt(receipt, createPublicKey(privateKey))).toBe(true);
    expect(verifyErasureReceipt(receipt, publicKey)).toBe(true);
    expect(await itemRows(store)).toBe(0);
  });

  it('erase exits 3 without --actor or --reason, erasing nothing', async () => {
    for (const argv of [
      ['erase', '--session', 'kept', '--reason', 'other', '--tenant', 'clinic'],
      ['erase', '--session', 'kept', ...operator],
      ['erase', '--reason', 'other', ...operator],
    ]) {
      const result = await runCommand(argv, env);
      expect(result.code).toBe(CLI_EXIT.cannotRun);
      expect(result.stderr).toMatch(/--actor|--reason|--subject or --session/);
    }
    expect(await itemRows(store)).toBe(1);
  });

  it('hold place, then erase exits 6 and erases nothing; list shows it; release lifts it', async () => {
    const placed = await runCommand(
      ['hold', 'place', '--session', 'kept', '--matter', 'case-12', ...operator, '--json'],
      env,
    );
    expect(placed.code).toBe(CLI_EXIT.ok);
    const hold = JSON.parse(placed.stdout);
    expect(hold).toMatchObject({ sessionId: 'kept', matterRef: 'case-12', placedBy: 'ops-7' });

    const refused = await runCommand(
      ['erase', '--session', 'kept', '--reason', 'other', ...operator],
      env,
    );
    expect(refused.code).toBe(CLI_EXIT.held);
    expect(refused.stderr).toContain(hold.holdId);
    expect(await itemRows(store)).toBe(1);

    const listed = await runCommand(['hold', 'list', '--json'], env);
    expect(JSON.parse(listed.stdout)).toEqual([hold]);
    const exported = await runCommand(['hold', 'export', hold.holdId, ...operator], env);
    expect(exported.code).toBe(CLI_EXIT.ok);
    expect(
      exported.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
    ).toMatchObject([
      { holdId: hold.holdId, sessionId: 'kept', item: { role: 'user', content: 'kept' } },
    ]);

    const released = await runCommand(['hold', 'release', hold.holdId, ...operator], env);
    expect(released.code).toBe(CLI_EXIT.ok);
    expect(released.stdout).toMatch(/^released .* released .* by ops-7/);
    expect(JSON.parse((await runCommand(['hold', 'list', '--json'], env)).stdout)).toEqual([]);
  });

  it('erase replay --receipts erases again what a receipts file names', async () => {
    const erased = await runCommand(
      ['erase', '--session', 'kept', '--reason', 'other', ...operator, '--json'],
      env,
    );
    const file = join(dirname(store.path), 'receipts.jsonl');
    writeFileSync(file, `${erased.stdout}\n`);
    const replay = await runCommand(
      ['erase', 'replay', '--receipts', file, ...operator, '--json'],
      env,
    );
    expect(replay.stderr).toBe('');
    expect(replay.code).toBe(CLI_EXIT.ok);
    // Nothing was restored: the replay finds nothing left to erase.
    expect(JSON.parse(replay.stdout)).toMatchObject({ entries: 1, sessionsErased: 0 });
  });
});
