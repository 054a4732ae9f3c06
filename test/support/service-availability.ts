import { connect } from 'node:net';

/** A database server the integration tests and the benchmark run against. */
export type LocalServerType = 'postgres' | 'mysql' | 'redis';

/** How a {@link LOCAL_SERVERS} entry describes its server. */
export interface LocalServer {
  /** Its name in messages. */
  readonly name: string;
  /** The URL to reach it by default: an admin connection for the SQL servers. */
  readonly url: string;
  /** Its port when a URL gives none. */
  readonly port: number;
  /** How to start it on this machine class (no systemd). */
  readonly start: string;
}

/** The servers as this machine class runs them; tests and the benchmark each take overrides. */
export const LOCAL_SERVERS: Readonly<Record<LocalServerType, LocalServer>> = {
  postgres: {
    name: 'PostgreSQL',
    url: 'postgres://postgres@127.0.0.1:5432/postgres',
    port: 5432,
    start: 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
  },
  mysql: {
    name: 'MariaDB/MySQL',
    url: 'mysql://root@127.0.0.1:3306/test',
    port: 3306,
    start: 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd',
  },
  redis: {
    name: 'Redis',
    url: 'redis://127.0.0.1:6379/0',
    port: 6379,
    start:
      'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
  },
};

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
