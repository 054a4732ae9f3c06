import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionModule,
  EncryptedSessionService,
  InvalidArgumentError,
  type EncryptedSessionModuleOptions,
} from '../../src/index.js';
import { resolveModuleOptions } from '../../src/module/resolve-module-options.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { thrownBy } from '../support/thrown-by.js';

const envKeys = () => ({ env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } });

describe('maxItemBytes module option', () => {
  it.each<[string, unknown]>([
    ['zero', 0],
    ['a negative number', -1],
    ['a fraction', 1.5],
    ['beyond a safe integer', 2 ** 53],
    ['a string', '4194304'],
    ['null', null],
    ['NaN', Number.NaN],
  ])('is refused at startup when %s, saying what to set', (_name, maxItemBytes) => {
    const options = { keys: envKeys(), maxItemBytes } as unknown as EncryptedSessionModuleOptions;
    const error = thrownBy(() => resolveModuleOptions(options));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(
      /options\.maxItemBytes must be a positive whole number of bytes.*4194304/,
    );
  });

  it('is accepted as a positive whole number', () => {
    expect(() => resolveModuleOptions({ keys: envKeys(), maxItemBytes: 1 })).not.toThrow();
  });

  describe('reaches the sessions the module opens', () => {
    let moduleRef: TestingModule | undefined;
    afterEach(async () => {
      await moduleRef?.close();
      moduleRef = undefined;
    });

    async function openWith(options: Partial<EncryptedSessionModuleOptions>) {
      moduleRef = await Test.createTestingModule({
        imports: [
          EncryptedSessionModule.forRoot({
            keys: envKeys(),
            storage: { type: 'memory' },
            ...options,
          }),
        ],
      }).compile();
      await moduleRef.init();
      return moduleRef.get(EncryptedSessionService).open('limited');
    }

    it('refuses an item over the configured limit and stores nothing', async () => {
      const session = await openWith({ maxItemBytes: 100 });
      const error = await session.addItems([{ role: 'user', content: 'a'.repeat(100) }]).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(/the limit is 100 bytes \(maxItemBytes\)/);
      expect(await session.getItems()).toEqual([]);
    });

    it('defaults to 4 MiB', async () => {
      const session = await openWith({});
      const overhead = JSON.stringify({ role: 'user', content: '' }).length;
      const error = await session
        .addItems([{ role: 'user', content: 'a'.repeat(4 * 1024 * 1024 - overhead + 1) }])
        .then(
          () => undefined,
          (caught: unknown) => caught,
        );
      expect((error as Error).message).toMatch(/the limit is 4 MiB \(maxItemBytes\)/);
    });
  });
});
