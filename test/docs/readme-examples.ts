/**
 * The README's TypeScript examples, compiled the way a host compiles them: against the built
 * package, imported by its name, with Nest's decorator settings.
 *
 * - {@link findExampleBlocks} reads every ```ts / ```typescript fence of README.md and
 *   docs/*.md, with its file and the line of its opening fence.
 * - {@link buildExampleProject} builds `src` with `tsc -p tsconfig.build.json` into a temporary
 *   `pkg/dist` (never the repository's `dist`), copies package.json beside it, and sets up a
 *   temporary `project/` whose `node_modules/nest-encrypted-sessions` links to that `pkg`; every
 *   other package links to the repository's node_modules (plus typed stand-ins for the few host
 *   packages an example uses that the repository does not install, see HOST_PACKAGE_STANDINS).
 * - {@link ExampleProject.compile} writes each block to its own `.ts` file and type-checks them
 *   all in one program; problems come back per block, as `file:line:column` of the markdown.
 *
 * A block that is not meant to compile alone is marked on the line before its fence with
 * `<!-- example: fragment (why) -->`. Fragments are still held to the import rule: examples use
 * the package by name, never a relative path into the sources.
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const repoRoot = resolve(import.meta.dirname, '../..');

/** The package name examples import; its subpaths (`/crypto`) come from the exports map. */
export const PACKAGE_NAME = 'nest-encrypted-sessions';

/** One fenced TypeScript block of a markdown file. */
export interface ExampleBlock {
  /** The markdown file, relative to the repository root (`README.md`, `docs/x.md`). */
  readonly file: string;
  /** 1-based line of the opening fence; the code starts on the next line. */
  readonly line: number;
  /** The block's code, fence indentation removed. */
  readonly code: string;
  /** The reason given in a `<!-- example: fragment ... -->` mark ('' if none); null if unmarked. */
  readonly fragment: string | null;
}

/** What a scan of the markdown files found: the blocks, and marks that point at no block. */
export interface ExampleScan {
  readonly blocks: readonly ExampleBlock[];
  /** `file:line message` for each misplaced or unknown `<!-- example: ... -->` mark. */
  readonly problems: readonly string[];
}

const FENCE = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)/;
const MARK = /^\s*<!--\s*example:\s*(\S+)\s*(.*?)\s*-->\s*$/;
const TYPESCRIPT = new Set(['ts', 'typescript']);

/** The TypeScript blocks of one markdown text. `file` only labels them. */
export function scanMarkdown(markdown: string, file: string): ExampleScan {
  const lines = markdown.split('\n');
  const blocks: ExampleBlock[] = [];
  const problems: string[] = [];
  let mark: { line: number; kind: string; reason: string } | null = null;
  for (let index = 0; index < lines.length; index++) {
    const text = lines[index];
    const markMatch = MARK.exec(text);
    if (markMatch) {
      if (markMatch[1] !== 'fragment') {
        problems.push(
          `${file}:${index + 1} unknown mark "example: ${markMatch[1]}" (the only mark is "example: fragment")`,
        );
      }
      mark = { line: index + 1, kind: markMatch[1], reason: markMatch[2] };
      continue;
    }
    const fence = FENCE.exec(text);
    if (mark && (!fence || !TYPESCRIPT.has(fence[3].toLowerCase()))) {
      problems.push(
        `${file}:${mark.line} "example: ${mark.kind}" must sit on the line right before a \`\`\`ts fence`,
      );
    }
    const fragment = mark?.kind === 'fragment' ? mark.reason.replace(/^[-–—:(\s]+|\)$/g, '') : null;
    mark = null;
    if (!fence) continue;
    // Skip to the closing fence: same character, at least as long, nothing after it.
    const [, indent, opener, info] = fence;
    const closing = new RegExp(`^ {0,3}${opener[0]}{${opener.length},}\\s*$`);
    let end = index + 1;
    while (end < lines.length && !closing.test(lines[end])) end++;
    if (TYPESCRIPT.has(info.toLowerCase())) {
      const body = lines
        .slice(index + 1, end)
        .map((line) => (line.startsWith(indent) ? line.slice(indent.length) : line.trimStart()));
      blocks.push({ file, line: index + 1, code: body.join('\n') + '\n', fragment });
    }
    index = end;
  }
  if (mark)
    problems.push(`${file}:${mark.line} "example: ${mark.kind}" is not followed by a fence`);
  return { blocks, problems };
}

/** The TypeScript blocks of README.md and docs/*.md, in file order. */
export function findExampleBlocks(root: string = repoRoot): ExampleScan {
  const docs = readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .toSorted()
    .map((name) => `docs/${name}`);
  const scans = ['README.md', ...docs].map((file) =>
    scanMarkdown(readFileSync(join(root, file), 'utf8'), file),
  );
  return {
    blocks: scans.flatMap((scan) => scan.blocks),
    problems: scans.flatMap((scan) => scan.problems),
  };
}

