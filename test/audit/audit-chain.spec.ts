import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  GENESIS_PREV_MAC,
  bodyJsonOf,
  canonicalJson,
  chainMac,
  chainMacMatches,
  eventDigest,
  sessionChainId,
  tenantChainId,
} from '../../src/audit/audit-chain.js';
import { uint64 } from '../../src/audit/length-prefixed.js';
import { sealedEvents } from '../support/sealed-chain.js';
import { buildAuditEvent, type AuditEvent } from '../../src/audit/audit-event.js';

const actor = { type: 'user', id: 'u-1', tenantId: 't1' } as const;
const body = (action: 'session.append' | 'session.read' = 'session.append', count = 2) =>
  buildAuditEvent({
    action,
    outcome: 'success',
    actor,
    target: { tenantId: 't1', sessionId: 's1', count },
    time: 1_767_225_600_000,
  });

/** One part of a MAC input written out by hand: 4-byte big-endian length, then the bytes. */
function part(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** Rebuilds a record's link from its stored fields, as a verifier reads them back. */
function linkOf(event: AuditEvent) {
  return {
    chainId: event.chain.chainId,
    seq: event.chain.seq,
    prevMac: Buffer.from(event.chain.prevMac, 'base64url'),
    macKeyId: event.chain.macKeyId,
    eventDigest: eventDigest(event),
  };
}

describe('chain ids', () => {
  it('keep (tenant, session) pairs apart, also where a plain join would not', () => {
    expect(sessionChainId('a.b', 'c')).not.toBe(sessionChainId('a', 'b.c'));
    expect(sessionChainId('acme', 's1')).not.toBe(sessionChainId('acme ', 's1'));
    expect(tenantChainId('acme')).not.toBe(sessionChainId('acme', ''));
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level, so key order never changes the bytes', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[2,{"e":0,"f":1}]},"b":1}',
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (value) => {
        const reversed = Object.fromEntries(Object.entries(value).toReversed());
        expect(canonicalJson(reversed)).toBe(canonicalJson(value));
      }),
    );
  });
});

/** Whether an audit id may hold the character: no C0 or C1 control, no line separator. */
const isAllowed = (code: number): boolean =>
  code > 0x1f && (code < 0x7f || code > 0x9f) && code !== 0x2028 && code !== 0x2029;

const reversed = <T extends object>(value: T): T =>
  Object.fromEntries(Object.entries(value).toReversed()) as T;

describe('bodyJsonOf', () => {
  // The RFC 8785 reference serializer itself, not the module's wrapper around it.
  const referenceCanonical = createRequire(import.meta.url)('canonicalize') as (
    value: unknown,
  ) => string;
  const auditId = fc
    .string({ unit: 'grapheme', minLength: 1, maxLength: 12 })
    .filter((value) => Array.from(value, (character) => character.charCodeAt(0)).every(isAllowed));

  it('gives a built event the bytes of the reference serializer, whatever fields it has', () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            actorId: auditId,
            onBehalfOf: fc.option(auditId, { nil: undefined }),
            tenantId: auditId,
            sessionId: fc.option(auditId, { nil: undefined }),
            subjectRef: fc.option(auditId, { nil: undefined }),
            count: fc.option(fc.nat(), { nil: undefined }),
            recordId: fc.option(auditId, { nil: undefined }),
            requestId: fc.option(auditId, { nil: undefined }),
            ip: fc.option(fc.ipV6(), { nil: undefined }),
            dekIds: fc.option(fc.array(auditId, { maxLength: 3 }), { nil: undefined }),
            kekIds: fc.option(fc.array(auditId, { maxLength: 3 }), { nil: undefined }),
            denied: fc.boolean(),
          },
          { requiredKeys: ['actorId', 'tenantId', 'denied'] },
        ),
        (input) => {
          const built = buildAuditEvent({
            action: 'session.read',
            outcome: input.denied ? 'denied' : 'success',
            reason: input.denied ? 'ACTOR_REQUIRED' : undefined,
            actor: {
              type: 'service',
              id: input.actorId,
              tenantId: input.tenantId,
              onBehalfOf: input.onBehalfOf,
            },
            source:
              input.requestId === undefined && input.ip === undefined
                ? undefined
                : { requestId: input.requestId, ip: input.ip },
            target: {
              tenantId: input.tenantId,
              sessionId: input.sessionId,
              subjectRef: input.subjectRef,
              count: input.count,
              recordId: input.recordId,
            },
            keys:
              input.dekIds === undefined && input.kekIds === undefined
                ? undefined
                : { dekIds: input.dekIds, kekIds: input.kekIds },
          });
          expect(bodyJsonOf(built)).toBe(referenceCanonical(built));
        },
      ),
    );
  });

  it('freezes a built event, so its key order cannot change after it was built', () => {
    const built = body() as { target: { count: number; extra?: string } };
    expect(() => {
      built.target.extra = 'late';
    }).toThrow(TypeError);
  });

  it('sorts the keys of a body it did not build, and leaves out its chain fields', () => {
    const built = body();
    const unbuilt = { ...reversed(built), target: reversed(built.target) };
    const chain = { chainId: 'c', seq: 1, prevMac: '', macKeyId: 'k', mac: '' };

    expect(bodyJsonOf({ ...unbuilt, chain })).toBe(referenceCanonical(built));
  });
});

