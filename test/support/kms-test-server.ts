import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** KMS key states the server models (a subset of the real ones). */
export type KmsTestKeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

/** What the server knows of a key. `material` is the root key: it never leaves the server. */
export interface KmsTestKey {
  readonly keyId: string;
  readonly arn: string;
  readonly keySpec: string;
  readonly keyUsage: string;
  readonly material: Buffer;
  state: KmsTestKeyState;
}

/** One request as the server received it, after parsing. */
export interface KmsTestRequest {
  readonly operation: string;
  readonly input: Record<string, unknown>;
}

/** An error as KMS sends it: a status, a `__type` and a message. */
class KmsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

type Handler = (input: Record<string, unknown>) => Record<string, unknown>;

const BLOB_MAGIC = Buffer.from('TK1');
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const SIGV4_AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=[^/\s]+\/\d{8}\/[a-z0-9-]+\/kms\/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$/;

/**
 * A loopback AWS KMS speaking the JSON 1.1 wire protocol the real `@aws-sdk/client-kms` sends
 * (POST `/`, `X-Amz-Target: TrentService.<Operation>`, base64 blobs), with the semantics the
 * provider relies on: per-key random root key material, ciphertext blobs bound to their key and
 * encryption context (AES-256-GCM, the canonical context as AAD), `KeyId` pinning, disabled and
 * pending-deletion keys refused, aliases, and the real error shapes.
 *
 * It accepts any well-formed SigV4 `Authorization` header without checking the signature, but
 * requires one. Faults (throttling, 5xx, latency, dropped connections, a closed port) are
 * injected through methods; `calls` counts every request received per operation, faulted or not.
 */
export class KmsTestServer {
  readonly region = 'us-east-1';
  readonly accountId = '111122223333';
  /** Requests received per operation (`calls.Decrypt`), including those answered by a fault. */
  readonly calls: Record<string, number> = {};
  /** Every request received, in order. */
  readonly requests: KmsTestRequest[] = [];

  private readonly keys = new Map<string, KmsTestKey>();
  private readonly aliases = new Map<string, string>();
  private readonly sockets = new Set<Socket>();
  private readonly pendingDelays = new Set<NodeJS.Timeout>();
  private server: Server | undefined;
  private port = 0;
  private throttleCount = 0;
  private failCount = 0;
  private failStatus = 503;
  private latencyMs = 0;
  private dropping = false;
  private readonly denied = new Set<string>();

