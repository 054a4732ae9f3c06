import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

// ARCHITECTURE.md section 3: imports point down. A layer may import itself and any layer of a
// lower rank; two layers of one rank (crypto and storage) do not import each other. `errors`
// holds the typed errors every layer throws; the package's entry files sit on top, and beside
// them `health` (the ./health entry): no entry file imports it, so the root never loads terminus.
const RANKS: Record<string, number> = {
  errors: 0,
  crypto: 1,
  storage: 1,
  audit: 2,
  keys: 3,
  sessions: 4,
  jobs: 5,
  module: 6,
  // The operator CLI (src/cli/): commands over the module, under the bin entry (src/cli.ts)
  // that runs them; test/cli/host-commands.spec.ts shows the package root never reaches it.
  cli: 7,
  entry: 8,
  health: 8,
};

const src = resolve(import.meta.dirname, '../../src');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** The layer of a file: its first folder under src/, or `entry` for src/*.ts. */
function layerOf(file: string): string {
  const parts = relative(src, file).split(sep);
  return parts.length === 1 ? 'entry' : parts[0];
}

/** Every relative module a file imports or re-exports, statically or with import(). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [
    ...text.matchAll(/\bfrom\s+'(\.{1,2}\/[^']+)'/g),
    ...text.matchAll(/\bimport\(\s*'(\.{1,2}\/[^']+)'\s*\)/g),
  ].map((match) => match[1]);
  return specifiers.map((specifier) => resolve(dirname(file), specifier));
}

describe('layering (ARCHITECTURE.md section 3)', () => {
  const files = filesUnder(src);

  it('knows the layer of every source folder', () => {
    for (const file of files) expect(RANKS).toHaveProperty(layerOf(file));
  });

  it('has every import point down, or stay in its own layer', () => {
    const upward: string[] = [];
    for (const file of files) {
      const from = layerOf(file);
      for (const target of importsOf(file)) {
        const to = layerOf(target);
        if (to !== from && RANKS[to] >= RANKS[from]) {
          upward.push(`${relative(src, file)} (${from}) imports ${relative(src, target)} (${to})`);
        }
      }
    }
    expect(upward).toEqual([]);
  });

  it('finds imports at all (the check is not vacuous)', () => {
    const sessionImports = files
      .filter((file) => layerOf(file) === 'sessions')
      .flatMap(importsOf)
      .map(layerOf);
    expect(sessionImports).toContain('storage');
    expect(sessionImports).toContain('keys');
  });
});
