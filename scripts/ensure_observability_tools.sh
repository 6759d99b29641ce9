#!/usr/bin/env bash
# Programs the deploy tests (tests/deploy) drive, installed when missing; quick when present:
# - Debian's `prometheus` package: the `prometheus` server that scrapes a real `predictd serve`
#   and `promtool check rules`;
# - check-jsonschema in its own venv, .venv-checks (kept apart so its pins never move the
#   project's), which validates compose.yaml against the vendored Compose specification schema.
# Installs when we may (root, or passwordless sudo); otherwise says so: those tests then skip
# locally and fail under PREDICTD_REQUIRE_SERVICES=1 (CI).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if ! { command -v prometheus && command -v promtool; } >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    sudo=none
    echo "not installed and cannot be installed here: apt-get install prometheus" >&2
  fi
  if [ "$sudo" != none ]; then
    # Lock timeout: another install (scripts/ensure_test_tools.sh) may hold dpkg's lock.
    # --no-install-recommends: the server and promtool, not the exporters it recommends.
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq \
      && DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends prometheus >/dev/null \
      || echo "could not install prometheus: its deploy tests will not run" >&2
  fi
fi
if [ ! -x .venv-checks/bin/check-jsonschema ]; then
  { "$PYTHON" -m venv .venv-checks && .venv-checks/bin/pip install -q 'check-jsonschema==0.39.0'; } \
    || echo "could not install check-jsonschema into .venv-checks: the compose schema test will not run" >&2
fi
exit 0
