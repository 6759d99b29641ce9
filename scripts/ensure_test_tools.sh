#!/usr/bin/env bash
# Programs the suite drives besides PostgreSQL and Redis: Debian's headless Chromium (the
# dashboard test), strace (fault matrix 8: fsync errors) and unshare (matrix 7: a private
# tmpfs), openssl (the TLS tests' throwaway CA) and pg_dump (`db backup`). Install what is
# missing when we may (root, or passwordless sudo); otherwise say so: those tests then skip
# locally and fail under PREDICTD_REQUIRE_SERVICES=1 (CI).
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "not installed and cannot be installed here: apt-get install ${missing[*]}" >&2
  exit 0
fi
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
  "${missing[@]}" >/dev/null || echo "could not install ${missing[*]}: their tests will not run" >&2
exit 0
