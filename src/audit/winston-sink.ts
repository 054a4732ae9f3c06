import { once } from 'node:events';
import { Logger } from '@nestjs/common';
import winston from 'winston';
import type { AuditEvent } from './audit-event.js';
import type { AuditCheckpoint } from './checkpoint.js';

// Counts and transport names only: an event never reaches the module's own log.
const logger = new Logger('AuditSink');

/**
 * How a sink has fared since the app started.
 *
 * @publicApi
 */
export interface AuditSinkStats {
  /** Committed events handed to the logger. */
  readonly delivered: number;
  /** Transport errors reported by the logger (each counted once, never retried). */
  readonly failed: number;
}

/** Injection token of the module's winston sink; null when none is configured. */
export const AUDIT_SINK = Symbol('AUDIT_SINK');

/** The winston message of every checkpoint line a host's own logger receives. */
export const AUDIT_CHECKPOINT_MESSAGE = 'nes.audit.checkpoint';

/** The winston message of every audit line a host's own logger receives. */
export const AUDIT_LOG_MESSAGE = 'nes.audit';

/**
 * A winston logger that writes each event as one JSON line, exactly the stored schema: the
 * module builds it from `options.audit.winston.file`.
 */
export function auditFileLogger(path: string): winston.Logger {
  return winston.createLogger({
    level: 'info',
    format: winston.format.printf((info) => JSON.stringify(info.event ?? info.checkpoint)),
    transports: [new winston.transports.File({ filename: path })],
  });
}

/**
 * The secondary copy of the trail: every event after it committed, and every checkpoint, to a
 * winston logger (the host's, or a JSON-lines file the module opened). The database stays the
 * system of record: a failing transport is counted and reported, and never blocks or fails an
 * operation.
 */
export class WinstonAuditSink {
  private delivered = 0;
  private failed = 0;

  constructor(
    private readonly target: winston.Logger,
    /** Whether this sink opened the logger, and so ends it at shutdown. */
    private readonly ownsLogger: boolean,
  ) {
    target.on('error', (error: unknown) => {
      this.failed++;
      logger.warn(
        `An audit log transport failed (${error instanceof Error ? error.name : 'error'}); the events stay in the database (${this.failed} failure(s) so far)`,
      );
    });
  }

  /** Hands committed events to the logger; never throws. */
  write(events: readonly AuditEvent[]): void {
    for (const event of events) {
      try {
        this.target.log({ level: 'info', message: AUDIT_LOG_MESSAGE, event });
        this.delivered++;
      } catch {
        this.failed++;
      }
    }
  }

  /** Hands a signed checkpoint to the logger (its copy outside the database); never throws. */
  writeCheckpoint(checkpoint: AuditCheckpoint): void {
    try {
      this.target.log({ level: 'info', message: AUDIT_CHECKPOINT_MESSAGE, checkpoint });
      this.delivered++;
    } catch {
      this.failed++;
    }
  }

  stats(): AuditSinkStats {
    return { delivered: this.delivered, failed: this.failed };
  }

  /**
   * Flushes and closes a logger the module opened: `end()`, then waits until every transport
   * finished writing. A host's own logger is left open (the host ends it).
   */
  async close(): Promise<void> {
    if (!this.ownsLogger) return;
    const finished = this.target.transports.map((transport) => once(transport, 'finish'));
    this.target.end();
    await Promise.all(finished);
  }
}
