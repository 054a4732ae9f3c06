import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How a token the server issues behaves. */
export interface VaultTokenSpec {
  /** TTL in seconds; 0 = never expires (like a root token). @default 3600 */
  ttlSeconds?: number;
  /** @default true */
  renewable?: boolean;
  /** Explicit max TTL in seconds from issue; 0 = none. @default 0 */
  maxTtlSeconds?: number;
  /** Policy names (see {@link VaultTestServer.definePolicy}). @default ['all'] */
  policies?: readonly string[];
}

/** Options of {@link VaultTestServer.start}. */
export interface VaultTestServerOptions {
  /** When set, every request must carry this `X-Vault-Namespace`. */
  namespace?: string;
  transitMounts?: readonly string[];
  kvMounts?: readonly string[];
  approleMount?: string;
  kubernetesMount?: string;
}

/** One request as the server saw it. */
export interface VaultCall {
  readonly method: string;
  readonly path: string;
  readonly token: string | undefined;
  readonly namespace: string | undefined;
  status: number;
}

interface TokenState {
  readonly id: string;
  readonly accessor: string;
  readonly policies: readonly string[];
  readonly creationTtl: number;
  readonly renewable: boolean;
  readonly issuedAt: number;
  /** Epoch ms; Infinity for no TTL. */
  expiresAt: number;
  readonly maxExpiresAt: number;
  renewals: number;
}

interface TransitKey {
  readonly name: string;
  readonly derived: boolean;
  readonly versions: Map<number, { key: Buffer; created: number }>;
  latest: number;
  minDecryption: number;
  minEncryption: number;
  deletionAllowed: boolean;
}

interface KvVersion {
  data: Record<string, unknown> | null;
  readonly created: string;
  deletionTime: string;
  destroyed: boolean;
}

interface KvSecret {
  readonly versions: Map<number, KvVersion>;
  current: number;
  oldest: number;
  maxVersions: number;
  casRequired: boolean;
  readonly created: string;
  updated: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: readonly string[],
    readonly body?: object,
  ) {
    super(errors.join('; '));
  }
}

type Json = Record<string, unknown>;

const MISSING_CONTEXT =
  "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";
const TOO_OLD = 'ciphertext or signature version is disallowed by policy (too old)';
const AUTH_FAILED = 'cipher: message authentication failed';
const PERMISSION_DENIED = '1 error occurred:\n\t* permission denied\n\n';
const INVALID_TOKEN = '2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n';
/** Paths the default policy grants every token. */
const SELF_PATHS = ['auth/token/lookup-self', 'auth/token/renew-self', 'auth/token/revoke-self'];
const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DEFAULT_KV_MAX_VERSIONS = 10;

/**
 * A Vault stand-in on loopback speaking Vault's HTTP API as node-vault sends it, with Vault's
 * semantics where the providers depend on them: token TTL, renewal and max TTL, AppRole and
 * Kubernetes logins, path policies (403), derived transit keys with versions,
 * `min_decryption_version`, encrypt/decrypt/rewrap/datakey, KV v2 versions, metadata and
 * check-and-set, and the real error shapes (`{"errors": [...]}`). Faults on demand:
 * throttling (429), failures (503 by default), latency, dropped connections, sealing and
 * going down.
 */
