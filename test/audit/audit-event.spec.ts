import { describe, expect, it } from 'vitest';
import {
  AUDIT_SCHEMA,
  MAX_AUDIT_ID_LENGTH,
  buildAuditEvent,
  type AuditEventInput,
} from '../../src/audit/audit-event.js';
import { InvalidArgumentError } from '../../src/errors/index.js';
import { thrownBy } from '../support/thrown-by.js';

const CANARY = 'canary-4e1d9b';
const input: AuditEventInput = {
  action: 'session.read',
  outcome: 'success',
  actor: { type: 'user', id: 'u-1', tenantId: 't1' },
  target: { tenantId: 't1', sessionId: 's1', count: 20 },
  time: 1_767_225_600_123,
};

describe('buildAuditEvent', () => {
  it('builds schema nes.audit/1 with a UUIDv7 event id carrying the event time', () => {
    const event = buildAuditEvent(input);
    expect(event).toEqual({
      schema: AUDIT_SCHEMA,
      eventId: expect.stringMatching(
        /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      ),
      time: 1_767_225_600_123,
      action: 'session.read',
      outcome: 'success',
      actor: { type: 'user', id: 'u-1', tenantId: 't1' },
      target: { tenantId: 't1', sessionId: 's1', count: 20 },
    });
    expect(Number.parseInt(event.eventId.replaceAll('-', '').slice(0, 12), 16)).toBe(event.time);
    expect(buildAuditEvent(input).eventId).not.toBe(event.eventId);
  });

  it('copies only the fields of the schema, whatever else the input objects hold', () => {
    const event = buildAuditEvent({
      ...input,
      content: CANARY,
      actor: { ...input.actor, email: `${CANARY}@example.com`, name: CANARY },
      source: { requestId: 'r-1', ip: '203.0.113.9', authorization: `Bearer ${CANARY}` },
      target: { ...input.target, subjectId: CANARY },
      keys: { dekIds: ['d-1'], kekIds: ['env:k1'], material: CANARY },
    } as AuditEventInput);
    expect(JSON.stringify(event)).not.toContain(CANARY);
    expect(event.source).toEqual({ requestId: 'r-1', ip: '203.0.113.9' });
    expect(event.keys).toEqual({ dekIds: ['d-1'], kekIds: ['env:k1'] });
  });

  it('sets a reason exactly when the outcome is not success', () => {
    expect(
      buildAuditEvent({ ...input, outcome: 'denied', reason: 'SUBJECT_MISMATCH' }).reason,
    ).toBe('SUBJECT_MISMATCH');
    expect(() => buildAuditEvent({ ...input, outcome: 'failure' })).toThrow(InvalidArgumentError);
    expect(() => buildAuditEvent({ ...input, reason: 'INTEGRITY' })).toThrow(InvalidArgumentError);
  });

  it.each<[string, Partial<AuditEventInput> | Record<string, unknown>, string]>([
    ['an action outside the catalogue', { action: CANARY }, 'action must be one of'],
    ['an unknown reason', { outcome: 'failure', reason: CANARY }, 'reason must be one of'],
    ['an unknown actor type', { actor: { type: CANARY, id: 'u', tenantId: 't' } }, 'actor.type'],
    ['an empty actor id', { actor: { type: 'user', id: '', tenantId: 't' } }, 'actor.id'],
    [
      'an id longer than the limit',
      { target: { tenantId: 't', sessionId: CANARY.repeat(MAX_AUDIT_ID_LENGTH) } },
      'target.sessionId',
    ],
    [
      'an id with a line break (a forged log line)',
      { actor: { type: 'user', id: `${CANARY}\n{"forged":true}`, tenantId: 't' } },
      'actor.id',
    ],
    ['a lone surrogate', { target: { tenantId: `t\ud800${CANARY}` } }, 'target.tenantId'],
    ['an ip that is not one', { source: { ip: CANARY } }, 'source.ip'],
    ['a negative count', { target: { tenantId: 't', count: -1 } }, 'target.count'],
    ['a key id list that is not a list', { keys: { dekIds: CANARY } }, 'keys.dekIds'],
    ['a time that is not ms since the epoch', { time: 1.5 }, 'time'],
  ])('refuses %s naming the field, never the value', (_name, change, field) => {
    const error = thrownBy(() => buildAuditEvent({ ...input, ...change }));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toContain(field);
    expect((error as Error).message).not.toContain(CANARY);
  });
});
