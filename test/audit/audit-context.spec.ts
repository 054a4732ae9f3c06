import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { currentAuditContext, runAs } from '../../src/audit/audit-context.js';
import { InvalidArgumentError } from '../../src/errors/index.js';

const alice = { type: 'user', id: 'u-alice', tenantId: 't1' } as const;
const job = { type: 'system', id: 'retention-job', tenantId: 't1' } as const;

describe('audit context', () => {
  it('is empty outside runAs', () => {
    expect(currentAuditContext()).toBeUndefined();
  });

  it('holds the actor and source through awaits, and the innermost actor when nested', async () => {
    await runAs(
      alice,
      async () => {
        await sleep(1);
        expect(currentAuditContext()).toEqual({
          actor: alice,
          source: { requestId: 'r-1' },
        });
        await runAs(job, async () => {
          await sleep(1);
          expect(currentAuditContext()?.actor).toEqual(job);
        });
        expect(currentAuditContext()?.actor).toEqual(alice);
      },
      { requestId: 'r-1' },
    );
    expect(currentAuditContext()).toBeUndefined();
  });

  it('keeps concurrent work apart', async () => {
    const seen = await Promise.all(
      ['u-1', 'u-2', 'u-3'].map((id) =>
        runAs({ type: 'user', id, tenantId: 't1' }, async () => {
          await sleep(5 - Number(id.at(-1)));
          return currentAuditContext()?.actor.id;
        }),
      ),
    );
    expect(seen).toEqual(['u-1', 'u-2', 'u-3']);
  });

  it('copies only the actor fields, and freezes them', () => {
    runAs({ ...alice, email: 'alice@example.com' } as typeof alice, () => {
      const context = currentAuditContext()!;
      expect(context.actor).toEqual(alice);
      expect(Object.isFrozen(context.actor)).toBe(true);
    });
  });

  it('refuses a malformed actor before running the work', () => {
    let ran = false;
    expect(() =>
      runAs({ type: 'user', id: '', tenantId: 't1' }, () => {
        ran = true;
      }),
    ).toThrow(InvalidArgumentError);
    expect(ran).toBe(false);
  });
});
