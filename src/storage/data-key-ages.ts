import type { DataKeyRecord } from './storage.records.js';
import type { DataKeyAges } from './storage.ports.js';

/**
 * Adds up {@link DataKeyAges} one session's keys at a time, for adapters that read keys by
 * session (memory, Redis). A retiring key counts as retired when its session's next
 * generation was created; without one (a record altered outside the module) it counts from
 * its own creation, so it is never left out.
 */
export class DataKeyAgesTally {
  private activeKeys = 0;
  private oldestActiveCreatedAt: number | null = null;
  private activeKeysCreatedBefore = 0;
  private retiringKeys = 0;
  private oldestRetiredAt: number | null = null;

  constructor(
    private readonly createdBefore: number,
    private readonly exceptTenantId: string,
  ) {}

  /** Counts every key of one session (none of a session of `exceptTenantId`). */
  addSession(keys: readonly DataKeyRecord[]): void {
    if (keys[0]?.tenantId === this.exceptTenantId) return;
    const createdByGeneration = new Map<number, number>();
    const retiring: DataKeyRecord[] = [];
    for (const key of keys) {
      createdByGeneration.set(key.generation, key.createdAt);
      if (key.state === 'active') {
        this.activeKeys++;
        this.oldestActiveCreatedAt = earliest(this.oldestActiveCreatedAt, key.createdAt);
        if (key.createdAt < this.createdBefore) this.activeKeysCreatedBefore++;
      } else if (key.state === 'retiring') {
        retiring.push(key);
      }
    }
    for (const key of retiring) {
      this.retiringKeys++;
      const retiredAt = createdByGeneration.get(key.generation + 1) ?? key.createdAt;
      this.oldestRetiredAt = earliest(this.oldestRetiredAt, retiredAt);
    }
  }

  result(): DataKeyAges {
    return {
      activeKeys: this.activeKeys,
      oldestActiveCreatedAt: this.oldestActiveCreatedAt,
      activeKeysCreatedBefore: this.activeKeysCreatedBefore,
      retiringKeys: this.retiringKeys,
      oldestRetiredAt: this.oldestRetiredAt,
    };
  }
}

const earliest = (current: number | null, next: number): number =>
  current === null ? next : Math.min(current, next);
