import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { StoreLocation } from './throwaway-store.js';

/*
 * The parent's side of `job-replica.child.mjs`: app processes that run the retention purge on
 * its cron against one shared store, for job-replicas.spec.ts.
 */

const CHILD_SCRIPT = fileURLToPath(new URL('./job-replica.child.mjs', import.meta.url));
const REPLY_MARK = '@@nes ';

/** What a replica is told, as JSON in NES_CHILD_CONFIG. */
export interface JobReplicaConfig {
  /** `file:` URL of the compiled library's `index.js`. */
  readonly entryUrl: string;
  readonly backend: StoreLocation;
  /** The `k1:<base64>` root key entry every process shares. */
  readonly rootKey: string;
  readonly leaseTtlSeconds: number;
  readonly batchSize: number;
}

/** One run of the purge, as the replica that made it reported it. */
export interface ReplicaRun {
  readonly pid: number;
  readonly outcome: 'done' | 'failed' | 'lease_lost' | 'skipped';
  readonly startedAt: number;
  readonly finishedAt: number;
  readonly result?: { readonly purged: number; readonly batches: number };
  readonly errorCode?: string;
}

/** One replica process. */
export class JobReplica {
  readonly runs: ReplicaRun[] = [];
  readonly ready: Promise<number>;
  readonly exited: Promise<number | string>;
  private readonly child: ChildProcessWithoutNullStreams;
  private stderr = '';

  constructor(config: JobReplicaConfig) {
    this.child = spawn(process.execPath, [CHILD_SCRIPT], {
      env: { ...process.env, NES_CHILD_CONFIG: JSON.stringify(config) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-8_000);
    });
    let markReady: (pid: number) => void;
    this.ready = new Promise((resolve) => (markReady = resolve));
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (!line.startsWith(REPLY_MARK)) return;
      const event = JSON.parse(line.slice(REPLY_MARK.length)) as
        { event: 'ready'; pid: number } | ({ event: 'run' } & Omit<ReplicaRun, 'pid'>);
      if (event.event === 'ready') markReady(event.pid);
      else this.runs.push({ ...event, pid: this.pid });
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The tail of its stderr, to explain a failure. */
  get errors(): string {
    return this.stderr;
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Ends the process (resumed first, if stopped) and waits for it. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Starts `count` replicas and waits until each has booted. */
export async function startReplicas(
  count: number,
  config: JobReplicaConfig,
  timeoutMs: number,
): Promise<JobReplica[]> {
  const replicas = Array.from({ length: count }, () => new JobReplica(config));
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(
      () =>
        reject(
          new Error(
            `replicas did not boot in time; stderr:\n${replicas.map((r) => r.errors).join('\n')}`,
          ),
        ),
      timeoutMs,
    ).unref(),
  );
  try {
    await Promise.race([
      Promise.all(replicas.map((replica) => replica.ready)),
      timeout,
      ...replicas.map(async (replica) => {
        const status = await replica.exited;
        throw new Error(`a replica exited (${status}) while booting; stderr:\n${replica.errors}`);
      }),
    ]);
  } catch (error) {
    await Promise.all(replicas.map((replica) => replica.stop()));
    throw error;
  }
  return replicas;
}
