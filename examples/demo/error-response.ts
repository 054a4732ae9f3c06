import { STATUS_CODES } from 'node:http';
import { HttpException, HttpStatus } from '@nestjs/common';
// In your app: import { EncryptedSessionError } from 'nest-encrypted-sessions';
import { EncryptedSessionError, type EncryptedSessionErrorCode } from '../../src/index.js';
import { JSON_BODY_LIMIT_TEXT } from './demo-request.js';

/** The JSON body of every error response of the demo, whatever failed. */
export interface ErrorBody {
  /** The HTTP status, repeated. */
  readonly statusCode: number;
  /**
   * Stable, machine-readable code: the library's error code (`INVALID_ARGUMENT`, `INTEGRITY`,
   * ...) or one of the demo's (`INVALID_JSON`, `UNSUPPORTED_MEDIA_TYPE`, `PAYLOAD_TOO_LARGE`,
   * `SESSION_EMPTY`, `NOT_FOUND`, `INTERNAL`).
   */
  readonly error: string;
  /** What happened and what to do. Never item content or key material. */
  readonly message: string;
  /** True when the same request may succeed later, unchanged (then `Retry-After` is set too). */
  readonly retryable: boolean;
}

/** What the demo answers for one exception, and what it logs. */
export interface ErrorResponse {
  readonly body: ErrorBody;
  /** Server-side detail for the log, on 5xx answers only; never sent to the client. */
  readonly logDetail?: string;
}

interface ErrorMapping {
  readonly status: HttpStatus;
  /** Shown instead of the library's message on server-side failures (5xx). */
  readonly publicMessage?: string;
}

/**
 * HTTP status for each library error code. Typed over every code, so a code added to the
 * library fails this file's typecheck until it is mapped; a code from another version of the
 * library than the one compiled against still becomes 500.
 */
export const HTTP_STATUS_BY_ERROR_CODE: Readonly<Record<EncryptedSessionErrorCode, ErrorMapping>> =
  {
    INVALID_ARGUMENT: { status: HttpStatus.BAD_REQUEST },
    SESSION_NOT_FOUND: { status: HttpStatus.NOT_FOUND },
    HISTORY_CONFLICT: { status: HttpStatus.CONFLICT },
    // Held data cannot be erased until the hold is released: the request conflicts with it.
    LEGAL_HOLD: { status: HttpStatus.CONFLICT },
    KEY_DESTROYED: {
      status: HttpStatus.GONE,
      publicMessage: 'The data key of these items was destroyed; they cannot be read again',
    },
    // Tampered or corrupted rows: the caller cannot fix it, so a server error, with no detail.
    INTEGRITY: {
      status: HttpStatus.INTERNAL_SERVER_ERROR,
      publicMessage: 'Stored session data failed its integrity check; nothing was deleted',
    },
    CONFIGURATION: {
      status: HttpStatus.INTERNAL_SERVER_ERROR,
      publicMessage: 'The server is misconfigured; see its log',
    },
    // The provider refuses the root key (disabled, scheduled for deletion, denied): an operator acts.
    KEY_UNUSABLE: {
      status: HttpStatus.INTERNAL_SERVER_ERROR,
      publicMessage: 'The key provider refuses the root key; see the server log',
    },
    KEY_PROVIDER_UNAVAILABLE: {
      status: HttpStatus.SERVICE_UNAVAILABLE,
      publicMessage: 'The key provider is unavailable; retry later',
    },
    STORAGE_UNAVAILABLE: {
      status: HttpStatus.SERVICE_UNAVAILABLE,
      publicMessage: 'Session storage is busy or unavailable; retry later',
    },
    // Only a job's own writes raise it; a request never should.
    LEASE_LOST: {
      status: HttpStatus.SERVICE_UNAVAILABLE,
      publicMessage: 'A maintenance job lost its lease; retry later',
    },
    SHUTTING_DOWN: {
      status: HttpStatus.SERVICE_UNAVAILABLE,
      publicMessage: 'The server is shutting down; retry the request',
    },
    // The request named no actor (the demo reads it from a header): the client must say who.
    AUDIT_ACTOR_REQUIRED: { status: HttpStatus.UNAUTHORIZED },
    // Fail closed: the audit record could not be written, so nothing of the request was stored.
    AUDIT_WRITE_FAILED: {
      status: HttpStatus.SERVICE_UNAVAILABLE,
      publicMessage: 'The audit trail refused the record of this request; nothing was stored',
    },
  };

