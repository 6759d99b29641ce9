#!/usr/bin/env bash
# Programs the benchmarks drive besides PostgreSQL: wrk, the closed-loop load generator of
# parts A and F (benchmarks/wrk_bodies.lua). Install it when missing and we may (root, or
# passwordless sudo); otherwise say so: the suite then falls back to benchmarks/loadgen.py
# (a Python client, which on a small machine can limit the servers it measures) and says so
# in RESULTS.md.
set -uo pipefail
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "not installed and cannot be installed here: apt-get install ${missing[*]}" \
    "(the benchmarks fall back to benchmarks/loadgen.py)" >&2
  exit 0
fi
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
  "${missing[@]}" >/dev/null \
  || echo "could not install ${missing[*]}: the benchmarks fall back to benchmarks/loadgen.py" >&2
exit 0
