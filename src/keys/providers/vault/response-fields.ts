/*
 * Reads of Vault's JSON answers, which arrive untyped: a missing or odd field reads as
 * undefined, and the caller decides what that means.
 */

/** `value[name]` when value is an object, else undefined. */
export function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null
    ? (value as Record<string, unknown>)[name]
    : undefined;
}

/** A finite number (or numeric string) field, else undefined. */
export function numberField(value: unknown, name: string): number | undefined {
  const raw = field(value, name);
  const parsed = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  // Number.isFinite is false for anything but a number.
  return Number.isFinite(parsed) ? (parsed as number) : undefined;
}
