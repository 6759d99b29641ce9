"""A run without PostgreSQL or Redis still passes on a laptop, but ends with one loud line that
counts the tests skipped for them (tests/conftest.py), with or without pytest-xdist; and the
script `make test` uses to start them never fails where they are not installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[1]
# One test that needs PostgreSQL (the db_url fixture's postgresql case) and one that needs
# Redis, beside ones that need neither.
TESTS = ["tests/db/test_engine.py", "tests/inference/test_cache.py"]


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PREDICTD_REQUIRE_SERVICES" and not k.startswith(("PYTEST_", "PREDICTD_TEST_"))
    }
    return env | extra


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_skipped_services_are_counted_in_one_loud_line(workers: list[str]) -> None:
    closed = free_port()  # nothing listens here
    env = child_env(
        PREDICTD_TEST_POSTGRES_URL=f"postgresql://postgres@127.0.0.1:{closed}/postgres",
        PREDICTD_TEST_REDIS_URL=f"redis://127.0.0.1:{closed}/10",
    )
    plugins = [] if workers else ["-p", "no:xdist"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, *workers, "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "tests SKIPPED" in line]
    assert len(lines) == 1, done.stdout[-3000:]
    (line,) = lines
    match = re.fullmatch(r"!+ (\d+) tests SKIPPED, services unavailable: (.*) !+", line)
    assert match is not None, line
    skipped = re.search(r"(\d+) skipped", done.stdout.splitlines()[-1])
    assert skipped is not None
    assert match[1] == skipped[1]  # every skip in this run was for a missing service
    assert f"PostgreSQL at postgresql://postgres@127.0.0.1:{closed}/postgres (" in match[2]
    # each xdist worker has its own Redis database (10, 9, ...): any of them may have skipped
    assert re.search(rf"Redis at redis://127\.0\.0\.1:{closed}/(10|9) \(", match[2])
    assert "PREDICTD_REQUIRE_SERVICES=1" in match[2]


def test_ensure_services_never_fails_where_nothing_is_installed(tmp_path: Path) -> None:
    """No pg_isready, pg_ctlcluster or redis-server on PATH and nothing listening: it says
    so and exits 0, so `make test` goes on to run (and skip) the tests."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "ls", "sort", "tail", "seq", "sleep"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "PREDICTD_PG_PORT": str(free_port()),
           "PREDICTD_REDIS_PORT": str(free_port())}  # fmt: skip
    done = subprocess.run([str(bin_dir / "bash"), str(ROOT / "scripts/ensure_services.sh")],
                          env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL is not running" in done.stderr
    assert "Redis is not running" in done.stderr
