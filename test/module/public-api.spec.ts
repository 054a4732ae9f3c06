import { Inject, Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { describe, expect, it } from 'vitest';
import * as awsKmsEntry from '../../src/aws-kms.js';
import * as crypto from '../../src/crypto/index.js';
import * as healthEntry from '../../src/health/index.js';
import * as main from '../../src/index.js';
import { KEY_PROVIDER } from '../../src/keys/key-provider.interface.js';
import * as redisEntry from '../../src/redis.js';
import { SESSION_STORAGE } from '../../src/storage/storage.ports.js';
import * as typeormEntry from '../../src/typeorm.js';
import * as vaultEntry from '../../src/vault.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const runtimeNames = (entry: object) => Object.keys(entry).toSorted();

describe('the public API', () => {
  it('main entry: the module, sessions, errors, env keys, the storage port and the envelope format', () => {
    expect(runtimeNames(main)).toEqual(
      [
        'ConfigurationError',
        'DEFAULT_MAX_ITEM_BYTES',
        'DEFAULT_SQLITE_PATH',
        'ENVELOPE_FORMAT_VERSION',
        'ENVELOPE_HEADER_LENGTH',
        'AuditActorMiddleware',
        'AuditActorRequiredError',
        'AuditService',
        'AuditWriteError',
        'ENVELOPE_TAG_LENGTH',
        'EncryptedSession',
        'EncryptedSessionError',
        'EncryptedSessionJobs',
        'EncryptedSessionModule',
        'EncryptedSessionService',
        'ERASURE_REASONS',
        'ERASURE_RECEIPT_SCHEMA',
        'EnvKeyProvider',
        'HistoryConflictError',
        'IntegrityError',
        'InvalidArgumentError',
        'KekRotationService',
        'KeyDestroyedError',
        'KeyProviderUnavailableError',
        'KeyRing',
        'KeyRotationService',
        'KeyUnusableError',
        'LeaseLostError',
        'LegalHoldError',
        'MAX_ID_LENGTH',
        'MAX_ITEM_DEPTH',
        'MemorySessionStorage',
        'RetentionService',
        'SUITE_AES_256_GCM',
        'SessionNotFoundError',
        'ShuttingDownError',
        'StorageUnavailableError',
        'bytesToUuid',
        'currentAuditContext',
        'decodeItemPayload',
        'deriveSubkey',
        'encodeEncryptionContext',
        'encodeItemPayload',
        'openEnvelope',
        'openItem',
        'parseEnvelope',
        'runAs',
        'sealItem',
        'supportsMaintenance',
        'unwrapDataKey',
        'uuidToBytes',
        'verifyErasureReceipt',
        'wrapDataKey',
      ].toSorted(),
    );
  });

  it('main entry: no adapter that needs an optional package, and no internal', () => {
    for (const name of [
      'SESSION_STORAGE',
      'KEY_PROVIDER',
      'TypeOrmSessionStorage',
      'RedisSessionStorage',
      'AwsKmsKeyProvider',
      'VaultTransitKeyProvider',
      'SerialQueue',
      'dialectFor',
      'openSqliteDataSource',
      'RedisKeyLayout',
      'resolveModuleOptions',
      'copyStoredItem',
      'snapshotHistoryTransaction',
    ]) {
      expect(main).not.toHaveProperty(name);
    }
  });

  it('subpath entries: one adapter family each', () => {
    expect(runtimeNames(typeormEntry)).toEqual([
      'TypeOrmSessionStorage',
      'sessionEntitySchemas',
      'sessionMigrations',
    ]);
    expect(runtimeNames(redisEntry)).toEqual(['RedisSessionStorage']);
    expect(runtimeNames(awsKmsEntry)).toEqual(['AwsKmsKeyProvider']);
    expect(runtimeNames(vaultEntry)).toEqual(['VaultKvKeyProvider', 'VaultTransitKeyProvider']);
    expect(runtimeNames(crypto)).toContain('sealItem');
    expect(runtimeNames(healthEntry)).toEqual([
      'ENCRYPTED_SESSION_HEALTH_OPTIONS',
      'EncryptedSessionHealthIndicator',
      'EncryptedSessionHealthModule',
    ]);
  });

  it.each([
    ['the raw storage port', SESSION_STORAGE],
    ['the raw key provider', KEY_PROVIDER],
  ])('a host cannot inject %s (it could write around the encryption)', async (_name, token) => {
    @Injectable()
    class Host {
      constructor(@Inject(token) readonly raw: unknown) {}
    }
    @Module({
      imports: [
        main.EncryptedSessionModule.forRoot({
          keys: { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } },
          storage: { type: 'memory' },
        }),
      ],
      providers: [Host],
    })
    // oxlint-disable-next-line typescript/no-extraneous-class -- a Nest module is a class by design
    class HostModule {}

    await expect(Test.createTestingModule({ imports: [HostModule] }).compile()).rejects.toThrow(
      /can't resolve dependencies of the Host/,
    );
  });
});
