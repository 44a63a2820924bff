#!/usr/bin/env bash
# Validates compose.yaml with docker-compose (no container engine needed) and
# checks that the services the stack depends on are defined.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

fail() {
  echo "compose_config: FAIL: $*" >&2
  echo "compose_config: 0 passed, 1 failed" >&2
  exit 1
}

command -v docker-compose >/dev/null 2>&1 || fail "docker-compose not found in PATH"
[[ -f compose.yaml ]] || fail "compose.yaml not found in $(pwd)"

# compose refuses to run without the audit key; any value of the right shape validates
export PL_AUDIT_KEY=${PL_AUDIT_KEY:-compose-config-check-0123456789abcdef}
docker-compose -f compose.yaml config -q || fail "docker-compose config rejected compose.yaml"

services="$(docker-compose -f compose.yaml config --services)" \
  || fail "docker-compose config --services failed"

missing=()
for want in kafka postgres migrate api detector differ abharness monitor controller; do
  grep -qx -- "$want" <<<"$services" || missing+=("$want")
done
((${#missing[@]} == 0)) || fail "services missing from compose.yaml: ${missing[*]}"

echo "compose_config: 1 passed, 0 failed"
