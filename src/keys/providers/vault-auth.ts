import { readFile } from 'node:fs/promises';
import { Logger } from '@nestjs/common';
import {
  ConfigurationError,
  EncryptedSessionError,
  KeyProviderUnavailableError,
  KeyUnusableError,
} from '../../errors/index.js';
import type NodeVault from 'node-vault';

/** A node-vault 0.12 client, as `require('node-vault')(options)` returns it. */
export type VaultClient = NodeVault.client;

/** How the provider logs in to Vault. */
export type VaultAuthOptions =
  | {
      method: 'token';
      /** A Vault token. Renewed while renewable; never logged. */
      token: string;
    }
  | {
      method: 'approle';
      roleId: string;
      /** Never logged. */
      secretId: string;
      /** Mount path of the AppRole auth method. @default 'approle' */
      mountPath?: string;
    }
  | {
      method: 'kubernetes';
      /** Vault role bound to the pod's service account. */
      role: string;
      /** The service account JWT; when left out, read from `jwtPath` at every login. */
      jwt?: string;
      /** @default '/var/run/secrets/kubernetes.io/serviceaccount/token' */
      jwtPath?: string;
      /** Mount path of the Kubernetes auth method. @default 'kubernetes' */
      mountPath?: string;
    };

/** Connection options shared by the Vault key providers. */
export interface VaultConnectionOptions {
  /** Vault's address, e.g. `https://vault.internal:8200`. Required unless `client` is given. */
  endpoint?: string;
  /** Vault Enterprise / HCP namespace, sent as `X-Vault-Namespace`. */
  namespace?: string;
  auth: VaultAuthOptions;
  /**
   * A node-vault client to use instead of creating one (TLS settings, proxies). Its endpoint
   * and namespace apply; the provider sends its own token with every request and leaves the
   * client's `token` property alone.
   */
  client?: VaultClient;
  /** Time limit of one Vault request, in ms. @default 5000 */
  requestTimeoutMs?: number;
  /**
   * Share of the token's TTL after which it is renewed (or, when it cannot be renewed, a new
   * login made). Lower it only in tests. @default 2/3
   */
  renewAtFraction?: number;
}

/** A Vault refusal (4xx other than 403 and 429), reduced to what is safe to show. */
export interface VaultRefusal {
  readonly status: number;
  /** Vault's error strings, whitespace collapsed, long tokens and ciphertexts redacted. */
  readonly errors: readonly string[];
  /** The request path without `/v1/` and without the query. */
  readonly path: string;
}

/** Maps a refusal to a typed error, or returns undefined to take the default mapping. */
export type VaultRefusalMapper = (refusal: VaultRefusal) => EncryptedSessionError | undefined;

/** Counters of the connection's token life cycle, for tests and status pages. */
export interface VaultConnectionStats {
  logins: number;
  renewals: number;
  failedRenewals: number;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_RENEW_AT_FRACTION = 2 / 3;
const DEFAULT_JWT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** Retry delays of a renewal or background login that failed for a transient reason. */
const MIN_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;
const MOUNT_PATH = /^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

const logger = new Logger('VaultAuth');

/** What a failed node-vault call amounts to, without its request config (it holds the token). */
type Failure =
  | { kind: 'http'; status: number; errors: string[] }
  | { kind: 'timeout' }
  | { kind: 'network'; code: string }
  | { kind: 'other'; name: string };

/**
 * A logged-in Vault session shared by the Vault key providers: logs in (token, AppRole,
 * Kubernetes), renews the token at a share of its TTL with an unref'd timer, logs in afresh
 * when renewal is refused or the token reaches its max TTL, and retries a request once after a
 * fresh login when Vault answers 403 (the token expired under us).
 *
 * Every failure becomes a typed error with a short reason (HTTP status, Vault's error strings
 * with anything token-like redacted): node-vault and axios errors carry the request config,
 * token header included, so they are never kept as `cause`.
 */
export class VaultConnection {
  private client?: VaultClient;
  private token = '';
  /** When the token expires (epoch ms); undefined for a token without TTL. */
  private expiresAt?: number;
  /** TTL the token was issued with; a renewal granting less hit the max TTL. */
  private issuedTtlSeconds = 0;
  private timer?: NodeJS.Timeout;
  private opening?: Promise<void>;
  private loggingIn?: Promise<void>;
  private closed = false;
  private warnedTokenRenewal = false;
  private readonly timeoutMs: number;
  private readonly renewAtFraction: number;
  private readonly counters: VaultConnectionStats = { logins: 0, renewals: 0, failedRenewals: 0 };

