import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import {
  EncryptedSessionError,
  IntegrityError,
  KeyDestroyedError,
  KeyProviderUnavailableError,
  StorageUnavailableError,
} from '../errors/index.js';
import { backoffDelay, type BackoffPolicy } from '../errors/backoff.js';
import { AUDIT_KEYS_TENANT, type AuditTrail } from '../audit/index.js';
import {
  SESSION_STORAGE,
  type DataKeyRecord,
  type SessionRef,
  type SessionStorage,
} from '../storage/index.js';
import { KEY_PROVIDER, type KeyProvider, type WrappedDataKey } from './key-provider.interface.js';
import {
  KEY_RING_OPTIONS,
  resolveKeyRingOptions,
  type KeyRingOptions,
} from './key-ring.options.js';

/** An unwrapped data key with what the session layer needs to use it. */
export class UsableDataKey {
  private revokedFlag = false;

  constructor(
    readonly dekId: string,
    readonly tenantId: string,
    readonly sessionId: string,
    readonly generation: number,
    readonly firstSeq: number,
    /** The 32 key bytes. Owned by the key ring: zeroed when evicted, never to be kept. */
    readonly key: Buffer,
  ) {}

  /**
   * True once the key ring evicted (and zeroed) this key. Check it after any await and before
   * using `key`: a zeroed key must never seal anything.
   */
  get revoked(): boolean {
    return this.revokedFlag;
  }

  /** Zeroes the key bytes; only the key ring calls this. */
  revoke(): void {
    this.revokedFlag = true;
    this.key.fill(0);
  }
}

/**
 * Counters readable by the host (e.g. for metrics), since the key ring started.
 *
 * @publicApi
 */
export interface KeyRingStats {
  /** Data key lookups served from the cache. */
  cacheHits: number;
  /** Lookups that had to go to storage and the provider (or join a call already under way). */
  cacheMisses: number;
  /** Requests sent to the key provider, retries included. */
  providerCalls: number;
  /** Provider requests that failed, retried or not. */
  providerFailures: number;
  /** Provider requests that were retries of a failed one. */
  providerRetries: number;
  /** Calls refused at once because the provider was found down moments before. */
  providerFastFailures: number;
  /** Unwrapped data keys held now. */
  cachedKeys: number;
}

/**
 * Whether the key provider is usable, as the key ring last found it: no call is made to find
 * out (a health check must not cost a KMS request each time).
 *
 * @publicApi
 */
export interface KeyProviderStatus {
  /** The provider's short name (`env`, `aws-kms`, `vault-transit`, ...). */
  readonly provider: string;
  /**
   * True from a provider call that ran out of retries until the next one that succeeds: the
   * provider is down as far as this process knows. Sessions with cached keys keep working.
   */
  readonly outage: boolean;
  /** While calls fail at once (the cooldown after an outage was found), how much longer, in ms. */
  readonly fastFailForMs?: number;
}

const logger = new Logger('KeyRing');

const DAY_MS = 86_400_000;

/** How often key creation starts over after the session's keys changed under it. */
const MAX_KEY_CREATION_ATTEMPTS = 5;

/** Whether an active key serves a first write (any) or a rotation from `rotateFrom`. */
const serves = (active: DataKeyRecord, rotateFrom: number | undefined): boolean =>
  rotateFrom === undefined || active.firstSeq >= rotateFrom;

/** What a data key id looks like; anything else read from storage stays out of messages. */
const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const refKey = (ref: SessionRef) => `${ref.tenantId.length}:${ref.tenantId}:${ref.sessionId}`;

/**
 * Data keys: one per session and generation, created on first write, wrapped by the key
 * provider and stored; unwrapped keys cached in process (bounded in size and age, zeroed on
 * eviction). Concurrent misses for one key share one provider call.
 *
 * @publicApi
 */
