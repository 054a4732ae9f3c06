import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { protocol } from '@openai/agents-core';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The README section under `heading`, up to the next heading (a `#` line outside code fences). */
function readmeSection(heading: string): string {
  const lines = readme.split('\n');
  const start = lines.indexOf(heading);
  expect(start, `README has no section "${heading}"`).toBeGreaterThanOrEqual(0);
  let inFence = false;
  let end = start + 1;
  for (; end < lines.length; end++) {
    if (lines[end].startsWith('```')) inFence = !inFence;
    else if (!inFence && /^#{1,6} /.test(lines[end])) break;
  }
  return lines.slice(start + 1, end).join('\n');
}

describe("README: the demo's example requests", () => {
  // Every `-d '...'` body of the curl examples, as a user would paste it.
  const bodies = [...readmeSection("### The demo's routes").matchAll(/ -d '([^']*)'/g)].map(
    (match) => JSON.parse(match[1]) as { items?: unknown[] },
  );

  it('has example bodies to check', () => {
    expect(bodies.length).toBeGreaterThanOrEqual(2);
  });

  it('sends only valid @openai/agents AgentInputItems', () => {
    const items = bodies.flatMap((body) => body.items ?? [body]);
    for (const item of items) {
      const parsed = protocol.ModelItem.safeParse(item);
      expect(parsed.success, `not an AgentInputItem: ${JSON.stringify(item)}`).toBe(true);
      // Parsing drops unknown keys: an item with a misspelt field would pass without this.
      expect(parsed.data, JSON.stringify(item)).toEqual(item);
    }
  });

  it('sends every body with Content-Type: application/json', () => {
    const curls = readmeSection("### The demo's routes")
      .replace(/\\\n\s*/g, ' ')
      .split('\n')
      .filter((line) => line.includes(' -d '));
    for (const curl of curls) expect(curl).toContain("-H 'content-type: application/json'");
  });
});

describe('config/demo.env.example', () => {
  const example = readFileSync(join(root, 'config/demo.env.example'), 'utf8').split('\n');
  const demoDir = join(root, 'examples/demo');
  // The demo reads its environment as `env.NAME` (env defaults to process.env).
  const read = new Set(
    readdirSync(demoDir)
      .filter((name) => name.endsWith('.ts'))
      .flatMap((name) => [
        ...readFileSync(join(demoDir, name), 'utf8').matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g),
      ])
      .map((match) => match[1]),
  );

  it('finds the variables the demo reads', () => {
    expect([...read]).toEqual(expect.arrayContaining(['SESSION_KEYS', 'PORT']));
  });

  it.each([...read].toSorted())('lists %s under a comment of its own', (name) => {
    const line = example.findIndex((text) => text.startsWith(`${name}=`));
    expect(line, `${name} is missing`).toBeGreaterThan(0);
    expect(example[line - 1]).toMatch(/^# /);
  });

  it('lists nothing the demo does not read', () => {
    const listed = example.flatMap((text) => /^([A-Z][A-Z0-9_]*)=/.exec(text)?.[1] ?? []);
    expect(listed.toSorted()).toEqual([...read].toSorted());
  });
});
