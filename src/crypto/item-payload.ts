import { inspect, types } from 'node:util';
import { IntegrityError, InvalidArgumentError } from '../errors/index.js';

const BYTES_TAG = '$u8';
const ESCAPE_TAG = '$obj';
/** One scan for `"$u8"` or `"$obj"`; about twice as fast as two `includes` calls. */
const MAY_HOLD_TAGS = /"\$(?:u8|obj)"/;

/**
 * Deepest nesting of objects and arrays an item may have; deeper ones are refused.
 *
 * @publicApi
 */
export const MAX_ITEM_DEPTH = 1000;

/**
 * Encodes an agent history item as UTF-8 JSON that `decodeItemPayload` turns back into an equal
 * item, and refuses every item it could not return exactly as given:
 *
 * - accepted: plain objects (prototype `Object.prototype` or `null`), arrays, strings (lone
 *   surrogates included), finite numbers (`-0` included), booleans, `null`, and `Uint8Array`s
 *   (a `Buffer` too), written as `{"$u8":"<base64>"}` and read back as plain `Uint8Array`s;
 * - an object whose only key is `$u8` or `$obj` becomes `{"$obj": <object>}`, so user data that
 *   looks like a tag comes back unchanged;
 * - an object property whose value is `undefined` is left out, as JSON does (reading it gives
 *   `undefined` either way; the agents SDK itself builds items with such properties);
 * - refused with `InvalidArgumentError`: `undefined` (as the item or in an array), functions,
 *   symbols, BigInts, `NaN` and infinities, `Date`s, `Map`s, `Set`s, class instances, other
 *   binary types, `Proxy` objects, sparse arrays or arrays with extra properties, properties
 *   that are non-enumerable, symbol-keyed or accessors, circular references, and nesting deeper
 *   than {@link MAX_ITEM_DEPTH}.
 *
 * No getter, `toJSON` or proxy trap of the caller runs, so nothing can change between the check
 * and the write, and no caller error text (which may hold content) reaches the message; the
 * message names the kind of problem, never the content.
 *
 * @param label how the message names the item, e.g. `addItems item 3`.
 *
 * @publicApi
 */
export function encodeItemPayload(item: unknown, label = 'The session item'): Buffer {
  let needsWriter: boolean;
  try {
    needsWriter = new ItemChecker().check(item, 0);
  } catch (error) {
    if (error instanceof NotExact) {
      throw new InvalidArgumentError(
        `${label} cannot be stored exactly: ${error.message}. Nothing was stored.`,
      );
    }
    throw error;
  }
  // The item is now known to hold only plain data: native JSON.stringify writes it exactly as
  // writeJson would, several times faster, unless it needs a tag or a -0.
  const json = needsWriter ? writeJson(item) : JSON.stringify(item);
  return Buffer.from(json, 'utf8');
}

/**
 * Reads an array of items that the caller handed over (the `items` of `addItems`, a transaction
 * field) after checking that it is a plain, dense array with nothing but its elements.
 *
 * @throws InvalidArgumentError naming `what` when it is not such an array.
 *
 * @publicApi
 */
export function readItemArray(value: unknown, what: string): unknown[] {
  try {
    // isProxy first: Array.isArray sees through a Proxy (and throws on a revoked one).
    if (types.isProxy(value)) throw new NotExact('it is a Proxy');
    if (!Array.isArray(value)) throw new NotExact('it is not an array');
    checkPlainArray(value);
    return value.slice();
  } catch (error) {
    if (error instanceof NotExact) {
      throw new InvalidArgumentError(`${what} must be a plain array of items: ${error.message}`);
    }
    throw error;
  }
}

/**
 * Reads the own properties of a plain object without running any getter or proxy trap.
 *
 * @throws InvalidArgumentError naming `what` when it is not a plain object of data properties.
 *
 * @publicApi
 */