/** Where a block is, for test names and messages: `README.md:337`. */
export function blockLabel(block: ExampleBlock): string {
  return `${block.file}:${block.line}`;
}

/**
 * Packages the examples show a host using that this repository does not install. Each gets a
 * small typed stand-in (only what the examples call), used only while the real package is
 * absent from node_modules; the library itself never imports them.
 */
const HOST_PACKAGE_STANDINS: Readonly<Record<string, string>> = {
  // The forRootAsync example reads its keys with ConfigService (@nestjs/config 4).
  '@nestjs/config': `import type { DynamicModule } from '@nestjs/common';
export declare class ConfigModule {
  static forRoot(options?: Record<string, unknown>): DynamicModule;
}
export declare class ConfigService<K = Record<string, unknown>> {
  get<T = any>(propertyPath: string): T | undefined;
  get<T = any>(propertyPath: string, defaultValue: NoInfer<T>): T;
  getOrThrow<T = any>(propertyPath: string, defaultValue?: NoInfer<T>): T;
}
`,
};

/** The compiler options of the example project: a strict ESM Nest host. */
const PROJECT_TSCONFIG = {
  compilerOptions: {
    target: 'ES2023',
    lib: ['ES2024'],
    module: 'nodenext',
    moduleResolution: 'nodenext',
    // Each block is a file of its own, even one without imports: no shared global scope.
    moduleDetection: 'force',
    types: ['node'],
    strict: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    esModuleInterop: true,
    noEmit: true,
    // Off, so this package's own declarations are checked as a host with it off sees them (a
    // type lost to stripInternal shows here). Only the blocks and the package's files are asked
    // for diagnostics, though: a full check of every dependency's declarations takes four
    // times as long and finds only @openai/agents-realtime naming browser globals (lib DOM).
    skipLibCheck: false,
  },
  include: ['examples/*.ts'],
};

/** A temporary host project with the freshly built package installed. */
export interface ExampleProject {
  /** The temporary folder (`pkg/` and `project/`). */
  readonly directory: string;
  /**
   * Writes each block to `project/examples/` and type-checks them together. Returns the
   * problems of each block (`file:line:column TSxxxx: message`, positions in the markdown;
   * fragments are not compiled, only their imports checked) and those tied to no block
   * (the package's declarations, the options).
   */
  compile(blocks: readonly ExampleBlock[]): ExampleResults;
  /** Removes the folder. Idempotent. */
  dispose(): void;
}

/** The outcome of {@link ExampleProject.compile}. */
export interface ExampleResults {
  readonly byBlock: ReadonlyMap<ExampleBlock, readonly string[]>;
  readonly outsideBlocks: readonly string[];
}

/** Builds the package into a temporary folder and sets up a host project around it. */
export function buildExampleProject(root: string = repoRoot): ExampleProject {
  const directory = mkdtempSync(join(tmpdir(), 'nes-readme-examples-'));
  try {
    const pkg = join(directory, 'pkg');
    build(root, join(pkg, 'dist'));
    copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
    // As if installed: the package's own imports (@nestjs/common, typeorm, ...) resolve from
    // the repository's node_modules, the same files the project sees, so types stay identical.
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir');

    const project = join(directory, 'project');
    const modules = join(project, 'node_modules');
    linkDependencies(join(root, 'node_modules'), modules);
    symlinkSync(pkg, join(modules, PACKAGE_NAME), 'dir');
    for (const [name, declarations] of Object.entries(HOST_PACKAGE_STANDINS)) {
      const standin = join(modules, name);
      if (existsSync(standin)) continue; // the real one is installed
      mkdirSync(standin, { recursive: true });
      writeFileSync(
        join(standin, 'package.json'),
        JSON.stringify({ name, version: '0.0.0-standin', types: 'index.d.ts' }),
      );
      writeFileSync(join(standin, 'index.d.ts'), declarations);
    }
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'readme-examples', private: true, type: 'module' }),
    );
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(PROJECT_TSCONFIG, null, 2));
    mkdirSync(join(project, 'examples'));
    return {
      directory,
      compile: (blocks) => compileBlocks(project, realpathSync(join(pkg, 'dist')), blocks),
      dispose: () => rmSync(directory, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(directory, { recursive: true, force: true });
    throw error;
  }
}

