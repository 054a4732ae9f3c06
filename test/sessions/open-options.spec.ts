import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, type OpenSessionOptions } from '../../src/index.js';
import { memoryHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

/** open() options a caller could pass from untyped input (JSON, a query string). */
describe('EncryptedSessionService.open options', () => {
  let harness: SessionHarness;

  beforeEach(async () => {
    harness = await memoryHarness();
  });
  afterEach(async () => {
    await harness.close();
  });

  // A null tenant must not fall back to the default tenant: it would read and write
  // another tenant's data than the caller named.
  it.each([
    ['tenantId', null],
    ['tenantId', 5],
    ['subjectId', null],
    ['subjectId', 5],
  ])('refuses %s: %s with InvalidArgumentError and creates nothing', async (field, value) => {
    const options = { [field]: value } as unknown as OpenSessionOptions;
    await expect(harness.service.open('chat', options)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(
      await harness.storage.read({ tenantId: 'default', sessionId: 'chat' }, (scope) =>
        scope.session.find(),
      ),
    ).toBeUndefined();
  });

  it('refuses null options with InvalidArgumentError', async () => {
    await expect(
      harness.service.open('chat', null as unknown as OpenSessionOptions),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('uses the default tenant only when tenantId is absent', async () => {
    const implicit = await harness.service.open('chat');
    await implicit.addItems([userMessage('hello')]);
    const explicit = await harness.service.open('chat', { tenantId: undefined });
    expect(explicit.tenantId).toBe('default');
    expect(await explicit.getItems()).toEqual([userMessage('hello')]);
  });
});
