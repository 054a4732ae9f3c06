import {
  Catch,
  HttpStatus,
  Logger,
  type ArgumentsHost,
  type ExceptionFilter,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
// In your app: import { EncryptedSessionError } from 'nest-encrypted-sessions';
import { EncryptedSessionError, type EncryptedSessionErrorCode } from '../../src/index.js';

interface ErrorMapping {
  readonly status: HttpStatus;
  /** Shown instead of the library's message on server-side failures (5xx). */
  readonly publicMessage?: string;
}

/**
 * HTTP status for each library error code. Typed over every code, so a code added to the
 * library fails this file's typecheck until it is mapped.
 */
export const HTTP_STATUS_BY_ERROR_CODE: Readonly<Record<EncryptedSessionErrorCode, ErrorMapping>> =
  {
    INVALID_ARGUMENT: { status: HttpStatus.BAD_REQUEST },
    SESSION_NOT_FOUND: { status: HttpStatus.NOT_FOUND },
    HISTORY_CONFLICT: { status: HttpStatus.CONFLICT },
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
    SHUTTING_DOWN: {
      status: HttpStatus.SERVICE_UNAVAILABLE,
      publicMessage: 'The server is shutting down; retry the request',
    },
  };

/**
 * Turns the module's typed errors into JSON responses `{ statusCode, error, message,
 * retryable }`. Client errors (4xx) carry the module's message, which never contains item
 * content or keys; server errors carry a fixed message and are logged by code.
 */
@Catch(EncryptedSessionError)
export class SessionErrorFilter implements ExceptionFilter<EncryptedSessionError> {
  private readonly logger = new Logger('SessionErrorFilter');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(error: EncryptedSessionError, host: ArgumentsHost): void {
    const { httpAdapter } = this.adapterHost;
    const response = host.switchToHttp().getResponse<unknown>();
    const mapping = HTTP_STATUS_BY_ERROR_CODE[error.code] ?? {
      status: HttpStatus.INTERNAL_SERVER_ERROR,
      publicMessage: 'Internal server error',
    };
    if (mapping.status >= HttpStatus.INTERNAL_SERVER_ERROR) {
      // The module's messages name ids and what to do, never content or key material.
      this.logger.error(`${error.name} (${error.code}): ${error.message}`);
    }
    if (error.retryable) httpAdapter.setHeader(response, 'Retry-After', '1');
    httpAdapter.reply(
      response,
      {
        statusCode: mapping.status,
        error: error.code,
        message: mapping.publicMessage ?? error.message,
        retryable: error.retryable,
      },
      mapping.status,
    );
  }
}
