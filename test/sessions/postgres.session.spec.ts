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

const up = await sqlServerUp('postgres');
const { factory, dispose } = sqlServerHarness('postgres');
afterAll(dispose);

describe.skipIf(!up)('postgres', () => {
  describeSessionContract('postgres', factory);
  describeIntegrityContract('postgres', factory);
  describeKekRotation('postgres', isolatedSqlServerHarness('postgres'));
  describeKeyRotation('postgres', isolatedSqlServerHarness('postgres'));
  describeDataKeyAges('postgres', isolatedSqlServerHarness('postgres'));
  describeAuditStorageContract('postgres', factory);
  describeLeaseStorageContract('postgres', factory);
  // Its own store per test: the scan sees every session.
  describeRetentionStorageContract('postgres', isolatedSqlServerHarness('postgres'));
  // Again where the database's own collation does not sort by bytes ('s' before 'S').
  describeRetentionStorageContract(
    'postgres (ICU en-US collation)',
    isolatedSqlServerHarness('postgres', { postgresIcuLocale: 'en-US' }),
  );
  // Its own store per test: the scan sees every session; again where the database's own
  // collation does not sort by bytes.
  describeIdleSessionScanContract('postgres', isolatedSqlServerHarness('postgres'));
  describeIdleSessionScanContract(
    'postgres (ICU en-US collation)',
    isolatedSqlServerHarness('postgres', { postgresIcuLocale: 'en-US' }),
  );
  // Its own store per test: the ledger and subject lookups see the whole store.
  describeHoldStorageContract('postgres', isolatedSqlServerHarness('postgres'));
  describeHoldStorageContract(
    'postgres (ICU en-US collation)',
    isolatedSqlServerHarness('postgres', { postgresIcuLocale: 'en-US' }),
  );
  // A hold committed on another pooled connection while a write unit is open.
  describeHoldRaceContract('postgres', factory);
  describeAuditTrailContract('postgres', factory);
});
