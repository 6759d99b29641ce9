"""`pip install predictd` with no extras is a working server: the wheel, installed into a fresh
virtual environment, runs `--help`, `db upgrade` and a `serve` that answers. This is what the
container image installs, so a runtime import that only an extra provides fails here first."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.server import ServerPool

ROOT = Path(__file__).resolve().parents[1]
PIP_TIMEOUT_S = 420

# Every module a plain install must import, so a lazy import is caught too; the migration
# scripts run only under Alembic and `__main__` runs the CLI.
IMPORT_ALL = """
import importlib, pkgutil, predictd
for module in pkgutil.walk_packages(predictd.__path__, "predictd."):
    if not module.name.startswith(("predictd.db.migrations", "predictd.__main__")):
        importlib.import_module(module.name)
"""


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> str:  # fmt: skip
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip
    assert done.returncode == 0, f"{command} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREDICTD_", "VIRTUAL_ENV", "PYTHON"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return env | extra


@pytest.mark.slow
@pytest.mark.timeout(PIP_TIMEOUT_S + 180)
def test_the_wheel_without_extras_serves(tmp_path: Path, servers: ServerPool) -> None:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
         str(ROOT)], cwd=tmp_path, timeout=PIP_TIMEOUT_S)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("predictd-*.whl")
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    # Dependencies come from the configured index (and pip's cache); no extras.
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path,
        env=clean_env(), timeout=PIP_TIMEOUT_S)  # fmt: skip

    run([str(bin_dir / "python"), "-c", IMPORT_ALL], cwd=tmp_path, env=clean_env())
    assert "serve" in run([str(bin_dir / "predictd"), "--help"], cwd=tmp_path, env=clean_env())
    url = f"sqlite:///{tmp_path / 'predictd.db'}"
    run([str(bin_dir / "predictd"), "db", "upgrade"], cwd=tmp_path,
        env=clean_env(DATABASE_URL=url))  # fmt: skip

    server = servers.start(url, spool_dir=tmp_path / "spool", launcher=[str(bin_dir / "predictd")])
    with server.client() as client:
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        answer = client.post("/predict", json={"text": "I love this product"})
        assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"] in ("positive", "negative")
    assert server.terminate() == 0, server.describe()
