import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Controller,
  Get,
  Module,
  ServiceUnavailableException,
  type DynamicModule,
} from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import {
  HealthCheck,
  HealthCheckService,
  TerminusModule,
  type HealthCheckResult,
} from '@nestjs/terminus';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EncryptedSessionHealthIndicator,
  EncryptedSessionHealthModule,
  type EncryptedSessionHealthOptions,
} from '../../src/health/index.js';
import {
  EncryptedSessionJobs,
  EncryptedSessionModule,
  EncryptedSessionService,
  KeyRotationService,
  runAs,
  type EncryptedSessionModuleOptions,
  type SessionStorage,
} from '../../src/index.js';
import { SESSION_STORAGE } from '../../src/storage/storage.ports.js';
import { KmsTestServer } from '../support/kms-test-server.js';

// Canaries: ids and key ids that must never show in a health report.
const CANARY = `canary${randomUUID().replaceAll('-', '')}`;
const tenantId = `${CANARY}-tenant`;
const oldKekId = `${CANARY}-kek-old`;
const oldKeyBytes = randomBytes(32).toString('base64');
const actor = { type: 'service' as const, id: `${CANARY}-actor`, tenantId };
const SECRETS = [CANARY, oldKeyBytes];

const oldKeys = { env: { keys: `${oldKekId}:${oldKeyBytes}`, activeKeyId: oldKekId } };

/** The report terminus's HealthCheckService gives, whether it passed or failed (HTTP 503). */
async function healthReport(check: () => Promise<HealthCheckResult>): Promise<HealthCheckResult> {
  try {
    return await check();
  } catch (error) {
    if (!(error instanceof ServiceUnavailableException)) throw error;
    return error.getResponse() as HealthCheckResult;
  }
}

function expectNoSecrets(report: unknown): void {
  const text = JSON.stringify(report);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

/** A host's health endpoint, as docs/health.md wires it. */
@Controller('health')
class HealthController {
  constructor(
    readonly health: HealthCheckService,
    readonly sessions: EncryptedSessionHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.sessions.isHealthy()]);
  }
}

@Module({})
// oxlint-disable-next-line typescript/no-extraneous-class -- a Nest module is a class by design
class HealthHostModule {
  static with(options: EncryptedSessionHealthOptions | undefined): DynamicModule {
    return {
      module: HealthHostModule,
      imports: [
        // Terminus logs each failed check with its details; the tests read them instead.
        TerminusModule.forRoot({ logger: false }),
        options ? EncryptedSessionHealthModule.forRoot(options) : EncryptedSessionHealthModule,
      ],
      controllers: [HealthController],
    };
  }
}

/** Everything through the host's controller and terminus's HealthCheckService. */
function checkAll(ref: TestingModule): Promise<HealthCheckResult> {
  return healthReport(() => ref.get(HealthController).check());
}

/** Terminus's HealthCheckService of the host's module, for checks of the host's choosing. */
const terminus = (ref: TestingModule) => ref.get(HealthController).health;

/** Writes a session (canary ids, canary text) so there is data and a data key. */
async function writeSession(ref: TestingModule, sessionId = `${CANARY}-session`): Promise<void> {
  await runAs(actor, async () => {
    const session = await ref.get(EncryptedSessionService).open(sessionId, { tenantId });
    await session.addItems([{ role: 'user', content: `${CANARY} says hello` }]);
  });
}

