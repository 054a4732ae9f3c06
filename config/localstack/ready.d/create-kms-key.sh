#!/bin/sh
# LocalStack init hook: one symmetric KMS key behind alias/nes-dev for the provider contract
# tests. Idempotent: a restart that finds the alias leaves it alone.
set -eu
if awslocal kms describe-key --key-id alias/nes-dev >/dev/null 2>&1; then
  echo "alias/nes-dev exists"
  exit 0
fi
key_id=$(awslocal kms create-key --description 'nest-encrypted-sessions dev root key' \
  --key-spec SYMMETRIC_DEFAULT --key-usage ENCRYPT_DECRYPT --query KeyMetadata.KeyId --output text)
awslocal kms create-alias --alias-name alias/nes-dev --target-key-id "$key_id"
echo "created alias/nes-dev -> $key_id"
