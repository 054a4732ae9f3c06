import { Logger, type LoggerService } from '@nestjs/common';

const toStderr =
  (level: string) =>
  (message: unknown, ...context: unknown[]): void => {
    const where = context.length > 0 ? ` [${context.map(String).join(' ')}]` : '';
    process.stderr.write(`[nest ${level}]${where} ${String(message)}\n`);
  };

const ignore = (): void => undefined;

/**
 * Routes Nest's static `Logger` (which the library's classes log through) to stderr and keeps
 * only `warn`, `error` and `fatal`, as a production host configures its logger. Without this,
 * Nest's default console logger prints every level, to stdout: the library's per-call `verbose`
 * lines would corrupt `--json` output and their terminal writes would be timed as session work.
 */
export function installBenchLogger(): void {
  const logger: LoggerService = {
    log: ignore,
    debug: ignore,
    verbose: ignore,
    warn: toStderr('warn'),
    error: toStderr('error'),
    fatal: toStderr('fatal'),
  };
  Logger.overrideLogger(logger);
}
