import { Catch, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { describeRequestForLog, type DemoRequest } from './demo-request.js';
import { errorResponseOf } from './error-response.js';

/**
 * Answers every error of the demo with one JSON shape, `{ statusCode, error, message, retryable }`
 * (see `errorResponseOf`): the module's typed errors, Nest's and the body parser's HTTP errors
 * and anything unexpected alike. Sets `Retry-After` on retryable errors and logs server-side
 * failures with the tenant and route they happened on.
 */
@Catch()
export class DemoExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('DemoExceptionFilter');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const { httpAdapter } = this.adapterHost;
    const http = host.switchToHttp();
    const response = http.getResponse<unknown>();
    const { body, logDetail } = errorResponseOf(exception);
    if (logDetail !== undefined) {
      const request = describeRequestForLog(http.getRequest<DemoRequest>());
      this.logger.error(`${request} -> ${body.statusCode} ${body.error}: ${logDetail}`);
    }
    if (body.retryable) httpAdapter.setHeader(response, 'Retry-After', '1');
    httpAdapter.reply(response, body, body.statusCode);
  }
}
