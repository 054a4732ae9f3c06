import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { startPrivateRedis, type PrivateRedis } from './redis-support.js';

/** Hash slots of a Redis Cluster. */
const SLOTS = 16_384;

/** A throwaway Redis Cluster of masters on loopback, with no replicas and no persistence. */
export interface LoopbackCluster {
  /** The masters' ports, in slot order (the first serves slot 0). */
  readonly ports: readonly number[];
  /** An ioredis Cluster client on it; the caller disconnects it. */
  client(): Cluster;
  /** Stops every node and deletes their config files. */
  stop(): Promise<void>;
}

/**
 * Starts `masters` cluster-enabled redis-servers on free loopback ports, gives each an equal
 * share of the slots, joins them and waits until every node reports the cluster ok.
 */
export async function startLoopbackCluster(masters = 3): Promise<LoopbackCluster> {
  const directory = mkdtempSync(join(tmpdir(), 'nes-redis-cluster-'));
  const nodes: PrivateRedis[] = [];
  const admins: Redis[] = [];
  const stop = async () => {
    for (const admin of admins) admin.disconnect();
    await Promise.all(nodes.map((node) => node.stop()));
    rmSync(directory, { recursive: true, force: true });
  };
  try {
    for (let index = 0; index < masters; index++) {
      const node = await startPrivateRedis([
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(directory, `nodes-${index}.conf`),
        '--cluster-node-timeout',
        '5000',
        '--dir',
        directory,
      ]);
      nodes.push(node);
      admins.push(new Redis({ host: '127.0.0.1', port: node.port, lazyConnect: true }));
    }
    const share = Math.ceil(SLOTS / masters);
    for (const [index, admin] of admins.entries()) {
      const first = index * share;
      const last = Math.min(SLOTS, first + share) - 1;
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', first, last);
    }
    for (const node of nodes.slice(1)) {
      await admins[0].call('CLUSTER', 'MEET', '127.0.0.1', node.port);
    }
    const deadline = Date.now() + 20_000;
    for (;;) {
      const infos = await Promise.all(admins.map((admin) => admin.call('CLUSTER', 'INFO')));
      const ready = infos.every(
        (info) =>
          String(info).includes('cluster_state:ok') &&
          String(info).includes(`cluster_known_nodes:${masters}`),
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error('The loopback Redis Cluster did not form');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const ports = nodes.map((node) => node.port);
  return {
    ports,
    client: () =>
      new Cluster(
        ports.map((port) => ({ host: '127.0.0.1', port })),
        { redisOptions: { maxRetriesPerRequest: 1 } },
      ),
    stop,
  };
}
