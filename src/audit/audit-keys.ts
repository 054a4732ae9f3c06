import type { KeyObject } from 'node:crypto';

/**
 * A MAC key of the trail: its id (recorded in every record it seals) and the key itself.
 *
 * @publicApi
 */
export interface AuditMacKey {
  readonly keyId: string;
  readonly key: KeyObject;
}

/**
 * Where the audit layer gets its keys: generated through the module's root key provider and
 * stored wrapped beside the data keys (the module wires it over the key ring). The audit layer
 * only asks; it never sees a root key or a wrapped key.
 *
 * @publicApi
 */
export interface AuditKeyring {
  /**
   * The MAC key new records are sealed with. A new one starts once the current one is older
   * than the rotation period; older ones stay for verification only.
   */
  currentMacKey(): Promise<AuditMacKey>;
  /** The MAC key with this id, current or verify-only; undefined when the trail has none. */
  macKey(keyId: string): Promise<KeyObject | undefined>;
  /**
   * The key of subject references. Never rotated: a subject's reference must stay the same for
   * as long as the trail is kept, or the access report by subject would miss older records.
   */
  pseudonymKey(): Promise<KeyObject>;
}

/** Injection token for {@link AuditKeyring}. */
export const AUDIT_KEYRING = Symbol('AUDIT_KEYRING');

/**
 * The tenant id under which the trail's own keys are kept as data keys. It starts with a
 * control character, which every id a host passes to `open()` is refused for, so no host
 * session can share these keys; events never name it.
 */
export const AUDIT_KEYS_TENANT = '\u001fnes-audit';
