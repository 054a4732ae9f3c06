import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

/** What the proxy does to a connection once a request matching the trigger passes through. */
export type ReplyFault =
  /** The matching request (and every later one) never reaches the server. */
  | 'hold-requests'
  /** The matching request reaches the server, but no reply from then on reaches the client. */
  | 'drop-replies';

interface Pair {
  readonly client: Socket;
  readonly server: Socket;
  fault: ReplyFault | undefined;
}

/**
 * A loopback TCP proxy in front of Redis that can lose a call on the wire: armed with a trigger
 * (a pattern in the request bytes, e.g. the commit's EVALSHA), it holds the request or drops the
 * replies of the one connection that sent it, so the call is in flight with no reply coming.
 * The connection can then be cut here or killed server-side (CLIENT KILL by {@link upstreamAddr}).
 * Connections opened after the trigger fired pass untouched.
 */
export class RedisFaultProxy {
  private readonly pairs = new Set<Pair>();
  private trigger: { pattern: RegExp; fault: ReplyFault } | undefined;
  private faulted: Pair | undefined;
  private fired: (() => void) | undefined;

  private constructor(
    private readonly server: Server,
    /** The port clients connect to. */
    readonly port: number,
  ) {}

  /** Starts a proxy on 127.0.0.1 (a free port) in front of `target`. */
  static async start(target: { host: string; port: number }): Promise<RedisFaultProxy> {
    let proxy: RedisFaultProxy | undefined;
    const server = createServer((client) => proxy!.accept(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new RedisFaultProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  /** The url of Redis database `db` through this proxy. */
  url(db = 0): string {
    return `redis://127.0.0.1:${this.port}/${db}`;
  }

  /**
   * Arms the proxy: the next request whose bytes match `pattern` gets `fault` on its connection.
   * Resolves once it did.
   */
  arm(pattern: RegExp, fault: ReplyFault): Promise<void> {
    this.trigger = { pattern, fault };
    return new Promise((resolve) => (this.fired = resolve));
  }

  /** `ip:port` of the faulted connection as Redis sees it, for `CLIENT KILL ADDR`. */
  get upstreamAddr(): string {
    const socket = this.faulted?.server;
    if (!socket) throw new Error('no faulted connection');
    return `${socket.localAddress}:${socket.localPort}`;
  }

  /** Cuts the faulted connection (both sides), as a network failure would. */
  cutFaulted(): void {
    const pair = this.faulted;
    if (!pair) throw new Error('no faulted connection');
    pair.client.destroy();
    pair.server.destroy();
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.server.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    const server = connect(target.port, target.host);
    const pair: Pair = { client, server, fault: undefined };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('error', end).on('close', end);
    server.on('error', end).on('close', end);
    client.on('data', (chunk: Buffer) => {
      if (!pair.fault && this.trigger?.pattern.test(chunk.toString('latin1'))) {
        pair.fault = this.trigger.fault;
        this.trigger = undefined;
        this.faulted = pair;
        this.fired?.();
      }
      if (pair.fault !== 'hold-requests') server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (pair.fault !== 'drop-replies') client.write(chunk);
    });
  }
}
