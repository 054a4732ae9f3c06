import { sqliteHarness } from '../support/session-harness.js';
import { describeSessionContract } from './session-contract.js';

describeSessionContract('sqlite', sqliteHarness);
