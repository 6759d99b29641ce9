"""A bad setting stops any command with one `error:` line per setting, named by its
environment variable, and exit status 1 — never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from predictd.settings import Settings


def test_a_redis_cache_needs_redis() -> None:
    with pytest.raises(ValidationError, match="PREDICTD_CACHE=redis needs REDIS_URL"):
        Settings(cache="redis")
    assert Settings(cache="redis", redis_url="redis://127.0.0.1:6379/0").cache.mode == "redis"


def test_bad_settings_are_one_line_each(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTD_")}
    env.pop("REDIS_URL", None)
    env |= {"PREDICTD_BATCH_MAX": "0", "PREDICTD_CACHE": "nope",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "predictd", "serve"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(done.stderr.splitlines()) == [
        "error: PREDICTD_BATCH_MAX: Input should be greater than or equal to 1",
        "error: PREDICTD_CACHE: Input should be 'off', 'local' or 'redis'",
    ]
