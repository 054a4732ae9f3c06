import type { SessionReadScope, SessionRecord } from '../storage/index.js';

/**
 * Whether a legal hold covers the unit's session now: a hold in the holds store (on the
 * session or its subject), or the row's own `legalHold` flag (set by a host's tooling). Inside
 * a write unit, call it after the session's write lock, so a hold placed meanwhile is seen.
 * `row`: the session's row as the unit already read it, to save reading it again.
 */
export async function isHeld(scope: SessionReadScope, row?: SessionRecord): Promise<boolean> {
  if ((row ?? (await scope.session.find()))?.legalHold) return true;
  return ((await scope.holds?.covering()) ?? []).length > 0;
}
