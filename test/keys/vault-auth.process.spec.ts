import { execFile } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { compileLibrary } from '../support/compiled-library.js';
import { VaultTestServer } from '../support/vault-test-server.js';

/*
 * Kept apart from vault-auth.spec.ts: this test compiles the library and runs it in a child
 * process, which leaves it out of mutation runs (vitest.mutation.config.ts); the rest of the
 * Vault auth tests run in-process and take part in them.
 */
const KEY = 'sessions';

describe('Vault auth in a process of its own', () => {
  let server: VaultTestServer | undefined;
  const cleanups: (() => void)[] = [];

  afterEach(async () => {
    await server?.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
    server = undefined;
  });

  it('keeps no timer that holds the process open', async () => {
    const vault = (server = await VaultTestServer.start());
    vault.createTransitKey(KEY);
    const { roleId, secretId } = vault.addAppRole({ ttlSeconds: 3600 });
    const library = compileLibrary();
    cleanups.push(() => library.dispose());
    const script = `
        const { VaultTransitKeyProvider } = await import(new URL('./vault.js', process.env.ENTRY).href);
        const provider = new VaultTransitKeyProvider({
          endpoint: process.env.ENDPOINT,
          auth: { method: 'approle', roleId: process.env.ROLE_ID, secretId: process.env.SECRET_ID },
          keyName: '${KEY}',
        });
        await provider.init();
        process.stdout.write('\\nLOGINS=' + provider.connectionStats().logins + '\\n');
      `;
    const started = Date.now();
    const output = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', script],
        {
          timeout: 20_000,
          env: {
            ...process.env,
            ENTRY: library.entryUrl,
            ENDPOINT: vault.endpoint,
            ROLE_ID: roleId,
            SECRET_ID: secretId,
          },
        },
        (error, stdout) => (error ? reject(error) : resolve(stdout)),
      );
    });
    // Exited on its own (a pending renewal at 40 minutes did not hold it) after logging in.
    expect(output).toMatch(/^LOGINS=1$/m);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);
});
