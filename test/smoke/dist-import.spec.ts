import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');

/** Runs a script in a fresh Node process at the package root and returns its stdout. */
function runNode(args: string[]): unknown {
  const out = execFileSync(process.execPath, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Log lines may precede the result; the probe marks its own line.
  const line = out.split('\n').find((candidate) => candidate.startsWith('RESULT '));
  return line ? JSON.parse(line.slice('RESULT '.length)) : out;
}

// The script opens a session end to end on the built code: module class present, crypto
// subpath usable, a memory-backed session round trip through the service.
const probe = (load: string) => `
${load}
const checks = {
  module: typeof pkg.EncryptedSessionModule === 'function',
  service: typeof pkg.EncryptedSessionService === 'function',
  errors: new pkg.IntegrityError('x').code === 'INTEGRITY',
  crypto: typeof cryptoPkg.sealItem === 'function' && typeof cryptoPkg.openEnvelope === 'function',
};
const { randomBytes } = require('node:crypto');
const storage = new pkg.MemorySessionStorage();
const provider = new pkg.EnvKeyProvider({ keys: 'k1:' + randomBytes(32).toString('base64'), activeKeyId: 'k1' });
const service = new pkg.EncryptedSessionService(storage, new pkg.KeyRing(storage, provider));
service.open('smoke').then(async (session) => {
  await session.addItems([{ role: 'user', content: 'hi' }]);
  checks.roundTrip = (await session.getItems())[0].content === 'hi';
  process.stdout.write('\\nRESULT ' + JSON.stringify(checks) + '\\n');
});
`;

describe('the built package', () => {
  beforeAll(() => {
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'pipe' });
  }, 120_000);

  it('emits dist behind the exports map', () => {
    expect(existsSync(resolve(root, 'dist/index.js'))).toBe(true);
    expect(existsSync(resolve(root, 'dist/index.d.ts'))).toBe(true);
    expect(existsSync(resolve(root, 'dist/crypto/index.js'))).toBe(true);
  });

  it('packs what a host installs from the repository: dist with types, no sources or tests', () => {
    // What `npm install <git url>` and `npm install <tarball>` unpack; --ignore-scripts packs the
    // dist built above instead of running prepare again.
    const [pack] = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    ) as [{ files: { path: string }[] }];
    const paths = pack.files.map((file) => file.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'package.json',
        'dist/index.js',
        'dist/index.d.ts',
        'dist/crypto/index.js',
        'dist/crypto/index.d.ts',
      ]),
    );
    expect(
      paths.filter((path) => !/^(dist|docs)\/|^(package\.json|README\.md|LICENSE)$/.test(path)),
    ).toEqual([]);
    expect(paths.filter((path) => /\.spec\.|\.testing\./.test(path))).toEqual([]);
    // Installing from git builds dist in the clone; without prepare the package would be empty.
    const manifest = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(manifest.scripts.prepare).toBe('npm run build');
  });

  it('loads with ESM import', () => {
    const script = probe(
      "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" +
        "const pkg = await import('nest-encrypted-sessions'); const cryptoPkg = await import('nest-encrypted-sessions/crypto');",
    );
    expect(runNode(['--input-type=module', '-e', script])).toEqual({
      module: true,
      service: true,
      errors: true,
      crypto: true,
      roundTrip: true,
    });
  });

  it('loads with CommonJS require', () => {
    const script = probe(
      "require('reflect-metadata'); const pkg = require('nest-encrypted-sessions'); const cryptoPkg = require('nest-encrypted-sessions/crypto');",
    );
    expect(runNode(['--no-warnings', '--input-type=commonjs', '-e', script])).toEqual({
      module: true,
      service: true,
      errors: true,
      crypto: true,
      roundTrip: true,
    });
  });
});
