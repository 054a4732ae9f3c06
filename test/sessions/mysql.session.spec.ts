import { afterAll, describe } from 'vitest';
import { describeAuditTrailContract } from '../audit/audit-trail-contract.js';
import { describeAuditStorageContract } from '../storage/audit-storage-contract.js';
import {
  describeHoldRaceContract,
  describeHoldStorageContract,
} from '../storage/hold-storage-contract.js';
import { describeLeaseStorageContract } from '../storage/lease-storage-contract.js';
import { describeIdleSessionScanContract } from '../storage/idle-session-contract.js';
import { describeRetentionStorageContract } from '../storage/retention-storage-contract.js';
import { isolatedSqlServerHarness, sqlServerHarness } from '../support/session-harness.js';
import { sqlServerUp } from '../support/sql-server-support.js';
import { describeKekRotation } from '../keys/kek-rotation-contract.js';
import { describeDataKeyAges, describeKeyRotation } from '../keys/key-rotation-contract.js';
import { describeIntegrityContract } from './integrity-contract.js';
import { describeSessionContract } from './session-contract.js';

const up = await sqlServerUp('mysql');
const { factory, dispose } = sqlServerHarness('mysql');
afterAll(dispose);

describe.skipIf(!up)('mariadb', () => {
  describeSessionContract('mariadb', factory);
  describeIntegrityContract('mariadb', factory);
  describeKekRotation('mariadb', isolatedSqlServerHarness('mysql'));
  describeKeyRotation('mariadb', isolatedSqlServerHarness('mysql'));
  describeDataKeyAges('mariadb', isolatedSqlServerHarness('mysql'));
  describeAuditStorageContract('mariadb', factory);
  describeLeaseStorageContract('mariadb', factory);
  // Its own store per test: the scan sees every session.
  describeRetentionStorageContract('mariadb', isolatedSqlServerHarness('mysql'));
  // Its own store per test: the scan sees every session.
  describeIdleSessionScanContract('mariadb', isolatedSqlServerHarness('mysql'));
  // Its own store per test: the ledger and subject lookups see the whole store.
  describeHoldStorageContract('mariadb', isolatedSqlServerHarness('mysql'));
  // A hold committed on another pooled connection while a write unit is open.
  describeHoldRaceContract('mariadb', factory);
  describeAuditTrailContract('mariadb', factory);
});