@Injectable()
export class KeyRing {
  private readonly options: Required<KeyRingOptions>;
  /**
   * dekId -> unwrapped key, least recently used first out, each for at most `cacheMaxAgeMs`
   * after it was loaded. Every key that leaves (evicted, expired, replaced, deleted, cleared)
   * is zeroed by `dispose`; expired ones on a timer of their own, not only when next asked for.
   */
  private readonly cache: LRUCache<string, UsableDataKey>;
  /** Session -> dekId of its active key, for writes. */
  private readonly activeBySession = new Map<string, string>();
  private readonly loading = new Map<string, Promise<UsableDataKey>>();
  private readonly counters = {
    cacheHits: 0,
    cacheMisses: 0,
    providerCalls: 0,
    providerFailures: 0,
    providerRetries: 0,
    providerFastFailures: 0,
  };
  /** Retries of a provider call that failed retryably (the module's one backoff policy). */
  private readonly providerBackoff: BackoffPolicy;
  /** Until when (epoch ms) provider calls fail at once: the provider was just found down. */
  private providerDownUntil = 0;
  /** True from a provider call that ran out of retries until the next one that succeeds. */
  private providerOutage = false;
  /** The module's audit trail, attached once it exists (it is built over this key ring). */
  private auditTrail: AuditTrail | undefined;

  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    @Inject(KEY_PROVIDER) private readonly provider: KeyProvider,
    @Optional() @Inject(KEY_RING_OPTIONS) options?: KeyRingOptions,
  ) {
    this.options = resolveKeyRingOptions(options);
    this.providerBackoff = {
      firstDelayMs: this.options.providerRetryBaseDelayMs,
      growth: 2,
      maxAttempts: this.options.providerMaxAttempts,
      budgetMs: this.options.providerRetryBudgetMs,
    };
    this.cache = new LRUCache<string, UsableDataKey>({
      max: this.options.cacheMaxEntries,
      // lru-cache reads a ttl of 0 as "no limit"; here 0 means "reload every time".
      ttl: Math.max(1, this.options.cacheMaxAgeMs),
      ttlAutopurge: true,
      // Read the clock on every lookup: a cached "now" goes stale when the event loop is busy.
      ttlResolution: 0,
      dispose: (dataKey) => dataKey.revoke(),
    });
  }

  /**
   * Items one data key may seal; the session layer starts a new generation past it.
   *
   * @internal
   */
  get maxItemsPerDataKey(): number {
    return this.options.maxItemsPerDataKey;
  }

  /** The rotation policy in force: days and items after which a used data key is rotated. */
  get rotationPolicy(): {
    readonly maxAgeDays: number | null;
    readonly maxItems: number | null;
  } {
    return {
      maxAgeDays: this.options.rotationMaxAgeDays,
      maxItems: this.options.rotationMaxItems,
    };
  }

  /**
   * Whether the policy wants a new generation before the session's next write, at position
   * `nextSeq` and time `now`: the active key has sealed items and is `maxAgeDays` old or has
   * sealed `maxItems`. A key that sealed nothing is never due, so a new generation is used
   * before it could be rotated again.
   *
   * @internal
   */
  rotationDue(
    active: Pick<DataKeyRecord, 'createdAt' | 'firstSeq'>,
    nextSeq: number,
    now: number,
  ): boolean {
    const sealed = nextSeq - active.firstSeq;
    if (sealed <= 0) return false;
    const { rotationMaxAgeDays: maxAgeDays, rotationMaxItems: maxItems } = this.options;
    return (
      (maxItems !== null && sealed >= maxItems) ||
      (maxAgeDays !== null && now - active.createdAt >= maxAgeDays * DAY_MS)
    );
  }

  /**
   * Records key creation, new generations and provider outages in the audit trail from now on.
   * The trail's own keys come from this key ring, so the module attaches it after building it.
   *
   * @internal
   */
  attachAuditTrail(trail: AuditTrail): void {
    this.auditTrail = trail;
  }

  /** Snapshot of the counters. */
  stats(): KeyRingStats {
    return { ...this.counters, cachedKeys: this.cache.size };
  }

  /**
   * The key provider's state as the key ring last found it, without calling the provider: an
   * outage lasts from a call that ran out of retries to the next call that succeeds.
   */
  providerStatus(): KeyProviderStatus {
    const fastFailForMs = this.providerDownUntil - Date.now();
    return {
      provider: this.provider.name,
      outage: this.providerOutage,
      ...(fastFailForMs > 0 && { fastFailForMs }),
    };
  }

  /**
   * The key new items of the session are sealed with; creates generation 1 on the first write.
   * A warm session makes no storage or provider call.
   *
   * @internal
   */
  async keyForWrite(ref: SessionRef, subjectId: string | null): Promise<UsableDataKey> {
    const sessionKey = refKey(ref);
    const activeId = this.activeBySession.get(sessionKey);
    if (activeId) {
      const cached = this.fromCache(activeId);
      if (cached) return cached;
    }
    return this.singleFlight(`write:${sessionKey}`, async () => {
      const record = await this.activeOrNewKey(ref, subjectId, undefined);
      const dataKey = await this.load(record);
      this.activeBySession.set(sessionKey, dataKey.dekId);
      return dataKey;
    });
  }

  /**
   * The key that opens items sealed under `dekId` for the session `ref`.
   * @throws KeyDestroyedError when the key was destroyed (its record is in state `destroyed`).
   * @throws IntegrityError when the key belongs to another session or does not exist at all.
   *
   * @internal
   */
  async keyForRead(ref: SessionRef, dekId: string): Promise<UsableDataKey> {
    const cached = this.fromCache(dekId);
    const dataKey =
      cached ??
      // Per session: a flight for a key another session's row names must not answer this one.
      (await this.singleFlight(`read:${refKey(ref)}:${dekId}`, async () => {
        const record = await this.storage.read(ref, (scope) => scope.dataKeys.findById(dekId));
        // Destroying a key keeps its record (state `destroyed`): an item naming a key the
        // session never had, or whose record was deleted, was altered or moved in the database.
        if (!record) {
          throw new IntegrityError(
            `An item of session '${ref.sessionId}' names data key ${UUID_SHAPE.test(dekId) ? dekId : '(not a key id)'}, which this session does not have; the row or the key record was altered or moved. Nothing was deleted`,
          );
        }
        return this.load(record);
      }));
    if (dataKey.tenantId !== ref.tenantId || dataKey.sessionId !== ref.sessionId) {
      throw new IntegrityError(
        `An item of session '${ref.sessionId}' names data key ${dekId}, which belongs to another session; the row was moved or altered. Nothing was deleted`,
      );
    }
    return dataKey;
  }

  /**
   * The key `dekId` of session `ref` if this ring holds it now, without any storage or
   * provider call (a unit of work that must not wait uses it); undefined otherwise.
   *
   * @internal
   */
  cachedKey(ref: SessionRef, dekId: string): UsableDataKey | undefined {
    const dataKey = this.fromCache(dekId, false);
    if (!dataKey || dataKey.revoked) return undefined;
    return dataKey.tenantId === ref.tenantId && dataKey.sessionId === ref.sessionId
      ? dataKey
      : undefined;
  }

  /**
   * Starts the next generation for the session: the active key is retired (it still opens old
   * items) and a new one seals new writes. `firstSeq` is the session's next sequence number.
   *
   * @internal
   */
  async rotate(
    ref: SessionRef,
    subjectId: string | null,
    firstSeq: number,
  ): Promise<UsableDataKey> {
    // Its own flight: sharing the first-write flight would hand back the old key unrotated.
    // Two processes rotating at once are settled by the unique (session, generation) key.
    return this.singleFlight(`rotate:${refKey(ref)}`, async () => {
      const record = await this.activeOrNewKey(ref, subjectId, firstSeq);
      const dataKey = await this.load(record);
      this.activeBySession.set(refKey(ref), dataKey.dekId);
      return dataKey;
    });
  }

  /**
   * Forgets which key the session writes with, so the next write reads the active key from
   * storage again (after another writer rotated it). Cached keys stay: rotation retires keys,
   * it does not destroy them, and other writers may be using them right now.
   *
   * @internal
   */
  forgetActiveKey(ref: SessionRef): void {
    this.activeBySession.delete(refKey(ref));
  }

  /**
   * Drops (and zeroes) one cached key, e.g. a retiring key just destroyed.
   *
   * @internal
   */
  forgetKey(dekId: string): void {
    this.cache.delete(dekId);
  }

  /**
   * Drops (and zeroes) every cached key of the session, e.g. after its keys were destroyed.
   *
   * @internal
   */
  forgetSession(ref: SessionRef): void {
    this.activeBySession.delete(refKey(ref));
    for (const [dekId, dataKey] of this.cache.entries()) {
      if (dataKey.tenantId === ref.tenantId && dataKey.sessionId === ref.sessionId) {
        this.cache.delete(dekId);
      }
    }
  }

  /** The root key id new data keys are wrapped under. */
  activeKekId(): string {
    return this.provider.activeKekId();
  }

  /**
   * The active root key id, read again from the provider where it can change outside the
   * process (a new Vault key version), with the same retries as every provider call.
   *
   * @internal
   */
  async refreshActiveKekId(): Promise<string> {
    const provider = this.provider;
    if (!provider.refreshActiveKey) return provider.activeKekId();
    return this.callProvider(() => provider.refreshActiveKey!());
  }

  /**
   * Wraps a stored data key under the active root key (KEK rotation), with the same retries as
   * every provider call. Cached keys are untouched: the data key itself does not change.
   *
   * @internal
   */
  rewrapDataKey(record: DataKeyRecord): Promise<WrappedDataKey> {
    return this.callProvider(
      () =>
        this.provider.rewrapDataKey(
          { kekId: record.kekId, wrappedKey: record.wrappedKey },
          { tenantId: record.tenantId, sessionId: record.sessionId, dekId: record.dekId },
        ),
      record,
    );
  }

  /**
   * Zeroes and drops every cached key (shutdown).
   *
   * @internal
   */
  clear(): void {
    this.cache.clear();
    this.activeBySession.clear();
  }

  /**
   * The session's active key if it serves (any, for a first write; one that starts at or after
   * `rotateFrom`, for a rotation), else a new generation. Another process may create or
   * destroy keys between the look and the insert (a concurrent first write, rotation or
   * clear): the attempt then starts over, a bounded number of times, and running out is a
   * retryable StorageUnavailableError. A lost race is never reported as tampering.
   */
  private async activeOrNewKey(
    ref: SessionRef,
    subjectId: string | null,
    rotateFrom: number | undefined,
  ): Promise<DataKeyRecord> {
    for (let attempt = 0; attempt < MAX_KEY_CREATION_ATTEMPTS; attempt++) {
      const found = await this.storage.read(ref, async (scope) => ({
        active: await scope.dataKeys.findActive(),
        generation: await scope.dataKeys.maxGeneration(),
      }));
      // Another writer already rotated past this point: use its key, skip no generation.
      if (found.active && serves(found.active, rotateFrom)) return found.active;
      // After a clear every key is destroyed: the next one continues the generation count.
      const created = await this.tryCreateDataKey(ref, subjectId, found.generation + 1, rotateFrom);
      if (created) return created;
    }
    throw new StorageUnavailableError(
      `Creating a data key for session '${ref.sessionId}' kept losing races with other writers or clears; retry the call`,
    );
  }

  /**
   * Generates a key for `generation` and stores it as the session's only active key, unless the
   * session's keys changed since the caller looked (then undefined, and nothing is stored).
   */
  private async tryCreateDataKey(
    ref: SessionRef,
    subjectId: string | null,
    generation: number,
    rotateFrom: number | undefined,
  ): Promise<DataKeyRecord | undefined> {
    const dekId = randomUUID();
    // Generated before the transaction: no provider call while holding the session's lock.
    const generated = await this.callProvider(
      () =>
        this.provider.generateDataKey({ tenantId: ref.tenantId, sessionId: ref.sessionId, dekId }),
      ref,
    );
    // The trail's own keys are not events of any tenant.
    const event =
      ref.tenantId === AUDIT_KEYS_TENANT
        ? undefined
        : await this.auditTrail
            ?.prepare(generation === 1 ? 'key.create' : 'key.generation', { ...ref, subjectId })
            .catch((error: unknown) => {
              generated.plaintext.fill(0);
              throw error;
            });
    let record: DataKeyRecord | undefined;
    try {
      record = await this.storage.transaction(ref, async (scope) => {
        // The session's write lock orders this against appends, clears and key creations of
        // other processes, so what is read below stays true until commit. (A session without
        // a row has no writer to race: its appends fail before they seal anything.)
        await scope.session.lockForWrite(Date.now());
        const active = await scope.dataKeys.findActive();
        const highest = await scope.dataKeys.maxGeneration();
        if (highest !== generation - 1 || (active && serves(active, rotateFrom))) return undefined;
        const session = await scope.session.find();
        const candidate: DataKeyRecord = {
          dekId,
          tenantId: ref.tenantId,
          sessionId: ref.sessionId,
          subjectId,
          generation,
          firstSeq: rotateFrom ?? session?.nextSeq ?? 1,
          kekId: generated.wrapped.kekId,
          wrappedKey: generated.wrapped.wrappedKey,
          state: 'active',
          createdAt: Date.now(),
          destroyedAt: null,
        };
        if (!(await scope.dataKeys.insertIfAbsent(candidate))) return undefined;
        // One active key per session, enforced where the key is inserted: any older key
        // still active (a first write racing a rotation) only opens old items from now on.
        await scope.dataKeys.retireActiveBelow(generation);
        await event?.appendIn(scope.audit, {
          keys: { dekIds: [dekId], kekIds: [candidate.kekId] },
        });
        return candidate;
      });
    } catch (error) {
      generated.plaintext.fill(0);
      throw error;
    }
    if (record) event?.committed();
    if (!record) {
      generated.plaintext.fill(0);
      return undefined;
    }
    logger.debug(
      `Created data key ${dekId} (generation ${generation}) for session '${ref.sessionId}' of tenant '${ref.tenantId}' under ${record.kekId}`,
    );
    // The plaintext from generation is already what we need: cache it, no unwrap call.
    this.remember(record, generated.plaintext);
    return record;
  }

  private async load(record: DataKeyRecord): Promise<UsableDataKey> {
    // The caller already counted this lookup: check again (another flight may have loaded it)
    // without counting it twice.
    const cached = this.fromCache(record.dekId, false);
    if (cached) return cached;
    if (record.state === 'destroyed') {
      throw new KeyDestroyedError(
        `Data key ${record.dekId} of session '${record.sessionId}' was destroyed (erased or cleared); its items cannot be read`,
      );
    }
    const plaintext = await this.callProvider(
      () =>
        this.provider.unwrapDataKey(
          { kekId: record.kekId, wrappedKey: record.wrappedKey },
          { tenantId: record.tenantId, sessionId: record.sessionId, dekId: record.dekId },
        ),
      record,
    );
    return this.remember(record, plaintext);
  }

  private remember(record: DataKeyRecord, plaintext: Buffer): UsableDataKey {
    // Loaded twice at once (a read and a write of the same key): keep the copy already cached,
    // which a caller may be about to seal or open with; replacing it would zero it under them.
    const cached = this.cache.peek(record.dekId);
    if (cached && !cached.revoked) {
      plaintext.fill(0);
      return cached;
    }
    // Copy into memory of our own (not the shared Buffer pool), so zeroing wipes only this key.
    const key = Buffer.alloc(32);
    plaintext.copy(key);
    plaintext.fill(0);
    const dataKey = new UsableDataKey(
      record.dekId,
      record.tenantId,
      record.sessionId,
      record.generation,
      record.firstSeq,
      key,
    );
    // Past `max` the least recently used key is evicted and zeroed.
    this.cache.set(record.dekId, dataKey);
    return dataKey;
  }

  /** A cached key (now the most recently used), or undefined; an expired one is zeroed. */
  private fromCache(dekId: string, count = true): UsableDataKey | undefined {
    const dataKey = this.cache.get(dekId);
    if (count) {
      if (dataKey) this.counters.cacheHits++;
      else this.counters.cacheMisses++;
    }
    return dataKey;
  }

  private singleFlight<T>(key: string, load: () => Promise<T>): Promise<T> {
    const pending = this.loading.get(key) as Promise<T> | undefined;
    if (pending) return pending;
    const started = load().finally(() => this.loading.delete(key));
    this.loading.set(key, started as Promise<UsableDataKey>);
    return started;
  }

  /**
   * Calls the provider, retrying retryable failures (throttling, 5xx, dropped connections) with
   * exponential backoff and full jitter, bounded in attempts and time. When the retries run out
   * the provider counts as down for a short cooldown, during which calls fail at once: a new
   * session then fails fast instead of waiting, while cached sessions never call at all.
   */
  private async callProvider<T>(call: () => Promise<T>, ref?: SessionRef): Promise<T> {
    const startedAt = Date.now();
    if (startedAt < this.providerDownUntil) {
      this.counters.providerFastFailures++;
      throw new KeyProviderUnavailableError(
        `Key provider '${this.provider.name}' is unavailable (it failed moments ago); retry later (sessions with cached keys keep working)`,
      );
    }
    for (let attempt = 1; ; attempt++) {
      this.counters.providerCalls++;
      try {
        const result = await call();
        this.providerDownUntil = 0;
        this.providerOutage = false;
        return result;
      } catch (error) {
        this.counters.providerFailures++;
        const failure = this.describeProviderFailure(error);
        if (!failure.retryable) throw this.logged(failure, attempt);
        const delay = backoffDelay(this.providerBackoff, attempt, Date.now() - startedAt);
        if (delay === undefined) {
          this.providerDownUntil = Date.now() + this.options.providerOutageCooldownMs;
          await this.recordOutageStart(ref);
          throw this.logged(failure, attempt);
        }
        this.counters.providerRetries++;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /**
   * Records the start of a provider outage, once per outage (until a call succeeds again), on
   * the control chain of the tenant whose call found it. A trail that cannot record it is
   * logged: the caller gets the outage error either way.
   */
  private async recordOutageStart(ref: SessionRef | undefined): Promise<void> {
    if (this.providerOutage) return;
    this.providerOutage = true;
    if (!this.auditTrail || !ref || ref.tenantId === AUDIT_KEYS_TENANT) return;
    await this.auditTrail
      .recordEvent('key.provider_outage', { tenantId: ref.tenantId }, 'failure', {
        reason: 'KEY_PROVIDER_UNAVAILABLE',
      })
      .catch(() => logger.error('The audit event of a key provider outage could not be written'));
  }

  /** Logs a provider call that failed for good (once, not per retry) and returns its error. */
  private logged(failure: { error: Error; label: string }, attempts: number): Error {
    logger.warn(
      `Key provider '${this.provider.name}' call failed after ${attempts} attempt(s): ${failure.label}`,
    );
    return failure.error;
  }

  /** The typed error for a failed provider call, and whether a retry may help. */
  private describeProviderFailure(error: unknown): {
    error: Error;
    retryable: boolean;
    label: string;
  } {
    // Name and code only: a provider's own message may quote what it was sent.
    const { name, code } = (error ?? {}) as { name?: unknown; code?: unknown };
    const detail = typeof code === 'string' || typeof code === 'number' ? ` (${code})` : '';
    const label = `${typeof name === 'string' ? name : 'Error'}${detail}`;
    if (error instanceof EncryptedSessionError) {
      return { error, retryable: error.retryable, label };
    }
    // An untyped error from a provider is a transport failure until shown otherwise; its
    // message and properties stay out of the cause, they may hold what was sent.
    return {
      error: new KeyProviderUnavailableError(
        `Key provider '${this.provider.name}' failed; retry later (sessions with cached keys keep working)`,
        { cause: new Error(label) },
      ),
      retryable: true,
      label,
    };
  }
}
