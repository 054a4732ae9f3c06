import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { progressOn } from '../../src/cli/progress.js';

/*
 * The progress line of long commands: drawn only on a terminal, the total growing as work is
 * found, cleared when the work ends.
 */

function stream(isTTY: boolean) {
  const target = Object.assign(new PassThrough(), { isTTY, columns: 120 });
  let written = '';
  target.on('data', (chunk: Buffer) => (written += chunk.toString('utf8')));
  return { target, written: () => written };
}

const counts = (found: number, done: number) => ({ found, done, details: { purged: done } });

describe('progress', () => {
  it('draws handled of found so far on a terminal, without a percentage, then clears the line', () => {
    const terminal = stream(true);
    const progress = progressOn(terminal.target, 'purge', ['purged']);
    expect(terminal.written()).toContain('purge [........................] 0/0 | purged 0');
    progress.update(counts(100, 40));
    progress.update(counts(250, 250));
    progress.stop();
    progress.stop();
    const drawn = terminal.written();
    expect(drawn).toContain('250/250 | purged 250');
    expect(drawn).not.toContain('%');
    expect(drawn.endsWith('\u001b[2K')).toBe(true);
  });

  it('writes nothing on a stream that is no terminal, or with none', () => {
    const piped = stream(false);
    for (const target of [piped.target, undefined]) {
      const progress = progressOn(target, 'purge', ['purged']);
      progress.update(counts(10, 5));
      progress.stop();
    }
    expect(piped.written()).toBe('');
  });
});
