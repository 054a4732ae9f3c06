import { Tinypool } from 'tinypool';
import { PACKED_ANSWER_BYTES, firstMacMismatch, type PackedMacPage } from './mac-check.js';

/**
 * A worker thread of the verifier's MAC-check pool: one packed page per task. The answer (the
 * first mismatch or -1) goes into the page's answer slot, and the page's buffer moves back to
 * the verifier to be packed again: no page buffer waits here for this thread's garbage collector.
 */
export default function checkPackedPage(page: PackedMacPage): Int32Array {
  const answer = new Int32Array(page.buffer, 0, PACKED_ANSWER_BYTES / 4);
  answer[0] = firstMacMismatch(page);
  return Tinypool.move(answer) as Int32Array;
}
