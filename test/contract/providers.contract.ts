/**
 * Opt-in contract tests (`npm run test:contract`): the shared key provider suite against real
 * services, LocalStack's KMS and a dev-mode Vault, as `docker compose --profile keys up -d
 * --wait` starts them (see docker-compose.yml and config/). Not part of `npm test`: no Docker
 * engine runs in CI. Point them elsewhere with the variables below.
 */
import { randomBytes } from 'node:crypto';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import createVault from 'node-vault';
import { AwsKmsKeyProvider } from '../../src/keys/providers/aws-kms-key-provider.js';
import { VaultKvKeyProvider } from '../../src/keys/providers/vault/kv-key-provider.js';
import { VaultTransitKeyProvider } from '../../src/keys/providers/vault/transit-key-provider.js';
import { describeKeyProviderContract } from '../keys/provider-contract.js';
import { portOpen } from '../support/service-availability.js';

const env = process.env;
const kms = {
  endpoint: env.NES_CONTRACT_KMS_ENDPOINT ?? 'http://127.0.0.1:4566',
  region: env.NES_CONTRACT_AWS_REGION ?? 'us-east-1',
  keyId: env.NES_CONTRACT_KMS_KEY_ID ?? 'alias/nes-dev',
  // LocalStack accepts any credentials.
  credentials: {
    accessKeyId: env.NES_CONTRACT_AWS_ACCESS_KEY_ID ?? 'test',
    secretAccessKey: env.NES_CONTRACT_AWS_SECRET_ACCESS_KEY ?? 'test',
  },
};
const vault = {
  endpoint: env.NES_CONTRACT_VAULT_ADDR ?? 'http://127.0.0.1:8200',
  token: env.NES_CONTRACT_VAULT_TOKEN ?? 'nes-dev-root',
  transitKey: env.NES_CONTRACT_VAULT_TRANSIT_KEY ?? 'nes-sessions',
  kvPath: env.NES_CONTRACT_VAULT_KV_PATH ?? 'nes/root-keys',
};

// Opt-in means the services must be there: say how to start them instead of timing out.
for (const [name, url] of [
  ['LocalStack (KMS)', kms.endpoint],
  ['Vault', vault.endpoint],
] as const) {
  const { hostname, port } = new URL(url);
  if (!(await portOpen(Number(port), hostname))) {
    throw new Error(
      `${name} is not answering at ${url}: start it with 'docker compose --profile keys up -d --wait' (or set the NES_CONTRACT_* variables)`,
    );
  }
}

describeKeyProviderContract('aws-kms (LocalStack)', async () => {
  const provider = new AwsKmsKeyProvider({ ...kms });
  const operator = new KMSClient({ ...kms, maxAttempts: 1 });
  return {
    provider,
    secrets: [],
    async rotateRootKey() {
      const created = await operator.send(new CreateKeyCommand({ Description: 'nes contract' }));
      await provider.setActiveKey(created.KeyMetadata!.Arn!);
    },
    async close() {
      operator.destroy();
    },
  };
});

describeKeyProviderContract('vault-transit (dev Vault)', async () => {
  const admin = createVault({ endpoint: vault.endpoint, token: vault.token });
  const provider = new VaultTransitKeyProvider({
    endpoint: vault.endpoint,
    auth: { method: 'token', token: vault.token },
    keyName: vault.transitKey,
  });
  return {
    provider,
    secrets: [vault.token],
    async rotateRootKey() {
      await admin.write(`transit/keys/${vault.transitKey}/rotate`, {});
      await provider.refreshActiveKey();
    },
    async close() {},
  };
});

describeKeyProviderContract('vault-kv (dev Vault)', async () => {
  const admin = createVault({ endpoint: vault.endpoint, token: vault.token });
  const provider = new VaultKvKeyProvider({
    endpoint: vault.endpoint,
    auth: { method: 'token', token: vault.token },
    secretPath: vault.kvPath,
  });
  return {
    provider,
    secrets: [vault.token],
    async rotateRootKey() {
      await admin.write(`secret/data/${vault.kvPath}`, {
        data: { key: randomBytes(32).toString('base64') },
      });
      await provider.refreshActiveKey();
    },
    async close() {},
  };
});
