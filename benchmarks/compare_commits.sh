#!/bin/bash
# Part A's predictd-pg load against two checkouts of predictd, in one run: is a change slower?
#
#   benchmarks/compare_commits.sh BASE_REV [NEW_REV] [ROUNDS]
#
# Checks out BASE_REV and NEW_REV (default: HEAD) as temporary worktrees and serves each with
# `predictd serve` from this checkout's .venv (PYTHONPATH picks the worktree's src/), the demo
# sentiment model, a fresh PostgreSQL database each; wrk -t1 -c32 with benchmarks/wrk_bodies.lua,
# a 3 s warm-up then 15 s measured, ROUNDS rounds (default 3), the order reversed every other
# round. Prints one line per run and each side's median req/s. Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?base revision}; NEW=${2:-HEAD}; ROUNDS=${3:-3}
PY=$PWD/.venv/bin/python; LUA=$PWD/benchmarks/wrk_bodies.lua
WORK=$(mktemp -d /tmp/predictd-compare-XXXXXX)
cleanup() { git worktree remove --force "$WORK/base" 2>/dev/null || true
            git worktree remove --force "$WORK/new" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
git worktree add -q --detach "$WORK/base" "$BASE"
git worktree add -q --detach "$WORK/new" "$NEW"
MODEL=$($PY -c "from pathlib import Path; from predictd.demo.train import train_sentiment; print(train_sentiment(Path('$WORK/model')).path)")
$PY -c "import orjson
for i in range(4000): print(orjson.dumps({'text': f'I love this product {i}' if i % 2 else f'terrible, I want a refund {i}'}).decode())" > "$WORK/bodies.txt"
PSQL=(psql -q -h 127.0.0.1 -U postgres -d postgres)

run() {  # side port
  local side=$1 port=$2 db="compare_$1_$$_$RANDOM" dir="$WORK/run_$1"
  "${PSQL[@]}" -c "create database $db"
  rm -rf "$dir"; mkdir -p "$dir"
  env -u VIRTUAL_ENV PYTHONPATH="$WORK/$side/src" DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$db" \
    PREDICTD_AUTO_MIGRATE=true PREDICTD_SPOOL_DIR="$dir/spool" PREDICTD_ARTIFACT_DIR="$dir/artifacts" \
    PREDICTD_LOG_LEVEL=WARNING PREDICTD_AUTH=off \
    "$PY" -m predictd serve --host 127.0.0.1 --port "$port" --model "$MODEL" > "$dir/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 240); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.5; done
  wrk -t1 -c32 -d3s --timeout 30s -s "$LUA" "http://127.0.0.1:$port/predict" -- "$WORK/bodies.txt" 0 32 1 >/dev/null
  local out; out=$(wrk -t1 -c32 -d15s --timeout 30s -s "$LUA" "http://127.0.0.1:$port/predict" -- "$WORK/bodies.txt" 0 32 1 | tail -1)
  echo "$side $out" | tee -a "$WORK/results.txt" | cut -c1-120
  kill -TERM "$pid"; wait "$pid" || true
  "${PSQL[@]}" -c "drop database $db"
}

for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run base 8611; run new 8612; else run new 8612; run base 8611; fi
done
"$PY" - "$WORK/results.txt" "$BASE" "$NEW" <<'P'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, data = line.split(" ", 1)
    runs.setdefault(side, []).append(json.loads(data)["rps"])
for side, rev in (("base", sys.argv[2]), ("new", sys.argv[3])):
    print(f"{side} ({rev}): req/s {', '.join(f'{v:,.0f}' for v in runs[side])}; median {statistics.median(runs[side]):,.0f}")
print(f"new / base: {statistics.median(runs['new']) / statistics.median(runs['base']):.3f}x")
P