/**
 * Maps anything a request can throw to one {@link ErrorBody} shape:
 *
 * - the module's typed errors by code (table above); 4xx carry the module's message, which never
 *   contains item content or keys, 5xx a fixed one;
 * - Nest and body-parser `HttpException`s by status (`NOT_FOUND`, `PAYLOAD_TOO_LARGE`, ...), or
 *   by the `code` the demo put in the exception's response object;
 * - anything else as `500 INTERNAL`.
 */
export function errorResponseOf(exception: unknown): ErrorResponse {
  if (exception instanceof EncryptedSessionError) return libraryErrorResponse(exception);
  if (exception instanceof HttpException) return httpExceptionResponse(exception);
  return {
    body: errorBody(HttpStatus.INTERNAL_SERVER_ERROR, 'INTERNAL', 'Internal server error', false),
    logDetail:
      exception instanceof Error
        ? (exception.stack ?? `${exception.name}: ${exception.message}`)
        : `a thrown ${typeof exception}`,
  };
}

function libraryErrorResponse(error: EncryptedSessionError): ErrorResponse {
  const mapping = HTTP_STATUS_BY_ERROR_CODE[error.code] ?? {
    status: HttpStatus.INTERNAL_SERVER_ERROR,
    publicMessage: 'Internal server error',
  };
  const body = errorBody(
    mapping.status,
    error.code,
    mapping.publicMessage ?? error.message,
    error.retryable,
  );
  // The module's messages name ids and what to do, never content or key material.
  return mapping.status >= HttpStatus.INTERNAL_SERVER_ERROR
    ? { body, logDetail: `${error.name} (${error.code}): ${error.message}` }
    : { body };
}

function httpExceptionResponse(exception: HttpException): ErrorResponse {
  // Plain numbers here: a status may be any HTTP code, not only a member of Nest's HttpStatus.
  const status = exception.getStatus();
  const statusText = STATUS_CODES[status] ?? 'Error';
  if (status >= 500) {
    return {
      body: errorBody(status, codeOf(statusText), statusText, status === 503),
      logDetail: `${exception.name}: ${exception.message}`,
    };
  }
  if (status === 400 && exception.cause instanceof SyntaxError) {
    // The JSON parser's own message quotes the start of the body, which may be the very
    // conversation text the demo must never echo.
    return { body: errorBody(status, 'INVALID_JSON', 'Request body is not valid JSON', false) };
  }
  if (status === 413) {
    const message = `Request body is larger than the demo's limit of ${JSON_BODY_LIMIT_TEXT}; send fewer or smaller items per request`;
    return { body: errorBody(status, 'PAYLOAD_TOO_LARGE', message, false) };
  }
  const response = exception.getResponse();
  const fields: { code?: unknown; message?: unknown } =
    typeof response === 'object' && response !== null ? response : { message: response };
  const code = typeof fields.code === 'string' ? fields.code : codeOf(statusText);
  return {
    body: errorBody(status, code, messageOf(fields.message) ?? statusText, status === 429),
  };
}

function errorBody(
  statusCode: number,
  error: string,
  message: string,
  retryable: boolean,
): ErrorBody {
  return { statusCode, error, message, retryable };
}

/** `Payload Too Large` -> `PAYLOAD_TOO_LARGE`. */
function codeOf(statusText: string): string {
  return statusText
    .toUpperCase()
    .replace(/[^A-Z0-9]+/g, '_')
    .replace(/^_|_$/g, '');
}

function messageOf(message: unknown): string | undefined {
  if (typeof message === 'string') return message;
  // Nest's ValidationPipe answers with a list of messages.
  if (Array.isArray(message) && message.every((part) => typeof part === 'string')) {
    return message.join('; ');
  }
  return undefined;
}
