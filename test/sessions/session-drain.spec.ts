import { describe, expect, it } from 'vitest';
import { ShuttingDownError, type DataKeyContext } from '../../src/index.js';
import { RotatingEnvProvider } from '../support/rotating-env-provider.js';
import { memoryHarness, userMessage } from '../support/session-harness.js';
import { rejectionOf } from '../support/thrown-by.js';

// Issue 9, point 6, at the session layer and without a server (so mutation runs see it):
// EncryptedSessionService.drain() lets calls in flight finish and refuses later ones.

/** Env keys whose first data-key generation waits until the test releases it. */
class HeldProvider extends RotatingEnvProvider {
  private release!: () => void;
  private readonly released = new Promise<void>((resolve) => {
    this.release = resolve;
  });
  reached!: Promise<void>;
  private reach!: () => void;

  constructor() {
    super();
    this.reached = new Promise<void>((resolve) => {
      this.reach = resolve;
    });
  }

  open(): void {
    this.release();
  }

  override async generateDataKey(context: DataKeyContext) {
    this.reach();
    await this.released;
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
      await provider.reached;
      const drained = harness.service.drain();
      const late = await rejectionOf(() => session.getItems());
      const lateOpen = await rejectionOf(() => harness.service.open('other'));
      provider.open();
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
