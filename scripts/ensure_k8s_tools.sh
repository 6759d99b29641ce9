#!/usr/bin/env bash
# What tests/deploy/test_kubernetes.py runs on the manifests in deploy/k8s, offline:
#   kubectl (its built-in kustomize renders the overlays) from apt: the `kubectl` package of
#     the Kubernetes/Google Cloud apt repository this image's sources carry. Debian's own
#     `kubernetes-client` (1.20, kustomize v2) is too old for Kustomize components, so it is
#     not a fallback;
#   kubernetes-validate (the Kubernetes JSON schemas, 1.25-1.37) and checkov (static policy
#     checks) in their own virtualenv .venv-checks at the repository root, pinned, kept out
#     of predictd's dependencies.
# Idempotent and quick when everything is there. What cannot be installed is said on
# stderr: those tests then skip locally and fail under PREDICTD_REQUIRE_SERVICES=1 (CI).
set -uo pipefail
cd "$(dirname "$0")/.."
KUBERNETES_VALIDATE=1.37.0
CHECKOV=3.3.30

if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    sudo=none
  fi
  if [ "$sudo" = none ]; then
    echo "kubectl is not installed and cannot be installed here: apt-get install kubectl" >&2
  else
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      kubectl >/dev/null || echo "could not install kubectl: the Kubernetes tests will not run" >&2
  fi
fi

venv=.venv-checks
have() { "$venv/bin/pip" show "$1" 2>/dev/null | grep -qx "Version: $2"; }
if ! { have kubernetes-validate "$KUBERNETES_VALIDATE" && have checkov "$CHECKOV"; }; then
  python=$(command -v python3.11 || command -v python3)
  { [ -x "$venv/bin/pip" ] || "$python" -m venv "$venv"; } \
    && "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE" "checkov==$CHECKOV" \
    || echo "could not install kubernetes-validate/checkov into $venv" >&2
fi
exit 0
