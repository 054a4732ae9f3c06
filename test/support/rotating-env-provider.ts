import {
  EnvKeyProvider,
  type DataKeyContext,
  type KeyProvider,
  type WrappedDataKey,
} from '../../src/index.js';
import { newRootKeyEntry } from './test-keys.js';

/**
 * Env root keys as an operator rotates them: restart with a new key added and made active, the
 * old ones still listed. `rotate()` does that in place; `withOnlyActiveKey()` is a provider
 * that knows the active key alone (to prove nothing still needs an old one).
 */
export class RotatingEnvProvider implements KeyProvider {
  readonly name = 'env';
  private readonly entries = [newRootKeyEntry('k1')];
  private inner = new EnvKeyProvider({ keys: this.entries, activeKeyId: 'k1' });

  /** The base64 root keys, for secret scans. */
  get rootKeys(): string[] {
    return this.entries.map((entry) => entry.slice(entry.indexOf(':') + 1));
  }

  rotate(): void {
    const id = `k${this.entries.length + 1}`;
    this.entries.push(newRootKeyEntry(id));
    this.inner = new EnvKeyProvider({ keys: this.entries, activeKeyId: id });
  }

  withOnlyActiveKey(): EnvKeyProvider {
    const active = this.entries.at(-1)!;
    return new EnvKeyProvider({
      keys: [active],
      activeKeyId: active.slice(0, active.indexOf(':')),
    });
  }

  activeKekId(): string {
    return this.inner.activeKekId();
  }
  generateDataKey(context: DataKeyContext) {
    return this.inner.generateDataKey(context);
  }
  unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    return this.inner.unwrapDataKey(wrapped, context);
  }
  rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    return this.inner.rewrapDataKey(wrapped, context);
  }
}
