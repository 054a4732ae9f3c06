import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { IntegrityError } from '../../src/errors/index.js';
import { openItem, sealItem, type ItemBinding } from '../../src/crypto/index.js';

/** Every buffer a decipher's update() handed out in this file: the unauthenticated plaintext. */
const decrypted = vi.hoisted(() => [] as Buffer[]);

vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:crypto')>();
  return {
    ...original,
    createDecipheriv: (...args: Parameters<typeof original.createDecipheriv>) => {
      const decipher = original.createDecipheriv(...args);
      const update = decipher.update.bind(decipher) as (data: Buffer) => Buffer;
      (decipher as unknown as { update: (data: Buffer) => Buffer }).update = (data) => {
        const out = update(data);
        decrypted.push(out);
        return out;
      };
      return decipher;
    },
  };
});

const binding: ItemBinding = { tenantId: 't', sessionId: 's', seq: 1, expiresAt: null };

describe('docs/envelope-format.md 1.3: a failed open zeroes what it decrypted', () => {
  it('zeroes the partially decrypted buffer before throwing IntegrityError', () => {
    const dataKey = { dekId: randomUUID(), generation: 1, key: randomBytes(32) };
    const plaintext = Buffer.from('a secret that must not linger '.repeat(4));
    const stored = sealItem(dataKey, binding, plaintext);
    // A wrong seq: GCM decrypts the bytes, then the tag check fails.
    expect(() => openItem(dataKey, { ...binding, seq: 2 }, stored)).toThrow(IntegrityError);
    expect(decrypted).toHaveLength(1);
    expect(decrypted[0].length).toBe(plaintext.length);
    expect(decrypted[0].equals(Buffer.alloc(plaintext.length))).toBe(true);
  });
});
