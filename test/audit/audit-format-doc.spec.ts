import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { chainMacMatches, eventDigest } from '../../src/audit/audit-chain.js';
import { AUDIT_ACTIONS, type AuditEvent } from '../../src/audit/audit-event.js';
import { subjectRef } from '../../src/audit/subject-ref.js';

const doc = readFileSync(new URL('../../docs/audit-format.md', import.meta.url), 'utf8');
const example = JSON.parse(/```json\n([\s\S]*?)\n```/.exec(doc)![1]) as AuditEvent;

describe('docs/audit-format.md', () => {
  it('its example event is a test vector: the MAC verifies under 32 bytes 0x42', () => {
    const verifies = chainMacMatches(
      Buffer.alloc(32, 0x42),
      {
        chainId: example.chain.chainId,
        seq: example.chain.seq,
        prevMac: Buffer.from(example.chain.prevMac, 'base64url'),
        macKeyId: example.chain.macKeyId,
        eventDigest: eventDigest(example),
      },
      Buffer.from(example.chain.mac, 'base64url'),
    );
    expect(verifies).toBe(true);
  });

  it("its example's subjectRef is patient-5531's in clinic-7 under 32 bytes 0x24", () => {
    expect(example.target.subjectRef).toBe(
      subjectRef(Buffer.alloc(32, 0x24), 'clinic-7', 'patient-5531'),
    );
  });

  it('lists every action of the catalogue', () => {
    for (const action of AUDIT_ACTIONS) expect(doc).toContain(`\`${action}\``);
  });
});
