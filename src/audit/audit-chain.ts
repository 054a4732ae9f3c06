import { createHmac, hash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  isCanonicallyOrdered,
  type AuditChainFields,
  type AuditEvent,
  type AuditEventBody,
} from './audit-event.js';
import { lengthPrefixed } from './length-prefixed.js';

/** Domain of every chain MAC: a MAC of this module's trail is never valid anywhere else. */
const MAC_DOMAIN = 'nes.audit.v1';

/** Length of a chain MAC (HMAC-SHA256) and of a MAC key, in bytes. */
export const AUDIT_MAC_LENGTH = 32;

/** `prevMac` of the first record of every chain: 32 zero bytes. */
export const GENESIS_PREV_MAC: Buffer = Buffer.alloc(AUDIT_MAC_LENGTH);

/**
 * The chain of one session: every event about it, in order. Tenant and session ids are
 * base64url-encoded, so no two (tenant, session) pairs share a chain id.
 */
export function sessionChainId(tenantId: string, sessionId: string): string {
  return `session.${base64url(tenantId)}.${base64url(sessionId)}`;
}

/**
 * The control chain of one tenant: events that are not about a single session (holds, subject
 * erasure, purge and rotation runs, provider outages).
 */
export function tenantChainId(tenantId: string): string {
  return `tenant.${base64url(tenantId)}`;
}

const base64url = (id: string): string => Buffer.from(id, 'utf8').toString('base64url');

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** The id a base64url part of a chain id encodes, if it is one this module wrote. */
function idFrom(part: string | undefined): string | undefined {
  if (part === undefined || !BASE64URL.test(part)) return undefined;
  const id = Buffer.from(part, 'base64url').toString('utf8');
  return base64url(id) === part ? id : undefined;
}

/**
 * The tenant and session a chain id names (`sessionId` null for a tenant's control chain), or
 * undefined for a string no chain id of this module has the form of.
 */
export function parseChainId(
  chainId: string,
): { readonly tenantId: string; readonly sessionId: string | null } | undefined {
  const parts = chainId.split('.');
  if (parts[0] === 'tenant' && parts.length === 2) {
    const tenantId = idFrom(parts[1]);
    return tenantId === undefined ? undefined : { tenantId, sessionId: null };
  }
  if (parts[0] === 'session' && parts.length === 3) {
    const tenantId = idFrom(parts[1]);
    const sessionId = idFrom(parts[2]);
    return tenantId === undefined || sessionId === undefined ? undefined : { tenantId, sessionId };
  }
  return undefined;
}

// canonicalize (the RFC 8785 reference implementation, 2.x: 5.x needs Node 22) is CommonJS with
// `module.exports = serialize`; its typings describe an ES default export, so load it plainly.
const serialize = createRequire(import.meta.url)('canonicalize') as (
  value: unknown,
) => string | undefined;

/**
 * The canonical JSON of an event (RFC 8785: keys sorted by UTF-16 code units, no whitespace,
 * ECMAScript number and string forms), the bytes every digest and signature covers. Never the
 * insertion order of a JSON.stringify.
 */
export function canonicalJson(value: unknown): string {
  const json = serialize(value);
  if (json === undefined) throw new TypeError('canonicalJson: the value has no JSON form');
  return json;
}

/** The canonical JSON of an event's body: every field but `chain`. */
export function bodyJsonOf(event: AuditEventBody | AuditEvent): string {
  // A body buildAuditEvent built is frozen with its keys in canonical order, and holds only
  // integers and well-formed strings, whose JSON.stringify forms are RFC 8785's.
  if (isCanonicallyOrdered(event)) return JSON.stringify(event);
  const { chain: _chain, ...body } = event as AuditEvent;
  return canonicalJson(body);
}

/** SHA-256 of an event body's canonical JSON, as stored. */
export function bodyDigest(bodyJson: string): Buffer {
  // The one-shot hash: the verifier digests one body per record.
  return hash('sha256', bodyJson, 'buffer');
}

/** SHA-256 of the event's canonical JSON, its chain fields left out. */
export function eventDigest(event: AuditEventBody | AuditEvent): Buffer {
  return bodyDigest(bodyJsonOf(event));
}

/**
 * An event as the trail stores it: its chain fields, and its body as the exact canonical JSON
 * the MAC covers. A verifier hashes the stored bytes instead of canonicalising again, and an
 * edit to any byte of them breaks the MAC.
 */
export interface AuditRecord {
  readonly chain: AuditChainFields;
  readonly body: string;
}

/** The stored form of a sealed event. */
export function auditRecordOf(event: AuditEvent): AuditRecord {
  return { chain: event.chain, body: bodyJsonOf(event) };
}

/** What a chain MAC binds: the event's place in its chain, the key, and the event itself. */
export interface ChainLink {
  readonly chainId: string;
  readonly seq: number;
  readonly prevMac: Uint8Array;
  readonly macKeyId: string;
  /** {@link eventDigest} of the event. */
  readonly eventDigest: Uint8Array;
}

