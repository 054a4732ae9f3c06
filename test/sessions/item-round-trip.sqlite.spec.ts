import { sqliteHarness } from '../support/session-harness.js';
import { describeRoundTrip } from './item-round-trip-contract.js';

describeRoundTrip('sqlite', sqliteHarness);