  /**
   * @param options Connection and auth options.
   * @param label Names the provider in logs and messages (`vault-transit`).
   * @param loadNodeVault Loads node-vault, an optional peer dependency, when no `client` is
   *   given; tests pass one that fails.
   * @throws ConfigurationError when an option is missing or out of range.
   */
  constructor(
    private readonly options: VaultConnectionOptions,
    private readonly label: string,
    private readonly loadNodeVault: () => Promise<{ default: typeof NodeVault }> = () =>
      import('node-vault'),
  ) {
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.renewAtFraction = options.renewAtFraction ?? DEFAULT_RENEW_AT_FRACTION;
    validateConnectionOptions(options, label, this.timeoutMs, this.renewAtFraction);
  }

  /** Snapshot of the token life-cycle counters. */
  stats(): VaultConnectionStats {
    return { ...this.counters };
  }

  /**
   * Creates the client (node-vault is an optional peer dependency, loaded only here), logs in
   * or checks the token, and schedules renewal. Idempotent.
   *
   * @throws ConfigurationError when node-vault is missing or Vault refuses the credentials.
   * @throws KeyProviderUnavailableError when Vault cannot be reached.
   */
  open(): Promise<void> {
    this.opening ??= this.openOnce().catch((error: unknown) => {
      // A failed start may be retried: the next open() begins again.
      this.opening = undefined;
      throw error;
    });
    return this.opening;
  }

