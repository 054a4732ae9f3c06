import type { AgentInputItem } from '@openai/agents-core';
import { Logger } from '@nestjs/common';
import { decodeItemPayload } from '../crypto/index.js';
import { EncryptedSessionError, StorageUnavailableError } from '../errors/index.js';
import type { KeyRing, UsableDataKey } from '../keys/index.js';
import type { SessionReadScope, SessionRef, SessionStorage, StoredItem } from '../storage/index.js';
import { itemBinding, type ItemCipher } from './item-cipher.js';
import { auditedOperation, type SessionAuditContext } from './session-audit.js';
import { checkStoredItems } from './stored-row-checks.js';

/** What the reader of one session works with; its writer shares it. */
export interface SessionReaderContext extends SessionAuditContext {
  readonly ref: SessionRef;
  readonly storage: SessionStorage;
  readonly keyRing: KeyRing;
  readonly cipher: ItemCipher;
  /** Epoch ms now. */
  readonly now: () => number;
}

/** Rows per query when reading a whole history. */
const FULL_READ_PAGE_SIZE = 1000;

/** How often opening rows reloads keys the cache evicted meanwhile. */
const MAX_KEY_LOAD_ATTEMPTS = 5;

// Log lines carry ids, counts and error codes only: never item content or key material.
const logger = new Logger('EncryptedSession');

/**
 * The read path of one session: finds the visible rows, checks what storage returned, loads
 * their data keys and opens them. Reads fail closed and never delete. The writer opens rows
 * through it too (a popped item, the suffix a history transaction replaces).
 */
export class SessionReader {
  private readonly ref: SessionRef;

  constructor(private readonly context: SessionReaderContext) {
    this.ref = context.ref;
  }

  /**
   * The newest `limit` visible items in chronological order, or every visible item when
   * `limit` is undefined. The caller has checked `limit` (a positive integer).
   */
  async getItems(limit: number | undefined): Promise<AgentInputItem[]> {
    const items = await auditedOperation(this.context, 'session.read', async (event) => {
      const now = this.context.now();
      const opened =
        limit === undefined
          ? await this.readAllPaged(now)
          : await this.openRows(await this.readNewestRows(now, limit), now);
      // Recorded before a single item is returned.
      if (event) await this.context.audit!.recordRead(event, opened.length);
      return opened;
    });
    logger.verbose(
      `Read ${items.length} item(s) of session '${this.ref.sessionId}' of tenant '${this.ref.tenantId}'`,
    );
    return items;
  }

  /**
   * Every visible item, read in pages up to the newest visible item when the call started:
   * items appended meanwhile are not included (positions are never reused), and no more than
   * one page of ciphertext is held at a time. Bounded by the items themselves, not the
   * session's counter, so a full read returns what `getItems(n)` returns even when the counter
   * or the session row was altered.
   */
  private async readAllPaged(now: number): Promise<AgentInputItem[]> {
    // The session row is read as well, though the bound comes from the items (a counter set
    // back below them must not hide them): its damaged values fail this read as they fail a
    // write, instead of going unnoticed.
    const newest = await this.context.storage.read(this.ref, async (scope) => {
      await scope.session.find();
      return (await this.newestRows(scope, now, 1))[0];
    });
    if (!newest) return [];
    const throughSeq = newest.seq;
    const items: AgentInputItem[] = [];
    let afterSeq = 0;
    for (;;) {
      const page = checkStoredItems(
        this.ref,
        await this.context.storage.read(this.ref, (scope) =>
          scope.items.listVisiblePage(now, afterSeq, throughSeq, FULL_READ_PAGE_SIZE),
        ),
        { limit: FULL_READ_PAGE_SIZE, afterSeq, throughSeq },
      );
      if (page.length === 0) return items;
      afterSeq = page.at(-1)!.seq;
      for (const item of await this.openRows(page, now)) items.push(item);
      if (page.length < FULL_READ_PAGE_SIZE) return items;
    }
  }

  /** The newest `limit` rows visible at `now`, read in a unit of work of their own, checked. */
  async readNewestRows(now: number, limit: number): Promise<StoredItem[]> {
    return this.context.storage.read(this.ref, (scope) => this.newestRows(scope, now, limit));
  }

  /** The newest `limit` rows visible at `now`, checked: damaged rows never reach a caller. */
  async newestRows(scope: SessionReadScope, now: number, limit: number): Promise<StoredItem[]> {
    return checkStoredItems(this.ref, await scope.items.listVisible(now, limit), {
      limit,
    });
  }

  /** Loads the keys of the newest `count` visible items (outside any transaction). */
  async keysForNewest(count: number): Promise<Map<string, UsableDataKey>> {
    if (count === 0) return new Map();
    const now = this.context.now();
    return this.loadKeys(await this.readNewestRows(now, count));
  }

  private async loadKeys(rows: readonly StoredItem[]): Promise<Map<string, UsableDataKey>> {
    const keys = new Map<string, UsableDataKey>();
    for (const row of rows) {
      if (!keys.has(row.dekId))
        keys.set(row.dekId, await this.context.keyRing.keyForRead(this.ref, row.dekId));
    }
    return keys;
  }

  /** Opens rows outside a transaction, reloading keys the cache evicted meanwhile. */
  async openRows(rows: StoredItem[], now: number): Promise<AgentInputItem[]> {
    for (let attempt = 0; attempt < MAX_KEY_LOAD_ATTEMPTS; attempt++) {
      try {
        const keys = await this.loadKeys(rows);
        if ([...keys.values()].every((key) => !key.revoked))
          return this.openRowsWith(rows, keys, now);
      } catch (error) {
        if (error instanceof EncryptedSessionError) {
          logger.warn(
            `Read of session '${this.ref.sessionId}' of tenant '${this.ref.tenantId}' failed (${error.code}): ${error.message}`,
          );
        }
        throw error;
      }
    }
    throw new StorageUnavailableError(
      `Data keys of session '${this.ref.sessionId}' were evicted while reading; raise the key cache size or retry`,
    );
  }

  /**
   * Opens and decodes rows whose keys are loaded, synchronously. Each plaintext is zeroed as
   * soon as it is decoded and each row's ciphertext is let go once opened, so a long history
   * never holds ciphertext, plaintext and items all at once.
   */
  openRowsWith(
    rows: StoredItem[],
    keys: Map<string, UsableDataKey>,
    now: number,
  ): AgentInputItem[] {
    const items: AgentInputItem[] = [];
    for (let index = 0; index < rows.length; index++) {
      const row = rows[index];
      const payload = this.context.cipher.open(
        keys.get(row.dekId)!,
        itemBinding(this.ref, row.seq, row.expiresAt),
        row.ciphertext,
      );
      // The expiry just authenticated is the one the query filtered on; check it once more.
      if (row.expiresAt === null || row.expiresAt > now) {
        items.push(decodeItemPayload(payload) as AgentInputItem);
      }
      if (payload !== row.ciphertext) payload.fill(0);
      row.ciphertext = EMPTY;
    }
    return items;
  }
}

const EMPTY = Buffer.alloc(0);
