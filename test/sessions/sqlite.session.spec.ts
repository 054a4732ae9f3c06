import { sqliteHarness } from '../support/session-harness.js';
import { describeAuditTrailContract } from '../audit/audit-trail-contract.js';
import { describeAuditStorageContract } from '../storage/audit-storage-contract.js';
import { describeHoldStorageContract } from '../storage/hold-storage-contract.js';
import { describeLeaseStorageContract } from '../storage/lease-storage-contract.js';
import { describeRetentionStorageContract } from '../storage/retention-storage-contract.js';
import { describeKekRotation } from '../keys/kek-rotation-contract.js';
import { describeIntegrityContract } from './integrity-contract.js';
import { describeSessionContract } from './session-contract.js';

describeSessionContract('sqlite', sqliteHarness);
describeIntegrityContract('sqlite', sqliteHarness);
describeKekRotation('sqlite', sqliteHarness);
describeAuditStorageContract('sqlite', sqliteHarness);
describeLeaseStorageContract('sqlite', sqliteHarness);
describeRetentionStorageContract('sqlite', sqliteHarness);
describeHoldStorageContract('sqlite', sqliteHarness);
describeAuditTrailContract('sqlite', sqliteHarness);