  /**
   * Opens the connection, then runs the provider's first load (reading its key); if that
   * fails, closes again so no renewal timer outlives a failed start and `init()` may be retried.
   */
  async openAndLoad(load: () => Promise<unknown>): Promise<void> {
    await this.open();
    try {
      await load();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /**
   * Stops renewal and background logins. Idempotent; the token is left to expire. A later
   * {@link open} starts over with a fresh login.
   */
  close(): void {
    this.closed = true;
    this.opening = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * GET `path` (relative to `/v1/`, query allowed) and return Vault's JSON body.
   * @throws KeyProviderUnavailableError on outages, throttling and lasting 403s.
   */
  read(path: string, refused?: VaultRefusalMapper): Promise<unknown> {
    return this.send('GET', path, undefined, refused);
  }

  /**
   * GET `path` like {@link read}, but resolve to undefined when Vault answers 404 (a KV
   * version that was deleted or destroyed, a secret that does not exist).
   */
  async readIfPresent(path: string): Promise<unknown> {
    try {
      return await this.send('GET', path, undefined, (refusal) =>
        refusal.status === 404 ? new NotFound() : undefined,
      );
    } catch (error) {
      // Only this call's refusal mapper makes a NotFound, and send() throws it only to this call.
      if (error instanceof NotFound) return undefined;
      throw error;
    }
  }

  /**
   * POST `body` to `path` and return Vault's JSON body (empty string for 204).
   * @throws KeyProviderUnavailableError on outages, throttling and lasting 403s.
   */
  write(path: string, body: object, refused?: VaultRefusalMapper): Promise<unknown> {
    return this.send('POST', path, body, refused);
  }

  private async openOnce(): Promise<void> {
    this.closed = false;
    this.client ??= this.options.client ?? (await this.createClient());
    if (this.options.auth.method === 'token') {
      this.token = this.options.auth.token;
      await this.lookUpToken();
    } else {
      await this.login('init');
    }
  }

  private async createClient(): Promise<VaultClient> {
    let factory: typeof NodeVault;
    try {
      factory = (await this.loadNodeVault()).default;
    } catch {
      throw new ConfigurationError(
        `The ${this.label} key provider needs the node-vault package: npm install node-vault@^0.12`,
      );
    }
    const client = factory({
      endpoint: this.options.endpoint,
      ...(this.options.namespace ? { namespace: this.options.namespace } : {}),
    });
    // node-vault falls back to VAULT_TOKEN; this connection sends its own token per request.
    client.token = '';
    return client;
  }

  /** Token method: learn TTL and renewability, so renewal can be planned. */
  private async lookUpToken(): Promise<void> {
    let body: unknown;
    try {
      body = await this.raw('GET', 'auth/token/lookup-self', undefined, this.token);
    } catch (error) {
      const failure = classify(error);
      if (failure.kind === 'http' && failure.status === 403) {
        throw new ConfigurationError(
          `Vault refused the ${this.label} token at auth/token/lookup-self (HTTP 403: ${reasonOf(failure)}): it is invalid, expired or revoked, or its policies lack the default policy; give a valid token`,
        );
      }
      throw this.toError(failure, 'GET', 'auth/token/lookup-self', undefined);
    }
    const data = field(body, 'data');
    const ttl = numberField(data, 'ttl') ?? 0;
    const renewable = field(data, 'renewable') === true;
    this.issuedTtlSeconds = numberField(data, 'creation_ttl') ?? ttl;
    this.planAfterToken(ttl, renewable);
  }

  /**
   * Logs in with AppRole or Kubernetes and plans renewal. `init` refusals are configuration
   * errors; later ones are outages (a rotated secret id or JWT may be fixed without a restart).
   */
  private async login(phase: 'init' | 'runtime'): Promise<void> {
    const auth = this.options.auth;
    if (auth.method === 'token') return;
    const mount = auth.mountPath ?? auth.method;
    const path = `auth/${mount}/login`;
    const body =
      auth.method === 'approle'
        ? { role_id: auth.roleId, secret_id: auth.secretId }
        : { role: auth.role, jwt: auth.jwt ?? (await this.readJwt(auth.jwtPath, phase)) };
    let response: unknown;
    try {
      // No token: a login must not depend on (or send) the expired one.
      response = await this.raw('POST', path, body, undefined);
    } catch (error) {
      const failure = classify(error);
      if (failure.kind === 'http' && failure.status >= 400 && failure.status < 500) {
        const what = auth.method === 'approle' ? 'roleId and secretId' : 'role and the JWT';
        const message = `Vault refused the ${this.label} ${auth.method} login at ${path} (HTTP ${failure.status}: ${reasonOf(failure)}); check ${what} and the role's bindings`;
        if (failure.status !== 429) {
          throw phase === 'init'
            ? new ConfigurationError(message)
            : new KeyProviderUnavailableError(message);
        }
      }
      throw this.toError(failure, 'POST', path, undefined);
    }
    const authBlock = field(response, 'auth');
    const token = field(authBlock, 'client_token');
    if (typeof token !== 'string' || token.length === 0) {
      throw new KeyProviderUnavailableError(
        `Vault answered the ${this.label} login at ${path} without a client token`,
      );
    }
    this.token = token;
    this.counters.logins++;
    const ttl = numberField(authBlock, 'lease_duration') ?? 0;
    this.issuedTtlSeconds = ttl;
    logger.log(
      `${this.label}: logged in to Vault with ${auth.method} (token TTL ${ttl} s${field(authBlock, 'renewable') === true ? ', renewable' : ''})`,
    );
    this.planAfterToken(ttl, field(authBlock, 'renewable') === true);
  }

  private async readJwt(jwtPath: string | undefined, phase: 'init' | 'runtime'): Promise<string> {
    const path = jwtPath ?? DEFAULT_JWT_PATH;
    try {
      // Read at every login: projected service account tokens are rotated by the kubelet.
      return (await readFile(path, 'utf8')).trim();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const message = `The ${this.label} Kubernetes login could not read the service account token at ${path}${typeof code === 'string' ? ` (${code})` : ''}; mount it or set auth.jwtPath`;
      throw phase === 'init'
        ? new ConfigurationError(message)
        : new KeyProviderUnavailableError(message);
    }
  }

  /** One fresh login shared by every caller that saw `staleToken` refused. */
  private relogin(staleToken: string): Promise<void> {
    if (this.token !== staleToken) return Promise.resolve();
    this.loggingIn ??= this.login('runtime').finally(() => {
      this.loggingIn = undefined;
    });
    return this.loggingIn;
  }

  /** Plans what keeps the session alive once a token with `ttl` seconds left is in use. */
  private planAfterToken(ttlSeconds: number, renewable: boolean): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (ttlSeconds <= 0) {
      // A token without TTL (root, periodic at 0) never expires: nothing to plan.
      this.expiresAt = undefined;
      return;
    }
    this.expiresAt = Date.now() + ttlSeconds * 1000;
    const delay = ttlSeconds * 1000 * this.renewAtFraction;
    if (renewable) {
      this.schedule(delay, () => this.renew());
    } else {
      this.renewalImpossible('the token is not renewable', delay);
    }
  }

  /**
   * Renewal is refused or pointless (not renewable, max TTL reached): log in afresh after
   * `delay` ms, or, with a plain token, warn once and keep using it until it expires.
   */
  private renewalImpossible(reason: string, delay: number): void {
    if (this.options.auth.method === 'token') {
      if (!this.warnedTokenRenewal) {
        this.warnedTokenRenewal = true;
        const expiry =
          this.expiresAt === undefined ? '' : ` at ${new Date(this.expiresAt).toISOString()}`;
        logger.warn(
          `${this.label}: the Vault token cannot be renewed (${reason}); it stays in use until it expires${expiry}. Give a renewable token or use AppRole or Kubernetes auth`,
        );
      }
      return;
    }
    logger.log(`${this.label}: Vault token renewal not possible (${reason}); logging in afresh`);
    this.schedule(delay, () => this.backgroundLogin());
  }

  private async renew(): Promise<void> {
    const token = this.token;
    let body: unknown;
    try {
      body = await this.raw('POST', 'auth/token/renew-self', {}, token);
    } catch (error) {
      this.counters.failedRenewals++;
      if (this.closed || token !== this.token) return;
      const failure = classify(error);
      if (failure.kind === 'http' && (failure.status === 400 || failure.status === 403)) {
        this.renewalImpossible(`Vault refused the renewal: HTTP ${failure.status}`, 0);
      } else {
        logger.warn(
          `${this.label}: Vault token renewal failed (${describeFailure(failure, this.timeoutMs)}); retrying`,
        );
        this.schedule(this.retryDelay(), () => this.renew());
      }
      return;
    }
    if (this.closed || token !== this.token) return;
    this.counters.renewals++;
    const auth = field(body, 'auth');
    const ttl = numberField(auth, 'lease_duration') ?? 0;
    const renewable = field(auth, 'renewable') === true;
    if (ttl > 0 && renewable && ttl < this.issuedTtlSeconds) {
      // Vault capped the renewal at the token's max TTL: it will not extend again.
      this.expiresAt = Date.now() + ttl * 1000;
      this.renewalImpossible('the token reached its max TTL', ttl * 1000 * this.renewAtFraction);
      return;
    }
    this.planAfterToken(ttl, renewable);
  }

  private async backgroundLogin(): Promise<void> {
    try {
      await this.relogin(this.token);
    } catch (error) {
      if (this.closed) return;
      // Our own typed errors only: their messages hold no secret.
      const reason = error instanceof EncryptedSessionError ? error.message : 'login failed';
      logger.warn(`${this.label}: Vault login failed (${reason}); retrying`);
      this.schedule(this.retryDelay(), () => this.backgroundLogin());
    }
  }

  /** A third of the token's remaining life, within 1-30 s. */
  private retryDelay(): number {
    const left = this.expiresAt === undefined ? MAX_RETRY_MS : (this.expiresAt - Date.now()) / 3;
    return Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, left));
  }

