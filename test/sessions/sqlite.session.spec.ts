import { sqliteHarness } from '../support/session-harness.js';
import { describeIntegrityContract } from './integrity-contract.js';
import { describeSessionContract } from './session-contract.js';

describeSessionContract('sqlite', sqliteHarness);
describeIntegrityContract('sqlite', sqliteHarness);
