import type { KeyObject } from 'node:crypto';
import { sealAuditEvent } from '../../src/audit/audit-chain.js';
import type { AuditEvent, AuditEventBody } from '../../src/audit/audit-event.js';

/** Seals `bodies` into one chain, in order, each after the one before: the events as sealed. */
export function sealedEvents(
  bodies: readonly AuditEventBody[],
  chain: {
    readonly chainId: string;
    readonly macKeyId: string;
    readonly macKey: KeyObject | Uint8Array;
  },
): AuditEvent[] {
  const events: AuditEvent[] = [];
  for (const body of bodies) {
    const previous = events.at(-1);
    events.push(
      sealAuditEvent(body, {
        ...chain,
        previous: previous && {
          seq: previous.chain.seq,
          mac: Buffer.from(previous.chain.mac, 'base64url'),
        },
      }),
    );
  }
  return events;
}
