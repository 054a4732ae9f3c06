import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { redisItemTamperer, startPrivateRedis, type PrivateRedis } from './redis-support.js';
import { assembleHarness, type HarnessFactory } from './session-harness.js';

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

/**
 * A loopback Cluster of `masters` for the enclosing describe block: started before its tests,
 * stopped after them. Its members reach the running cluster.
 */
export function loopbackClusterForSuite(masters = 3): LoopbackCluster {
  let started: LoopbackCluster | undefined;
  beforeAll(async () => {
    started = await startLoopbackCluster(masters);
  }, 30_000);
  afterAll(async () => {
    await started?.stop();
  });
  const running = (): LoopbackCluster => {
    if (!started) throw new Error('The loopback Redis Cluster is not running (outside its suite?)');
    return started;
  };
  return {
    get ports() {
      return running().ports;
    },
    client: () => running().client(),
    stop: async () => started?.stop(),
  };
}

/**
 * Session harnesses on `cluster`: each with a Cluster client and a key prefix of its own, the
 * client disconnected when the harness closes (the cluster goes with its suite).
 */
export function redisClusterHarness(cluster: LoopbackCluster): HarnessFactory {
  return async (options = {}) => {
    const client = cluster.client();
    const keyPrefix = `nes-${randomUUID().slice(0, 8)}:`;
    const storage = new RedisSessionStorage({ client, keyPrefix });
    return assembleHarness('redis-cluster', storage, options, {
      tamper: redisItemTamperer(client, keyPrefix),
      cleanup: async () => client.disconnect(),
    });
  };
}
