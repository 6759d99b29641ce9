"""Where the deploy checks' tools live, and running them (scripts/ensure_azure_tools.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import services

ROOT = Path(__file__).resolve().parents[2]
CHECKS_BIN = ROOT / ".venv-checks" / "bin"
INSTALL_HINT = "(scripts/ensure_azure_tools.sh)"


def tool(name: str) -> Path:
    """The tool's executable in .venv-checks; skips locally (fails in CI) when it is missing."""
    path = CHECKS_BIN / name
    if not path.is_file():
        services.unavailable(f"{name} {INSTALL_HINT}")
    return path


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
