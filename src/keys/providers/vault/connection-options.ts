import { ConfigurationError } from '../../../errors/index.js';
import type NodeVault from 'node-vault';

/**
 * A node-vault 0.12 client, as `require('node-vault')(options)` returns it.
 *
 * @publicApi
 */
export type VaultClient = NodeVault.client;

/**
 * How the provider logs in to Vault.
 *
 * @publicApi
 */
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

/**
 * Connection options shared by the Vault key providers.
 *
 * @publicApi
 */
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

/** The timing options of {@link VaultConnectionOptions}, defaults applied. */
export interface VaultConnectionTiming {
  readonly timeoutMs: number;
  readonly renewAtFraction: number;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_RENEW_AT_FRACTION = 2 / 3;
const MOUNT_PATH = /^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

/**
 * Applies the defaults of the timing options and checks every connection option.
 *
 * @param label Names the provider in messages (`vault-transit`).
 * @throws ConfigurationError when an option is missing or out of range.
 */
export function resolveConnectionOptions(
  options: VaultConnectionOptions,
  label: string,
): VaultConnectionTiming {
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const renewAtFraction = options.renewAtFraction ?? DEFAULT_RENEW_AT_FRACTION;
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
  validateAuthOptions(options.auth, label);
  return { timeoutMs, renewAtFraction };
}

// `undefined` too: options from plain JavaScript or an untyped config may leave auth out.
function validateAuthOptions(auth: VaultAuthOptions | undefined, label: string): void {
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

function nonEmpty(value: unknown): boolean {
  return typeof value === 'string' && value.trim().length > 0;
}

/** Checks a mount or secret path option: segments of letters, digits, '.', '_', '-'. */
export function isVaultPath(value: unknown): value is string {
  return typeof value === 'string' && MOUNT_PATH.test(value);
}
