/**
 * Concatenates byte strings, each preceded by its length as a 4-byte big-endian number, so no
 * two different lists of parts encode to the same bytes ("ab" + "c" differs from "a" + "bc").
 * Every MAC and hash input of the audit trail is built with it.
 */
export function lengthPrefixed(parts: ReadonlyArray<Uint8Array | string>): Buffer {
  const buffers = parts.map((part) =>
    typeof part === 'string' ? Buffer.from(part, 'utf8') : Buffer.from(part),
  );
  const out = Buffer.allocUnsafe(buffers.reduce((total, part) => total + 4 + part.length, 0));
  let offset = 0;
  for (const part of buffers) {
    offset = out.writeUInt32BE(part.length, offset);
    offset += part.copy(out, offset);
  }
  return out;
}

/** `value` as 8 bytes, big-endian: a chain's sequence number inside a MAC input. */
export function uint64(value: number): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}
