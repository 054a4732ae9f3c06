import { performance } from 'node:perf_hooks';
import { AuditService, AuditTrail, runAs } from '../src/audit/index.js';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import { KeyRingAuditKeys } from '../src/module/key-ring-audit-keys.js';
import { openSqliteDataSource } from '../src/storage/typeorm/sqlite-data-source.js';
import { TypeOrmSessionStorage } from '../src/storage/typeorm/typeorm.session-storage.js';

/*
 * The verify phase of `npm run bench -- --audit`, in a process of its own so its peak RSS is
 * the verifier's, not the writer's: opens the SQLite file, verifies one chain, prints
 * `{ "recordsPerSec": N, "peakRssMb": N, "verifiedThroughSeq": N }` on stdout.
 * Arguments: the file, the root key entry (`id:base64`), the chain id.
 */

const [path, rootKey, chainId] = process.argv.slice(2);
if (!path || !rootKey || !chainId)
  throw new Error('usage: audit-verify.child <path> <key> <chainId>');
const dataSource = await openSqliteDataSource({ path });
const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
const keyRing = new KeyRing(
  storage,
  new EnvKeyProvider({ keys: rootKey, activeKeyId: rootKey.slice(0, rootKey.indexOf(':')) }),
);
const trail = new AuditTrail(storage.audit, new KeyRingAuditKeys(keyRing, 86_400_000), {
  requireActor: true,
  reads: 'group-commit',
});
let peakRss = process.memoryUsage.rss();
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
}, 10);
const started = performance.now();
const result = await runAs({ type: 'service', id: 'bench', tenantId: 'bench' }, () =>
  new AuditService(trail).verify({ chainId }),
);
const ms = performance.now() - started;
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage.rss());
await storage.close();
const verified = result.chains[0]?.verifiedThroughSeq ?? 0;
if (!result.ok) throw new Error(`the chain did not verify: ${JSON.stringify(result.chains[0])}`);
process.stdout.write(
  `${JSON.stringify({
    recordsPerSec: Math.round((verified * 1000) / ms),
    peakRssMb: Math.round((peakRss / (1024 * 1024)) * 10) / 10,
    verifiedThroughSeq: verified,
  })}\n`,
);