describe('EncryptedSessionHealthIndicator with terminus HealthCheckService', () => {
  let directory: string;
  let moduleRef: TestingModule | undefined;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-health-'));
  });
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  interface BootOptions {
    readonly health?: EncryptedSessionHealthOptions;
    /** Imports ScheduleModule.forRoot(), so enabled jobs go on their cron. */
    readonly scheduler?: boolean;
    /** Runs the app's bootstrap (the scheduler starts there); compiled only when false. */
    readonly init?: boolean;
  }

  /** The module on the test's SQLite file, global, with the health module beside it. */
  async function boot(
    options: Partial<EncryptedSessionModuleOptions> = {},
    { health, scheduler = false, init = true }: BootOptions = {},
  ): Promise<TestingModule> {
    const ref = await Test.createTestingModule({
      imports: [
        ...(scheduler ? [ScheduleModule.forRoot()] : []),
        EncryptedSessionModule.forRoot({
          keys: oldKeys,
          storage: { type: 'sqlite', path: join(directory, 'sessions.sqlite') },
          ...options,
          isGlobal: true,
        }),
        HealthHostModule.with(health),
      ],
    }).compile();
    moduleRef = ref;
    if (init) await ref.init();
    return ref;
  }

  it('is up with storage, key provider and jobs fine, in one indicator or three', async () => {
    const ref = await boot();
    await writeSession(ref);
    const report = await checkAll(ref);
    expect(report.status).toBe('ok');
    expect(report.details['encrypted-sessions']).toEqual({
      status: 'up',
      storage: { status: 'up', backend: 'sqlite', responseTimeMs: expect.any(Number) },
      keyProvider: { status: 'up', provider: 'env', outage: false },
      // Every job the module has (none enabled by default), whatever their number.
      jobs: {
        status: 'up',
        ...Object.fromEntries(
          ref
            .get(EncryptedSessionJobs)
            .status()
            .map((job) => [job.key, { status: 'up', enabled: false, cron: job.cron }]),
        ),
      },
    });
    expect(report.details['encrypted-sessions']?.jobs.kekRewrap).toEqual({
      status: 'up',
      enabled: false,
      cron: '0 * * * *',
    });

    const indicator = ref.get(EncryptedSessionHealthIndicator);
    const separate = await healthReport(() =>
      terminus(ref).check([
        () => indicator.storage(),
        () => indicator.keyProvider('kms'),
        () => indicator.jobs(),
      ]),
    );
    expect(separate.status).toBe('ok');
    expect(Object.keys(separate.details).toSorted()).toEqual([
      'encrypted-sessions-jobs',
      'encrypted-sessions-storage',
      'kms',
    ]);
    expect(separate.details.kms).toEqual({ status: 'up', provider: 'env', outage: false });
    expectNoSecrets([report, separate]);
  });

  it('reports each enabled job the scheduler ran: last outcome, finish time, lag against its cron', async () => {
    const ref = await boot(
      { jobs: { kekRewrap: { enabled: true, cron: '* * * * * *' } } },
      { scheduler: true },
    );
    const jobs = ref.get(EncryptedSessionJobs);
    const rewrap = () => jobs.status().find((job) => job.key === 'kekRewrap');
    for (let waited = 0; waited < 5000 && !rewrap()?.lastRun; waited += 100) {
      await sleep(100);
    }
    const report = await checkAll(ref);
    expect(report.status).toBe('ok');
    const { lastRun } = rewrap()!;
    expect(report.details['encrypted-sessions']?.jobs.kekRewrap).toEqual({
      status: 'up',
      enabled: true,
      cron: '* * * * * *',
      lastOutcome: 'done',
      lastStartedAt: lastRun!.startedAt.toISOString(),
      lastFinishedAt: lastRun!.finishedAt.toISOString(),
      lagMs: expect.any(Number),
      periodMs: 1000,
      maxLagMs: 2000,
    });
  });

  it('reports the oldest active data key against the policy and the rotation lag, down past maxRotationLagDays', async () => {
    const maxRotationLagDays = 0.00002; // 1.728 s
    const ref = await boot(
      { keys: { ...oldKeys, rotation: { maxAgeDays: 30, maxItems: 2 } } },
      { health: { maxRotationLagDays, keyRotationCacheMs: 0 } },
    );
    const indicator = ref.get(EncryptedSessionHealthIndicator);
    const rotation = async () =>
      healthReport(() => terminus(ref).check([() => indicator.keyRotation()]));
    const started = Date.now();
    await writeSession(ref);
    const fresh = (await rotation()).details['encrypted-sessions-key-rotation'];
    expect(fresh).toEqual({
      status: 'up',
      maxAgeDays: 30,
      maxItems: 2,
      activeKeys: 1,
      oldestActiveKeyAgeMs: expect.any(Number),
      activeKeysPastMaxAge: 0,
      retiringKeys: 0,
      rotationLagMs: null,
      maxRotationLagMs: 1728,
      checkedAt: expect.any(String),
    });
    expect(fresh?.oldestActiveKeyAgeMs).toBeLessThanOrEqual(Date.now() - started);

    // Two items sealed: the next write starts generation 2, and generation 1 is retiring.
    await writeSession(ref);
    await writeSession(ref);
    const retiring = (await rotation()).details['encrypted-sessions-key-rotation'];
    expect(retiring).toMatchObject({ status: 'up', activeKeys: 1, retiringKeys: 1 });
    expect(retiring?.rotationLagMs).toBeLessThan(1728);

    await sleep(1800);
    const late = await rotation();
    expect(late.status).toBe('error');
    expect(late.error?.['encrypted-sessions-key-rotation']).toMatchObject({
      status: 'down',
      reason: 'ROTATION_LAG',
      retiringKeys: 1,
      maxRotationLagMs: 1728,
    });
    expect(late.error?.['encrypted-sessions-key-rotation']?.rotationLagMs).toBeGreaterThan(1728);
    expectNoSecrets(late);

    // The re-encryption job moves the items and destroys the retiring key: no lag left.
    const run = await runAs(actor, () => ref.get(KeyRotationService).reencryptRetiring());
    expect(run.result).toMatchObject({ destroyed: 1 });
    expect((await rotation()).details['encrypted-sessions-key-rotation']).toMatchObject({
      status: 'up',
      retiringKeys: 0,
      rotationLagMs: null,
    });
  });

  it('reuses the rotation figures for keyRotationCacheMs, and leaves them out of isHealthy', async () => {
    const ref = await boot();
    const indicator = ref.get(EncryptedSessionHealthIndicator);
    const figures = async () =>
      (await indicator.keyRotation('rotation')).rotation as Record<string, unknown>;
    const first = await figures();
    expect(first).toMatchObject({ status: 'up', activeKeys: 0, maxAgeDays: 90, maxItems: null });
    // No maxRotationLagDays: the lag is reported, never a reason to be down.
    expect(first).not.toHaveProperty('maxRotationLagMs');
    await writeSession(ref);
    // Within the default 60 s: the same figures, read at the same time.
    expect(await figures()).toEqual(first);
    expect(Object.keys((await checkAll(ref)).details['encrypted-sessions'] ?? {})).not.toContain(
      'keyRotation',
    );
  });

  it('is down when the storage is closed, naming the error code only', async () => {
    const ref = await boot();
    await writeSession(ref);
    await ref.get<symbol, SessionStorage>(SESSION_STORAGE, { strict: false }).close();
    const report = await checkAll(ref);
    expect(report.status).toBe('error');
    expect(report.error?.['encrypted-sessions']?.storage).toEqual({
      status: 'down',
      error: 'SHUTTING_DOWN',
    });
    // The other parts still report: the key provider and jobs are fine.
    expect(report.details['encrypted-sessions']?.keyProvider.status).toBe('up');
    expect(report.details['encrypted-sessions']?.jobs.status).toBe('up');
    expectNoSecrets(report);
  });

  it('is down with TIMEOUT when the storage does not answer within timeoutMs', async () => {
    const ref = await boot({}, { health: { timeoutMs: 200 } });
    const storage = ref.get<symbol, SessionStorage>(SESSION_STORAGE, { strict: false });
    // A unit of work that holds SQLite's one connection: the probe queues behind it.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const holding = storage.transaction({ tenantId, sessionId: 'held' }, () => held);
    try {
      const started = Date.now();
      const report = await checkAll(ref);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(report.error?.['encrypted-sessions']?.storage).toEqual({
        status: 'down',
        error: 'TIMEOUT',
        timeoutMs: 200,
      });
    } finally {
      release();
      await holding;
    }
    // Answering again once the connection is free.
    expect((await checkAll(ref)).status).toBe('ok');
  });

  it('is down when a job last run failed, with its error code and no ids or key ids', async () => {
    const server = new KmsTestServer();
    const { endpoint } = await server.start();
    const secretAccessKey = randomBytes(30).toString('base64');
    const kms = (keyId: string) => ({
      awsKms: {
        keyId,
        region: server.region,
        endpoint,
        credentials: { accessKeyId: `AKIA${randomUUID().slice(0, 12)}`, secretAccessKey },
        maxAttempts: 1,
      },
      retry: { maxAttempts: 2, budgetMs: 300, outageCooldownMs: 100 },
    });
    const oldKey = server.createKey();
    const newKey = server.createKey();
    try {
      // Sessions (and the audit trail's own key) under the old KMS key...
      const first = await boot({ keys: kms(oldKey.arn) });
      await writeSession(first);
      await first.close();
      moduleRef = undefined;
      // ...then the new key is active, and KMS goes away before the rewrap job moves them.
      const ref = await boot({ keys: kms(newKey.arn) });
      await server.down();
      const run = await ref.get(EncryptedSessionJobs).rewrapRootKeys();
      expect(run).toMatchObject({ outcome: 'failed', errorCode: 'KEY_PROVIDER_UNAVAILABLE' });

      const report = await checkAll(ref);
      expect(report.status).toBe('error');
      const { jobs } = report.error!['encrypted-sessions']!;
      expect(jobs.status).toBe('down');
      // The other jobs never ran and are off: up.
      const others = ref
        .get(EncryptedSessionJobs)
        .status()
        .filter((job) => job.key !== 'kekRewrap');
      for (const other of others) expect(jobs[other.key]).toMatchObject({ status: 'up' });
      expect(jobs.kekRewrap).toEqual({
        status: 'down',
        reason: 'LAST_RUN_FAILED',
        enabled: false,
        cron: '0 * * * *',
        lastOutcome: 'failed',
        lastStartedAt: run.startedAt.toISOString(),
        lastFinishedAt: run.finishedAt.toISOString(),
        lastErrorCode: 'KEY_PROVIDER_UNAVAILABLE',
      });
      expect(report.details['encrypted-sessions']?.storage.status).toBe('up');
      const text = JSON.stringify(report);
      for (const secret of [oldKey.arn, newKey.arn, secretAccessKey, ...server.keyMaterials()]) {
        expect(text).not.toContain(secret);
      }
      expectNoSecrets(report);

      // The next run that succeeds clears it (past the key ring's fast-fail cooldown).
      await server.up();
      await sleep(150);
      expect((await ref.get(EncryptedSessionJobs).rewrapRootKeys()).outcome).toBe('done');
      expect((await checkAll(ref)).status).toBe('ok');
    } finally {
      await server.stop();
    }
  });

  it('reports the lag of an enabled job that never ran, and is down once it passes maxLagPeriods', async () => {
    // Compiled, not bootstrapped: the scheduler never starts, so the job is due and never runs.
    const ref = await boot(
      { jobs: { kekRewrap: { enabled: true, cron: '* * * * * *' } } },
      { health: { maxLagPeriods: 0.5 }, init: false },
    );
    const indicator = ref.get(EncryptedSessionHealthIndicator);
    const early = (await indicator.jobs())['encrypted-sessions-jobs'];
    expect(early.kekRewrap).toMatchObject({ enabled: true, periodMs: 1000, maxLagMs: 500 });
    expect(early.kekRewrap).not.toHaveProperty('lastOutcome');
    // The jobs left off are listed, with no lag: they are not due.
    const others = ref
      .get(EncryptedSessionJobs)
      .status()
      .filter((job) => job.key !== 'kekRewrap');
    for (const job of others) {
      expect(early[job.key]).toEqual({ status: 'up', enabled: false, cron: job.cron });
    }

    // Past the first fire time (at most 1 s away) and half a period more.
    await sleep(1700);
    const report = await healthReport(() => terminus(ref).check([() => indicator.jobs()]));
    expect(report.status).toBe('error');
    const late = report.error?.['encrypted-sessions-jobs']?.kekRewrap;
    expect(late).toMatchObject({
      status: 'down',
      reason: 'LATE',
      enabled: true,
      periodMs: 1000,
      maxLagMs: 500,
    });
    expect(late.lagMs).toBeGreaterThan(500);
    expect(late.lagMs).toBeLessThan(1800);
  });

  it('is down during a key provider outage and up once the provider answers again (aws-kms over the wire)', async () => {
    const server = new KmsTestServer();
    const { endpoint } = await server.start();
    const key = server.createKey();
    const secretAccessKey = randomBytes(30).toString('base64');
    const kmsCalls = () => Object.values(server.calls).reduce((sum, count) => sum + count, 0);
    try {
      const ref = await boot({
        keys: {
          awsKms: {
            keyId: key.arn,
            region: server.region,
            endpoint,
            credentials: { accessKeyId: `AKIA${randomUUID().slice(0, 12)}`, secretAccessKey },
            maxAttempts: 1,
            requestTimeoutMs: 1000,
          },
          retry: { maxAttempts: 2, budgetMs: 300, outageCooldownMs: 300 },
        },
      });
      await writeSession(ref);
      const indicator = ref.get(EncryptedSessionHealthIndicator);
      const callsBefore = kmsCalls();
      expect((await indicator.keyProvider())['encrypted-sessions-key-provider']).toEqual({
        status: 'up',
        provider: 'aws-kms',
        outage: false,
      });
      // The check itself never calls KMS.
      expect(kmsCalls()).toBe(callsBefore);

      await server.down();
      // A new session needs a data key: its first write finds the provider down.
      await expect(writeSession(ref, `${CANARY}-during`)).rejects.toMatchObject({
        code: 'KEY_PROVIDER_UNAVAILABLE',
      });
      const report = await checkAll(ref);
      expect(report.status).toBe('error');
      expect(report.error?.['encrypted-sessions']?.keyProvider).toMatchObject({
        status: 'down',
        provider: 'aws-kms',
        outage: true,
      });
      expect(report.details['encrypted-sessions']?.storage.status).toBe('up');
      expectNoSecrets(report);
      const text = JSON.stringify(report);
      for (const secret of [secretAccessKey, key.arn, ...server.keyMaterials()]) {
        expect(text).not.toContain(secret);
      }
      // Past the cooldown, still down: no call has found the provider back yet.
      await sleep(350);
      expect((await checkAll(ref)).error?.['encrypted-sessions']?.keyProvider).toEqual({
        status: 'down',
        provider: 'aws-kms',
        outage: true,
      });

      await server.up();
      // The sessions' own traffic finds it back: the next new session's first write.
      await writeSession(ref, `${CANARY}-after`);
      expect((await checkAll(ref)).status).toBe('ok');
    } finally {
      await server.stop();
    }
  });
});