export class VaultTestServer {
  /** A root token: no TTL, every path. */
  readonly rootToken: string;
  readonly calls: VaultCall[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private port = 0;
  private readonly tokens = new Map<string, TokenState>();
  private readonly policies = new Map<string, readonly string[]>([['all', ['*']]]);
  private readonly appRoles = new Map<string, { secretId: string; spec: VaultTokenSpec }>();
  private readonly kubernetesRoles = new Map<string, { jwt: string; spec: VaultTokenSpec }>();
  private readonly transit = new Map<string, Map<string, TransitKey>>();
  private readonly kv = new Map<string, Map<string, KvSecret>>();
  private readonly options: Required<Omit<VaultTestServerOptions, 'namespace'>> & {
    namespace?: string;
  };
  private throttled = 0;
  private failures: { count: number; status: number; pathPrefix?: string } = {
    count: 0,
    status: 503,
  };
  private latencyMs = 0;
  private dropping = false;
  private sealed = false;

  private constructor(options: VaultTestServerOptions) {
    this.options = {
      transitMounts: options.transitMounts ?? ['transit'],
      kvMounts: options.kvMounts ?? ['secret'],
      approleMount: options.approleMount ?? 'approle',
      kubernetesMount: options.kubernetesMount ?? 'kubernetes',
      ...(options.namespace ? { namespace: options.namespace } : {}),
    };
    for (const mount of this.options.transitMounts) this.transit.set(mount, new Map());
    for (const mount of this.options.kvMounts) this.kv.set(mount, new Map());
    this.rootToken = this.issueToken({ ttlSeconds: 0, renewable: false, policies: ['root'] });
    this.server = createServer((request, response) => {
      void this.handle(request, response);
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /** Starts a server on 127.0.0.1 at a random port. */
  static async start(options: VaultTestServerOptions = {}): Promise<VaultTestServer> {
    const server = new VaultTestServer(options);
    await server.listen(0);
    return server;
  }

  /** `http://127.0.0.1:<port>` */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  // ---- tokens and auth -------------------------------------------------------------------

  /** Issues a token as `auth/token/create` would. */
  createToken(spec: VaultTokenSpec = {}): string {
    return this.issueToken(spec);
  }

  /** Grants `paths` (exact, or prefix with a trailing `*`) to tokens holding `name`. */
  definePolicy(name: string, paths: readonly string[]): void {
    this.policies.set(name, paths);
  }

  /** Registers an AppRole; logins with this pair get tokens of `spec`. */
  addAppRole(spec: VaultTokenSpec = {}): { roleId: string; secretId: string } {
    const roleId = randomUUID();
    const secretId = randomUUID();
    this.appRoles.set(roleId, { secretId, spec });
    return { roleId, secretId };
  }

  /** Registers a Kubernetes role accepting exactly `jwt` (default: a fresh JWT-shaped string). */
  addKubernetesRole(
    role: string,
    spec: VaultTokenSpec = {},
    jwt = fakeJwt(role),
  ): { role: string; jwt: string } {
    this.kubernetesRoles.set(role, { jwt, spec });
    return { role, jwt };
  }

  /** Makes `token` expired now, so the next use gets 403. */
  expireToken(token: string): void {
    const state = this.tokens.get(token);
    if (state) state.expiresAt = Date.now() - 1;
  }

  /** Every token issued so far (root included): secrets a test must not find in errors. */
  issuedTokens(): string[] {
    return [...this.tokens.keys()];
  }

  /** Tokens issued by logins and token creation (not root), oldest first. */
  loginTokens(): string[] {
    return [...this.tokens.values()]
      .filter((token) => token.id !== this.rootToken)
      .map((token) => token.id);
  }

  /** Seconds left and renewal count of a token. */
  tokenInfo(token: string): { ttlSeconds: number; renewals: number; expired: boolean } {
    const state = this.tokens.get(token);
    if (!state) throw new Error('unknown token');
    return {
      ttlSeconds: remainingSeconds(state),
      renewals: state.renewals,
      expired: state.expiresAt <= Date.now(),
    };
  }

  // ---- transit and kv shortcuts ----------------------------------------------------------

  /** Creates a transit key (in process, like `vault write transit/keys/<name>`). */
  createTransitKey(name: string, options: { derived?: boolean; mount?: string } = {}): void {
    this.createKey(this.transitMount(options.mount ?? 'transit'), name, options.derived ?? true);
  }

  /** The latest version of a transit key. */
  transitLatestVersion(name: string, mount = 'transit'): number {
    const key = this.transitMount(mount).get(name);
    if (!key) throw new Error(`no transit key ${name}`);
    return key.latest;
  }

  // ---- faults and counters ---------------------------------------------------------------

  /** The next `n` requests get 429 (Vault's rate limit quota error). */
  throttleNext(n: number): void {
    this.throttled = n;
  }

  /** The next `n` requests (to paths starting with `pathPrefix`, if given) get `status`. */
  failNext(n: number, status = 503, pathPrefix?: string): void {
    this.failures = { count: n, status, ...(pathPrefix ? { pathPrefix } : {}) };
  }

  /** Delays every answer by `ms`. */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** While on, every request's connection is destroyed without an answer. */
  dropConnections(on: boolean): void {
    this.dropping = on;
  }

  /** Every request gets 503 "Vault is sealed" until {@link unseal}. */
  seal(): void {
    this.sealed = true;
  }

  unseal(): void {
    this.sealed = false;
  }

  /** Stops listening and cuts open connections: connection refused until {@link up}. */
  async down(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  /** Listens again on the same port. */
  async up(): Promise<void> {
    await this.listen(this.port);
  }

  /** Requests received for `path` (without `/v1/` and query), optionally of one method. */
  callCount(path: string, method?: string): number {
    return this.calls.filter(
      (call) => call.path === path && (method === undefined || call.method === method),
    ).length;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await this.down();
  }

  // ---- HTTP ------------------------------------------------------------------------------

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const path = url.pathname.replace(/^\/v1\//, '');
    const token = header(request, 'x-vault-token');
    const call: VaultCall = {
      method: request.method ?? 'GET',
      path,
      token,
      namespace: header(request, 'x-vault-namespace'),
      status: 0,
    };
    this.calls.push(call);
    if (this.dropping) {
      request.socket.destroy();
      return;
    }
    let raw: string;
    try {
      raw = await readBody(request);
    } catch {
      return;
    }
    if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    let status = 200;
    let body: object | undefined;
    try {
      body = this.route(call, url, raw);
      if (body === undefined) status = 204;
    } catch (error) {
      // Anything but a deliberate HttpError is a bug of this server: answer like Vault's 500.
      status = error instanceof HttpError ? error.status : 500;
      body =
        error instanceof HttpError
          ? (error.body ?? { errors: error.errors })
          : { errors: ['1 error occurred:\n\t* internal error\n\n'] };
    }
    call.status = status;
    if (response.destroyed) return;
    response.statusCode = status;
    if (body === undefined) {
      response.end();
      return;
    }
    response.setHeader('Content-Type', 'application/json');
    response.end(JSON.stringify(body));
  }

  private route(call: VaultCall, url: URL, raw: string): object | undefined {
    const { path } = call;
    if (this.throttled > 0) {
      this.throttled--;
      throw new HttpError(429, [`request path "${path}": rate limit quota exceeded`]);
    }
    const failure = this.failures;
    if (failure.count > 0 && (!failure.pathPrefix || path.startsWith(failure.pathPrefix))) {
      failure.count--;
      throw new HttpError(failure.status, [statusText(failure.status)]);
    }
    if (this.sealed) throw new HttpError(503, ['Vault is sealed']);
    const method = call.method === 'PUT' ? 'POST' : call.method;
    let body: Json = {};
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw) as Json;
      } catch {
        throw new HttpError(400, ['failed to parse JSON input']);
      }
    }
    if (this.options.namespace !== undefined && call.namespace !== this.options.namespace) {
      throw new HttpError(403, [PERMISSION_DENIED]);
    }
    if (path === `auth/${this.options.approleMount}/login` && method === 'POST') {
      return this.approleLogin(body);
    }
    if (path === `auth/${this.options.kubernetesMount}/login` && method === 'POST') {
      return this.kubernetesLogin(body);
    }
    const token = this.authorize(call.token, path);
    if (path === 'auth/token/lookup-self') return this.lookupSelf(token);
    if (path === 'auth/token/renew-self' && method === 'POST') return this.renewSelf(token);
    if (path === 'auth/token/create' && method === 'POST') return this.tokenCreate(body);
    for (const [mount, keys] of this.transit) {
      if (path.startsWith(`${mount}/`)) {
        return this.transitRoute(keys, path.slice(mount.length + 1), method, body);
      }
    }
    for (const [mount, secrets] of this.kv) {
      if (path.startsWith(`${mount}/`)) {
        return this.kvRoute(secrets, path.slice(mount.length + 1), method, body, url);
      }
    }
    throw new HttpError(404, ['1 error occurred:\n\t* unsupported path\n\n']);
  }

  private authorize(token: string | undefined, path: string): TokenState {
    const state = token ? this.tokens.get(token) : undefined;
    if (!state || state.expiresAt <= Date.now()) throw new HttpError(403, [INVALID_TOKEN]);
    if (state.policies.includes('root') || SELF_PATHS.includes(path)) return state;
    const allowed = state.policies.some((name) =>
      (this.policies.get(name) ?? []).some((pattern) =>
        pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern,
      ),
    );
    if (!allowed) throw new HttpError(403, [PERMISSION_DENIED]);
    return state;
  }

  // ---- auth endpoints --------------------------------------------------------------------

  private issueToken(spec: VaultTokenSpec): string {
    const id = `hvs.${randomBytes(24).toString('base64url')}`;
    const now = Date.now();
    const ttl = spec.ttlSeconds ?? 3600;
    const maxTtl = spec.maxTtlSeconds ?? 0;
    const maxExpiresAt = maxTtl > 0 ? now + maxTtl * 1000 : Infinity;
    this.tokens.set(id, {
      id,
      accessor: randomBytes(12).toString('base64url'),
      policies: spec.policies ?? ['all'],
      creationTtl: ttl,
      renewable: spec.renewable ?? true,
      issuedAt: now,
      expiresAt: ttl > 0 ? Math.min(now + ttl * 1000, maxExpiresAt) : Infinity,
      maxExpiresAt,
      renewals: 0,
    });
    return id;
  }

  private authBlock(state: TokenState, metadata: Json | null = null): Json {
    return {
      client_token: state.id,
      accessor: state.accessor,
      policies: ['default', ...state.policies],
      token_policies: ['default', ...state.policies],
      metadata,
      lease_duration: remainingSeconds(state),
      renewable: state.renewable,
      entity_id: '',
      token_type: 'service',
      orphan: true,
    };
  }

  private approleLogin(body: Json): object {
    const role = typeof body.role_id === 'string' ? this.appRoles.get(body.role_id) : undefined;
    if (!role || body.secret_id !== role.secretId) {
      throw new HttpError(400, ['invalid role or secret ID']);
    }
    const state = this.tokens.get(this.issueToken(role.spec))!;
    return envelope({ auth: this.authBlock(state, { role_name: 'app' }) });
  }

  private kubernetesLogin(body: Json): object {
    const name = typeof body.role === 'string' ? body.role : '';
    const role = this.kubernetesRoles.get(name);
    if (!role) throw new HttpError(400, [`invalid role name "${name}"`]);
    if (typeof body.jwt !== 'string' || body.jwt.length === 0) {
      throw new HttpError(400, ['missing jwt']);
    }
    if (body.jwt !== role.jwt) throw new HttpError(403, [PERMISSION_DENIED]);
    const state = this.tokens.get(this.issueToken(role.spec))!;
    return envelope({ auth: this.authBlock(state, { role, service_account_name: 'app' }) });
  }

  private lookupSelf(state: TokenState): object {
    return envelope({
      data: {
        accessor: state.accessor,
        creation_time: Math.floor(state.issuedAt / 1000),
        creation_ttl: state.creationTtl,
        display_name: 'token',
        expire_time: state.expiresAt === Infinity ? null : new Date(state.expiresAt).toISOString(),
        explicit_max_ttl:
          state.maxExpiresAt === Infinity
            ? 0
            : Math.round((state.maxExpiresAt - state.issuedAt) / 1000),
        id: state.id,
        policies: ['default', ...state.policies],
        renewable: state.renewable,
        ttl: remainingSeconds(state),
        type: 'service',
      },
    });
  }

  private renewSelf(state: TokenState): object {
    if (!state.renewable || state.expiresAt === Infinity) {
      throw new HttpError(400, ['lease is not renewable']);
    }
    const now = Date.now();
    const wanted = now + state.creationTtl * 1000;
    const warnings: string[] = [];
    if (wanted > state.maxExpiresAt) {
      const max = Math.max(0, Math.round((state.maxExpiresAt - now) / 1000));
      warnings.push(
        `TTL of "${state.creationTtl}s" exceeded the effective max_ttl of "${max}s"; TTL value is capped accordingly`,
      );
    }
    state.expiresAt = Math.min(wanted, state.maxExpiresAt);
    state.renewals++;
    return envelope({ auth: this.authBlock(state), warnings: warnings.length ? warnings : null });
  }

  private tokenCreate(body: Json): object {
    const policies = Array.isArray(body.policies)
      ? body.policies.filter((p): p is string => typeof p === 'string')
      : undefined;
    const id = this.issueToken({
      ttlSeconds: parseDuration(body.ttl) ?? 3600,
      renewable: body.renewable !== false,
      maxTtlSeconds: parseDuration(body.explicit_max_ttl) ?? 0,
      ...(policies ? { policies } : {}),
    });
    return envelope({ auth: this.authBlock(this.tokens.get(id)!) });
  }

  // ---- transit ---------------------------------------------------------------------------

  private transitMount(mount: string): Map<string, TransitKey> {
    const keys = this.transit.get(mount);
    if (!keys) throw new Error(`no transit mount ${mount}`);
    return keys;
  }

  private createKey(keys: Map<string, TransitKey>, name: string, derived: boolean): TransitKey {
    const existing = keys.get(name);
    if (existing) return existing;
    const key: TransitKey = {
      name,
      derived,
      versions: new Map([[1, { key: randomBytes(32), created: Date.now() }]]),
      latest: 1,
      minDecryption: 1,
      minEncryption: 0,
      deletionAllowed: false,
    };
    keys.set(name, key);
    return key;
  }

  private transitRoute(
    keys: Map<string, TransitKey>,
    rest: string,
    method: string,
    body: Json,
  ): object | undefined {
    const [operation, ...nameParts] = rest.split('/');
    if (operation === 'keys') {
      const [name, action] = nameParts;
      if (!name) throw new HttpError(405, ['unsupported operation']);
      if (action === 'rotate' && method === 'POST') {
        const key = this.requireKey(keys, name);
        key.latest++;
        key.versions.set(key.latest, { key: randomBytes(32), created: Date.now() });
        return envelope({ data: keyInfo(key) });
      }
      if (action === 'config' && method === 'POST') return this.configureKey(keys, name, body);
      if (action !== undefined)
        throw new HttpError(404, ['1 error occurred:\n\t* unsupported path\n\n']);
      if (method === 'GET') {
        const key = keys.get(name);
        if (!key) throw new HttpError(404, []);
        return envelope({ data: keyInfo(key) });
      }
      if (method === 'POST') {
        if (body.type !== undefined && body.type !== 'aes256-gcm96') {
          throw new HttpError(400, [`unknown key type: ${JSON.stringify(body.type)}`]);
        }
        const key = this.createKey(keys, name, body.derived === true || body.derived === 'true');
        return envelope({ data: keyInfo(key) });
      }
      throw new HttpError(405, ['unsupported operation']);
    }
    const name = operation === 'datakey' ? nameParts[1] : nameParts[0];
    if (method !== 'POST' || !name) throw new HttpError(405, ['unsupported operation']);
    const context = decodeOptionalBase64(body.context, 'failed to base64-decode context');
    switch (operation) {
      case 'encrypt': {
        const plaintext = decodeOptionalBase64(body.plaintext, 'failed to base64-decode plaintext');
        if (!plaintext) throw new HttpError(400, ['missing plaintext to encrypt']);
        // Like Vault, encrypt creates a missing key (derived when a context is given).
        const key = keys.get(name) ?? this.createKey(keys, name, context !== undefined);
        return envelope({ data: encryptWith(key, context, plaintext) });
      }
      case 'decrypt': {
        const key = this.requireKeyForUse(keys, name);
        const plaintext = decryptWith(key, context, body.ciphertext);
        return envelope({ data: { plaintext: plaintext.toString('base64') } });
      }
      case 'rewrap': {
        const key = this.requireKeyForUse(keys, name);
        const plaintext = decryptWith(key, context, body.ciphertext);
        return envelope({ data: encryptWith(key, context, plaintext) });
      }
      case 'datakey': {
        const kind = nameParts[0];
        if (kind !== 'plaintext' && kind !== 'wrapped') {
          throw new HttpError(400, ['invalid type']);
        }
        const bits = body.bits === undefined ? 256 : Number(body.bits);
        if (![128, 256, 512].includes(bits)) {
          throw new HttpError(400, ['invalid bits value; valid values are 128, 256, or 512']);
        }
        const key = this.requireKeyForUse(keys, name);
        const dataKey = randomBytes(bits / 8);
        const sealed = encryptWith(key, context, dataKey);
        return envelope({
          data:
            kind === 'plaintext' ? { ...sealed, plaintext: dataKey.toString('base64') } : sealed,
        });
      }
      default:
        throw new HttpError(404, ['1 error occurred:\n\t* unsupported path\n\n']);
    }
  }

  private requireKey(keys: Map<string, TransitKey>, name: string): TransitKey {
    const key = keys.get(name);
    if (!key) throw new HttpError(400, ['key not found']);
    return key;
  }

  private requireKeyForUse(keys: Map<string, TransitKey>, name: string): TransitKey {
    const key = keys.get(name);
    if (!key) throw new HttpError(400, ['encryption key not found']);
    return key;
  }

  private configureKey(keys: Map<string, TransitKey>, name: string, body: Json): object {
    const key = this.requireKey(keys, name);
    if (body.min_decryption_version !== undefined) {
      const min = Number(body.min_decryption_version);
      if (!Number.isInteger(min) || min < 0) {
        throw new HttpError(400, ['min decryption version must be a non-negative integer']);
      }
      if (min > key.latest) {
        throw new HttpError(400, [
          'cannot set min decryption version to a value greater than the latest version',
        ]);
      }
      key.minDecryption = Math.max(1, min);
    }
    if (body.min_encryption_version !== undefined) {
      key.minEncryption = Number(body.min_encryption_version);
    }
    if (body.deletion_allowed !== undefined) key.deletionAllowed = body.deletion_allowed === true;
    return envelope({ data: keyInfo(key) });
  }

  // ---- kv v2 -----------------------------------------------------------------------------

  private kvRoute(
    secrets: Map<string, KvSecret>,
    rest: string,
    method: string,
    body: Json,
    url: URL,
  ): object | undefined {
    const slash = rest.indexOf('/');
    const area = slash > 0 ? rest.slice(0, slash) : rest;
    const path = slash > 0 ? rest.slice(slash + 1) : '';
    if (!path) throw new HttpError(404, []);
    const secret = secrets.get(path);
    switch (`${area} ${method}`) {
      case 'data GET': {
        if (!secret) throw new HttpError(404, []);
        const requested = Number(url.searchParams.get('version') ?? 0);
        const version = requested > 0 ? requested : secret.current;
        const entry = secret.versions.get(version);
        if (!entry) throw new HttpError(404, []);
        const metadata = versionMetadata(version, entry);
        if (entry.destroyed || entry.deletionTime !== '') {
          // Vault answers 404 with the metadata (no errors) for a deleted or destroyed version.
          throw new HttpError(404, [], { data: { data: null, metadata } });
        }
        return envelope({ data: { data: entry.data, metadata } });
      }
      case 'data POST': {
        if (typeof body.data !== 'object' || body.data === null || Array.isArray(body.data)) {
          throw new HttpError(400, ['no data provided']);
        }
        const cas = (body.options as Json | undefined)?.cas;
        const current = secret?.current ?? 0;
        if (cas === undefined && secret?.casRequired) {
          throw new HttpError(400, ['check-and-set parameter required for this call']);
        }
        if (cas !== undefined && Number(cas) !== current) {
          throw new HttpError(400, ['check-and-set parameter did not match the current version']);
        }
        const now = new Date().toISOString();
        const target: KvSecret = secret ?? {
          versions: new Map(),
          current: 0,
          oldest: 0,
          maxVersions: 0,
          casRequired: false,
          created: now,
          updated: now,
        };
        secrets.set(path, target);
        target.current++;
        const entry: KvVersion = {
          data: body.data as Record<string, unknown>,
          created: now,
          deletionTime: '',
          destroyed: false,
        };
        target.versions.set(target.current, entry);
        target.updated = now;
        const keep = target.maxVersions || DEFAULT_KV_MAX_VERSIONS;
        for (const version of [...target.versions.keys()].toSorted((a, b) => a - b)) {
          if (target.versions.size <= keep) break;
          target.versions.delete(version);
        }
        target.oldest = Math.min(...target.versions.keys());
        return envelope({ data: versionMetadata(target.current, entry) });
      }
      case 'data DELETE': {
        const entry = secret?.versions.get(secret.current);
        if (entry && entry.deletionTime === '') entry.deletionTime = new Date().toISOString();
        return undefined;
      }
      case 'delete POST':
      case 'undelete POST':
      case 'destroy POST': {
        if (!secret) return undefined;
        for (const version of versionList(body.versions)) {
          const entry = secret.versions.get(version);
          if (!entry) continue;
          if (area === 'delete' && entry.deletionTime === '') {
            entry.deletionTime = new Date().toISOString();
          } else if (area === 'undelete' && !entry.destroyed) {
            entry.deletionTime = '';
          } else if (area === 'destroy') {
            entry.destroyed = true;
            entry.data = null;
          }
        }
        return undefined;
      }
      case 'metadata GET': {
        if (!secret) throw new HttpError(404, []);
        return envelope({
          data: {
            cas_required: secret.casRequired,
            created_time: secret.created,
            current_version: secret.current,
            custom_metadata: null,
            delete_version_after: '0s',
            max_versions: secret.maxVersions,
            oldest_version: secret.oldest,
            updated_time: secret.updated,
            versions: Object.fromEntries(
              [...secret.versions].map(([version, entry]) => [
                String(version),
                {
                  created_time: entry.created,
                  deletion_time: entry.deletionTime,
                  destroyed: entry.destroyed,
                },
              ]),
            ),
          },
        });
      }
      case 'metadata POST': {
        if (!secret) throw new HttpError(404, []);
        if (body.max_versions !== undefined) secret.maxVersions = Number(body.max_versions);
        if (body.cas_required !== undefined) secret.casRequired = body.cas_required === true;
        return undefined;
      }
      case 'metadata DELETE':
        secrets.delete(path);
        return undefined;
      default:
        throw new HttpError(405, ['unsupported operation']);
    }
  }
}

function envelope(parts: Json): object {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: null,
    wrap_info: null,
    warnings: null,
    auth: null,
    ...parts,
  };
}

function keyInfo(key: TransitKey): Json {
  const versions: Record<string, number> = {};
  for (const [version, entry] of key.versions) {
    // Like Vault, versions below min_decryption_version are archived out of the listing.
    if (version >= key.minDecryption) versions[String(version)] = Math.floor(entry.created / 1000);
  }
  return {
    name: key.name,
    type: 'aes256-gcm96',
    derived: key.derived,
    ...(key.derived ? { kdf: 'hkdf_sha256' } : {}),
    convergent_encryption: false,
    deletion_allowed: key.deletionAllowed,
    exportable: false,
    allow_plaintext_backup: false,
    auto_rotate_period: 0,
    imported_key: false,
    keys: versions,
    latest_version: key.latest,
    min_available_version: 0,
    min_decryption_version: key.minDecryption,
    min_encryption_version: key.minEncryption,
    supports_encryption: true,
    supports_decryption: true,
    supports_derivation: true,
    supports_signing: false,
  };
}

/** The per-version key, derived with the context for derived keys (HKDF-SHA256 as Vault). */
function versionKey(key: TransitKey, version: number, context: Buffer | undefined): Buffer {
  const entry = key.versions.get(version);
  if (!entry) throw new HttpError(400, ['no such key version']);
  if (!key.derived) return entry.key;
  if (!context || context.length === 0) throw new HttpError(400, [MISSING_CONTEXT]);
  return Buffer.from(hkdfSync('sha256', entry.key, Buffer.alloc(0), context, 32));
}

function encryptWith(key: TransitKey, context: Buffer | undefined, plaintext: Buffer): Json {
  const version = key.latest;
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', versionKey(key, version, context), nonce, {
    authTagLength: 16,
  });
  const sealed = Buffer.concat([
    nonce,
    cipher.update(plaintext),
    cipher.final(),
    cipher.getAuthTag(),
  ]);
  return { ciphertext: `vault:v${version}:${sealed.toString('base64')}`, key_version: version };
}

