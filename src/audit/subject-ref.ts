import { createHmac, KeyObject } from 'node:crypto';
import { lengthPrefixed } from './length-prefixed.js';

const SUBJECT_REF_DOMAIN = 'nes.audit.subject.v1';

/**
 * The pseudonymous reference of a subject in the trail: `HMAC-SHA256(key, domain ‖ tenantId ‖
 * subjectId)`, base64url. Keyed, so it cannot be reversed by hashing candidate ids (an unkeyed
 * hash of an identifier is itself an identifier); stable, so the trail stays searchable by
 * subject after the subject's data is erased; bound to the tenant, so one person in two
 * tenants gets two unrelated references.
 */
export function subjectRef(
  pseudonymKey: KeyObject | Uint8Array,
  tenantId: string,
  subjectId: string,
): string {
  const keyLength =
    pseudonymKey instanceof KeyObject ? (pseudonymKey.symmetricKeySize ?? 0) : pseudonymKey.length;
  if (keyLength < 32) {
    throw new RangeError('subjectRef: the pseudonymisation key must be at least 32 bytes');
  }
  return createHmac('sha256', pseudonymKey)
    .update(lengthPrefixed([SUBJECT_REF_DOMAIN, tenantId, subjectId]))
    .digest('base64url');
}
