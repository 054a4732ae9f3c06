import type { KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { AUDIT_KEYS_TENANT, type AuditKeyring, type AuditMacKey } from '../audit/index.js';
import { deriveSubkey } from '../crypto/index.js';
import { IntegrityError, KeyDestroyedError } from '../errors/index.js';
import type { KeyRing } from '../keys/index.js';
import type { SessionRef } from '../storage/index.js';

/*
 * The trail's own keys live as data keys of reserved "sessions" of a reserved tenant: wrapped by
 * the root key provider like every data key, stored beside them, covered by root-key rewrap and
 * key status.
 */
const MAC_KEYS: SessionRef = { tenantId: AUDIT_KEYS_TENANT, sessionId: 'mac' };
const PSEUDONYM_KEYS: SessionRef = { tenantId: AUDIT_KEYS_TENANT, sessionId: 'subject-ref' };

/** HKDF purposes: the stored data key is never used as a MAC key directly. */
const MAC_PURPOSE = 'audit-mac';
const PSEUDONYM_PURPOSE = 'audit-subject-ref';

/**
 * The audit layer's keys over the key ring. The MAC key rotates by period: each period's first
 * writer starts a new generation whose `firstSeq` is the period's number (the key ring settles
 * two processes starting it at once), so every earlier MAC key turns `retiring`: verify-only.
 */
export class KeyRingAuditKeys implements AuditKeyring {
  private current: { readonly period: number; readonly macKey: AuditMacKey } | undefined;
  private pseudonym: KeyObject | undefined;
  /** Verify-only keys by id, derived once. */
  private readonly verifyKeys = new LRUCache<string, KeyObject>({ max: 64 });

  constructor(
    private readonly keyRing: KeyRing,
    /** How long one MAC key seals new records. */
    private readonly rotationPeriodMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  async currentMacKey(): Promise<AuditMacKey> {
    const period = Math.floor(this.now() / this.rotationPeriodMs) + 1;
    if (this.current && this.current.period >= period) return this.current.macKey;
    const dataKey = await this.keyRing.rotate(MAC_KEYS, null, period);
    const macKey = { keyId: dataKey.dekId, key: deriveSubkey(dataKey.key, MAC_PURPOSE) };
    this.verifyKeys.set(macKey.keyId, macKey.key);
    this.current = { period: Math.max(period, dataKey.firstSeq), macKey };
    return macKey;
  }

  async macKey(keyId: string): Promise<KeyObject | undefined> {
    const cached = this.verifyKeys.get(keyId);
    if (cached) return cached;
    try {
      const dataKey = await this.keyRing.keyForRead(MAC_KEYS, keyId);
      const key = deriveSubkey(dataKey.key, MAC_PURPOSE);
      this.verifyKeys.set(keyId, key);
      return key;
    } catch (error) {
      // No such MAC key (or one destroyed): the verifier reports the record's key as unknown.
      if (error instanceof IntegrityError || error instanceof KeyDestroyedError) return undefined;
      throw error;
    }
  }

  async pseudonymKey(): Promise<KeyObject> {
    if (this.pseudonym) return this.pseudonym;
    const dataKey = await this.keyRing.keyForWrite(PSEUDONYM_KEYS, null);
    this.pseudonym = deriveSubkey(dataKey.key, PSEUDONYM_PURPOSE);
    return this.pseudonym;
  }
}
