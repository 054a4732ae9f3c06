import { randomFillSync } from 'node:crypto';
import { isIP } from 'node:net';
import { v7 as uuidv7 } from 'uuid';
import { InvalidArgumentError, type EncryptedSessionErrorCode } from '../errors/index.js';

/** Schema id of every audit event this module writes (`docs/audit-format.md`). */
export const AUDIT_SCHEMA = 'nes.audit/1';

/**
 * Every action the trail records. A fixed catalogue: an event never names an action a caller
 * made up.
 */
export const AUDIT_ACTIONS = [
  'session.create',
  'session.read',
  'session.append',
  'session.pop',
  'session.clear',
  'session.history_transaction',
  'session.subject_mismatch',
  'session.integrity_failure',
  'session.erase',
  'subject.erase',
  'retention.purge.batch',
  'hold.apply',
  'hold.release',
  'hold.export',
  'key.create',
  'key.generation',
  'key.destroy',
  'key.reencrypt.batch',
  'key.rewrap.batch',
  'key.rewrap.run',
  'key.provider_outage',
  'access.denied',
  'audit.checkpoint',
  'audit.verify',
] as const;

/** One action of {@link AUDIT_ACTIONS}. */
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** What came of the operation: done, failed on the way, or refused before it started. */
export const AUDIT_OUTCOMES = ['success', 'failure', 'denied'] as const;

/** One outcome of {@link AUDIT_OUTCOMES}. */
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/**
 * Why an operation failed or was refused: the module's error codes and the audit layer's own.
 * Enumerated, never free text.
 */
export const AUDIT_REASONS = [
  'INTEGRITY',
  'KEY_DESTROYED',
  'KEY_PROVIDER_UNAVAILABLE',
  'KEY_UNUSABLE',
  'CONFIGURATION',
  'INVALID_ARGUMENT',
  'HISTORY_CONFLICT',
  'STORAGE_UNAVAILABLE',
  'SESSION_NOT_FOUND',
  'SHUTTING_DOWN',
  'SUBJECT_MISMATCH',
  'ACTOR_REQUIRED',
  'LEGAL_HOLD',
  'UNEXPECTED',
] as const satisfies ReadonlyArray<
  EncryptedSessionErrorCode | 'SUBJECT_MISMATCH' | 'ACTOR_REQUIRED' | 'UNEXPECTED'
>;

/** One reason of {@link AUDIT_REASONS}. */
export type AuditReason = (typeof AUDIT_REASONS)[number];

/** Kinds of actor: a person, a service (another system, an agent), the module itself (jobs). */
export const AUDIT_ACTOR_TYPES = ['user', 'service', 'system'] as const;

/** Who did it: opaque ids from the host's identity provider, never names or emails. */
export interface AuditActor {
  readonly type: (typeof AUDIT_ACTOR_TYPES)[number];
  readonly id: string;
  /** The tenant the actor belongs to. */
  readonly tenantId: string;
  /** The user an agent or service acted for, by opaque id. */
  readonly onBehalfOf?: string;
}

/** Where the request came from, when the host's request context says. */
export interface AuditSource {
  readonly requestId?: string;
  /** An IPv4 or IPv6 address. */
  readonly ip?: string;
}

/** What it was done to. */
export interface AuditTarget {
  readonly tenantId: string;
  readonly sessionId?: string;
  /** Keyed HMAC of the subject id (`subjectRef`), never the id itself. */
  readonly subjectRef?: string;
  /** How many items, keys or sessions the operation touched. */
  readonly count?: number;
  /** The legal hold or erasure (receipt) the event is about, by its id. */
  readonly recordId?: string;
}

/** Ids (and versions) of the keys involved; never key material. */
export interface AuditKeys {
  readonly dekIds?: readonly string[];
  readonly kekIds?: readonly string[];
}