/** Vault's checks and messages, in Vault's order (keysutil.Policy.DecryptWithFactory). */
function decryptWith(key: TransitKey, context: Buffer | undefined, value: unknown): Buffer {
  if (typeof value !== 'string' || value === '') {
    throw new HttpError(400, ['missing ciphertext to decrypt']);
  }
  if (!value.startsWith('vault:v')) throw new HttpError(400, ['invalid ciphertext: no prefix']);
  const rest = value.slice('vault:v'.length);
  const separator = rest.indexOf(':');
  if (separator < 0) throw new HttpError(400, ['invalid ciphertext: wrong number of fields']);
  const version = /^\d+$/.test(rest.slice(0, separator)) ? Number(rest.slice(0, separator)) : NaN;
  if (!Number.isSafeInteger(version)) {
    throw new HttpError(400, ['invalid ciphertext: version number could not be decoded']);
  }
  const effective = version === 0 ? 1 : version;
  if (effective > key.latest) throw new HttpError(400, ['invalid ciphertext: version is too new']);
  if (key.minDecryption > 0 && effective < key.minDecryption) throw new HttpError(400, [TOO_OLD]);
  const encoded = rest.slice(separator + 1);
  if (!STRICT_BASE64.test(encoded)) {
    throw new HttpError(400, ['invalid ciphertext: could not decode base64']);
  }
  const sealed = Buffer.from(encoded, 'base64');
  const derived = versionKey(key, effective, context);
  if (sealed.length < 12 + 16) throw new HttpError(400, ['invalid ciphertext: unable to decrypt']);
  try {
    const decipher = createDecipheriv('aes-256-gcm', derived, sealed.subarray(0, 12), {
      authTagLength: 16,
    });
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([
      decipher.update(sealed.subarray(12, sealed.length - 16)),
      decipher.final(),
    ]);
  } catch {
    throw new HttpError(400, [AUTH_FAILED]);
  }
}

