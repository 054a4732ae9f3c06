import { memoryHarness } from '../support/session-harness.js';
import { describeAuditTrailContract } from '../audit/audit-trail-contract.js';
import { describeAuditStorageContract } from '../storage/audit-storage-contract.js';
import {
  describeHoldRaceContract,
  describeHoldStorageContract,
} from '../storage/hold-storage-contract.js';
import { describeLeaseStorageContract } from '../storage/lease-storage-contract.js';
import { describeIdleSessionScanContract } from '../storage/idle-session-contract.js';
import { describeRetentionStorageContract } from '../storage/retention-storage-contract.js';
import { describeKekRotation } from '../keys/kek-rotation-contract.js';
import { describeDataKeyAges, describeKeyRotation } from '../keys/key-rotation-contract.js';
import { describeIntegrityContract } from './integrity-contract.js';
import { describeSessionContract } from './session-contract.js';

describeSessionContract('memory', memoryHarness);
describeIntegrityContract('memory', memoryHarness);
describeKekRotation('memory', memoryHarness);
describeKeyRotation('memory', memoryHarness);
describeDataKeyAges('memory', memoryHarness);
describeAuditStorageContract('memory', memoryHarness);
describeLeaseStorageContract('memory', memoryHarness);
describeRetentionStorageContract('memory', memoryHarness);
describeIdleSessionScanContract('memory', memoryHarness);
describeAuditTrailContract('memory', memoryHarness);
describeHoldStorageContract('memory', memoryHarness);
describeHoldRaceContract('memory', memoryHarness);
