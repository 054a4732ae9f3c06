import { NETWORK_ERROR_CODES } from '../../errors/network-errors.js';
import {
  AuditWriteError,
  EncryptedSessionError,
  IntegrityError,
  StorageUnavailableError,
} from '../../errors/index.js';

/** Socket errors meaning the server could not be reached or the connection broke. */

/** Error replies of a server that is up but cannot serve right now (loading, failover, busy). */
const TRANSIENT_REPLIES = new Set([
  'LOADING',
  'MASTERDOWN',
  'CLUSTERDOWN',
  'TRYAGAIN',
  'READONLY',
  'BUSY',
]);

/** ioredis errors (by message) raised when no connection could carry the command. */
const CLIENT_MESSAGES = new Map([
  ['Connection is closed.', 'connection closed'],
  ['Command timed out', 'command timed out'],
  ['None of startup nodes is available', 'no cluster node available'],
  ['Failed to refresh slots cache.', 'cluster slots unavailable'],
]);

/**
 * A call that got no reply within its bound. The reply may be lost for good: an ioredis client
 * built with `autoResendUnfulfilledCommands: false` drops the commands a broken connection
 * carried without ever settling them, and any client waits forever on a connection that went
 * silent without closing.
 */
export class RedisReplyTimeoutError extends Error {
  override readonly name = 'RedisReplyTimeoutError';

  constructor(readonly timeoutMs: number) {
    super(`No reply from Redis within ${timeoutMs} ms`);
  }
}

/** `pending`, or a RedisReplyTimeoutError once `timeoutMs` passed without it settling. */
export function withinDeadline<T>(pending: Promise<T>, timeoutMs: number): Promise<T> {
  // A reply (or failure) arriving after the deadline has no one left to tell.
  pending.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisReplyTimeoutError(timeoutMs)), timeoutMs);
  });
  return Promise.race([pending, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Why `error` means Redis is unavailable for now (a short code, safe to log), or undefined when
 * it is some other failure.
 */
export function redisUnavailableReason(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  if (error instanceof RedisReplyTimeoutError) return `no reply within ${error.timeoutMs} ms`;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return code;
  if (error.name === 'MaxRetriesPerRequestError') return error.name;
  if (error.name === 'ClusterAllFailedError') return error.name;
  const clientReason = CLIENT_MESSAGES.get(error.message);
  if (clientReason) return clientReason;
  if (error.message.startsWith("Stream isn't writeable")) return 'offline';
  const replyCode = error.message.split(' ', 1)[0];
  if (replyCode && TRANSIENT_REPLIES.has(replyCode)) return replyCode;
  return undefined;
}

/**
 * ioredis attaches the failed command, arguments included, to its errors; the commit's
 * arguments are ciphertexts and wrapped keys, which have no place in a log.
 */
function dropCommandArguments(error: unknown): void {
  const command = (error as { command?: { args?: unknown } } | null)?.command;
  if (command && typeof command === 'object' && Array.isArray(command.args)) {
    command.args = [`<${command.args.length} arguments omitted>`];
  }
}

/**
 * Runs a Redis call, turning "Redis is unavailable" failures (and no reply within `timeoutMs`,
 * when given) into a retryable StorageUnavailableError; a key of the wrong type is an
 * IntegrityError; other errors pass through (with command arguments dropped).
 */
export async function translateRedisErrors<T>(
  call: () => Promise<T>,
  timeoutMs?: number,
): Promise<T> {
  try {
    return await (timeoutMs === undefined ? call() : withinDeadline(call(), timeoutMs));
  } catch (error) {
    dropCommandArguments(error);
    if (error instanceof Error && error.message.includes('WRONGTYPE')) {
      throw new IntegrityError(
        'A key of the session store in Redis holds the wrong type of value (WRONGTYPE): it was overwritten outside this module. Nothing was deleted; restore it from a backup or clear the session',
      );
    }
    const reason = redisUnavailableReason(error);
    if (reason === undefined) throw error;
    throw new StorageUnavailableError(`Redis is unreachable (${reason}); retry the call`, {
      cause: error,
    });
  }
}

/**
 * The AuditWriteError of an audit write Redis refused for a reason a retry cannot fix (out of
 * memory under `noeviction`, a script error). It names no key, id or value.
 */
export function redisAuditRefused(cause?: unknown): AuditWriteError {
  return new AuditWriteError(
    "Redis refused this operation's audit record, so the operation failed and nothing of it was stored. Check the Redis server (maxmemory and its eviction policy, the server log, a script error), then retry",
    { cause },
  );
}

/** The AuditWriteError of an audit key holding another type of value than the module writes. */
export function redisAuditKeyWrongType(): AuditWriteError {
  return new AuditWriteError(
    'A key of the audit trail in Redis holds another type of value than this module writes there (it was overwritten outside the module), so the operation failed and nothing of it was stored. Verify the audit chain and restore its keys from a backup, then retry',
  );
}

/**
 * Runs a write that carries audit records. Redis being unavailable stays a retryable
 * StorageUnavailableError and the module's own errors pass unchanged; any other failure is
 * Redis refusing the write, so the operation fails closed with AuditWriteError (the scripts
 * check before they write, and Redis refuses a script out of memory at its first write, so
 * nothing of it is stored).
 */
export async function failClosedOnAudit<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (error instanceof EncryptedSessionError) throw error;
    throw redisAuditRefused(error);
  }
}
