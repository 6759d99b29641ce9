"""Whatever goes wrong, a command prints `error:` lines on stderr and exits 1 — never a
traceback: a bad setting, an unsupported or malformed database URL, an unreachable database,
a failure nobody anticipated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from predictd.cli import app
from predictd.cli.main import app as main_app
from tests.support import services
from tests.support.server import free_port

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("PREDICTD_") or key in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PREDICTD_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def error_lines(*args: str) -> list[str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://x/y", "error: DATABASE_URL: unsupported database 'mysql'"),
        ("postgresql://u@h:port/db", "error: DATABASE_URL: "),
        ("postgresql://u@h/db?sslmode=sometimes", "error: DATABASE_URL: sslmode must be one of"),
        ("no-scheme", "error: DATABASE_URL: expected sqlite:///path or postgresql://"),
    ],
)
@pytest.mark.parametrize("command", [["db", "status"], ["db", "upgrade"], ["models", "list"]])
def test_a_bad_database_url_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], url: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    (line,) = error_lines(*command)
    assert line.startswith(expected), line


@pytest.mark.parametrize("command", [["db", "upgrade"], ["models", "list"], ["alerts", "list"]])
def test_an_unreachable_database_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    monkeypatch.setenv("PREDICTD_DB_CONNECT_TIMEOUT_S", "1")
    (line,) = error_lines(*command)
    assert "unreachable" in line or "unavailable" in line, line


def test_a_failed_backup_is_one_line(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_dump says why on stderr; the command adds one line, not a CalledProcessError."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    if shutil.which("pg_dump") is None:
        services.unavailable("pg_dump (PostgreSQL's client programs)")
    assert error_lines("db", "backup", str(env / "x.dump")) == [
        "error: pg_dump failed (exit status 1); its message is above"
    ]


def test_a_bad_setting_is_one_line(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTD_PORT", "eighty")
    assert error_lines("db", "status") == [
        "error: PREDICTD_PORT: Input should be a valid integer, unable to parse string as an "
        "integer"
    ]


def test_an_unexpected_failure_is_one_line_without_secrets(env: Path) -> None:
    """A failure no command anticipated still ends as one line (passwords redacted)."""
    name = "explode-for-test"

    @main_app.command(name=name, hidden=True)
    def explode() -> None:
        raise RuntimeError("boom at postgresql://u:hunter2@h/db\nsecond line")

    try:
        (line,) = error_lines(name)
    finally:
        main_app.registered_commands[:] = [
            c for c in main_app.registered_commands if c.name != name
        ]
    assert line.startswith("error: RuntimeError: boom at postgresql://u:"), line
    assert "hunter2" not in line
    assert "second line" not in line


def test_exits_and_usage_errors_pass_through(env: Path) -> None:
    """A command's own `fail` is its one line; usage errors keep their exit status 2."""
    assert runner.invoke(app, ["db", "history"]).exit_code == 0
    assert error_lines("db", "cleanup", "--days", "1", "--inputs-days", "2") == [
        "error: --inputs-days must not exceed --days: older predictions are deleted outright"
    ]
    assert runner.invoke(app, ["db", "no-such-command"]).exit_code == 2


@pytest.mark.slow
def test_a_bad_database_url_in_a_real_process(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTD_")}
    environ |= {"DATABASE_URL": "mysql://x/y", "PREDICTD_SPOOL_DIR": str(tmp_path / "spool")}
    done = subprocess.run([sys.executable, "-m", "predictd", "db", "status"], env=environ,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: DATABASE_URL: unsupported database 'mysql': use sqlite:///path or "
        "postgresql://user@host:port/db"
    ]
