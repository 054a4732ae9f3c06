import { IntegrityError, InvalidArgumentError } from '../errors/index.js';

const BYTES_TAG = '$u8';
const ESCAPE_TAG = '$obj';
/** One scan for `"$u8"` or `"$obj"`; about twice as fast as two `includes` calls. */
const MAY_HOLD_TAGS = /"\$(?:u8|obj)"/;

/** Marks an object whose only key looks like a tag, so it serializes as `{"$obj": <object>}`. */
class EscapedObject {
  constructor(readonly $obj: object) {}
}

/**
 * Encodes an agent history item as UTF-8 JSON that keeps binary data:
 *
 * - a `Uint8Array` (including a `Buffer`) becomes `{"$u8":"<base64>"}`;
 * - an object whose only serialized key is `$u8` or `$obj` becomes `{"$obj": <object>}`, so
 *   user data that looks like a tag comes back unchanged;
 * - everything else is plain `JSON.stringify`.
 *
 * As with JSON, `undefined` properties and functions are dropped, `-0` becomes `0`, `toJSON`
 * is honoured (a `Date` becomes its ISO string) and a decoded `Uint8Array` is a plain
 * `Uint8Array`, never a `Buffer`.
 *
 * @throws InvalidArgumentError when the item is `undefined` (or a function or symbol), or
 *   contains a BigInt, a circular reference, a binary type other than `Uint8Array`, a `Map` or
 *   a `Set`. The message names the problem, never the content.
 */
export function encodeItemPayload(item: unknown): Buffer {
  let json: string | undefined;
  try {
    json = JSON.stringify(item, tagReplacer);
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw error;
    throw notSerializable(describeStringifyFailure(error));
  }
  if (json === undefined) {
    throw notSerializable('it is undefined, a function or a symbol');
  }
  return Buffer.from(json, 'utf8');
}

/**
 * Decodes what {@link encodeItemPayload} wrote, restoring `Uint8Array`s and escaped objects.
 *
 * @throws IntegrityError when the bytes are not valid payload JSON. For authenticated data this
 *   means a bug, not tampering.
 */
export function decodeItemPayload(bytes: Uint8Array): unknown {
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidArgumentError('An item payload to decode must be a Uint8Array.');
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new IntegrityError('Decrypted item payload is not valid JSON. Nothing was deleted.');
  }
  // Most items hold no binary data; skip the tag walk for them.
  if (!MAY_HOLD_TAGS.test(text)) return value;
  return restoreTags(value);
}

function tagReplacer(this: unknown, key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'bigint') throw notSerializable('it contains a BigInt');
    return value;
  }
  // The object inside an escape wrapper is written as is; its children still pass through here.
  if (this instanceof EscapedObject) return value;
  // `value` went through toJSON already (a Buffer arrives as {type, data}); the holder has the original.
  const original = (this as Record<string, unknown>)[key];
  const bytes =
    original instanceof Uint8Array ? original : value instanceof Uint8Array ? value : undefined;
  if (bytes !== undefined) {
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return { [BYTES_TAG]: view.toString('base64') };
  }
  if (Array.isArray(value)) return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    throw notSerializable('it contains binary data other than a Uint8Array');
  }
  if (value instanceof Map || value instanceof Set) {
    throw notSerializable('it contains a Map or a Set');
  }
  return looksLikeTag(value) ? new EscapedObject(value) : value;
}

/** True when the object would serialize with exactly one key, and that key is a tag name. */
function looksLikeTag(value: object): boolean {
  if (!Object.hasOwn(value, BYTES_TAG) && !Object.hasOwn(value, ESCAPE_TAG)) return false;
  let serializedKeys = 0;
  for (const key of Object.keys(value)) {
    const property: unknown = (value as Record<string, unknown>)[key];
    // JSON drops these, so {$u8: 'x', extra: undefined} serializes exactly like a tag.
    const dropped =
      property === undefined || typeof property === 'function' || typeof property === 'symbol';
    if (!dropped) serializedKeys++;
  }
  return serializedKeys === 1;
}

/** Replaces tags in place, top-down; iterative so deep items cannot overflow the stack. */
function restoreTags(root: unknown): unknown {
  const holder: Record<string, unknown> = { root };
  const pending: object[] = [];
  restoreSlot(holder, 'root', pending);
  for (let container = pending.pop(); container !== undefined; container = pending.pop()) {
    const slots = container as Record<string, unknown>;
    if (Array.isArray(container)) {
      for (let index = 0; index < container.length; index++) restoreSlot(slots, index, pending);
    } else {
      for (const key of Object.keys(container)) restoreSlot(slots, key, pending);
    }
  }
  return holder.root;
}

function restoreSlot(
  container: Record<string | number, unknown>,
  key: string | number,
  pending: object[],
): void {
  const value = container[key];
  if (typeof value !== 'object' || value === null) return;
  if (Array.isArray(value)) {
    pending.push(value);
    return;
  }
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === BYTES_TAG) {
    setOwn(container, key, bytesFromTag((value as Record<string, unknown>)[BYTES_TAG]));
  } else if (keys.length === 1 && keys[0] === ESCAPE_TAG) {
    const escaped = (value as Record<string, unknown>)[ESCAPE_TAG];
    if (typeof escaped !== 'object' || escaped === null || Array.isArray(escaped)) {
      throw malformedTag();
    }
    setOwn(container, key, escaped);
    // The escaped object itself is user data; only its children may hold tags.
    pending.push(escaped);
  } else {
    pending.push(value);
  }
}

function bytesFromTag(base64: unknown): Uint8Array {
  if (typeof base64 !== 'string') throw malformedTag();
  // Copy out of Buffer's shared pool so the result owns exactly its bytes.
  return new Uint8Array(Buffer.from(base64, 'base64'));
}

/** Plain assignment to "__proto__" would change the prototype instead of adding a key. */
function setOwn(container: Record<string | number, unknown>, key: string | number, value: unknown) {
  if (key === '__proto__') {
    Object.defineProperty(container, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  } else {
    container[key] = value;
  }
}

function describeStringifyFailure(error: unknown): string {
  if (error instanceof RangeError) return 'it is nested too deeply';
  if (error instanceof TypeError && /circular/i.test(error.message)) {
    return 'it contains a circular reference';
  }
  return 'a toJSON method or getter threw while serializing it';
}

function notSerializable(reason: string): InvalidArgumentError {
  return new InvalidArgumentError(`The session item cannot be stored as JSON: ${reason}.`);
}

function malformedTag(): IntegrityError {
  return new IntegrityError(
    'Decrypted item payload holds a malformed $u8 or $obj tag. Nothing was deleted.',
  );
}
