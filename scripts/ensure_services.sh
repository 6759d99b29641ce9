#!/usr/bin/env bash
# Start the local PostgreSQL (Debian's pg_ctlcluster) and Redis the test suite talks to when
# they are installed but stopped; `make test` and `.ci/run` both call this. Never fails: on a
# machine without them their tests skip, and the run ends with a line that counts them (under
# PREDICTD_REQUIRE_SERVICES=1, as in CI, they fail instead).
# PREDICTD_PG_PORT / PREDICTD_REDIS_PORT: the ports to check (default 5432 / 6379).
set -uo pipefail
pg_port="${PREDICTD_PG_PORT:-5432}"
redis_port="${PREDICTD_REDIS_PORT:-6379}"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -h 127.0.0.1 -p "$pg_port" -q 2>/dev/null
  else
    listening "$pg_port"
  fi
}

if ! pg_up; then
  cluster="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$cluster" ]; then
    echo "ensure_services: starting PostgreSQL $cluster/main"
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    pg_up || echo "ensure_services: PostgreSQL did not come up on port $pg_port" >&2
  else
    echo "ensure_services: PostgreSQL is not running on port $pg_port and not installed" \
      "here (pg_ctlcluster): its tests will be skipped" >&2
  fi
fi

if ! listening "$redis_port"; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "ensure_services: starting Redis on port $redis_port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" \
      --appendonly no >/dev/null || true
    for _ in $(seq 1 10); do listening "$redis_port" && break; sleep 0.5; done
  else
    echo "ensure_services: Redis is not running on port $redis_port and not installed" \
      "here (redis-server): its tests will be skipped" >&2
  fi
fi
exit 0
