import { memoryHarness } from '../support/session-harness.js';
import { describeIntegrityContract } from './integrity-contract.js';
import { describeSessionContract } from './session-contract.js';

describeSessionContract('memory', memoryHarness);
describeIntegrityContract('memory', memoryHarness);
