// One replica of job-replicas.spec.ts: a real Nest application context over the compiled
// library, with ScheduleModule.forRoot() and the retention purge on a one-second cron, as a host
// runs it. Plain ESM, so each replica is a separate OS process with its own connections, event
// loop and lease owner id (host:pid:random), which the parent can kill -9 or SIGSTOP.
//
// Configuration comes in NES_CHILD_CONFIG (JSON; the root key stays out of argv). Each line
// on stdout that starts with REPLY_MARK is one JSON event:
//   { "event": "ready", "pid": 123 }
//   { "event": "run", "outcome": "done", "startedAt": ..., "finishedAt": ..., "result": {...},
//     "errorCode": ... }   (each run of the purge this process made, as status() reports it)
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';

const REPLY_MARK = '@@nes ';
const config = JSON.parse(process.env.NES_CHILD_CONFIG ?? '{}');
const reply = (message) => process.stdout.write(`${REPLY_MARK}${JSON.stringify(message)}\n`);

Logger.overrideLogger(['warn', 'error', 'fatal']);

const lib = await import(config.entryUrl);

/** The module's storage option for the parent's store location. */
function storageOf(backend) {
  switch (backend.type) {
    case 'sqlite':
      return { type: 'sqlite', path: backend.path, busyTimeoutMs: 30_000 };
    case 'postgres':
    case 'mysql':
      return { type: backend.type, url: backend.url };
    case 'redis':
      return { type: 'redis', url: backend.url, keyPrefix: backend.keyPrefix };
    default:
      throw new Error(`unknown backend ${backend.type}`);
  }
}

// The module as forRoot() returns it, with the host's scheduler beside it.
const sessions = lib.EncryptedSessionModule.forRoot({
  keys: { env: { keys: config.rootKey, activeKeyId: 'k1' } },
  storage: storageOf(config.backend),
  jobs: {
    leaseTtlSeconds: config.leaseTtlSeconds,
    retentionPurge: {
      enabled: true,
      cron: '* * * * * *',
      batchSize: config.batchSize,
      maxBatchesPerRun: 1_000_000,
    },
  },
});
const replica = { ...sessions, imports: [...(sessions.imports ?? []), ScheduleModule.forRoot()] };

const app = await NestFactory.createApplicationContext(replica, { logger: false });
app.enableShutdownHooks();
const jobs = app.get(lib.EncryptedSessionJobs);
reply({ event: 'ready', pid: process.pid });

// Every run of the purge this process finished, as its status reports it (the cron drives them).
let lastReported;
setInterval(() => {
  const run = jobs.status().find((job) => job.key === 'retentionPurge')?.lastRun;
  if (!run || run === lastReported) return;
  lastReported = run;
  reply({
    event: 'run',
    outcome: run.outcome,
    startedAt: run.startedAt.getTime(),
    finishedAt: run.finishedAt.getTime(),
    result: run.result,
    errorCode: run.errorCode,
  });
}, 10);
