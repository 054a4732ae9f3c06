// One process of clear-races.spec.ts: appends to, or clears, a few sessions for a fixed time,
// then prints one result line and exits. Plain ESM over the compiled library, so it is a real,
// separate OS process with its own connections and key cache.
//
// Configuration comes in NES_CHILD_CONFIG (JSON; the root key stays out of argv, which `ps`
// shows): { entryUrl, backend, rootKey, sessionIds, role: 'append' | 'clear', durationMs, writer }.
import { Logger } from '@nestjs/common';
import { openChildStorage } from '../support/child-storage.mjs';

const REPLY_MARK = '@@nes ';
const config = JSON.parse(process.env.NES_CHILD_CONFIG ?? '{}');

// Lost races are logged at debug level at most; warnings stay visible in the parent's output.
Logger.overrideLogger(['error', 'fatal']);

const lib = await import(config.entryUrl);

const storage = await openChildStorage(config.entryUrl, config.backend);
const provider = new lib.EnvKeyProvider({ keys: config.rootKey, activeKeyId: 'k1' });
const service = new lib.EncryptedSessionService(storage, new lib.KeyRing(storage, provider));
const sessions = [];
for (const sessionId of config.sessionIds) sessions.push(await service.open(sessionId));

const result = { calls: 0, succeeded: 0, errors: [] };
const deadline = Date.now() + config.durationMs;
let n = 0;
while (Date.now() < deadline) {
  const session = sessions[n % sessions.length];
  n++;
  result.calls++;
  try {
    if (config.role === 'clear') {
      await session.clearSession();
      // Clears a little less often than appends land, so keys get used between clears.
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 15));
    } else {
      await session.addItems([
        { role: 'user', content: `w${config.writer}-${n}a` },
        { role: 'user', content: `w${config.writer}-${n}b` },
      ]);
    }
    result.succeeded++;
  } catch (error) {
    result.errors.push({
      name: String(error?.name),
      code: String(error?.code),
      retryable: error?.retryable === true,
      message: String(error?.message ?? error),
    });
  }
}
await storage.close();
process.stdout.write(`${REPLY_MARK}${JSON.stringify(result)}\n`);
