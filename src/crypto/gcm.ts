/*
 * AES-256-GCM as every envelope of this module uses it (items and wrapped data keys): 96-bit
 * random IVs and 128-bit tags. Internal to the crypto layer.
 */

export const GCM_CIPHER = 'aes-256-gcm';
export const GCM_IV_LENGTH = 12;
export const GCM_TAG_LENGTH = 16;

/**
 * Options for createCipheriv and createDecipheriv. `authTagLength` pins 16-byte tags: without
 * it Node 20 accepts a truncated tag on decrypt.
 */
export const GCM_OPTIONS = { authTagLength: GCM_TAG_LENGTH } as const;

/** What node:crypto throws from `final()` when a GCM tag does not verify. */
const GCM_AUTH_FAILURE = 'Unsupported state or unable to authenticate data';

/**
 * The `cause` to keep from a failed GCM decrypt: node's tag-mismatch error only. Any other
 * error is dropped, since argument errors from node:crypto may quote the value they were given.
 */
export function secretFreeCause(error: unknown): { cause?: unknown } {
  return error instanceof Error && error.message === GCM_AUTH_FAILURE ? { cause: error } : {};
}
