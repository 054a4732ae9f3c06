// A process that runs the data key rotation job (KeyRotationService.reencryptRetiring) over the
// compiled library against the store its parent made, until nothing is left to re-encrypt, for
// key-rotation-crash.spec.ts, which kill -9s it at random points. Its lease lasts
// NES_CHILD_CONFIG.leaseTtlMs, so the next process takes over soon after a kill.
//
// Configuration comes in NES_CHILD_CONFIG (JSON; the root key stays out of argv). Lines on
// stdout that start with REPLY_MARK are JSON events: { "event": "ready" } once it can work,
// { "event": "batch", "reencrypted": n } after each key, and { "event": "done" } at the end.
import { Logger } from '@nestjs/common';
import { openChildStorage } from './child-storage.mjs';

const REPLY_MARK = '@@nes ';
const config = JSON.parse(process.env.NES_CHILD_CONFIG ?? '{}');
const reply = (message) => process.stdout.write(`${REPLY_MARK}${JSON.stringify(message)}\n`);

Logger.overrideLogger(['error', 'fatal']);

const lib = await import(config.entryUrl);
const storage = await openChildStorage(config.entryUrl, config.backend);
const keyRing = new lib.KeyRing(
  storage,
  new lib.EnvKeyProvider({ keys: config.rootKey, activeKeyId: 'k1' }),
);
const jobsConfig = {
  leaseTtlMs: config.leaseTtlMs,
  kekRewrap: { enabled: false, cron: '0 * * * *', batchSize: 100, maxBatchesPerRun: 50 },
  keyRotation: {
    enabled: false,
    cron: '0 3 * * *',
    batchSize: config.batchSize,
    maxBatchesPerRun: 1_000_000,
  },
  retentionPurge: {
    enabled: false,
    cron: '*/15 * * * *',
    batchSize: 1000,
    maxBatchesPerRun: 1000,
    sessionIdleDays: null,
  },
};
const jobs = new lib.EncryptedSessionJobs(
  storage,
  new lib.KekRotationService(storage, keyRing),
  jobsConfig,
);
const rotation = new lib.KeyRotationService(storage, keyRing, jobs, jobsConfig);
reply({ event: 'ready' });

// Runs until a run finds nothing retiring.
for (;;) {
  const report = await rotation.reencryptRetiring({
    onProgress: (progress) => reply({ event: 'batch', reencrypted: progress.reencrypted }),
  });
  // Another process held the lease (the killed one's, until it lapses), or this one lost it
  // on a slow machine: try again; the data says where to go on.
  if (report.outcome === 'skipped' || report.outcome === 'lease_lost') {
    await new Promise((resolve) => setTimeout(resolve, 50));
    continue;
  }
  if (report.outcome !== 'done') {
    reply({ event: 'failed', outcome: report.outcome, errorCode: report.errorCode });
    process.exit(1);
  }
  if (report.result.retiringKeys === 0) break;
}
reply({ event: 'done' });
await storage.close();
keyRing.clear();
