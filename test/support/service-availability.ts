import { connect } from 'node:net';

/** Whether a TCP service answers on loopback within `timeoutMs`. */
export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Decides whether a suite that needs a server runs. Outside CI a missing server skips the
 * suite with a loud warning; under `CI=true` it fails the run instead, so CI is never green
 * by skipping.
 */
export function requireService(name: string, up: boolean, howToStart: string): boolean {
  if (up) return true;
  const message = `${name} is not reachable: ${howToStart}`;
  if (process.env.CI === 'true')
    throw new Error(`${message} (CI=true: failing instead of skipping)`);
  process.stderr.write(`\n!!! SKIPPING ${name} tests. ${message}\n\n`);
  return false;
}
