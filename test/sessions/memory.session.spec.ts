import { memoryHarness } from '../support/session-harness.js';
import { describeSessionContract } from './session-contract.js';

describeSessionContract('memory', memoryHarness);
