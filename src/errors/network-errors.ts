/**
 * Socket-level error codes that mean the server could not be reached or the connection
 * dropped: a retry may succeed. Shared by every networked adapter and key provider; internal
 * (not exported from the errors barrel).
 */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
