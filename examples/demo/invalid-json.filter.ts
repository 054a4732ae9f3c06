import {
  BadRequestException,
  Catch,
  HttpStatus,
  type ArgumentsHost,
  type ExceptionFilter,
} from '@nestjs/common';
import { BaseExceptionFilter, HttpAdapterHost } from '@nestjs/core';

/**
 * Answers a request body that is not valid JSON with a fixed message. The JSON parser's own
 * message quotes the start of the body, which may be the very conversation text the demo must
 * never echo.
 */
@Catch(BadRequestException)
export class InvalidJsonFilter extends BaseExceptionFilter implements ExceptionFilter {
  constructor(private readonly adapterHost: HttpAdapterHost) {
    super(adapterHost.httpAdapter);
  }

  override catch(exception: BadRequestException, host: ArgumentsHost): void {
    if (!(exception.cause instanceof SyntaxError)) {
      super.catch(exception, host);
      return;
    }
    this.adapterHost.httpAdapter.reply(
      host.switchToHttp().getResponse<unknown>(),
      {
        statusCode: HttpStatus.BAD_REQUEST,
        error: 'Bad Request',
        message: 'Request body is not valid JSON',
      },
      HttpStatus.BAD_REQUEST,
    );
  }
}
