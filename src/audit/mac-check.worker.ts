import { firstMacMismatch, type PackedMacPage } from './mac-check.js';

/** A worker thread of the verifier's MAC-check pool: one packed page per task. */
export default function checkPackedPage(page: PackedMacPage): number {
  return firstMacMismatch(page);
}
