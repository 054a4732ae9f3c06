/** Defaults applied by `EncryptedSessionService.open` when a call leaves a field out. */
export interface SessionDefaults {
  /** Tenant of sessions opened without one. @default 'default' */
  tenantId: string;
  /** Item time-to-live in seconds for sessions opened without one; null keeps items until removed. @default null */
  itemTtlSeconds: number | null;
}

/** Injection token for {@link SessionDefaults}. */
export const SESSION_DEFAULTS = Symbol('SESSION_DEFAULTS');

export const DEFAULT_SESSION_DEFAULTS: SessionDefaults = {
  tenantId: 'default',
  itemTtlSeconds: null,
};
