import crypto, { createDecipheriv, createSecretKey, hkdfSync, randomBytes } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors/index.js';
import {
  deriveSubkey,
  encodeEncryptionContext,
  unwrapDataKey,
  wrapDataKey,
} from '../../src/crypto/index.js';
import { thrownBy } from '../support/thrown-by.js';

// Tests that kill mutants StrykerJS found alive in key-wrap.ts (issue 8, point 14): the
// derivation label and wrap AAD prefix that stored keys depend on, and argument checks that
// must answer InvalidArgumentError rather than a TypeError, a RangeError or a silent success.

const wrappingKey = createSecretKey(randomBytes(32));
const context = { tenantId: 'acme', sessionId: 's-1' };

describe('formats stored keys depend on', () => {
  it('derives subkeys with HKDF-SHA256 under the documented label', () => {
    const root = randomBytes(32);
    const expected = hkdfSync(
      'sha256',
      root,
      Buffer.alloc(0),
      Buffer.from('nest-encrypted-sessions/v1/dek-wrap'),
      32,
    );
    expect(deriveSubkey(root, 'dek-wrap').export()).toEqual(Buffer.from(expected));
  });

  it('wraps with AES-256-GCM over the documented AAD: prefix then the context encoding', () => {
    const dataKey = randomBytes(32);
    const wrapped = wrapDataKey(wrappingKey, dataKey, context);
    expect(wrapped).toHaveLength(61);
    expect(wrapped[0]).toBe(1);
    const decipher = createDecipheriv('aes-256-gcm', wrappingKey, wrapped.subarray(1, 13), {
      authTagLength: 16,
    });
    decipher.setAuthTag(wrapped.subarray(45));
    decipher.setAAD(
      Buffer.concat([
        Buffer.from('nest-encrypted-sessions/dek-wrap/v1'),
        encodeEncryptionContext(context),
      ]),
    );
    const opened = Buffer.concat([decipher.update(wrapped.subarray(13, 45)), decipher.final()]);
    expect(opened).toEqual(dataKey);
  });
});

describe('argument checks answer InvalidArgumentError', () => {
  const dataKey = randomBytes(32);
  const wrapped = wrapDataKey(wrappingKey, dataKey, context);

  it.each([
    ['null', null],
    ['an array', ['acme']],
    ['a string', 'acme'],
  ])('for %s as the encryption context', (_what, bad) => {
    const asContext = bad as unknown as Record<string, string>;
    expect(thrownBy(() => encodeEncryptionContext(asContext))).toBeInstanceOf(InvalidArgumentError);
    expect(thrownBy(() => wrapDataKey(wrappingKey, dataKey, asContext))).toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(thrownBy(() => unwrapDataKey(wrappingKey, wrapped, asContext))).toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  it.each([
    ['a 16-byte secret key', createSecretKey(randomBytes(16))],
    ['raw bytes', randomBytes(32)],
    ['a look-alike object', { type: 'secret', symmetricKeySize: 32 }],
  ])('for %s as the wrapping key', (_what, key) => {
    const asKey = key as unknown as typeof wrappingKey;
    expect(thrownBy(() => wrapDataKey(asKey, dataKey, context))).toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(thrownBy(() => unwrapDataKey(asKey, wrapped, context))).toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});

/**
 * The buffers `crypto.randomFillSync` filled while `action` ran. key-wrap.ts imports it by
 * name, so the spy is pushed into node:crypto's ESM exports as well.
 */
function randomFillsDuring(action: () => void): Buffer[] {
  const filled: Buffer[] = [];
  const original = crypto.randomFillSync;
  crypto.randomFillSync = ((buffer: Buffer, ...rest: []) => {
    const result = original(buffer, ...rest);
    filled.push(Buffer.from(buffer));
    return result;
  }) as typeof crypto.randomFillSync;
  syncBuiltinESMExports();
  try {
    action();
  } finally {
    crypto.randomFillSync = original;
    syncBuiltinESMExports();
  }
  return filled;
}

describe('the IV of a wrapped key', () => {
  it('is 12 bytes node:crypto drew for this wrap, not whatever memory held', () => {
    let wrapped: Buffer = Buffer.alloc(0);
    const filled = randomFillsDuring(() => {
      wrapped = wrapDataKey(wrappingKey, randomBytes(32), context);
    });
    expect(filled.map((bytes) => bytes.length)).toEqual([12]);
    expect(wrapped.subarray(1, 13)).toEqual(filled[0]);
  });
});
