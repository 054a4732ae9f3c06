/** Defaults applied by `EncryptedSessionService.open` when a call leaves a field out. */
export interface SessionDefaults {
  /** Tenant of sessions opened without one. @default 'default' */
  tenantId: string;
  /** Item time-to-live in seconds for sessions opened without one; null keeps items until removed. @default null */
  itemTtlSeconds: number | null;
  /** Largest encoded (JSON) size of one item, in bytes, before encryption. @default 4194304 (4 MiB) */
  maxItemBytes: number;
}

/**
 * Default {@link SessionDefaults.maxItemBytes}: 4 MiB, well inside every backend's ceiling.
 *
 * @publicApi
 */
export const DEFAULT_MAX_ITEM_BYTES = 4 * 1024 * 1024;

/** Injection token for {@link SessionDefaults}. */
export const SESSION_DEFAULTS = Symbol('SESSION_DEFAULTS');

/** What {@link EncryptedSessionService} uses for fields the module does not set. */
export const DEFAULT_SESSION_DEFAULTS: SessionDefaults = {
  tenantId: 'default',
  itemTtlSeconds: null,
  maxItemBytes: DEFAULT_MAX_ITEM_BYTES,
};
