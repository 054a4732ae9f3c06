import {
  ConfigurationError,
  KeyProviderUnavailableError,
  KeyUnusableError,
} from '../../../errors/index.js';
import type { VaultAuthOptions } from './connection-options.js';
import { field } from './response-fields.js';

/*
 * How the Vault connection reads a failed node-vault call, and which typed error and message
 * each failure becomes. node-vault and axios errors carry the request config, token header
 * included, so only the HTTP status, a socket code and Vault's sanitized error strings are kept.
 */

/** A Vault refusal (4xx other than 403 and 429), reduced to what is safe to show. */
export interface VaultRefusal {
  readonly status: number;
  /** Vault's error strings, whitespace collapsed, long tokens and ciphertexts redacted. */
  readonly errors: readonly string[];
  /** The request path without `/v1/` and without the query. */
  readonly path: string;
}

/** Maps a refusal to a typed error, or returns undefined to take the default mapping. */
/** Turns a refusal into the error to throw, or undefined for the default one; may return an internal marker error. */
export type VaultRefusalMapper = (refusal: VaultRefusal) => Error | undefined;

/** What a failed node-vault call amounts to, without its request config (it holds the token). */
export type VaultFailure =
  | { kind: 'http'; status: number; errors: string[] }
  | { kind: 'timeout' }
  | { kind: 'network'; code: string }
  | { kind: 'other'; name: string };

/** The request that failed and who sent it, as the messages name them. */
export interface FailedVaultRequest {
  readonly method: 'GET' | 'POST';
  /** Relative to `/v1/`; a query is left out of messages. */
  readonly path: string;
  /** Names the provider (`vault-transit`). */
  readonly label: string;
  readonly authMethod: VaultAuthOptions['method'];
  readonly timeoutMs: number;
}

/** Reduces a node-vault / axios error to status and safe strings; drops everything else. */
export function classifyFailure(error: unknown): VaultFailure {
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

/** Vault's 403: an expired or revoked token, or a policy that does not grant the request. */
export function isPermissionDenied(failure: VaultFailure): boolean {
  return failure.kind === 'http' && failure.status === 403;
}

/** Vault's first error strings, for a message. */
export function reasonOf(failure: Extract<VaultFailure, { kind: 'http' }>): string {
  return failure.errors.length > 0 ? failure.errors.slice(0, 3).join('; ') : 'no error text';
}

/** A failure in a few words, for a message or a log line. */
export function describeFailure(failure: VaultFailure, timeoutMs: number): string {
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

/**
 * The typed error for a failed request: outages, throttling and 5xx are retryable
 * {@link KeyProviderUnavailableError}s, a lasting 403 a {@link KeyUnusableError}, and any other
 * refusal what `refused` makes of it or else a {@link ConfigurationError}.
 */
export function errorForFailure(
  failure: VaultFailure,
  request: FailedVaultRequest,
  refused: VaultRefusalMapper | undefined,
): Error {
  const { label, method } = request;
  const barePath = request.path.split('?')[0];
  if (failure.kind !== 'http') {
    return new KeyProviderUnavailableError(
      `Vault could not serve ${barePath} for ${label}: ${describeFailure(failure, request.timeoutMs)}; retry later`,
    );
  }
  const { status } = failure;
  if (status === 403) {
    const capability = method === 'GET' ? 'read' : 'update';
    const who =
      request.authMethod === 'token'
        ? 'the token expired or was revoked, or its policy does not grant'
        : `even after a fresh ${request.authMethod} login, the role's policy does not grant`;
    // A policy does not heal by retrying: an operator has to act.
    return new KeyUnusableError(
      `Vault denied ${barePath} for ${label} (HTTP 403: ${reasonOf(failure)}): ${who} '${capability}' on '${barePath}'; fix the Vault policy`,
    );
  }
  if (status === 429 || status === 412 || status >= 500) {
    return new KeyProviderUnavailableError(
      `Vault answered HTTP ${status} (${reasonOf(failure)}) to ${barePath} for ${label}; retry later`,
    );
  }
  const mapped = refused?.({ status, errors: failure.errors, path: barePath });
  if (mapped) return mapped;
  return new ConfigurationError(
    `Vault refused ${barePath} for ${label} (HTTP ${status}: ${reasonOf(failure)}); check the mount path and names`,
  );
}
