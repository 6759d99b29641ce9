"""Retraining tests: a tabular model served by real `predictd serve` processes, its traffic and
feedback sent over HTTP, and `predictd train` run through Typer's runner on the same database
and artifact store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from benchmarks.retrain_recovery import MODEL, StreamRow
from typer.testing import CliRunner

from predictd.cli import app
from tests.support.app import id_counts
from tests.support.server import ServerPool, wait_for

runner = CliRunner()
BATCH = 100  # PREDICTD_MAX_BATCH's default


@dataclass(frozen=True)
class Cli:
    """`predictd ...` in-process, with the environment of the pool's servers."""

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        """stdout and stderr of one command, which must exit with ``code``."""
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.stdout, result.stderr


@pytest.fixture
def cli(servers: ServerPool, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICTD_AUTO_MIGRATE", "true")
    monkeypatch.setenv("PREDICTD_ARTIFACT_DIR", str(servers.root / "artifacts"))
    monkeypatch.chdir(tmp_path)
    return Cli()


@dataclass(frozen=True)
class Answer:
    prediction_id: str
    prediction: object


def predict(client: httpx.Client, rows: Sequence[StreamRow], model: str = MODEL) -> list[Answer]:
    """Every row through POST /models/{model}/batch, in order."""
    answers: list[Answer] = []
    for start in range(0, len(rows), BATCH):
        items = [{"features": r.features} for r in rows[start : start + BATCH]]
        response = client.post(f"/models/{model}/batch", json={"items": items})
        assert response.status_code == 200, response.text
        answers += [
            Answer(p["prediction_id"], p["prediction"]) for p in response.json()["predictions"]
        ]
    return answers


def send_feedback(client: httpx.Client, labels: Sequence[tuple[str, object]]) -> None:
    """The true labels through POST /feedback/batch; every one must match its prediction."""
    for start in range(0, len(labels), 1000):
        items = [{"prediction_id": i, "actual": y} for i, y in labels[start : start + 1000]]
        response = client.post("/feedback/batch", json={"items": items})
        assert response.status_code == 200, response.text
        assert response.json()["unmatched"] == []


def wait_recorded(db_url: str, answers: Sequence[Answer], timeout_s: float = 30.0) -> None:
    ids = [a.prediction_id for a in answers]

    def done() -> bool:
        counts = asyncio.run(id_counts(db_url, ids))
        return all(counts[i] == 1 for i in ids)

    wait_for(done, timeout_s, f"{len(ids)} predictions recorded")
