import { ConfigurationError } from '../errors/index.js';
import { supportsMaintenance, type SessionRecord, type SessionStorage } from '../storage/index.js';

/** Sessions per page when a subject's sessions are listed. */
const SUBJECT_PAGE = 500;

/**
 * Every session row of a subject in a tenant, page by page, by session id bytes.
 *
 * @throws ConfigurationError (saying what cannot be done: `cannotDo`) when the storage cannot
 *   look sessions up by subject.
 */
export async function* sessionsOfSubject(
  storage: SessionStorage,
  tenantId: string,
  subjectId: string,
  cannotDo: string,
): AsyncGenerator<SessionRecord> {
  const lookup = supportsMaintenance(storage)
    ? storage.maintenance.listSessionsOfSubject?.bind(storage.maintenance)
    : undefined;
  if (!lookup) {
    throw new ConfigurationError(
      `The session storage '${storage.backend}' cannot look sessions up by subject, so ${cannotDo}`,
    );
  }
  for (let after = ''; ;) {
    const page = await lookup(tenantId, subjectId, after, SUBJECT_PAGE);
    yield* page;
    if (page.length < SUBJECT_PAGE) return;
    after = page.at(-1)!.sessionId;
  }
}