  private schedule(delayMs: number, action: () => Promise<void>): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void action();
    }, delayMs);
    // Renewal must never keep the process alive on its own.
    this.timer.unref();
  }

  private async send(
    method: 'GET' | 'POST',
    path: string,
    body: object | undefined,
    refused: VaultRefusalMapper | undefined,
  ): Promise<unknown> {
    if (!this.client) {
      throw new ConfigurationError(`The ${this.label} key provider is used before init()`);
    }
    await this.loggingIn?.catch(() => undefined);
    const token = this.token;
    try {
      return await this.raw(method, path, body, token);
    } catch (error) {
      const failure = classify(error);
      if (!isPermissionDenied(failure) || this.options.auth.method === 'token') {
        throw this.toError(failure, method, path, refused);
      }
      // Vault says 403 both for an expired token and for a policy refusal: one fresh login
      // tells them apart.
      await this.relogin(token);
      try {
        return await this.raw(method, path, body, this.token);
      } catch (retryError) {
        throw this.toError(classify(retryError), method, path, refused);
      }
    }
  }

  private raw(
    method: 'GET' | 'POST',
    path: string,
    body: object | undefined,
    token: string | undefined,
  ): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (token) headers['X-Vault-Token'] = token;
    if (this.options.namespace) headers['X-Vault-Namespace'] = this.options.namespace;
    // A fresh headers object per call: node-vault writes into the one it is given.
    const requestOptions = { headers, timeout: this.timeoutMs };
    const client = this.client!;
    return method === 'GET'
      ? (client.read(path, requestOptions) as Promise<unknown>)
      : (client.write(path, body, requestOptions) as Promise<unknown>);
  }

  private toError(
    failure: Failure,
    method: 'GET' | 'POST',
    path: string,
    refused: VaultRefusalMapper | undefined,
  ): EncryptedSessionError {
    const barePath = path.split('?')[0];
    if (failure.kind !== 'http') {
      return new KeyProviderUnavailableError(
        `Vault could not serve ${barePath} for ${this.label}: ${describeFailure(failure, this.timeoutMs)}; retry later`,
      );
    }
    const { status } = failure;
    if (status === 403) {
      const capability = method === 'GET' ? 'read' : 'update';
      const who =
        this.options.auth.method === 'token'
          ? 'the token expired or was revoked, or its policy does not grant'
          : `even after a fresh ${this.options.auth.method} login, the role's policy does not grant`;
      // A policy does not heal by retrying: an operator has to act.
      return new KeyUnusableError(
        `Vault denied ${barePath} for ${this.label} (HTTP 403: ${reasonOf(failure)}): ${who} '${capability}' on '${barePath}'; fix the Vault policy`,
      );
    }
    if (status === 429 || status === 412 || status >= 500) {
      return new KeyProviderUnavailableError(
        `Vault answered HTTP ${status} (${reasonOf(failure)}) to ${barePath} for ${this.label}; retry later`,
      );
    }
    const mapped = refused?.({ status, errors: failure.errors, path: barePath });
    if (mapped) return mapped;
    return new ConfigurationError(
      `Vault refused ${barePath} for ${this.label} (HTTP ${status}: ${reasonOf(failure)}); check the mount path and names`,
    );
  }
}

