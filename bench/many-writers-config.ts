import type { StoreLocation } from './stores.js';

/** Items per `addItems` call of a many-writer process. */
export const MANY_WRITER_BATCH_SIZE = 5;
/** Items each writer appends, untimed, to a session of its own before the start signal. */
export const MANY_WRITER_WARM_ITEMS = 200;
/** Environment variable carrying a writer's {@link WriterConfig} as JSON. */
export const WRITER_CONFIG_VARIABLE = 'NES_BENCH_WRITER_CONFIG';

/** Tenant and session every writer appends to. */
export const SHARED_TENANT_ID = 'bench-tenant';
export const SHARED_SESSION_ID = 'bench-shared-session';

/** What one many-writer child process is told (through {@link WRITER_CONFIG_VARIABLE}). */
export interface WriterConfig {
  readonly location: StoreLocation;
  /** The root key shared by every writer and the parent: base64 of 32 random bytes. */
  readonly rootKey: string;
  /** This writer's number, 0-based. */
  readonly writer: number;
  /** Writes workload items `firstIndex .. firstIndex + count - 1`, in order. */
  readonly firstIndex: number;
  readonly count: number;
}

/*
 * Protocol on the child's stdin/stdout, one line each:
 *   child -> parent  `ready`             storage open, warm, shared data key loaded
 *   parent -> child  `go`                start appending now
 *   child -> parent  `done <ms> <kib>`   appends finished after <ms>; the child's peak RSS
 */
