import { writeFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI_EXIT } from '../../src/cli/index.js';
import {
  itemRows,
  newCliStore,
  PURGE_JOB,
  runCommand,
  seedExpiredItems,
  takeLease,
  type CliStore,
} from './cli-store.js';

/*
 * The operator commands as the bin runs them (in process, through runCli), configured like the
 * demo by environment variables, on a real SQLite file the module's app wrote first.
 */

/** A stream that says it is a terminal, and what was drawn on it. */
function fakeTerminal(): {
  stream: PassThrough & { isTTY: boolean; columns: number };
  drawn: () => string;
} {
  const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
  let drawn = '';
  stream.on('data', (chunk: Buffer) => (drawn += chunk.toString('utf8')));
  return { stream, drawn: () => drawn };
}

describe('purge', () => {
  let store: CliStore;

  beforeEach(async () => {
    store = newCliStore();
    await seedExpiredItems(store, 3);
  });
  afterEach(() => store.dispose());

  it('--dry-run --json counts what a run would purge and deletes nothing', async () => {
    const result = await runCommand(['purge', '--dry-run', '--json'], store.env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(JSON.parse(result.stdout)).toMatchObject({
      job: PURGE_JOB,
      outcome: 'done',
      result: { dryRun: true, scanned: 6, purged: 6, shredded: 0, unverified: 0, complete: true },
    });
    expect(await itemRows(store)).toBe(7);
  });

  it('--json deletes the expired items, keeps the live one, and reports the run', async () => {
    const result = await runCommand(['purge', '--json'], store.env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(JSON.parse(result.stdout)).toMatchObject({
      job: PURGE_JOB,
      outcome: 'done',
      result: { dryRun: false, scanned: 6, purged: 6, batches: 2, complete: true },
    });
    expect(await itemRows(store)).toBe(1);
  });

  it('prints one summary line for a person, and no escape code when out is no terminal', async () => {
    const result = await runCommand(['purge'], store.env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(result.stdout).toMatch(
      /^purged 6 and shredded 0 of 6 expired item\(s\) in 2 batch\(es\), kept 0 unverified, \d+ ms\n$/,
    );
    expect(result.stdout + result.stderr).not.toContain('\u001b');
  });

  it('draws a progress bar on a terminal, and clears it before the summary', async () => {
    const terminal = fakeTerminal();
    const result = await runCommand(['purge', '--dry-run'], store.env, {
      terminal: terminal.stream,
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(result.stdout).toMatch(/^dry run, nothing deleted: would purge 6 and shred 0 of 6/);
    expect(terminal.drawn()).toMatch(/purge \[[#.]+\] 6\/6 \| purged 6 \| shredded 0 \| kept 0/);
    // Cleared at the end: the last thing drawn erases the line.
    expect(terminal.drawn().endsWith('\u001b[2K')).toBe(true);
  });

  it('draws no bar with --json, even on a terminal', async () => {
    const terminal = fakeTerminal();
    const result = await runCommand(['purge', '--dry-run', '--json'], store.env, {
      terminal: terminal.stream,
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(terminal.drawn()).toBe('');
  });

  it('exits 4 and deletes nothing while another replica holds the lease', async () => {
    await takeLease(store, PURGE_JOB, 'other-replica');
    const result = await runCommand(['purge', '--json'], store.env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(CLI_EXIT.leaseHeld);
    expect(JSON.parse(result.stdout)).toMatchObject({
      outcome: 'skipped',
      heldBy: 'other-replica',
    });
    expect(await itemRows(store)).toBe(7);
    const human = await runCommand(['purge'], store.env);
    expect(human.code).toBe(CLI_EXIT.leaseHeld);
    expect(human.stderr).toMatch(
      /^skipped: another replica holds .*\(other-replica\).*retry later\n$/,
    );
  });
});

describe('jobs status', () => {
  let store: CliStore;

  beforeEach(async () => {
    store = newCliStore();
    await seedExpiredItems(store, 0);
  });
  afterEach(() => store.dispose());

  it('--json lists every job, none scheduled by the CLI, and no lease before any run', async () => {
    const result = await runCommand(['jobs', 'status', '--json'], store.env);
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(JSON.parse(result.stdout)).toEqual([
      expect.objectContaining({
        key: 'kekRewrap',
        name: 'nest-encrypted-sessions:kek-rewrap',
        enabled: false,
      }),
      expect.objectContaining({
        key: 'keyRotation',
        name: 'nest-encrypted-sessions:key-rotation',
        enabled: false,
      }),
      expect.objectContaining({ key: 'retentionPurge', name: PURGE_JOB, enabled: false }),
    ]);
    expect(JSON.parse(result.stdout)[2]).not.toHaveProperty('lease');
  });

  it('shows who holds a lease now, taken by another process', async () => {
    const before = Date.now();
    await takeLease(store, PURGE_JOB, 'other-replica');
    const result = await runCommand(['jobs', 'status', '--json'], store.env);
    expect(result.code).toBe(CLI_EXIT.ok);
    const purge = (
      JSON.parse(result.stdout) as { key: string; lease?: { expiresAt: string } }[]
    ).find((job) => job.key === 'retentionPurge');
    expect(purge?.lease).toMatchObject({ owner: 'other-replica', token: 1, held: true });
    const expiresAt = Date.parse(purge!.lease!.expiresAt);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 29_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 31_000);

    const human = await runCommand(['jobs', 'status'], store.env);
    expect(human.stdout).toMatch(
      new RegExp(
        `^${PURGE_JOB}: not scheduled here; lease held by other-replica until \\S+ \\(token 1\\)$`,
        'm',
      ),
    );
    expect(human.stdout).toMatch(
      /^nest-encrypted-sessions:kek-rewrap: not scheduled here; lease never taken$/m,
    );
  });
});

describe('jobs status, after a lease lapsed', () => {
  let store: CliStore;

  beforeEach(async () => {
    store = newCliStore();
    await seedExpiredItems(store, 0);
  });
  afterEach(() => store.dispose());

  it('shows the lease free, naming its last holder', async () => {
    await takeLease(store, PURGE_JOB, 'gone-replica', 1);
    await sleep(20);
    const result = await runCommand(['jobs', 'status', '--json'], store.env);
    expect(JSON.parse(result.stdout)[2]).toMatchObject({
      key: 'retentionPurge',
      lease: { owner: 'gone-replica', held: false },
    });
    const human = await runCommand(['jobs', 'status'], store.env);
    expect(human.stdout).toMatch(
      new RegExp(
        `^${PURGE_JOB}: not scheduled here; lease free \\(last gone-replica, lapsed \\S+\\)$`,
        'm',
      ),
    );
  });
});

describe('usage', () => {
  let store: CliStore;

  beforeEach(() => {
    store = newCliStore();
  });
  afterEach(() => store.dispose());

  it('--help lists the commands, the exit codes and the environment, and exits 0', async () => {
    const result = await runCommand(['--help'], {});
    expect(result.code).toBe(CLI_EXIT.ok);
    for (const text of [
      'audit',
      'purge',
      'jobs',
      'Exit codes:',
      '4  another replica',
      'SESSION_KEYS',
    ]) {
      expect(result.stdout).toContain(text);
    }
    const purge = await runCommand(['purge', '--help'], {});
    expect(purge.code).toBe(CLI_EXIT.ok);
    expect(purge.stdout).toMatch(/--dry-run/);
    expect(purge.stdout).toMatch(/5 {2}the run failed or lost its lease/);
    expect((await runCommand(['jobs', 'status', '--help'], {})).stdout).toMatch(/--json/);
  });

  it.each([
    ['an unknown command', ['shred', '--subject', 'patient-1'], /unknown command 'shred'/],
    ['an unknown subcommand', ['jobs', 'start'], /unknown command 'start'/],
    ['an unknown flag', ['purge', '--force'], /unknown option '--force'/],
    ['an extra argument', ['purge', 'now'], /too many arguments/],
    ['no command', [], /Usage: nest-encrypted-sessions/],
  ])('exits 3 with the usage on err for %s', async (_name, argv, message) => {
    const result = await runCommand(argv, store.env);
    expect(result.code).toBe(CLI_EXIT.cannotRun);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/Usage: nest-encrypted-sessions/);
    expect(result.stdout).toBe('');
  });

  it('exits 3, naming what to set, without keys or without the SQLite file, creating no file', async () => {
    const noKeys = await runCommand(['jobs', 'status'], { SESSION_SQLITE_PATH: store.path });
    expect(noKeys).toMatchObject({ code: CLI_EXIT.cannotRun, stdout: '' });
    expect(noKeys.stderr).toMatch(/set SESSION_KEYS and SESSION_ACTIVE_KEY/);
    const noFile = await runCommand(['purge', '--dry-run'], store.env);
    expect(noFile.code).toBe(CLI_EXIT.cannotRun);
    expect(noFile.stderr).toMatch(/no SQLite file at .*sessions\.sqlite: set SESSION_SQLITE_PATH/);
    expect(await runCommand(['jobs', 'status'], store.env)).toMatchObject({
      code: CLI_EXIT.cannotRun,
    });
  });

  it("exits 3 on a store without the module's tables, saying to start the app or run the migrations", async () => {
    writeFileSync(store.path, '');
    for (const argv of [
      ['jobs', 'status', '--json'],
      ['purge', '--json'],
    ]) {
      const result = await runCommand(argv, store.env);
      expect(result.code).toBe(CLI_EXIT.cannotRun);
      expect(result.stderr).toMatch(
        /SCHEMA: the store lacks the module's tables.*start the app once.*migrations/,
      );
      expect(JSON.parse(result.stdout)).toMatchObject({
        ok: false,
        error: expect.stringMatching(/^SCHEMA:/),
      });
    }
  });
});
