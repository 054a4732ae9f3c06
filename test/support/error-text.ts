/** Every string an error exposes: message, stack, name, its own properties, and its causes'. */
export function errorText(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const e = current as Error & { cause?: unknown };
    parts.push(
      String(e),
      e.message ?? '',
      e.stack ?? '',
      JSON.stringify(e, Object.getOwnPropertyNames(e)),
    );
    current = e.cause;
  }
  return parts.join('\n');
}
