import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(import.meta.dirname, '../..');

/** The library compiled to plain ESM JavaScript, for child processes that cannot load TypeScript. */
export interface CompiledLibrary {
  /** `file:` URL of the compiled `index.js`, ready for `import()`. */
  readonly entryUrl: string;
  /** Removes the build. Idempotent. */
  dispose(): void;
}

/**
 * Compiles `src` into a fresh temporary folder, so concurrent spec files (and `npm run build`,
 * which wipes `dist`) never see each other's half-written output. Takes a few seconds.
 *
 * `--noCheck` emits without type-checking: a type error elsewhere in the tree is the
 * typecheck's business, not a reason for a concurrency test to fail.
 */
export function compileLibrary(): CompiledLibrary {
  const directory = mkdtempSync(join(tmpdir(), 'nes-compiled-'));
  const outDir = join(directory, 'dist');
  try {
    execFileSync(
      join(root, 'node_modules/.bin/tsc'),
      [
        '-p',
        join(root, 'tsconfig.build.json'),
        '--outDir',
        outDir,
        '--noCheck',
        '--sourceMap',
        'false',
        // The build inlines sources into its maps; with no maps there is nothing to inline.
        '--inlineSources',
        'false',
        '--declaration',
        'false',
      ],
      { cwd: root, stdio: 'pipe' },
    );
  } catch (error) {
    rmSync(directory, { recursive: true, force: true });
    const output = (error as { stdout?: Buffer }).stdout?.toString() ?? '';
    throw new Error(`Compiling the library for child processes failed:\n${output}`, {
      cause: error,
    });
  }
  const entry = join(outDir, 'index.js');
  if (!existsSync(entry)) {
    rmSync(directory, { recursive: true, force: true });
    throw new Error(`The library compiled without emitting ${entry}`);
  }
  // The emitted files are ESM and import the package's dependencies: mark the folder as a
  // module package and let resolution find the repository's node_modules.
  writeFileSync(join(directory, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(join(root, 'node_modules'), join(directory, 'node_modules'), 'dir');
  return {
    entryUrl: pathToFileURL(entry).href,
    dispose: () => rmSync(directory, { recursive: true, force: true }),
  };
}