describe('chainMac', () => {
  it('is HMAC-SHA256 over the length-prefixed domain, chain id, seq, prevMac, key id and digest', () => {
    const key = Buffer.alloc(32, 7);
    const digest = createHash('sha256').update('event').digest();
    // The input written out by hand: 4-byte big-endian length, then the bytes, for each part.
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(3n);
    const expected = createHmac('sha256', key)
      .update(
        Buffer.concat([
          part(Buffer.from('nes.audit.v1')),
          part(Buffer.from('session.dDE.czE')),
          part(seq),
          part(GENESIS_PREV_MAC),
          part(Buffer.from('mk-1')),
          part(digest),
        ]),
      )
      .digest('hex');

    const mac = chainMac(key, {
      chainId: 'session.dDE.czE',
      seq: 3,
      prevMac: GENESIS_PREV_MAC,
      macKeyId: 'mk-1',
      eventDigest: digest,
    });

    expect(mac.toString('hex')).toBe(expected);
  });

  it('refuses a seq below 1 and a prevMac that is not 32 bytes', () => {
    const link = {
      chainId: 'c',
      seq: 1,
      prevMac: GENESIS_PREV_MAC,
      macKeyId: 'k',
      eventDigest: Buffer.alloc(32),
    };
    expect(() => chainMac(Buffer.alloc(32), { ...link, seq: 0 })).toThrow(RangeError);
    expect(() => chainMac(Buffer.alloc(32), { ...link, prevMac: Buffer.alloc(31) })).toThrow(
      RangeError,
    );
  });
});

describe('sealAuditEvent', () => {
  const macKey = randomBytes(32);
  const chainId = sessionChainId('t1', 's1');

  const chainOf = (length: number): AuditEvent[] =>
    sealedEvents(
      Array.from({ length }, (_, index) => body('session.append', index)),
      { chainId, macKeyId: 'mk-1', macKey },
    );

  it('starts at seq 1 after 32 zero bytes, and links each record to the one before', () => {
    const records = chainOf(4);
    expect(records.map((record) => record.chain.seq)).toEqual([1, 2, 3, 4]);
    expect(records[0].chain.prevMac).toBe(GENESIS_PREV_MAC.toString('base64url'));
    for (let index = 1; index < records.length; index += 1) {
      expect(records[index].chain.prevMac).toBe(records[index - 1].chain.mac);
    }
    for (const record of records) {
      expect(
        chainMacMatches(macKey, linkOf(record), Buffer.from(record.chain.mac, 'base64url')),
      ).toBe(true);
    }
  });

  it('leaves the chain fields out of the digest, and covers every other field', () => {
    const [record] = chainOf(1);
    const { chain: _chain, ...withoutChain } = record;
    expect(eventDigest(record).equals(eventDigest(withoutChain))).toBe(true);
    const edited = { ...record, target: { ...record.target, count: 1 } };
    expect(
      chainMacMatches(macKey, linkOf(edited), Buffer.from(record.chain.mac, 'base64url')),
    ).toBe(false);
  });

  it('does not verify in another chain, under another key id or at another seq', () => {
    const [record] = chainOf(1);
    const mac = Buffer.from(record.chain.mac, 'base64url');
    const link = linkOf(record);
    expect(chainMacMatches(macKey, { ...link, chainId: sessionChainId('t1', 's2') }, mac)).toBe(
      false,
    );
    expect(chainMacMatches(macKey, { ...link, macKeyId: 'mk-2' }, mac)).toBe(false);
    expect(chainMacMatches(macKey, { ...link, seq: 2 }, mac)).toBe(false);
    expect(chainMacMatches(randomBytes(32), link, mac)).toBe(false);
    expect(chainMacMatches(macKey, link, mac.subarray(0, 16))).toBe(false);
  });
});

describe('uint64', () => {
  it.each([0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER])(
    'writes %i as 8 big-endian bytes',
    (value) => {
      const expected = Buffer.alloc(8);
      expected.writeBigUInt64BE(BigInt(value));
      expect(uint64(value)).toEqual(expected);
    },
  );

  it.each([-1, 1.5, 2 ** 53, Number.NaN])('refuses %d', (value) => {
    expect(() => uint64(value)).toThrow(RangeError);
  });
});