  private readonly handlers: Record<string, Handler> = {
    CreateKey: (input) => ({ KeyMetadata: this.metadata(this.addKey(input)) }),
    DescribeKey: (input) => ({ KeyMetadata: this.metadata(this.resolveKey(input.KeyId)) }),
    EnableKey: (input) => this.changeState(input.KeyId, 'Enabled'),
    DisableKey: (input) => this.changeState(input.KeyId, 'Disabled'),
    ScheduleKeyDeletion: (input) => {
      const key = this.resolveKey(input.KeyId);
      key.state = 'PendingDeletion';
      return { KeyId: key.arn, KeyState: key.state };
    },
    CancelKeyDeletion: (input) => {
      const key = this.resolveKey(input.KeyId);
      // As in KMS, a key whose deletion is cancelled comes back disabled.
      key.state = 'Disabled';
      return { KeyId: key.arn };
    },
    CreateAlias: (input) => {
      const name = validAliasName(input.AliasName);
      if (this.aliases.has(name)) {
        throw new KmsFault(
          'AlreadyExistsException',
          `An alias with the name ${this.aliasArn(name)} already exists`,
        );
      }
      this.aliases.set(name, this.resolveKey(input.TargetKeyId, false).keyId);
      return {};
    },
    UpdateAlias: (input) => {
      const name = validAliasName(input.AliasName);
      if (!this.aliases.has(name)) {
        throw new KmsFault('NotFoundException', `Alias ${this.aliasArn(name)} is not found.`);
      }
      this.aliases.set(name, this.resolveKey(input.TargetKeyId, false).keyId);
      return {};
    },
    Encrypt: (input) => {
      const key = this.usableKey(input.KeyId);
      const plaintext = blob(input.Plaintext, 'Plaintext');
      return {
        CiphertextBlob: seal(key, plaintext, context(input.EncryptionContext)).toString('base64'),
        KeyId: key.arn,
        EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
    GenerateDataKey: (input) => {
      const key = this.usableKey(input.KeyId);
      const plaintext = randomBytes(dataKeyLength(input));
      return {
        CiphertextBlob: seal(key, plaintext, context(input.EncryptionContext)).toString('base64'),
        Plaintext: plaintext.toString('base64'),
        KeyId: key.arn,
      };
    },
    Decrypt: (input) => {
      const { key, plaintext } = this.open(
        input.CiphertextBlob,
        input.KeyId,
        input.EncryptionContext,
      );
      return {
        KeyId: key.arn,
        Plaintext: plaintext.toString('base64'),
        EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
    ReEncrypt: (input) => {
      const source = this.open(
        input.CiphertextBlob,
        input.SourceKeyId,
        input.SourceEncryptionContext,
      );
      const destination = this.usableKey(required(input.DestinationKeyId, 'DestinationKeyId'));
      const resealed = seal(
        destination,
        source.plaintext,
        context(input.DestinationEncryptionContext),
      );
      source.plaintext.fill(0);
      return {
        CiphertextBlob: resealed.toString('base64'),
        SourceKeyId: source.key.arn,
        KeyId: destination.arn,
        SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
  };

  /** Listens on a random loopback port. */
  async start(): Promise<{ endpoint: string }> {
    await this.listen(0);
    return { endpoint: this.endpoint };
  }

  /** `http://127.0.0.1:<port>`, stable across `down()` / `up()`. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Closes the port and every open connection; pending delayed answers are dropped. */
  async stop(): Promise<void> {
    for (const timer of this.pendingDelays) clearTimeout(timer);
    this.pendingDelays.clear();
    await this.closeListener();
  }

  /** Creates a symmetric encryption key (as `CreateKey` would) and returns it. */
  createKey(options: { keySpec?: string; keyUsage?: string } = {}): KmsTestKey {
    return this.addKey({ KeySpec: options.keySpec, KeyUsage: options.keyUsage });
  }

  /** Sets a key's state directly (what DisableKey, EnableKey, ScheduleKeyDeletion do). */
  setKeyState(keyId: string, state: KmsTestKeyState): void {
    this.resolveKey(keyId).state = state;
  }

  /** Every key's root key material, base64: secrets that must never show up in the client. */
  keyMaterials(): string[] {
    return [...this.keys.values()].map((key) => key.material.toString('base64'));
  }

  /** The inputs of the requests received for one operation, in order. */
  inputsOf(operation: string): Record<string, unknown>[] {
    return this.requests.filter((r) => r.operation === operation).map((r) => r.input);
  }

  /** Answers the next `count` requests with `400 ThrottlingException`. */
  throttleNext(count: number): void {
    this.throttleCount = count;
  }

  /** Answers the next `count` requests with `status` (500 as `KMSInternalException`). */
  failNext(count: number, status = 503): void {
    this.failCount = count;
    this.failStatus = status;
  }

  /** Delays every answer by `ms`. */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** While on, destroys each connection after reading the request, without answering. */
  dropConnections(on: boolean): void {
    this.dropping = on;
  }

  /** While on, answers `operation` with `AccessDeniedException`, as a missing IAM grant would. */
  deny(operation: string, on = true): void {
    if (on) this.denied.add(operation);
    else this.denied.delete(operation);
  }

  /** Closes the port (connections are refused) and every open connection. */
  async down(): Promise<void> {
    await this.closeListener();
  }

  /** Listens again on the same port. */
  async up(): Promise<void> {
    if (!this.server) await this.listen(this.port);
  }

  private listen(port: number): Promise<void> {
    const server = createServer((request, response) => {
      void this.handle(request, response);
    });
    server.keepAliveTimeout = 1000;
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        this.server = server;
        this.port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private async closeListener(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request);
    const target = request.headers['x-amz-target'];
    const operation =
      typeof target === 'string' && target.startsWith('TrentService.')
        ? target.slice('TrentService.'.length)
        : '';
    this.calls[operation] = (this.calls[operation] ?? 0) + 1;
    let input: Record<string, unknown> = {};
    try {
      input = JSON.parse(body.length > 0 ? body : '{}') as Record<string, unknown>;
    } catch {
      // Answered below as a SerializationException.
      input = { unparsable: true };
    }
    this.requests.push({ operation, input });

    if (this.dropping) {
      request.socket.destroy();
      return;
    }
    if (this.latencyMs > 0) await this.delay(this.latencyMs);
    if (response.destroyed || request.socket.destroyed) return;

    if (this.throttleCount > 0) {
      this.throttleCount--;
      return reply(response, new KmsFault('ThrottlingException', 'Rate exceeded'));
    }
    if (this.failCount > 0) {
      this.failCount--;
      const type = this.failStatus === 500 ? 'KMSInternalException' : 'ServiceUnavailable';
      return reply(response, new KmsFault(type, 'Service unavailable', this.failStatus));
    }
    try {
      reply(response, this.dispatch(request, operation, input));
    } catch (error) {
      reply(
        response,
        error instanceof KmsFault
          ? error
          : new KmsFault('KMSInternalException', 'Internal error', 500),
      );
    }
  }

  private dispatch(
    request: IncomingMessage,
    operation: string,
    input: Record<string, unknown>,
  ): Record<string, unknown> {
    const authorization = request.headers.authorization;
    if (typeof authorization !== 'string' || authorization.length === 0) {
      throw new KmsFault('MissingAuthenticationTokenException', 'Missing Authentication Token');
    }
    if (!SIGV4_AUTHORIZATION.test(authorization)) {
      throw new KmsFault(
        'IncompleteSignatureException',
        'Authorization header is not a SigV4 signature',
      );
    }
    if (
      request.method !== 'POST' ||
      request.headers['content-type'] !== 'application/x-amz-json-1.1'
    ) {
      throw new KmsFault('SerializationException', 'Expected a POST of application/x-amz-json-1.1');
    }
    if (input.unparsable === true) throw new KmsFault('SerializationException', 'Body is not JSON');
    if (this.denied.has(operation)) {
      throw new KmsFault(
        'AccessDeniedException',
        `User: arn:aws:iam::${this.accountId}:user/test is not authorized to perform: kms:${operation}`,
      );
    }
    const handler = this.handlers[operation];
    if (!handler) throw new KmsFault('UnknownOperationException', `Unknown operation ${operation}`);
    return handler(input);
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingDelays.delete(timer);
        resolve();
      }, ms);
      this.pendingDelays.add(timer);
    });
  }

  private addKey(input: Record<string, unknown>): KmsTestKey {
    const keyId = randomUUID();
    const key: KmsTestKey = {
      keyId,
      arn: `arn:aws:kms:${this.region}:${this.accountId}:key/${keyId}`,
      keySpec: typeof input.KeySpec === 'string' ? input.KeySpec : 'SYMMETRIC_DEFAULT',
      keyUsage: typeof input.KeyUsage === 'string' ? input.KeyUsage : 'ENCRYPT_DECRYPT',
      material: randomBytes(32),
      state: 'Enabled',
    };
    this.keys.set(keyId, key);
    return key;
  }

  private metadata(key: KmsTestKey): Record<string, unknown> {
    const symmetric = key.keySpec === 'SYMMETRIC_DEFAULT';
    return {
      AWSAccountId: this.accountId,
      KeyId: key.keyId,
      Arn: key.arn,
      CreationDate: 1_700_000_000,
      Enabled: key.state === 'Enabled',
      Description: '',
      KeyUsage: key.keyUsage,
      KeyState: key.state,
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      KeySpec: key.keySpec,
      CustomerMasterKeySpec: key.keySpec,
      EncryptionAlgorithms: symmetric ? ['SYMMETRIC_DEFAULT'] : ['RSAES_OAEP_SHA_256'],
      MultiRegion: false,
    };
  }

  private aliasArn(name: string): string {
    return `arn:aws:kms:${this.region}:${this.accountId}:${name}`;
  }

  /** Resolves a key id, key ARN, alias name or alias ARN (aliases only where KMS takes them). */
  private resolveKey(reference: unknown, allowAlias = true): KmsTestKey {
    const id = required(reference, 'KeyId');
    const arnPrefix = `arn:aws:kms:${this.region}:${this.accountId}:`;
    const local = id.startsWith(arnPrefix) ? id.slice(arnPrefix.length) : id;
    let keyId: string | undefined;
    if (local.startsWith('alias/') && allowAlias) {
      keyId = this.aliases.get(local);
      if (!keyId)
        throw new KmsFault('NotFoundException', `Alias ${this.aliasArn(local)} is not found.`);
    } else {
      keyId = local.startsWith('key/') ? local.slice('key/'.length) : local;
    }
    const key = this.keys.get(keyId);
    if (!key)
      throw new KmsFault('NotFoundException', `Key '${arnPrefix}key/${keyId}' does not exist`);
    return key;
  }

  /** A key that can encrypt and decrypt now: enabled, symmetric, for ENCRYPT_DECRYPT. */
  private usableKey(reference: unknown): KmsTestKey {
    return checkUsable(this.resolveKey(reference));
  }

  private changeState(reference: unknown, state: KmsTestKeyState): Record<string, unknown> {
    const key = this.resolveKey(reference, false);
    if (key.state === 'PendingDeletion') {
      throw new KmsFault('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    }
    key.state = state;
    return {};
  }

  /** Parses and opens a blob, enforcing `KeyId` pinning, key state and the encryption context. */
  private open(
    ciphertextBlob: unknown,
    pinnedKeyId: unknown,
    encryptionContext: unknown,
  ): { key: KmsTestKey; plaintext: Buffer } {
    const sealed = blob(ciphertextBlob, 'CiphertextBlob');
    const parsed = parseBlob(sealed);
    const pinned = pinnedKeyId === undefined ? undefined : this.resolveKey(pinnedKeyId);
    if (!parsed) throw new KmsFault('InvalidCiphertextException', '');
    if (pinned && pinned.keyId !== parsed.keyId) {
      throw new KmsFault(
        'IncorrectKeyException',
        'The key ID in the request does not identify a KMS key that can perform this operation.',
      );
    }
    const key = this.keys.get(parsed.keyId);
    if (!key) throw new KmsFault('InvalidCiphertextException', '');
    checkUsable(key);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.material, parsed.iv, {
        authTagLength: 16,
      });
      decipher.setAAD(Buffer.concat([parsed.header, context(encryptionContext)]));
      decipher.setAuthTag(parsed.tag);
      return {
        key,
        plaintext: Buffer.concat([decipher.update(parsed.ciphertext), decipher.final()]),
      };
    } catch {
      // KMS says nothing about why: wrong context and tampering look alike.
      throw new KmsFault('InvalidCiphertextException', '');
    }
  }
}

function checkUsable(key: KmsTestKey): KmsTestKey {
  if (key.state === 'Disabled') throw new KmsFault('DisabledException', `${key.arn} is disabled.`);
  if (key.state === 'PendingDeletion') {
    throw new KmsFault('KMSInvalidStateException', `${key.arn} is pending deletion.`);
  }
  if (key.keySpec !== 'SYMMETRIC_DEFAULT' || key.keyUsage !== 'ENCRYPT_DECRYPT') {
    throw new KmsFault(
      'InvalidKeyUsageException',
      `${key.arn} key usage is ${key.keyUsage} which is not valid for this operation.`,
    );
  }
  return key;
}

/** Blob layout: magic, key id length, key id, IV, ciphertext, tag. The header is in the AAD. */
function seal(key: KmsTestKey, plaintext: Buffer, aadContext: Buffer): Buffer {
  const keyId = Buffer.from(key.keyId);
  const header = Buffer.concat([BLOB_MAGIC, Buffer.from([keyId.length]), keyId]);
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key.material, iv, { authTagLength: 16 });
  cipher.setAAD(Buffer.concat([header, aadContext]));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, iv, ciphertext, cipher.getAuthTag()]);
}

