.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist processes for `make test`: most of the suite's time is fault tests waiting on
# outages and restarts, so two workers halve it on a 2-core machine; 0 runs it in one process.
TEST_WORKERS ?= 2

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install predictd with dev extras

demo: $(STAMP) ## train the demo model and serve it on 127.0.0.1:8000 (SQLite)
	$(BIN)/predictd demo --host 127.0.0.1 --port 8000

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

audit: $(STAMP) ## fail on a dependency with a known, fixable vulnerability (pip-audit)
	$(BIN)/python scripts/audit_dependencies.py

test: lint audit ## lint, type-check, audit dependencies and run the whole test suite
	scripts/ensure_test_tools.sh
	scripts/ensure_deploy_tools.sh
	scripts/ensure_services.sh
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: $(STAMP) ## run the benchmarks against the local PostgreSQL (see benchmarks/RESULTS.md)
	scripts/ensure_bench_tools.sh
	scripts/peer_venvs.sh || echo "bench: a peer server did not install; RESULTS.md says which"
	$(BIN)/python benchmarks/run.py

bench-loop: $(STAMP) ## part G: drift false alarms and detection, the accuracy estimate (~4 min)
	$(BIN)/python -m benchmarks.loop_quality

# The container image (docs/deploy.md, "Container image"). Docker if present, else podman.
IMAGE ?= predictd:latest
CONTAINER ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
# podman writes OCI images unless told otherwise, and OCI has no HEALTHCHECK.
IMAGE_FLAGS ?= $(if $(findstring podman,$(CONTAINER)),--format docker)

# OFFLINE=1: every dependency's wheel (and the build backend's) is made here into
# deploy/image/wheels and the build reaches no index. The wheels must suit the base's Python
# (3.11 on Linux); async-timeout is what redis asks for below Python 3.11.3 (Debian's 3.11.2),
# which a newer Python here would not resolve. EXTRAS=onnx,otel: optional extras in the image.
EXTRAS ?=
WHEELS := deploy/image/wheels
image: $(STAMP) ## build the container image (IMAGE=predictd:latest, EXTRAS=onnx,otel, OFFLINE=1: no index) with docker or podman
	rm -f $(WHEELS)/*.whl
	$(if $(OFFLINE),$(BIN)/python -m pip wheel -q --wheel-dir $(WHEELS) \
	  ".$(if $(EXTRAS),[$(EXTRAS)])" async-timeout hatchling)
	$(CONTAINER) build $(IMAGE_FLAGS) $(if $(OFFLINE),--build-arg PIP_NO_INDEX=1) \
	  --build-arg PREDICTD_EXTRAS=$(EXTRAS) -t $(IMAGE) .

image-test: $(STAMP) ## build the image offline with podman and run it (SQLite, PostgreSQL, SIGTERM)
	scripts/ensure_image_tools.sh
	$(BIN)/python -m pytest -q -p no:xdist tests/deploy/test_image.py

format: $(STAMP) ## apply ruff formatting and fixes
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .predictd predictd.db .mypy_cache .pytest_cache .ruff_cache

.PHONY: help install demo lint audit test bench bench-loop image image-test format clean
