import { existsSync, readFileSync } from 'node:fs';

/**
 * Every form a secret could take on disk or in text: as written, UTF-8 base64 at each of the
 * three byte alignments (base64 of a substring depends on where it starts), and hex.
 */
export function encodedForms(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const forms = new Set<string>([
    secret,
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
  ]);
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    // Drop the characters touched by the padding bytes and by the unknown tail.
    forms.add(encoded.slice(Math.ceil((shift * 4) / 3) + 1, -4));
  }
  return [...forms].filter((form) => form.length >= 8);
}

/** The forms of `secret` found in `haystack` (a file's bytes read as latin1, or text). */
export function findSecret(haystack: string, secret: string): string[] {
  return encodedForms(secret).filter((form) => haystack.includes(form));
}

/** A database file and its WAL and shared-memory companions, as latin1 text (missing = ''). */
export function readDatabaseFiles(path: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const suffix of ['', '-wal', '-shm']) {
    const file = path + suffix;
    files[file] = existsSync(file) ? readFileSync(file).toString('latin1') : '';
  }
  return files;
}
