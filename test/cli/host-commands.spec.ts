import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as cliEntry from '../../src/cli/index.js';
import { addEncryptedSessionCommands, CLI_EXIT } from '../../src/cli/index.js';
import { EncryptedSessionModule } from '../../src/index.js';
import { itemRows, newCliStore, PURGE_JOB, seedExpiredItems, type CliStore } from './cli-store.js';

/*
 * A host mounts the package's commands on its own commander program and runs them in its own
 * application context (its configured module), next to its own commands. The package root
 * never loads the CLI or commander.
 */

/** The host's application context: its module, on the store, as its app configures it. */
function hostContext(store: CliStore): Promise<INestApplicationContext> {
  @Module({
    imports: [
      EncryptedSessionModule.forRoot({
        keys: { env: { keys: store.keys, activeKeyId: 'k1' } },
        storage: { type: 'sqlite', path: store.path },
      }),
    ],
  })
  // oxlint-disable-next-line typescript/no-extraneous-class -- a Nest module is a class by design
  class HostAppModule {}
  return NestFactory.createApplicationContext(HostAppModule, { logger: false });
}

/** The host's CLI: its own command, the package's mounted beside it, output and codes kept. */
function hostProgram(context: () => Promise<INestApplicationContext>, closeContext = true) {
  const seen = { out: '', err: '', codes: [] as number[], greeted: false };
  const program = new Command('clinic-admin').exitOverride().configureOutput({
    writeOut: (text) => (seen.out += text),
    writeErr: (text) => (seen.err += text),
  });
  program.command('greet').action(() => {
    seen.greeted = true;
  });
  addEncryptedSessionCommands(program, {
    context,
    closeContext,
    out: (text) => (seen.out += text),
    err: (text) => (seen.err += text),
    exit: (code) => seen.codes.push(code),
  });
  return { program, seen };
}

describe('commands mounted on a host program', () => {
  let store: CliStore;

  beforeEach(async () => {
    store = newCliStore();
    await seedExpiredItems(store, 2);
  });
  afterEach(() => store.dispose());

  it("run purge in the host's context, beside the host's own commands", async () => {
    const { program, seen } = hostProgram(() => hostContext(store));
    await program.parseAsync(['greet'], { from: 'user' });
    expect(seen.greeted).toBe(true);
    await program.parseAsync(['purge', '--json'], { from: 'user' });
    expect(seen.err).toBe('');
    expect(seen.codes).toEqual([CLI_EXIT.ok]);
    expect(JSON.parse(seen.out)).toMatchObject({
      job: PURGE_JOB,
      outcome: 'done',
      result: { scanned: 4, purged: 4, dryRun: false },
    });
    expect(await itemRows(store)).toBe(1);
  });

  it('leave a context the host keeps open, with closeContext false', async () => {
    const app = await hostContext(store);
    try {
      const { program, seen } = hostProgram(async () => app, false);
      await program.parseAsync(['jobs', 'status', '--json'], { from: 'user' });
      await program.parseAsync(['jobs', 'status', '--json'], { from: 'user' });
      expect(seen.codes).toEqual([CLI_EXIT.ok, CLI_EXIT.ok]);
      const [first] = seen.out.trim().split('\n');
      expect(JSON.parse(first)).toHaveLength(3);
    } finally {
      await app.close();
    }
  });

  it("show the exit codes in their help, under the host's program name", async () => {
    const { program, seen } = hostProgram(() => hostContext(store));
    await expect(program.parseAsync(['purge', '--help'], { from: 'user' })).rejects.toMatchObject({
      code: 'commander.helpDisplayed',
    });
    expect(seen.out).toMatch(/^Usage: clinic-admin purge \[options\]/);
    expect(seen.out).toMatch(/4 {2}another replica holds the job's lease/);
  });

  it('report a usage problem with the host program name, and exit 3', async () => {
    const { program, seen } = hostProgram(() => hostContext(store));
    await program.parseAsync(['audit', 'verify'], { from: 'user' });
    expect(seen.codes).toEqual([CLI_EXIT.cannotRun]);
    expect(seen.err).toBe('clinic-admin: give exactly one of --tenant or --chain\n');
  });
});

describe('the cli entry', () => {
  const root = resolve(import.meta.dirname, '../..');

  it('is the subpath nest-encrypted-sessions/cli, typed like the others; the bin stays', () => {
    const manifest = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as {
      exports: Record<string, Record<string, string>>;
      bin: Record<string, string>;
      dependencies: Record<string, string>;
    };
    expect(manifest.exports['./cli']).toEqual({
      types: './dist/cli/index.d.ts',
      import: './dist/cli/index.js',
      require: './dist/cli/index.js',
      default: './dist/cli/index.js',
    });
    expect(manifest.bin).toEqual({ 'nest-encrypted-sessions': './dist/cli.js' });
    expect(manifest.dependencies).toHaveProperty('commander');
    expect(Object.keys(cliEntry).toSorted()).toEqual([
      'CLI_EXIT',
      'addEncryptedSessionCommands',
      'runCli',
      'storageFromEnv',
    ]);
  });

  it('is not reached from the package root: no CLI file, no commander, no progress bar', () => {
    const seen = new Set<string>();
    const packages = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const [, specifier] of text.matchAll(/\b(?:from|import)\s*\(?\s*'([^']+)'/g)) {
        if (specifier.startsWith('.')) {
          visit(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
        } else {
          packages.add(specifier);
        }
      }
    };
    visit(resolve(root, 'src/index.ts'));
    expect(seen.size).toBeGreaterThan(50);
    expect(
      [...seen].map((file) => relative(root, file)).filter((file) => file.startsWith('src/cli')),
    ).toEqual([]);
    expect(packages).toContain('@nestjs/common');
    expect(packages).not.toContain('commander');
    expect(packages).not.toContain('cli-progress');
  });
});
