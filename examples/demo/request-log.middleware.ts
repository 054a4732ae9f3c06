import type { ServerResponse } from 'node:http';
import type { LoggerService } from '@nestjs/common';
import { describeRequestForLog, type DemoRequest } from './demo-request.js';

/** An Express-style middleware function. */
export type DemoMiddleware = (
  request: DemoRequest,
  response: ServerResponse,
  next: () => void,
) => void;

/**
 * Logs one line per request once its response is sent, naming the tenant it acted for:
 * `tenant "acme" POST /sessions/demo-1/items -> 201 (4 ms)`. Installed before the body parser,
 * so refused bodies (not JSON, too large) are logged too.
 */
export function requestLogMiddleware(logger: LoggerService): DemoMiddleware {
  return (request, response, next) => {
    const started = performance.now();
    response.once('finish', () => {
      const elapsedMs = Math.round(performance.now() - started);
      logger.log(`${describeRequestForLog(request)} -> ${response.statusCode} (${elapsedMs} ms)`);
    });
    next();
  };
}
