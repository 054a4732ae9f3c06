import { createCipheriv, createSecretKey, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  decodeItemPayload,
  deriveSubkey,
  encodeEncryptionContext,
  encodeItemPayload,
  openEnvelope,
  parseEnvelope,
  unwrapDataKey,
} from '../../src/crypto/index.js';
import { sealItemWithIv } from '../../src/crypto/item-envelope.testing.js';
import { wrapDataKeyWithIv } from '../../src/crypto/key-wrap.testing.js';

interface EnvelopeVector {
  name: string;
  key: string;
  dekId: string;
  generation: number;
  iv: string;
  tenantId: string;
  sessionId: string;
  seq: number;
  expiresAt: number | null;
  /** The UTF-8 payload text, when the plaintext is an encoded item. */
  payload?: string;
  plaintext: string;
  aad: string;
  envelope: string;
}

interface DeriveVector {
  name: string;
  rootKey: string;
  purpose: string;
  subkey: string;
}

interface WrapVector {
  name: string;
  wrappingKey: string;
  dataKey: string;
  iv: string;
  context: Record<string, string>;
  encodedContext: string;
  wrapped: string;
}

const vectors = JSON.parse(
  readFileSync(new URL('../vectors/envelope-v1.json', import.meta.url), 'utf8'),
) as { envelope: EnvelopeVector[]; deriveSubkey: DeriveVector[]; wrapDataKey: WrapVector[] };

const hex = (text: string) => Buffer.from(text, 'hex');
const keyOf = (text: string) => createSecretKey(hex(text));
const bindingOf = (v: EnvelopeVector) => ({
  tenantId: v.tenantId,
  sessionId: v.sessionId,
  seq: v.seq,
  expiresAt: v.expiresAt,
});

// A second, deliberately plain implementation written from docs/envelope-format.md alone, so
// the vectors are checked against the documented layout and not only against the code.
const reference = {
  u32(value: number): Buffer {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(value);
    return bytes;
  },
  u64(value: number): Buffer {
    const bytes = Buffer.alloc(8);
    bytes.writeBigUInt64BE(BigInt(value));
    return bytes;
  },
  lp(text: string): Buffer {
    const bytes = Buffer.from(text, 'utf8');
    return Buffer.concat([reference.u32(bytes.length), bytes]);
  },
  header(v: EnvelopeVector): Buffer {
    return Buffer.concat([
      Buffer.from('NE', 'ascii'),
      Buffer.from([0x01, 0x01]),
      hex(v.dekId.replaceAll('-', '')),
      reference.u32(v.generation),
      hex(v.iv),
    ]);
  },
  aad(v: EnvelopeVector): Buffer {
    return Buffer.concat([
      reference.header(v),
      reference.lp(v.tenantId),
      reference.lp(v.sessionId),
      reference.u64(v.seq),
      reference.u64(v.expiresAt ?? 0),
    ]);
  },
  seal(v: EnvelopeVector): Buffer {
    const cipher = createCipheriv('aes-256-gcm', hex(v.key), hex(v.iv), { authTagLength: 16 });
    cipher.setAAD(reference.aad(v));
    const ciphertext = Buffer.concat([cipher.update(hex(v.plaintext)), cipher.final()]);
    return Buffer.concat([reference.header(v), ciphertext, cipher.getAuthTag()]);
  },
  context(context: Record<string, string>): Buffer {
    const keys = Object.keys(context).sort();
    return Buffer.concat([
      reference.u32(keys.length),
      ...keys.flatMap((key) => [reference.lp(key), reference.lp(context[key])]),
    ]);
  },
  wrap(v: WrapVector): Buffer {
    const cipher = createCipheriv('aes-256-gcm', hex(v.wrappingKey), hex(v.iv), {
      authTagLength: 16,
    });
    cipher.setAAD(
      Buffer.concat([
        Buffer.from('nest-encrypted-sessions/dek-wrap/v1'),
        reference.context(v.context),
      ]),
    );
    const ciphertext = Buffer.concat([cipher.update(hex(v.dataKey)), cipher.final()]);
    return Buffer.concat([Buffer.from([0x01]), hex(v.iv), ciphertext, cipher.getAuthTag()]);
  },
};

