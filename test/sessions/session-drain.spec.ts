import { describe, expect, it } from 'vitest';
import { ShuttingDownError, type DataKeyContext } from '../../src/index.js';
import { RotatingEnvProvider } from '../support/rotating-env-provider.js';
import { Gate } from '../support/gate.js';
import { memoryHarness, userMessage } from '../support/session-harness.js';
import { rejectionOf } from '../support/thrown-by.js';

// Issue 9, point 6, at the session layer and without a server (so mutation runs see it):
// EncryptedSessionService.drain() lets calls in flight finish and refuses later ones.

/** Env keys whose data-key generation waits at a gate. */
class HeldProvider extends RotatingEnvProvider {
  readonly gate = new Gate();

  override async generateDataKey(context: DataKeyContext) {
    await this.gate.pass();
    return super.generateDataKey(context);
  }
}

describe('EncryptedSessionService.drain', () => {
  it('lets a call in flight store its items, then refuses calls and opens', async () => {
    const provider = new HeldProvider();
    const harness = await memoryHarness({ provider });
    try {
      const session = await harness.service.open('drained');
      const writing = session.addItems([userMessage('in flight')]);
      await provider.gate.reached;
      const drained = harness.service.drain();
      const late = await rejectionOf(() => session.getItems());
      const lateOpen = await rejectionOf(() => harness.service.open('other'));
      provider.gate.open();
      await writing;
      await drained;

      expect(late).toBeInstanceOf(ShuttingDownError);
      expect(lateOpen).toBeInstanceOf(ShuttingDownError);
      const stored = await harness.storage.read(
        { tenantId: 'default', sessionId: 'drained' },
        (scope) => scope.items.listVisible(Date.now(), 10),
      );
      expect(stored).toHaveLength(1);
    } finally {
      await harness.close();
    }
  });
});