export function readPlainObject(value: unknown, what: string): Map<string, unknown> {
  try {
    if (typeof value !== 'object' || value === null) throw new NotExact('it is not an object');
    if (types.isProxy(value)) throw new NotExact('it is a Proxy');
    if (Array.isArray(value)) throw new NotExact('it is an array');
    const record = value as Record<string, unknown>;
    const fields = new Map<string, unknown>();
    for (const key of checkPlainObject(record)) fields.set(key, record[key]);
    return fields;
  } catch (error) {
    if (error instanceof NotExact) {
      throw new InvalidArgumentError(`${what} must be a plain object: ${error.message}`);
    }
    throw error;
  }
}

/** Why a value cannot be stored exactly; its message names the kind of value, never content. */
class NotExact extends Error {}

/** Checks one item; tells whether it needs {@link writeJson} (a tag or a -0) over JSON.stringify. */
class ItemChecker {
  private readonly ancestors: object[] = [];
  private needsWriter = false;

  check(value: unknown, depth: number): boolean {
    this.value(value, depth);
    return this.needsWriter;
  }

  private value(value: unknown, depth: number): void {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return;
      case 'number':
        if (!Number.isFinite(value)) throw new NotExact('it contains NaN or an infinite number');
        if (value === 0 && 1 / value < 0) this.needsWriter = true;
        return;
      case 'object':
        if (value !== null) this.container(value, depth + 1);
        return;
      case 'undefined':
        throw new NotExact('it is or contains undefined where JSON has no place for it');
      case 'bigint':
        throw new NotExact('it contains a BigInt');
      case 'symbol':
        throw new NotExact('it contains a Symbol');
      default:
        throw new NotExact('it contains a function');
    }
  }

  private container(value: object, depth: number): void {
    // First, before anything that could run a trap.
    if (types.isProxy(value)) throw new NotExact('it contains a Proxy');
    if (types.isUint8Array(value)) {
      checkBytes(value);
      this.needsWriter = true;
      return;
    }
    if (this.ancestors.includes(value)) throw new NotExact('it contains a circular reference');
    if (depth > MAX_ITEM_DEPTH) {
      throw new NotExact(`it is nested more than ${MAX_ITEM_DEPTH} levels deep`);
    }
    this.ancestors.push(value);
    if (Array.isArray(value)) {
      checkPlainArray(value);
      for (let index = 0; index < value.length; index++) this.value(value[index], depth);
    } else {
      const record = value as Record<string, unknown>;
      let defined = 0;
      let tagKey = false;
      for (const key of checkPlainObject(record)) {
        const property = record[key];
        // JSON leaves these out; the property reads as undefined after a round trip too.
        if (property === undefined) continue;
        defined++;
        if (key === BYTES_TAG || key === ESCAPE_TAG) tagKey = true;
        this.value(property, depth);
      }
      if (tagKey && defined === 1) this.needsWriter = true;
    }
    this.ancestors.pop();
  }
}

/** Annex B lookups: an own data property answers undefined, without running any code. */
const { __lookupGetter__: lookupGetter, __lookupSetter__: lookupSetter } =
  Object.prototype as unknown as Record<
    '__lookupGetter__' | '__lookupSetter__',
    (this: object, key: PropertyKey) => unknown
  >;

/** True when the own property `key` is an accessor (a data property gives undefined for both). */
function isAccessor(value: object, key: string | number): boolean {
  return lookupGetter.call(value, key) !== undefined || lookupSetter.call(value, key) !== undefined;
}

/**
 * The keys of a plain object, after checking that every own property is an enumerable,
 * string-keyed data property. Cheaper than a descriptor per property, which doubles encoding.
 */
function checkPlainObject(value: object): string[] {
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) {
    throw new NotExact(describeNonPlainObject(value));
  }
  const keys = Object.keys(value);
  if (Reflect.ownKeys(value).length !== keys.length) {
    throw new NotExact(
      Object.getOwnPropertySymbols(value).length > 0
        ? 'it contains a Symbol-keyed property'
        : 'it contains a non-enumerable property',
    );
  }
  for (const key of keys) {
    if (isAccessor(value, key)) {
      throw new NotExact('it contains a property defined by a getter or setter');
    }
  }
  return keys;
}