/** `tsc -p tsconfig.build.json --outDir <outDir>`, type-checked like `npm run build`. */
function build(root: string, outDir: string): void {
  try {
    execFileSync(
      join(root, 'node_modules/.bin/tsc'),
      // The examples need declarations, not maps; with no maps there is nothing to inline.
      [
        '-p',
        'tsconfig.build.json',
        '--outDir',
        outDir,
        '--sourceMap',
        'false',
        '--inlineSources',
        'false',
      ],
      { cwd: root, stdio: 'pipe' },
    );
  } catch (error) {
    const output = (error as { stdout?: Buffer }).stdout?.toString() ?? String(error);
    throw new Error(`The package does not build (tsc -p tsconfig.build.json):\n${output}`, {
      cause: error,
    });
  }
}

/**
 * Fills `target` with links to each package of `source`. Scope folders (`@nestjs`) become real
 * folders of links, so a stand-in can sit beside the real members without touching `source`.
 */
function linkDependencies(source: string, target: string): void {
  mkdirSync(target, { recursive: true });
  for (const name of readdirSync(source)) {
    if (name.startsWith('.') || name === PACKAGE_NAME) continue;
    if (name.startsWith('@')) {
      linkDependencies(join(source, name), join(target, name));
    } else {
      symlinkSync(join(source, name), join(target, name), 'dir');
    }
  }
}

function isInside(folder: string, path: string): boolean {
  const rest = relative(folder, resolve(path));
  return rest !== '' && !rest.startsWith('..') && !isAbsolute(rest);
}

function compileBlocks(
  project: string,
  packageDist: string,
  blocks: readonly ExampleBlock[],
): ExampleResults {
  const examples = join(project, 'examples');
  rmSync(examples, { recursive: true, force: true });
  mkdirSync(examples);

  const byBlock = new Map<ExampleBlock, string[]>();
  const byFile = new Map<string, ExampleBlock>();
  for (const [index, block] of blocks.entries()) {
    byBlock.set(block, importProblems(block));
    if (block.fragment !== null) continue;
    const name = `${String(index).padStart(3, '0')}-${block.file.replace(/\W+/g, '-')}-${block.line}.ts`;
    const path = join(examples, name);
    writeFileSync(path, block.code);
    byFile.set(resolve(path), block);
  }

  const config = ts.getParsedCommandLineOfConfigFile(
    join(project, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    },
  );
  if (!config) throw new Error(`Could not read ${join(project, 'tsconfig.json')}`);
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });

  const outsideBlocks = config.errors.map((diagnostic) => describeDiagnostic(diagnostic, project));
  const checked = program
    .getSourceFiles()
    .filter((file) => byFile.has(resolve(file.fileName)) || isInside(packageDist, file.fileName));
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...checked.flatMap((file) => [
      ...program.getSyntacticDiagnostics(file),
      ...program.getSemanticDiagnostics(file),
    ]),
  ];
  for (const diagnostic of diagnostics) {
    const block = diagnostic.file && byFile.get(resolve(diagnostic.file.fileName));
    if (block) byBlock.get(block)?.push(describeInBlock(diagnostic, block));
    else outsideBlocks.push(describeDiagnostic(diagnostic, project));
  }
  return { byBlock, outsideBlocks };
}

/** A relative or absolute import would compile against the sources, not the package. */
function importProblems(block: ExampleBlock): string[] {
  const { importedFiles } = ts.preProcessFile(block.code, true, true);
  return importedFiles
    .filter((reference) => /^[./]/.test(reference.fileName))
    .map((reference) => {
      const { line, character } = positionIn(block.code, reference.pos);
      return (
        `${block.file}:${block.line + 1 + line}:${character + 1} imports '${reference.fileName}':` +
        ` examples import the package by name ('${PACKAGE_NAME}', '${PACKAGE_NAME}/crypto')`
      );
    });
}

function positionIn(code: string, offset: number): { line: number; character: number } {
  const before = code.slice(0, offset).split('\n');
  return { line: before.length - 1, character: before[before.length - 1].length };
}

function describeInBlock(diagnostic: ts.Diagnostic, block: ExampleBlock): string {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
  if (!diagnostic.file || diagnostic.start === undefined) {
    return `${blockLabel(block)} TS${diagnostic.code}: ${message}`;
  }
  const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
  // Line 0 of the block file is the line after the opening fence.
  return `${block.file}:${block.line + 1 + line}:${character + 1} TS${diagnostic.code}: ${message}`;
}

function describeDiagnostic(diagnostic: ts.Diagnostic, project: string): string {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
  if (!diagnostic.file || diagnostic.start === undefined) return `TS${diagnostic.code}: ${message}`;
  const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
  const where = relative(project, diagnostic.file.fileName);
  return `${where}:${line + 1}:${character + 1} TS${diagnostic.code}: ${message}`;
}
