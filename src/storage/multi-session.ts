import type { SessionRef } from './storage.records.js';

/** Refuses a multi-session unit over another tenant's session: a caller's bug, not bad data. */
export function checkSameTenant(tenantId: string, refs: readonly SessionRef[]): void {
  for (const ref of refs) {
    if (ref.tenantId !== tenantId) {
      throw new Error('A multi-session unit of work names a session of another tenant');
    }
  }
}
