import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionJobs,
  EncryptedSessionModule,
  EncryptedSessionService,
  KekRotationService,
  runAs,
  type EncryptedSessionModuleOptions,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const JOB_NAME = 'nest-encrypted-sessions:kek-rewrap';
const k1 = newRootKeyEntry('k1');
const k2 = newRootKeyEntry('k2');
const actor = { type: 'service' as const, id: 'jobs-test', tenantId: 'acme' };

describe('scheduled jobs', () => {
  let directory: string;
  let moduleRef: TestingModule | undefined;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-jobs-'));
  });
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  /** Boots the module on the test's SQLite file, with or without the host's scheduler. */
  async function boot(
    options: Partial<EncryptedSessionModuleOptions>,
    withScheduler: boolean,
  ): Promise<TestingModule> {
    const ref = await Test.createTestingModule({
      imports: [
        ...(withScheduler ? [ScheduleModule.forRoot()] : []),
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: k1, activeKeyId: 'k1' } },
          storage: { type: 'sqlite', path: join(directory, 'sessions.sqlite') },
          ...options,
        }),
      ],
    }).compile();
    moduleRef = ref;
    await ref.init();
    return ref;
  }

  /** Writes `count` sessions under root key k1, then closes that app. */
  async function sessionsUnderK1(count: number): Promise<void> {
    const ref = await boot({}, false);
    await runAs(actor, async () => {
      for (let index = 0; index < count; index += 1) {
        const session = await ref.get(EncryptedSessionService).open(`s-${index}`, {
          tenantId: 'acme',
        });
        await session.addItems([{ role: 'user', content: `hello ${index}` }]);
      }
    });
    await ref.close();
    moduleRef = undefined;
  }

  const rotatedKeys = { keys: { env: { keys: `${k1},${k2}`, activeKeyId: 'k2' } } };

  it('need no scheduler while every job is disabled (the default)', async () => {
    const ref = await boot({}, false);
    expect(ref.get(EncryptedSessionJobs).status()).toEqual([
      expect.objectContaining({ key: 'kekRewrap', name: JOB_NAME, enabled: false }),
      expect.objectContaining({
        key: 'keyRotation',
        name: 'nest-encrypted-sessions:key-rotation',
        enabled: false,
      }),
      expect.objectContaining({
        key: 'retentionPurge',
        name: 'nest-encrypted-sessions:retention-purge',
        enabled: false,
      }),
    ]);
  });

  it('refuse to start an enabled job when the host did not import ScheduleModule.forRoot()', async () => {
    const failure = await boot({ jobs: { kekRewrap: { enabled: true } } }, false).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ConfigurationError);
    expect((failure as Error).message).toMatch(/import ScheduleModule\.forRoot\(\)/);
  });

  it('refuse a cron expression that does not parse, naming the option', async () => {
    const failure = await boot(
      { jobs: { kekRewrap: { enabled: true, cron: 'every hour' } } },
      true,
    ).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ConfigurationError);
    expect((failure as Error).message).toMatch(/options\.jobs\.kekRewrap\.cron/);
  });

  it('refuse options a job does not take', async () => {
    const failure = await boot(
      { jobs: { kekRewrap: { enabled: true, batchSize: 0 } } },
      true,
    ).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ConfigurationError);
    expect((failure as Error).message).toMatch(/jobs\.kekRewrap\.batchSize/);
  });

  it('put an enabled job on its cron in the host registry, and take it off at shutdown', async () => {
    const ref = await boot({ jobs: { kekRewrap: { enabled: true, cron: '0 3 * * *' } } }, true);
    const registry = ref.get(SchedulerRegistry);
    expect(registry.getCronJob(JOB_NAME).isActive).toBe(true);
    await ref.close();
    moduleRef = undefined;
    expect(registry.doesExist('cron', JOB_NAME)).toBe(false);
  });

  it('rewrap on the cron every data key a root key rotation left behind', async () => {
    await sessionsUnderK1(12);
    const ref = await boot(
      // Every second (six fields); two keys a page, two pages a run: several runs.
      {
        ...rotatedKeys,
        jobs: {
          kekRewrap: { enabled: true, cron: '* * * * * *', batchSize: 2, maxBatchesPerRun: 2 },
        },
      },
      true,
    );
    const rotation = ref.get(KekRotationService);
    // The sessions' data keys, and the audit trail's own (its MAC key).
    const before = (await rotation.status()).remaining;
    expect(before).toBeGreaterThanOrEqual(12);
    for (let waited = 0; waited < 15_000 && (await rotation.status()).remaining > 0;) {
      await sleep(250);
      waited += 250;
    }
    const after = await rotation.status();
    expect(after.remaining).toBe(0);
    expect(after.dataKeysByKek).toEqual({ [after.activeKekId]: before });
    expect(ref.get(EncryptedSessionJobs).status()[0]?.lastRun).toMatchObject({ outcome: 'done' });
  });

  it('run a job by its method, without the scheduler', async () => {
    await sessionsUnderK1(3);
    const ref = await boot(rotatedKeys, false);
    const before = (await ref.get(KekRotationService).status()).remaining;
    const report = await ref.get(EncryptedSessionJobs).rewrapRootKeys();
    expect(report).toMatchObject({
      job: JOB_NAME,
      outcome: 'done',
      result: { rewrapped: before, remaining: 0 },
    });
    expect(ref.get(EncryptedSessionJobs).status()[0]?.lastRun).toEqual(report);
    // Nothing left on the old root key: the next run has nothing to do.
    expect(await ref.get(EncryptedSessionJobs).rewrapRootKeys()).toMatchObject({
      outcome: 'done',
      result: undefined,
    });
  });
});