function decodeOptionalBase64(value: unknown, message: string): Buffer | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || !STRICT_BASE64.test(value)) throw new HttpError(400, [message]);
  return Buffer.from(value, 'base64');
}

function versionMetadata(version: number, entry: KvVersion): Json {
  return {
    created_time: entry.created,
    custom_metadata: null,
    deletion_time: entry.deletionTime,
    destroyed: entry.destroyed,
    version,
  };
}

function versionList(value: unknown): number[] {
  const list = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : [];
  return list.map(Number).filter((version) => Number.isSafeInteger(version) && version > 0);
}

function remainingSeconds(state: TokenState): number {
  if (state.expiresAt === Infinity) return 0;
  return Math.max(0, Math.round((state.expiresAt - Date.now()) / 1000));
}

/** Seconds from a number or a Go duration such as `30s`, `5m`, `1h`. */
function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+)([smh]?)$/.exec(value);
  if (!match) return undefined;
  const unit = { '': 1, s: 1, m: 60, h: 3600 }[match[2] as '' | 's' | 'm' | 'h'];
  return Number(match[1]) * unit;
}

function statusText(status: number): string {
  if (status === 503) return 'Vault is sealed';
  if (status === 500) return '1 error occurred:\n\t* internal error\n\n';
  if (status === 502) return 'bad gateway';
  return `status ${status}`;
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function jwtPart(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** A JWT-shaped random string (header.payload.signature), as a service account token looks. */
function fakeJwt(subject: string): string {
  return `${jwtPart({ alg: 'RS256', typ: 'JWT' })}.${jwtPart({ sub: subject, jti: randomUUID() })}.${randomBytes(64).toString('base64url')}`;
}
