import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blockLabel,
  buildExampleProject,
  findExampleBlocks,
  scanMarkdown,
  type ExampleBlock,
  type ExampleProject,
  type ExampleResults,
} from './readme-examples.js';

// Read at collection time, so each block is a test of its own named by file:line.
const scan = findExampleBlocks();
const compiled = scan.blocks.filter((block) => block.fragment === null);
const fragments = scan.blocks.filter((block) => block.fragment !== null);

// Compiled with the README's blocks, to show the check sees a bad import and the subpath.
const probes = {
  broken: {
    file: 'probe.md',
    line: 1,
    code: "import { sealItem } from 'nest-encrypted-sessions/crypto';\nimport { NoSuchExport } from 'nest-encrypted-sessions';\nvoid sealItem;\nvoid NoSuchExport;\n",
    fragment: null,
  },
  sources: {
    file: 'probe.md',
    line: 10,
    code: "import { EncryptedSessionModule } from '../src/index.js';\n",
    fragment: 'reads the sources',
  },
} satisfies Record<string, ExampleBlock>;

describe("the README's TypeScript examples, against the built package", () => {
  let project: ExampleProject | undefined;
  let results: ExampleResults;

  beforeAll(() => {
    project = buildExampleProject();
    results = project.compile([...scan.blocks, ...Object.values(probes)]);
  }, 180_000);

  afterAll(() => project?.dispose());

  it('finds the examples, and every "example:" mark sits right before a ts fence', () => {
    expect(compiled.length).toBeGreaterThanOrEqual(10);
    expect(scan.problems).toEqual([]);
  });

  it("compiles the package's declarations and the project options cleanly", () => {
    expect(results.outsideBlocks).toEqual([]);
  });

  it.each(compiled.map((block) => [blockLabel(block), block] as const))(
    '%s compiles',
    (label, block) => {
      expect(results.byBlock.get(block), label).toEqual([]);
    },
  );

  it.each(fragments.map((block) => [blockLabel(block), block] as const))(
    '%s (marked fragment) imports the package by name and gives a reason',
    (label, block) => {
      expect(results.byBlock.get(block), label).toEqual([]);
      expect(block.fragment, `${label}: say why in <!-- example: fragment (why) -->`).not.toBe('');
    },
  );

  it('reports a missing export at its markdown line, and resolves the /crypto subpath', () => {
    expect(results.byBlock.get(probes.broken)).toEqual([
      `probe.md:3:10 TS2305: Module '"nest-encrypted-sessions"' has no exported member 'NoSuchExport'.`,
    ]);
  });

  it('refuses a relative import, in a fragment too', () => {
    expect(results.byBlock.get(probes.sources)).toEqual([
      "probe.md:11:40 imports '../src/index.js': examples import the package by name ('nest-encrypted-sessions', 'nest-encrypted-sessions/crypto')",
    ]);
  });
});

describe('scanMarkdown', () => {
  const markdown = [
    '# Title', // 1
    '```ts', // 2
    'const a = 1;', // 3
    '```', // 4
    '<!-- example: fragment (continues the block above) -->', // 5
    '```typescript', // 6
    'a + 1;', // 7
    '````', // 8
    '```sh', // 9
    'npm test', // 10
    '```', // 11
  ].join('\n');

  it('takes ts and typescript fences with their line, and the fragment reason', () => {
    expect(scanMarkdown(markdown, 'x.md')).toEqual({
      blocks: [
        { file: 'x.md', line: 2, code: 'const a = 1;\n', fragment: null },
        { file: 'x.md', line: 6, code: 'a + 1;\n', fragment: 'continues the block above' },
      ],
      problems: [],
    });
  });

  it('flags a mark that is not right before a ts fence, and an unknown mark', () => {
    const marked =
      '<!-- example: fragment -->\n\n```ts\nx;\n```\n<!-- example: skip -->\n```ts\n```\n';
    expect(scanMarkdown(marked, 'x.md').problems).toEqual([
      'x.md:1 "example: fragment" must sit on the line right before a ```ts fence',
      'x.md:6 unknown mark "example: skip" (the only mark is "example: fragment")',
    ]);
  });
});
