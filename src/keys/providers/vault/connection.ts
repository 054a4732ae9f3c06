import { readFile } from 'node:fs/promises';
import { Logger } from '@nestjs/common';
import {
  ConfigurationError,
  EncryptedSessionError,
  KeyProviderUnavailableError,
} from '../../../errors/index.js';
import { delayBeforeDeadline, type DeadlinePolicy } from '../../../errors/backoff.js';
import type NodeVault from 'node-vault';
import { providerUsedBeforeInit } from '../used-before-init.js';
import {
  resolveConnectionOptions,
  type VaultClient,
  type VaultConnectionOptions,
} from './connection-options.js';
import {
  classifyFailure,
  describeFailure,
  errorForFailure,
  isPermissionDenied,
  reasonOf,
  type VaultFailure,
  type VaultRefusalMapper,
} from './errors.js';
import { field, numberField } from './response-fields.js';

/**
 * Counters of the connection's token life cycle, for tests and status pages.
 *
 * @publicApi
 */
export interface VaultConnectionStats {
  logins: number;
  renewals: number;
  failedRenewals: number;
}

const DEFAULT_JWT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** Retry delays of a renewal or background login that failed for a transient reason. */
/** Retries of a failed renewal or login: they must succeed before the token expires. */
const RENEWAL_RETRY: DeadlinePolicy = {
  shareOfTimeLeft: 1 / 3,
  minDelayMs: 1000,
  maxDelayMs: 30_000,
};

const logger = new Logger('VaultAuth');

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
    const timing = resolveConnectionOptions(options, label);
    this.timeoutMs = timing.timeoutMs;
    this.renewAtFraction = timing.renewAtFraction;
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
   * Throws the shared "used before init()" error unless {@link open} has created the client;
   * a provider calls it before anything that sends a request, naming its own method.
   */
  requireOpen(method: string): void {
    if (!this.client) throw providerUsedBeforeInit(this.label, method);
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
      const failure = classifyFailure(error);
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
      const failure = classifyFailure(error);
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
      const failure = classifyFailure(error);
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

  /** A third of the token's remaining life, within 1-30 s (the module's retry policies). */
  private retryDelay(): number {
    return delayBeforeDeadline(RENEWAL_RETRY, this.expiresAt);
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
    // Backstop: the providers' own methods refuse a call before init() first, naming themselves.
    this.requireOpen(`VaultConnection.${method === 'GET' ? 'read' : 'write'}`);
    await this.loggingIn?.catch(() => undefined);
    const token = this.token;
    try {
      return await this.raw(method, path, body, token);
    } catch (error) {
      const failure = classifyFailure(error);
      if (!isPermissionDenied(failure) || this.options.auth.method === 'token') {
        throw this.toError(failure, method, path, refused);
      }
      // Vault says 403 both for an expired token and for a policy refusal: one fresh login
      // tells them apart.
      await this.relogin(token);
      try {
        return await this.raw(method, path, body, this.token);
      } catch (retryError) {
        throw this.toError(classifyFailure(retryError), method, path, refused);
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

  /** The typed error for a failed request of this connection (see errors.ts). */
  private toError(
    failure: VaultFailure,
    method: 'GET' | 'POST',
    path: string,
    refused: VaultRefusalMapper | undefined,
  ): Error {
    const request = {
      method,
      path,
      label: this.label,
      authMethod: this.options.auth.method,
      timeoutMs: this.timeoutMs,
    };
    return errorForFailure(failure, request, refused);
  }
}

/** Carries a 404 out of {@link VaultConnection.readIfPresent}'s refusal mapper; never escapes. */
class NotFound extends Error {
  constructor() {
    super('not found');
  }
}