function parseBlob(
  sealed: Buffer,
): { header: Buffer; keyId: string; iv: Buffer; ciphertext: Buffer; tag: Buffer } | undefined {
  if (sealed.length < BLOB_MAGIC.length + 1 || !sealed.subarray(0, 3).equals(BLOB_MAGIC))
    return undefined;
  const keyIdEnd = BLOB_MAGIC.length + 1 + sealed[BLOB_MAGIC.length];
  if (sealed.length < keyIdEnd + IV_LENGTH + TAG_LENGTH) return undefined;
  return {
    header: sealed.subarray(0, keyIdEnd),
    keyId: sealed.subarray(BLOB_MAGIC.length + 1, keyIdEnd).toString(),
    iv: sealed.subarray(keyIdEnd, keyIdEnd + IV_LENGTH),
    ciphertext: sealed.subarray(keyIdEnd + IV_LENGTH, sealed.length - TAG_LENGTH),
    tag: sealed.subarray(sealed.length - TAG_LENGTH),
  };
}

/** The canonical encryption context: pairs sorted by key, so member order does not matter. */
function context(value: unknown): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KmsFault('ValidationException', 'EncryptionContext must be a map of strings');
  }
  const pairs = Object.entries(value).toSorted(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (pairs.some(([, v]) => typeof v !== 'string')) {
    throw new KmsFault('ValidationException', 'EncryptionContext values must be strings');
  }
  return Buffer.from(JSON.stringify(pairs));
}

