import { sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson } from '../audit/index.js';
import { InvalidArgumentError } from '../errors/index.js';

/** Schema id of every erasure receipt (`docs/erasure.md`). */
export const ERASURE_RECEIPT_SCHEMA = 'nes.erasure.receipt/1';

/**
 * Why a target was erased: an enumerated code, never free text (it reaches the receipt).
 *
 * @publicApi
 */
export const ERASURE_REASONS = [
  'subject-request',
  'consent-withdrawn',
  'retention-policy',
  'legal-order',
  'other',
] as const;

/** One reason of {@link ERASURE_REASONS}. */
export type ErasureReason = (typeof ERASURE_REASONS)[number];

/**
 * What an erasure did, as its receipt states it before it is signed.
 *
 * @publicApi
 */
export interface ErasureReceiptBody {
  readonly schema: typeof ERASURE_RECEIPT_SCHEMA;
  /** UUIDv7; the erasure ledger's entry id and the audit events' `target.recordId`. */
  readonly receiptId: string;
  readonly tenantId: string;
  readonly scope: 'subject' | 'session';
  /** Keyed pseudonym of the subject (as in the audit trail); null when none is known. */
  readonly subjectRef: string | null;
  readonly reason: ErasureReason;
  /** The sessions erased, by id. */
  readonly sessionIds: readonly string[];
  readonly sessions: number;
  /** Data keys destroyed by this erasure (keys destroyed before are not counted). */
  readonly keysDestroyed: number;
  readonly dekIds: readonly string[];
  /** Item rows deleted. */
  readonly itemsDeleted: number;
  /** Epoch ms when the last key was destroyed. */
  readonly erasedAt: number;
  readonly actor: { readonly type: string; readonly id: string };
  /** Which key signed it (the audit checkpoint key's id); null when unsigned. */
  readonly signingKeyId: string | null;
}

/**
 * The receipt of an erasure: Ed25519 over the canonical JSON of the body, by the audit
 * checkpoint key, so it verifies offline with the key's public half
 * ({@link verifyErasureReceipt}). Unsigned (`signature` null) when the module has no
 * checkpoint key.
 *
 * @publicApi
 */
export interface ErasureReceipt extends ErasureReceiptBody {
  /** base64url of the Ed25519 signature; null when unsigned. */
  readonly signature: string | null;
}

/** Signs `body` with `privateKey` (Ed25519), or leaves it unsigned without one. */
export function signErasureReceipt(
  body: ErasureReceiptBody,
  privateKey: KeyObject | undefined,
): ErasureReceipt {
  if (!privateKey) return { ...body, signingKeyId: null, signature: null };
  const signature = sign(null, Buffer.from(canonicalJson(body), 'utf8'), privateKey);
  return { ...body, signature: signature.toString('base64url') };
}

/**
 * Whether the receipt's signature holds under `publicKey` (the audit checkpoint key's public
 * half): what an auditor checks offline. False for an unsigned or altered receipt.
 *
 * @publicApi
 */
export function verifyErasureReceipt(receipt: ErasureReceipt, publicKey: KeyObject): boolean {
  if (publicKey.type !== 'public' || publicKey.asymmetricKeyType !== 'ed25519') {
    throw new InvalidArgumentError('verifyErasureReceipt: the key must be an Ed25519 public key');
  }
  const { signature, ...body } = receipt;
  if (typeof signature !== 'string' || body.schema !== ERASURE_RECEIPT_SCHEMA) return false;
  return verify(
    null,
    Buffer.from(canonicalJson(body), 'utf8'),
    publicKey,
    Buffer.from(signature, 'base64url'),
  );
}

/** Returns `value` when it is one of {@link ERASURE_REASONS}; InvalidArgumentError otherwise. */
export function checkErasureReason(value: unknown): ErasureReason {
  if (typeof value !== 'string' || !(ERASURE_REASONS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(
      `An erasure's reason must be one of ${ERASURE_REASONS.join(', ')} (a code, never free text: it is kept in the receipt)`,
    );
  }
  return value as ErasureReason;
}
