import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Writes `content` (a service account JWT) to a fresh temporary file, removed by the cleanup
 * pushed to `cleanups`.
 */
export function jwtFile(content: string, cleanups: (() => void)[]): string {
  const directory = mkdtempSync(join(tmpdir(), 'vault-k8s-'));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  const path = join(directory, 'token');
  writeFileSync(path, `${content}\n`);
  return path;
}
