import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { AgentInputItem } from '@openai/agents-core';
import type { StoreLocation } from './throwaway-store.js';

/*
 * The parent's side of `many-writers.child.mjs`: writer processes that append to one session of
 * a shared store, for many-writers.spec.ts and the benchmark's many-writer phase. No vitest here:
 * the benchmark loads this file.
 */

/**
 * The child script. Resolved next to this file: the benchmark's build emits it beside the
 * compiled `writer-process.js` (`allowJs` in tsconfig.bench.json).
 */
const CHILD_SCRIPT = fileURLToPath(new URL('./many-writers.child.mjs', import.meta.url));
const REPLY_MARK = '@@nes ';

/** What a writer is told, as JSON in NES_CHILD_CONFIG. */
export interface WriterConfig {
  /** `file:` URL of the compiled library's `index.js`, which the child imports. */
  readonly entryUrl: string;
  readonly backend: StoreLocation;
  /** The `k1:<base64>` root key entry; every process, parent included, must share it. */
  readonly rootKey: string;
  /** The session every writer appends to (default tenant). */
  readonly sessionId: string;
  /** This writer's number, 0-based: its items are `w<writer>-<n>`. */
  readonly writer: number;
  /** Pads each item's content with dots to this many characters (see {@link writerItemContent}). */
  readonly contentLength?: number;
}

/** A line the parent sends. */
export type WriterCommand =
  | { cmd: 'warm-up'; count: number; batchSize: number }
  | { cmd: 'append'; count: number; batchSize: number }
  | { cmd: 'apply'; operationId: string; items: AgentInputItem[] }
  | { cmd: 'exit' };

/** A line the child answers with. */
export type WriterReply =
  | { event: 'ready'; pid: number }
  | { event: 'warm' }
  | {
      event: 'appended';
      /** Codes of the retryable errors it repeated a call after. */
      retryCodes: string[];
      elapsedMs: number;
      /** The child's peak RSS so far (`process.resourceUsage().maxRSS`). */
      maxRssKiB: number;
    }
  | { event: 'applied'; operationId: string; retryCodes: string[] }
  | { event: 'error'; name: string; code?: string; message: string; stack: string };

/** The content of writer `writer`'s item `n`, exactly as the child writes it. */
export function writerItemContent(writer: number, n: number, contentLength = 0): string {
  return `w${writer}-${n}`.padEnd(contentLength, '.');
}

/** One writer process, driven line by line over stdin/stdout. */
export class WriterProcess {
  /** Resolves with the exit status, or the signal that ended the process. */
  readonly exited: Promise<number | string>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly replies: WriterReply[] = [];
  private waiter: ((reply: WriterReply | Error) => void) | undefined;
  private exitError: Error | undefined;
  private stderr = '';

  /** @param replyTimeoutMs longest the child may take to start or to answer one command */
  constructor(
    config: WriterConfig,
    private readonly replyTimeoutMs: number,
  ) {
    this.child = spawn(process.execPath, [CHILD_SCRIPT], {
      env: { ...process.env, NES_CHILD_CONFIG: JSON.stringify(config) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => {
      // Keep the tail: it explains a crash.
      this.stderr = (this.stderr + chunk).slice(-8_000);
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (line.startsWith(REPLY_MARK)) this.deliver(JSON.parse(line.slice(REPLY_MARK.length)));
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitError = new Error(
          `writer process exited (code ${code}, signal ${signal}) before replying; stderr:\n${this.stderr}`,
        );
        this.deliver(this.exitError);
        resolve(code ?? signal ?? 'unknown');
      });
      this.child.on('error', (error) => {
        this.exitError = new Error(`writer process failed to start: ${error.message}`);
        this.deliver(this.exitError);
        resolve(`not started: ${error.message}`);
      });
    });
  }

  private deliver(reply: WriterReply | Error): void {
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter(reply);
    } else if (!(reply instanceof Error)) {
      this.replies.push(reply);
    }
  }

  send(command: WriterCommand): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** The next reply; a child that crashed or hangs fails with its stderr. */
  nextReply(): Promise<WriterReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.exitError) return Promise.reject(this.exitError);
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`writer process did not reply in time; stderr:\n${this.stderr}`));
      }, this.replyTimeoutMs);
      this.waiter = (reply) => {
        clearTimeout(timer);
        if (reply instanceof Error) reject(reply);
        else resolvePromise(reply);
      };
    });
  }

  /** The next reply, which must be `event`; an `error` reply fails with the child's error. */
  async expectReply<E extends WriterReply['event']>(
    event: E,
  ): Promise<Extract<WriterReply, { event: E }>> {
    const reply = await this.nextReply();
    if (reply.event !== event) {
      const detail =
        reply.event === 'error' ? `${reply.name} ${reply.code ?? ''}: ${reply.stack}` : '';
      throw new Error(`expected '${event}' from the writer, got '${reply.event}' ${detail}`);
    }
    return reply as Extract<WriterReply, { event: E }>;
  }

  /**
   * Asks the child to close its storage and exit; kills it if it does not. Resolves with how
   * it ended (see {@link exited}).
   */
  async stop(): Promise<number | string> {
    const ended = this.exitError || this.child.exitCode !== null || this.child.signalCode !== null;
    if (ended) return this.exited;
    this.send({ cmd: 'exit' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const how = await this.exited;
    clearTimeout(timer);
    return how;
  }
}

/**
 * Starts `count` writers (`configOf(writer)` each) and waits until each has opened the session;
 * if one fails to, stops them all and throws.
 */
export async function startWriters(
  count: number,
  configOf: (writer: number) => WriterConfig,
  replyTimeoutMs: number,
): Promise<WriterProcess[]> {
  const writers = Array.from(
    { length: count },
    (_, writer) => new WriterProcess(configOf(writer), replyTimeoutMs),
  );
  try {
    await Promise.all(writers.map((writer) => writer.expectReply('ready')));
  } catch (error) {
    await Promise.all(writers.map((writer) => writer.stop()));
    throw error;
  }
  return writers;
}
