#!/usr/bin/env bash
# The Kubernetes manifests without a cluster: yamllint on deploy/kubernetes, then every overlay
# rendered with `kubectl kustomize` and validated against the schemas and promptloop's
# invariants (validate.mjs), then the self-test: a broken copy for each invariant must fail.
# scripts/deps installs yamllint and this directory's node modules; kubectl (with kustomize v5)
# comes with the machine image.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

fail() {
  echo "deploy_manifests: FAIL: $*" >&2
  echo "deploy: 0 passed, 1 failed"
  exit 1
}
command -v yamllint >/dev/null || fail "yamllint not found (scripts/deps installs it)"
command -v kubectl >/dev/null || fail "kubectl not found: the overlays are rendered with kubectl kustomize"
[ -d "$here/node_modules/kubernetes-models" ] || fail "tests/deploy/node_modules missing (scripts/deps runs npm ci there)"

rc=0
echo "== yamllint deploy/kubernetes"
yamllint -s -c "$here/yamllint.yaml" deploy/kubernetes || rc=1
echo "== render and validate every overlay"
node "$here/validate.mjs" || rc=1
echo "== self-test: each invariant's check catches a broken copy"
node "$here/validate.mjs" --self-test || rc=1
exit $rc