function dataKeyLength(input: Record<string, unknown>): number {
  if ((input.KeySpec === undefined) === (input.NumberOfBytes === undefined)) {
    throw new KmsFault('ValidationException', 'Specify either KeySpec or NumberOfBytes, not both');
  }
  if (input.KeySpec === 'AES_256') return 32;
  if (input.KeySpec === 'AES_128') return 16;
  const bytes = input.NumberOfBytes;
  if (typeof bytes === 'number' && Number.isInteger(bytes) && bytes >= 1 && bytes <= 1024)
    return bytes;
  throw new KmsFault('ValidationException', 'KeySpec must be AES_256 or AES_128');
}

function required(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new KmsFault('ValidationException', `${field} is required`);
  }
  return value;
}

function blob(value: unknown, field: string): Buffer {
  return Buffer.from(required(value, field), 'base64');
}

function validAliasName(value: unknown): string {
  const name = required(value, 'AliasName');
  if (!/^alias\/[A-Za-z0-9/_-]+$/.test(name) || name.startsWith('alias/aws/')) {
    throw new KmsFault(
      'ValidationException',
      'AliasName must start with alias/ and not alias/aws/',
    );
  }
  return name;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    // A client that gave up mid-body: there is nobody left to answer.
    request.on('error', () => resolve(''));
    request.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function reply(response: ServerResponse, result: Record<string, unknown> | KmsFault): void {
  if (response.destroyed) return;
  const headers = {
    'content-type': 'application/x-amz-json-1.1',
    'x-amzn-requestid': randomUUID(),
  };
  if (result instanceof KmsFault) {
    response.writeHead(result.status, { ...headers, 'x-amzn-errortype': `${result.type}:` });
    response.end(JSON.stringify({ __type: result.type, message: result.message || undefined }));
    return;
  }
  response.writeHead(200, headers);
  response.end(JSON.stringify(result));
}