/** Carries a 404 out of {@link VaultConnection.readIfPresent}'s refusal mapper; never escapes. */
class NotFound extends EncryptedSessionError {
  readonly code = 'NOT_FOUND';
  constructor() {
    super('not found');
  }
}

function nonEmpty(value: unknown): boolean {
  return typeof value === 'string' && value.trim().length > 0;
}

function validateConnectionOptions(
  options: VaultConnectionOptions,
  label: string,
  timeoutMs: number,
  renewAtFraction: number,
): void {
  if (!options.client) {
    let url: URL | undefined;
    try {
      url = options.endpoint ? new URL(options.endpoint) : undefined;
    } catch {
      // Not a URL: url stays undefined.
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ConfigurationError(
        `The ${label} key provider needs endpoint set to Vault's http(s) address, e.g. https://vault.internal:8200 (or a node-vault client)`,
      );
    }
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ConfigurationError(`${label}: requestTimeoutMs must be a positive number of ms`);
  }
  if (!(renewAtFraction > 0 && renewAtFraction < 1)) {
    throw new ConfigurationError(`${label}: renewAtFraction must be between 0 and 1`);
  }
  const auth = options.auth as VaultAuthOptions | undefined;
  const fail = (what: string) =>
    new ConfigurationError(`${label}: Vault ${auth?.method ?? ''} auth needs ${what}`);
  switch (auth?.method) {
    case 'token':
      if (!nonEmpty(auth.token)) throw fail('a non-empty token');
      return;
    case 'approle':
      if (!nonEmpty(auth.roleId) || !nonEmpty(auth.secretId)) throw fail('roleId and secretId');
      if (auth.mountPath !== undefined && !MOUNT_PATH.test(auth.mountPath)) {
        throw fail('a mountPath such as approle (no leading or trailing slash)');
      }
      return;
    case 'kubernetes':
      if (!nonEmpty(auth.role)) throw fail('a role');
      if (auth.jwt !== undefined && !nonEmpty(auth.jwt)) throw fail('a non-empty jwt');
      if (auth.mountPath !== undefined && !MOUNT_PATH.test(auth.mountPath)) {
        throw fail('a mountPath such as kubernetes (no leading or trailing slash)');
      }
      return;
    default:
      throw new ConfigurationError(
        `${label}: set auth.method to 'token', 'approle' or 'kubernetes'`,
      );
  }
}

