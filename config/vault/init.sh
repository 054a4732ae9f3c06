#!/bin/sh
# Sets up the dev-mode Vault from docker-compose.yml for the provider contract tests:
# - transit engine with a derived key (context required) named nes-sessions;
# - a KV v2 secret nes/root-keys holding one random 32-byte root key (field "key");
# - an AppRole nes-app allowed to use both, to try AppRole login.
# Idempotent enough for `docker compose up` again on the same (in-memory) Vault.
set -eu
vault secrets enable transit 2>/dev/null || true
vault write -f transit/keys/nes-sessions derived=true >/dev/null
# Dev mode mounts KV v2 at secret/ already.
vault kv put secret/nes/root-keys key="$(head -c 32 /dev/urandom | base64)" >/dev/null
vault auth enable approle 2>/dev/null || true
vault policy write nes-app - <<'POLICY'
path "transit/encrypt/nes-sessions" { capabilities = ["update"] }
path "transit/decrypt/nes-sessions" { capabilities = ["update"] }
path "transit/rewrap/nes-sessions" { capabilities = ["update"] }
path "transit/datakey/plaintext/nes-sessions" { capabilities = ["update"] }
path "transit/keys/nes-sessions" { capabilities = ["read"] }
path "secret/data/nes/root-keys" { capabilities = ["read"] }
path "secret/metadata/nes/root-keys" { capabilities = ["read"] }
POLICY
vault write auth/approle/role/nes-app token_policies=nes-app token_ttl=1h token_max_ttl=4h >/dev/null
echo "role_id:   $(vault read -field=role_id auth/approle/role/nes-app/role-id)"
echo "secret_id: $(vault write -f -field=secret_id auth/approle/role/nes-app/secret-id)"
echo "vault ready: transit/keys/nes-sessions (derived), secret/nes/root-keys, approle nes-app"