/** Checks that an array (not a Proxy) is dense, plain, and has no property but its elements. */
function checkPlainArray(value: unknown[]): void {
  if (Object.getPrototypeOf(value) !== Array.prototype) {
    throw new NotExact('it contains an array subclass or an array with another prototype');
  }
  const { length } = value;
  for (let index = 0; index < length; index++) {
    if (!Object.hasOwn(value, index)) {
      throw new NotExact('it contains a sparse array (an empty slot would come back as null)');
    }
    if (isAccessor(value, index)) {
      throw new NotExact('it contains an array element defined by a getter or setter');
    }
  }
  // Every index is present, so any string key besides them and `length` is another property.
  if (
    Object.getOwnPropertyNames(value).length !== length + 1 ||
    Object.getOwnPropertySymbols(value).length !== 0
  ) {
    throw new NotExact('it contains an array with properties besides its elements');
  }
}

/**
 * Writes a checked item as JSON with `$u8` and `$obj` tags and `-0` kept; everything else comes
 * out exactly as JSON.stringify writes it (same key order, same escapes).
 */
function writeJson(value: unknown): string {
  if (typeof value === 'number') return value === 0 && 1 / value < 0 ? '-0' : String(value);
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  if (types.isUint8Array(value)) {
    const view = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return `{"${BYTES_TAG}":"${view.toString('base64')}"}`;
  }
  if (Array.isArray(value)) return `[${value.map(writeJson).join(',')}]`;
  const record = value as Record<string, unknown>;
  let json = '';
  let written = 0;
  let onlyKey = '';
  for (const key of Object.keys(record)) {
    const property = record[key];
    if (property === undefined) continue;
    if (written++ > 0) json += ',';
    onlyKey = key;
    json += `${JSON.stringify(key)}:${writeJson(property)}`;
  }
  // User data shaped like a tag is wrapped so that decoding leaves it as it is.
  return written === 1 && (onlyKey === BYTES_TAG || onlyKey === ESCAPE_TAG)
    ? `{"${ESCAPE_TAG}":{${json}}}`
    : `{${json}}`;
}

/** Options that make `inspect` list a typed array's own non-index properties and nothing else. */
const EXTRA_PROPERTIES_ONLY = {
  maxArrayLength: 0,
  depth: 0,
  customInspect: false,
  getters: false,
  breakLength: Infinity,
} as const;

function checkBytes(bytes: Uint8Array): void {
  // Reflect.ownKeys would list every index (a million strings for 1 MiB); inspect asks V8 for
  // the non-index properties only. A clean one prints as `Name(n) [ ... n more items ]`.
  const clean =
    bytes.length === 0
      ? ' []'
      : ` [ ... ${bytes.length} more item${bytes.length === 1 ? '' : 's'} ]`;
  if (
    Object.getOwnPropertySymbols(bytes).length !== 0 ||
    !inspect(bytes, EXTRA_PROPERTIES_ONLY).endsWith(clean)
  ) {
    throw new NotExact('it contains a Uint8Array with properties besides its bytes');
  }
}

/** Names the kind of a non-plain object without running any of its code. */
function describeNonPlainObject(value: object): string {
  if (types.isDate(value)) return 'it contains a Date (it would come back as a string)';
  if (types.isMap(value) || types.isSet(value)) return 'it contains a Map or a Set';
  if (types.isArrayBufferView(value) || types.isAnyArrayBuffer(value)) {
    return 'it contains binary data other than a Uint8Array';
  }
  if (types.isRegExp(value)) return 'it contains a RegExp';
  if (types.isNativeError(value)) return 'it contains an Error object';
  if (types.isBoxedPrimitive(value))
    return 'it contains a boxed primitive (new String, new Number)';
  return 'it contains an object that is not a plain object (a class instance?)';
}

/**
 * Decodes what {@link encodeItemPayload} wrote, restoring `Uint8Array`s and escaped objects.
 *
 * @throws IntegrityError when the bytes are not valid payload JSON. For authenticated data this
 *   means a bug, not tampering.
 *
 * @publicApi
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

/** Defines rather than assigns: assigning to "__proto__" would change the prototype instead. */
function setOwn(container: object, key: string | number, value: unknown): void {
  Object.defineProperty(container, key, {
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

function malformedTag(): IntegrityError {
  return new IntegrityError(
    'Decrypted item payload holds a malformed $u8 or $obj tag. Nothing was deleted.',
  );
}