/** Reduces a node-vault / axios error to status and safe strings; drops everything else. */
function classify(error: unknown): Failure {
  const candidate = error as {
    response?: { statusCode?: unknown; body?: unknown };
    code?: unknown;
    name?: unknown;
  } | null;
  const status = candidate?.response?.statusCode;
  if (typeof status === 'number') {
    const errors = field(candidate?.response?.body, 'errors');
    return {
      kind: 'http',
      status,
      errors: Array.isArray(errors)
        ? errors.filter((e): e is string => typeof e === 'string').map(sanitizeVaultError)
        : [],
    };
  }
  const code = candidate?.code;
  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') return { kind: 'timeout' };
  if (typeof code === 'string' && /^[A-Z0-9_]{2,40}$/.test(code)) return { kind: 'network', code };
  const name = candidate?.name;
  return { kind: 'other', name: typeof name === 'string' ? name.slice(0, 40) : 'unknown error' };
}

/**
 * Vault's error strings are short and fixed, but some quote input: collapse the multierror
 * layout, redact ciphertexts and any long token-like run (tokens, base64), and cap the length.
 */
export function sanitizeVaultError(message: string): string {
  return (
    message
      .replace(/^\d+ errors? occurred:/, '')
      .replace(/\*\s*/g, '')
      .replace(/\s+/g, ' ')
      .replace(/vault:v\d+:\S*/g, 'vault:v…:[redacted]')
      // Tokens, secret ids (UUIDs) and base64 carry digits; Vault's own words do not.
      .replace(/[A-Za-z0-9+/=_.-]{20,}/g, (run) =>
        run.length >= 32 || /\d/.test(run) ? '[redacted]' : run,
      )
      .trim()
      .slice(0, 200)
  );
}

function isPermissionDenied(failure: Failure): boolean {
  return failure.kind === 'http' && failure.status === 403;
}

function reasonOf(failure: Extract<Failure, { kind: 'http' }>): string {
  return failure.errors.length > 0 ? failure.errors.slice(0, 3).join('; ') : 'no error text';
}

function describeFailure(failure: Failure, timeoutMs: number): string {
  switch (failure.kind) {
    case 'http':
      return `HTTP ${failure.status}: ${reasonOf(failure)}`;
    case 'timeout':
      return `no answer within ${timeoutMs} ms`;
    case 'network':
      return `network error ${failure.code}`;
    default:
      return failure.name;
  }
}

/** `value[name]` when value is an object, else undefined. */
export function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null
    ? (value as Record<string, unknown>)[name]
    : undefined;
}

/** A finite number (or numeric string) field, else undefined. */
export function numberField(value: unknown, name: string): number | undefined {
  const raw = field(value, name);
  const parsed = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  // Number.isFinite is false for anything but a number.
  return Number.isFinite(parsed) ? (parsed as number) : undefined;
}

/** Checks a mount or secret path option: segments of letters, digits, '.', '_', '-'. */
export function isVaultPath(value: unknown): value is string {
  return typeof value === 'string' && MOUNT_PATH.test(value);
}