/** Where an event sits in its chain, and its MAC (`docs/audit-format.md`, "Chains"). */
export interface AuditChainFields {
  readonly chainId: string;
  readonly seq: number;
  /** base64url of the previous record's MAC (32 zero bytes for the first). */
  readonly prevMac: string;
  readonly macKeyId: string;
  /** base64url of this record's HMAC-SHA256. */
  readonly mac: string;
}

/** An event before it joins a chain. */
export interface AuditEventBody {
  readonly schema: typeof AUDIT_SCHEMA;
  /** UUIDv7: time-ordered, and the idempotency key of a copy shipped to a sink. */
  readonly eventId: string;
  /** Server clock, ms since the epoch (UTC). */
  readonly time: number;
  readonly action: AuditAction;
  readonly outcome: AuditOutcome;
  /** Set when the outcome is not `success`. */
  readonly reason?: AuditReason;
  readonly actor: AuditActor;
  readonly source?: AuditSource;
  readonly target: AuditTarget;
  readonly keys?: AuditKeys;
}

/**
 * One record of the audit trail, schema `nes.audit/1`.
 *
 * @publicApi
 */
export interface AuditEvent extends AuditEventBody {
  readonly chain: AuditChainFields;
}

/** What {@link buildAuditEvent} takes: the event's typed values, nothing else. */
export interface AuditEventInput extends Pick<
  AuditEventBody,
  'action' | 'outcome' | 'reason' | 'actor' | 'source' | 'target' | 'keys'
> {
  /** @default Date.now() */
  readonly time?: number;
}

/** Longest id the trail records (tenant, session, actor, request and key ids). */
export const MAX_AUDIT_ID_LENGTH = 256;

/** C0 and C1 controls and the line separators: they would forge lines in a JSON-lines viewer. */
function hasControlCharacter(value: string): boolean {
  for (let index = 0; index < value.length; index += 1) {
    const code = value.charCodeAt(index);
    if (code <= 0x1f || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029) {
      return true;
    }
  }
  return false;
}

/**
 * Builds an event field by field from typed values (an allowlist): a field that is not in the
 * schema is never copied, whatever the input object holds. Refuses a value of the wrong kind
 * naming the field only (the values may be identifiers the trail must not leak into logs).
 *
 * @throws InvalidArgumentError naming the field.
 */
export function buildAuditEvent(input: AuditEventInput): AuditEventBody {
  const action = oneOf(input.action, AUDIT_ACTIONS, 'action');
  const outcome = oneOf(input.outcome, AUDIT_OUTCOMES, 'outcome');
  if ((outcome === 'success') !== (input.reason === undefined)) {
    throw new InvalidArgumentError(
      'audit event: reason is set exactly when the outcome is not success',
    );
  }
  const time = input.time ?? Date.now();
  if (!Number.isSafeInteger(time) || time < 0) {
    throw new InvalidArgumentError('audit event: time must be ms since the epoch');
  }
  const eventId = uuidv7({ msecs: time, random: randomBytes16() });
  const reason =
    input.reason === undefined ? undefined : oneOf(input.reason, AUDIT_REASONS, 'reason');
  const actor = checkAuditActor(input.actor);
  const source =
    input.source === undefined
      ? undefined
      : {
          requestId: optionalId(input.source.requestId, 'source.requestId'),
          ip: optionalIp(input.source.ip),
        };
  const target = {
    tenantId: id(input.target?.tenantId, 'target.tenantId'),
    sessionId: optionalId(input.target?.sessionId, 'target.sessionId'),
    subjectRef: optionalId(input.target?.subjectRef, 'target.subjectRef'),
    count: optionalCount(input.target?.count),
    recordId: optionalId(input.target?.recordId, 'target.recordId'),
  };
  const keys =
    input.keys === undefined
      ? undefined
      : canonicallyOrdered({
          dekIds: frozenIds(optionalIds(input.keys.dekIds, 'keys.dekIds')),
          kekIds: frozenIds(optionalIds(input.keys.kekIds, 'keys.kekIds')),
        });
  // Each object is assembled with its keys in RFC 8785 order (sorted by UTF-16 code units) and
  // frozen, so JSON.stringify of the body is its canonical JSON (bodyJsonOf): sealing an event
  // sorts no keys.
  const body = canonicallyOrdered<AuditEventBody>({
    action,
    actor,
    eventId,
    keys,
    outcome,
    reason,
    schema: AUDIT_SCHEMA,
    source: source && canonicallyOrdered({ ip: source.ip, requestId: source.requestId }),
    target: canonicallyOrdered({
      count: target.count,
      recordId: target.recordId,
      sessionId: target.sessionId,
      subjectRef: target.subjectRef,
      tenantId: target.tenantId,
    }),
    time,
  });
  canonicalBodies.add(body);
  return body;
}

