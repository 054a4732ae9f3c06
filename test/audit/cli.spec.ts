import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Test } from '@nestjs/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditChainOf } from '../../src/audit/index.js';
import { CLI_EXIT, runCli } from '../../src/cli.js';
import {
  AuditService,
  EncryptedSessionModule,
  EncryptedSessionService,
  runAs,
} from '../../src/index.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';

/*
 * `nest-encrypted-sessions audit verify`, configured like the demo by environment variables,
 * on a real SQLite file: exit 0 verified, 2 tampered, 3 cannot verify; --json for scripts.
 */

const run = async (argv: string[], env: NodeJS.ProcessEnv) => {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    argv,
    env,
    (text) => (stdout += text),
    (text) => (stderr += text),
  );
  return { code, stdout, stderr };
};

describe('audit verify on the command line', () => {
  const directory = mkdtempSync(join(tmpdir(), 'nes-cli-'));
  const path = join(directory, 'sessions.sqlite');
  const keys = `k1:${randomBytes(32).toString('base64')}`;
  const env = { SESSION_KEYS: keys, SESSION_ACTIVE_KEY: 'k1', SESSION_SQLITE_PATH: path };
  const chainId = auditChainOf({ tenantId: 'clinic', sessionId: 'visit' }).chainId;
  let library: CompiledLibrary | undefined;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys, activeKeyId: 'k1' } },
          storage: { type: 'sqlite', path },
        }),
      ],
    }).compile();
    await moduleRef.init();
    await runAs({ type: 'user', id: 'nurse-17', tenantId: 'clinic' }, async () => {
      const session = await moduleRef
        .get(EncryptedSessionService)
        .open('visit', { tenantId: 'clinic' });
      await session.addItems([{ role: 'user', content: 'hello' }]);
      await session.getItems();
    });
    await moduleRef.close();
  });
  afterAll(() => {
    library?.dispose();
    rmSync(directory, { recursive: true, force: true });
  });

  it('exits 0 when every chain of the tenant verifies', async () => {
    const result = await run(['audit', 'verify', '--tenant', 'clinic'], env);
    expect(result).toMatchObject({ code: CLI_EXIT.ok, stdout: 'ok: 1 chain(s) verified\n' });
  });

  it('prints one JSON object with --json', async () => {
    const result = await run(['audit', 'verify', '--chain', chainId, '--json'], env);
    expect(JSON.parse(result.stdout)).toEqual({
      ok: true,
      chains: [{ ok: true, chainId, verifiedThroughSeq: 4 }],
    });
  });

  it('exits 3, naming what to set, without keys, or for a command it does not know', async () => {
    const noKeys = await run(['audit', 'verify', '--tenant', 'clinic'], {
      SESSION_SQLITE_PATH: path,
    });
    expect(noKeys.code).toBe(CLI_EXIT.cannotVerify);
    expect(noKeys.stderr).toMatch(/SESSION_KEYS and SESSION_ACTIVE_KEY/);
    expect((await run(['audit', 'purge'], env)).code).toBe(CLI_EXIT.cannotVerify);
    expect((await run(['audit', 'verify'], env)).stderr).toMatch(/--tenant or --chain/);
  });

  it('exits 3 when the root key that wraps the MAC key is not configured', async () => {
    const otherKeys = { ...env, SESSION_KEYS: `k1:${randomBytes(32).toString('base64')}` };
    const result = await run(['audit', 'verify', '--tenant', 'clinic'], otherKeys);
    expect(result.code).toBe(CLI_EXIT.cannotVerify);
    expect(result.stderr).toMatch(/cannot verify: INTEGRITY/);
    expect(result.stderr).not.toContain(otherKeys.SESSION_KEYS.slice(3));
  });

  it('exits 2 and names the chain, the reason and the seq once a record was edited', async () => {
    const dataSource = await openSqliteDataSource({ path, synchronous: 'NORMAL' });
    await dataSource.query(
      `UPDATE "nes_audit_records" SET "body" = replace("body", '"count":1', '"count":7') WHERE "chain_id" = ? AND "seq" = 3`,
      [chainId],
    );
    await dataSource.destroy();
    const result = await run(['audit', 'verify', '--tenant', 'clinic'], env);
    expect(result.code).toBe(CLI_EXIT.tampered);
    expect(result.stdout).toBe(`TAMPERED ${chainId}: mac_mismatch at seq 3 (verified through 2)\n`);
  });

  it('runs as the package bin from the build, with the same exit codes', async () => {
    library = compileLibrary();
    const cli = join(dirname(fileURLToPath(library.entryUrl)), 'cli.js');
    const failure = await promisify(execFile)(
      process.execPath,
      [cli, 'audit', 'verify', '--tenant', 'clinic'],
      { env: { ...process.env, ...env } },
    ).catch((error: { code: number; stdout: string }) => error);
    expect(failure).toMatchObject({ code: CLI_EXIT.tampered });
    expect((failure as { stdout: string }).stdout).toMatch(/^TAMPERED session\./);
  });
});

describe('audit verify on the command line, against a checkpoint kept outside the database', () => {
  const directory = mkdtempSync(join(tmpdir(), 'nes-cli-checkpoints-'));
  const path = join(directory, 'sessions.sqlite');
  const file = join(directory, 'audit.jsonl');
  const keys = `k1:${randomBytes(32).toString('base64')}`;
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const env = {
    SESSION_KEYS: keys,
    SESSION_ACTIVE_KEY: 'k1',
    SESSION_SQLITE_PATH: path,
    AUDIT_CHECKPOINT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
  const argv = ['audit', 'verify', '--tenant', 'clinic', '--checkpoint-file', file];

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys, activeKeyId: 'k1' } },
          storage: { type: 'sqlite', path },
          audit: { winston: { file }, checkpoints: { privateKey } },
        }),
      ],
    }).compile();
    await moduleRef.init();
    await runAs({ type: 'user', id: 'nurse-17', tenantId: 'clinic' }, async () => {
      const session = await moduleRef
        .get(EncryptedSessionService)
        .open('visit', { tenantId: 'clinic' });
      await session.addItems([{ role: 'user', content: 'hello' }]);
      await moduleRef.get(AuditService).checkpoint({ tenantId: 'clinic' });
    });
    await moduleRef.close();
  });
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  it('exits 0 when the database still holds the checkpoint the file saw', async () => {
    const result = await run(argv, env);
    expect(result.code).toBe(CLI_EXIT.ok);
    expect(result.stdout).toMatch(/^ok: \d+ chain\(s\) verified\ncheckpoint [\w-]+ holds\n$/);
  });

  it('exits 2 once that checkpoint was deleted from the database', async () => {
    const dataSource = await openSqliteDataSource({ path, synchronous: 'NORMAL' });
    await dataSource.query(`DELETE FROM "nes_audit_checkpoints"`);
    await dataSource.destroy();
    const result = await run(argv, env);
    expect(result.code).toBe(CLI_EXIT.tampered);
    expect(result.stdout).toMatch(/^TAMPERED checkpoint [\w-]+: checkpoint_missing\n/);
  });

  it('exits 3 for a checkpoint file without the public key to check it', async () => {
    const { AUDIT_CHECKPOINT_PUBLIC_KEY: _, ...withoutKey } = env;
    const result = await run(argv, withoutKey);
    expect(result.code).toBe(CLI_EXIT.cannotVerify);
    expect(result.stderr).toMatch(/AUDIT_CHECKPOINT_PUBLIC_KEY/);
  });
});
