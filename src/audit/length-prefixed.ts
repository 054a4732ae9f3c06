/**
 * Concatenates byte strings, each preceded by its length as a 4-byte big-endian number, so no
 * two different lists of parts encode to the same bytes ("ab" + "c" differs from "a" + "bc").
 * Strings are taken as UTF-8. Every MAC and hash input of the audit trail is built with it;
 * strings are written in place (no intermediate buffer per part), since the verifier builds one
 * per record.
 */
export function lengthPrefixed(parts: ReadonlyArray<Uint8Array | string>): Buffer {
  let total = 0;
  for (const part of parts) {
    total += 4 + (typeof part === 'string' ? Buffer.byteLength(part, 'utf8') : part.length);
  }
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const part of parts) {
    if (typeof part === 'string') {
      const length = Buffer.byteLength(part, 'utf8');
      offset = out.writeUInt32BE(length, offset);
      offset += out.write(part, offset, length, 'utf8');
    } else {
      offset = out.writeUInt32BE(part.length, offset);
      out.set(part, offset);
      offset += part.length;
    }
  }
  return out;
}

/** `value` (a whole number, 0 to 2^53-1) as 8 bytes, big-endian: a sequence number in a MAC input. */
export function uint64(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError('uint64: value must be a whole number from 0 to 2^53-1');
  }
  // Two 32-bit words: no BigInt per call (the verifier builds one per record).
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32BE(Math.floor(value / 0x1_0000_0000), 0);
  out.writeUInt32BE(value >>> 0, 4);
  return out;
}