/** Bodies {@link buildAuditEvent} built: frozen, every key in canonical order. */
const canonicalBodies = new WeakSet<object>();

/**
 * Whether `body` came from {@link buildAuditEvent}, so that JSON.stringify of it is already its
 * canonical JSON. @internal
 */
export function isCanonicallyOrdered(body: object): boolean {
  return canonicalBodies.has(body);
}

/** The object, its keys already in canonical order, without its undefined fields and frozen. */
const canonicallyOrdered = <T extends object>(value: T): T => Object.freeze(stripUndefined(value));

const frozenIds = (ids: readonly string[] | undefined): readonly string[] | undefined =>
  ids && Object.freeze(ids);

/**
 * The actor's fields, checked and copied (nothing else of the object): type from the list,
 * ids of 1-256 characters without control characters.
 *
 * @throws InvalidArgumentError naming the field, never its value.
 */
export function checkAuditActor(actor: AuditActor | undefined): AuditActor {
  const type = oneOf(actor?.type, AUDIT_ACTOR_TYPES, 'actor.type');
  const actorId = id(actor?.id, 'actor.id');
  const tenantId = id(actor?.tenantId, 'actor.tenantId');
  const onBehalfOf = optionalId(actor?.onBehalfOf, 'actor.onBehalfOf');
  // Keys in canonical order (see buildAuditEvent).
  return canonicallyOrdered({ id: actorId, onBehalfOf, tenantId, type });
}

function oneOf<const T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`audit event: ${field} must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

function id(value: unknown, field: string): string {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > MAX_AUDIT_ID_LENGTH ||
    hasControlCharacter(value) ||
    !value.isWellFormed()
  ) {
    throw new InvalidArgumentError(
      `audit event: ${field} must be an id of 1-${MAX_AUDIT_ID_LENGTH} characters without control characters`,
    );
  }
  return value;
}

const optionalId = (value: unknown, field: string): string | undefined =>
  value === undefined ? undefined : id(value, field);

function optionalIds(value: unknown, field: string): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value))
    throw new InvalidArgumentError(`audit event: ${field} must be a list of ids`);
  return value.map((entry: unknown) => id(entry, field));
}

function optionalIp(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || isIP(value) === 0) {
    throw new InvalidArgumentError('audit event: source.ip must be an IPv4 or IPv6 address');
  }
  return value;
}

function optionalCount(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new InvalidArgumentError('audit event: target.count must be a whole number, 0 or more');
  }
  return value as number;
}

/** The object without its undefined fields, so an event's JSON has no `"x": undefined` holes. */
function stripUndefined<T extends object>(value: T): T {
  const defined: Record<string, unknown> = {};
  for (const key in value) {
    if (value[key] !== undefined) defined[key] = value[key];
  }
  return defined as T;
}

/**
 * The random part of event ids, drawn from a pool that `randomFillSync` refills: one call per
 * 256 ids instead of one per id (the uuid package asks the platform for 16 bytes each time).
 */
const randomPool = Buffer.allocUnsafe(4096);
let randomOffset = randomPool.length;

function randomBytes16(): Uint8Array {
  if (randomOffset === randomPool.length) {
    randomFillSync(randomPool);
    randomOffset = 0;
  }
  randomOffset += 16;
  return randomPool.subarray(randomOffset - 16, randomOffset);
}
