#!/usr/bin/env bash
# Virtualenvs for benchmark part A's peer servers (benchmarks/suite.py targets `bentoml` and
# `mlserver`), one each in benchmarks/.venvs/NAME, apart from .venv: their pins clash with
# predictd's. scikit-learn, skops, numpy and scipy go in at .venv's versions, so the benchmark's
# skops model loads there as it does in predictd.
#
#   scripts/peer_venvs.sh                 # both peers
#   scripts/peer_venvs.sh mlserver        # one
#   BENTOML_VERSION=1.4.40 MLSERVER_VERSION=1.7.1 scripts/peer_venvs.sh   # the defaults
#
# Idempotent: a venv whose stamp (benchmarks/.venvs/NAME/peer-stamp.txt) lists what would be
# installed, and whose imports work, is left alone. pip's output goes to
# benchmarks/.venvs/NAME.log. Exit status 1 when any peer could not be installed (each one
# says so); the suite then reports that peer as "not installed" and runs the others.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
base_python=${PEER_BASE_PYTHON:-$root/.venv/bin/python}
dest=$root/benchmarks/.venvs
BENTOML_VERSION=${BENTOML_VERSION:-1.4.40}
MLSERVER_VERSION=${MLSERVER_VERSION:-1.7.1}

if [ ! -x "$base_python" ]; then
  echo "peer_venvs: $base_python not found: create .venv first (make install)" >&2
  exit 1
fi

# The model's libraries, pinned to what .venv has.
shared=$("$base_python" - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in ("scikit-learn", "skops", "numpy", "scipy")))
EOF
) || { echo "peer_venvs: cannot read .venv's package versions" >&2; exit 1; }

install_peer() {  # NAME PACKAGE_SPEC IMPORTS
  local name=$1 spec="$2 $shared" imports=$3
  local venv=$dest/$name log=$dest/$name.log stamp=$dest/$name/peer-stamp.txt
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] \
    && "$venv/bin/python" -c "import $imports" >/dev/null 2>&1; then
    echo "peer_venvs: $name: up to date ($spec)"
    return 0
  fi
  echo "peer_venvs: $name: installing $spec into ${venv#"$root"/} (log: ${log#"$root"/})"
  mkdir -p "$dest"
  rm -f "$stamp"
  : >"$log"
  if ! "$venv/bin/python" -c "" >/dev/null 2>&1; then
    rm -rf "$venv"
    "$base_python" -m venv "$venv" >>"$log" 2>&1 || {
      echo "peer_venvs: $name: FAILED to create the virtualenv:" >&2
      tail -n 20 "$log" >&2
      return 1
    }
  fi
  # shellcheck disable=SC2086  # $spec is a list of requirements
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check $spec >>"$log" 2>&1; then
    echo "peer_venvs: $name: FAILED: pip install $spec:" >&2
    grep -vE '━|Downloading|Processing|Collecting|Using cached|Requirement already|Location' \
      "$log" | tail -n 20 | cut -c1-300 >&2
    return 1
  fi
  if ! "$venv/bin/python" -c "import $imports" >>"$log" 2>&1; then
    echo "peer_venvs: $name: FAILED: installed, but 'import $imports' fails:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
  echo "$spec" >"$stamp"
  echo "peer_venvs: $name: installed ($spec)"
}

peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(bentoml mlserver)
failed=()
for peer in "${peers[@]}"; do
  case $peer in
    bentoml) install_peer bentoml "bentoml==$BENTOML_VERSION" "bentoml, sklearn, skops.io" ;;
    mlserver) install_peer mlserver "mlserver==$MLSERVER_VERSION" "mlserver, sklearn, skops.io" ;;
    *) echo "peer_venvs: unknown peer '$peer' (expected bentoml, mlserver)" >&2; false ;;
  esac || failed+=("$peer")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "peer_venvs: not installed: ${failed[*]}" >&2
  exit 1
fi