/**
 * `HMAC-SHA256(key, "nes.audit.v1" ‖ chainId ‖ seq ‖ prevMac ‖ macKeyId ‖ eventDigest)`, every
 * part length-prefixed (`seq` as 8 bytes, big-endian). Binding the chain id stops a record
 * being spliced into another chain; binding the key id stops a record verifying under another
 * key.
 */
export function chainMac(macKey: KeyObject | Uint8Array, link: ChainLink): Buffer {
  return new ChainMacs(link.chainId).macOf(macKey, link);
}

/**
 * Chain MACs of one chain, as {@link chainMac} computes them: the chain's fixed parts are
 * encoded once, and each record's input is written into one reused buffer (a verifier computes
 * one MAC per record).
 */
export class ChainMacs {
  /** `"nes.audit.v1" ‖ chainId`, length-prefixed. */
  private readonly prefix: Buffer;
  private input = Buffer.alloc(0);
  private readonly keyIdParts = new Map<string, Buffer>();

  constructor(readonly chainId: string) {
    this.prefix = lengthPrefixed([MAC_DOMAIN, chainId]);
  }

  /** The MAC of the record `link` describes; `link.chainId`, if given, must be this chain's. */
  macOf(
    macKey: KeyObject | Uint8Array,
    link: Omit<ChainLink, 'chainId'> & { readonly chainId?: string },
  ): Buffer {
    if (link.chainId !== undefined && link.chainId !== this.chainId) {
      throw new RangeError('chainMac: the link names another chain');
    }
    if (!Number.isSafeInteger(link.seq) || link.seq < 1) {
      throw new RangeError('chainMac: seq starts at 1 and rises by one per record');
    }
    if (link.prevMac.length !== AUDIT_MAC_LENGTH) {
      throw new RangeError('chainMac: prevMac must be 32 bytes');
    }
    const keyIdPart = this.keyIdPart(link.macKeyId);
    const length =
      this.prefix.length +
      12 +
      4 +
      AUDIT_MAC_LENGTH +
      keyIdPart.length +
      4 +
      link.eventDigest.length;
    if (this.input.length < length) this.input = Buffer.alloc(length);
    const input = this.input;
    let offset = this.prefix.copy(input, 0);
    // seq: its length, then 8 bytes big-endian as two 32-bit words.
    offset = input.writeUInt32BE(8, offset);
    offset = input.writeUInt32BE(Math.floor(link.seq / 0x1_0000_0000), offset);
    offset = input.writeUInt32BE(link.seq >>> 0, offset);
    offset = input.writeUInt32BE(AUDIT_MAC_LENGTH, offset);
    input.set(link.prevMac, offset);
    offset += AUDIT_MAC_LENGTH;
    offset += keyIdPart.copy(input, offset);
    offset = input.writeUInt32BE(link.eventDigest.length, offset);
    input.set(link.eventDigest, offset);
    return createHmac('sha256', macKey)
      .update(input.subarray(0, offset + link.eventDigest.length))
      .digest();
  }

  /** `macKeyId`, length-prefixed: encoded once per key id. */
  private keyIdPart(macKeyId: string): Buffer {
    let part = this.keyIdParts.get(macKeyId);
    if (!part) {
      part = lengthPrefixed([macKeyId]);
      if (this.keyIdParts.size < 64) this.keyIdParts.set(macKeyId, part);
    }
    return part;
  }
}

/** Whether `mac` is the chain MAC of `link` under `macKey`, compared in constant time. */
export function chainMacMatches(
  macKey: KeyObject | Uint8Array,
  link: ChainLink,
  mac: Uint8Array,
): boolean {
  const expected = chainMac(macKey, link);
  return mac.length === expected.length && timingSafeEqual(expected, mac);
}

/**
 * Appends `body` to a chain: the record that follows `previous` (or the first, when there is
 * none), with its MAC under `macKey`.
 */
export function sealAuditEvent(
  body: AuditEventBody,
  chain: {
    readonly chainId: string;
    readonly previous?: { readonly seq: number; readonly mac: Uint8Array };
    readonly macKeyId: string;
    readonly macKey: KeyObject | Uint8Array;
  },
): AuditEvent {
  const seq = (chain.previous?.seq ?? 0) + 1;
  const prevMac = chain.previous?.mac ?? GENESIS_PREV_MAC;
  const mac = chainMac(chain.macKey, {
    chainId: chain.chainId,
    seq,
    prevMac,
    macKeyId: chain.macKeyId,
    eventDigest: eventDigest(body),
  });
  return {
    ...body,
    chain: {
      chainId: chain.chainId,
      seq,
      prevMac: Buffer.from(prevMac).toString('base64url'),
      macKeyId: chain.macKeyId,
      mac: mac.toString('base64url'),
    },
  };
}