describe('envelope-v1.json item envelope vectors', () => {
  it('has at least four vectors covering null and set expiry and non-ASCII ids', () => {
    expect(vectors.envelope.length).toBeGreaterThanOrEqual(4);
    expect(vectors.envelope.some((v) => v.expiresAt === null)).toBe(true);
    expect(vectors.envelope.some((v) => v.expiresAt !== null)).toBe(true);
    expect(vectors.envelope.some((v) => /[^ -~]/.test(v.tenantId + v.sessionId))).toBe(true);
  });

  describe.each(vectors.envelope)('$name', (v) => {
    const dataKey = { dekId: v.dekId, generation: v.generation, key: keyOf(v.key) };

    it('seals to exactly the expected envelope', () => {
      const stored = sealItemWithIv(dataKey, bindingOf(v), hex(v.plaintext), hex(v.iv));
      expect(stored.toString('hex')).toBe(v.envelope);
    });

    it('opens back to the plaintext with the documented header fields', () => {
      const parsed = parseEnvelope(hex(v.envelope));
      expect(parsed.header).toEqual({
        formatVersion: 1,
        suite: 1,
        dekId: v.dekId,
        generation: v.generation,
      });
      expect(openEnvelope(parsed, dataKey.key, bindingOf(v)).toString('hex')).toBe(v.plaintext);
    });

    it('matches the independent implementation of the documented layout', () => {
      expect(reference.aad(v).toString('hex')).toBe(v.aad);
      expect(reference.seal(v).toString('hex')).toBe(v.envelope);
    });
  });

  it.each(vectors.envelope.filter((v) => v.payload !== undefined))(
    '$name: the payload decodes and re-encodes unchanged',
    (v) => {
      expect(hex(v.plaintext).toString('utf8')).toBe(v.payload);
      const item = decodeItemPayload(hex(v.plaintext));
      expect(encodeItemPayload(item).toString('hex')).toBe(v.plaintext);
    },
  );

  it('restores the Uint8Array and the tag-like object in the non-ASCII vector', () => {
    const vector = vectors.envelope.find((v) => v.sessionId === '会话')!;
    expect(decodeItemPayload(hex(vector.plaintext))).toEqual({
      role: 'user',
      content: [{ type: 'input_image', image: new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 255]) }],
      note: { $u8: 'not bytes' },
    });
  });
});

describe('envelope-v1.json deriveSubkey vectors', () => {
  it.each(vectors.deriveSubkey)('$name derives the expected subkey', (v) => {
    const subkey = deriveSubkey(hex(v.rootKey), v.purpose);
    expect(subkey.export().toString('hex')).toBe(v.subkey);
  });

  it.each(vectors.deriveSubkey)('$name matches HKDF-SHA256 with the documented info', (v) => {
    const info = `nest-encrypted-sessions/v1/${v.purpose}`;
    const expected = Buffer.from(hkdfSync('sha256', hex(v.rootKey), Buffer.alloc(0), info, 32));
    expect(expected.toString('hex')).toBe(v.subkey);
  });
});

describe('envelope-v1.json wrapDataKey vectors', () => {
  it('has at least two vectors', () => {
    expect(vectors.wrapDataKey.length).toBeGreaterThanOrEqual(2);
  });

  describe.each(vectors.wrapDataKey)('$name', (v) => {
    it('encodes the context to the expected bytes', () => {
      expect(encodeEncryptionContext(v.context).toString('hex')).toBe(v.encodedContext);
    });

    it('wraps to exactly the expected bytes', () => {
      const wrapped = wrapDataKeyWithIv(keyOf(v.wrappingKey), hex(v.dataKey), v.context, hex(v.iv));
      expect(wrapped.toString('hex')).toBe(v.wrapped);
    });

    it('unwraps back to the data key', () => {
      const dataKey = unwrapDataKey(keyOf(v.wrappingKey), hex(v.wrapped), v.context);
      expect(dataKey.toString('hex')).toBe(v.dataKey);
    });

    it('matches the independent implementation of the documented layout', () => {
      expect(reference.context(v.context).toString('hex')).toBe(v.encodedContext);
      expect(reference.wrap(v).toString('hex')).toBe(v.wrapped);
    });
  });
});
