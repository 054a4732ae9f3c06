export {
  ENVELOPE_FORMAT_VERSION,
  ENVELOPE_HEADER_LENGTH,
  ENVELOPE_TAG_LENGTH,
  SUITE_AES_256_GCM,
  bytesToUuid,
  openEnvelope,
  openItem,
  parseEnvelope,
  sealItem,
  uuidToBytes,
  type EnvelopeHeader,
  type ItemBinding,
  type ItemDataKey,
  type ItemKey,
  type ParsedEnvelope,
} from './item-envelope.js';
export {
  MAX_ITEM_DEPTH,
  decodeItemPayload,
  encodeItemPayload,
  readItemArray,
  readPlainObject,
} from './item-payload.js';
export { deriveSubkey, encodeEncryptionContext, unwrapDataKey, wrapDataKey } from './key-wrap.js';
