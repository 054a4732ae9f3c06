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

/** `value` as 8 bytes, big-endian: a chain's sequence number inside a MAC input. */
export function uint64(value: number): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}
