"""Drift runs on SQLite and PostgreSQL: a shifted synthetic stream is detected and an unshifted
one is not (fixed seeds), with small references (KS, chi-square) and large ones (Wasserstein,
Jensen-Shannon); the database's bin counts equal numpy's; too little data is said, not judged."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from predictd.cli import app as cli
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.monitoring.alerts import AlertService, drift_findings
from predictd.monitoring.drift import DriftService
from predictd.monitoring.profile import reference_profile, validation_profiler
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.recording.test_recorder import make_record
from tests.support.app import make_settings, running_app

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = timedelta(hours=1)


def tabular(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[dict[str, float]]:
    a = rng.normal(shift, 1.0, n)
    b = rng.uniform(0 + 3 * shift, 10 + 3 * shift, n)
    c = rng.exponential(2.0, n)  # never shifted: the share decides
    return [{"a": float(x), "b": float(y), "c": float(z)} for x, y, z in zip(a, b, c, strict=True)]


def answers(rng: np.random.Generator, n: int, shift: float) -> tuple[list[str], list[float]]:
    """A model that grows unsure and says "yes" more often under drift."""
    labels = ["yes" if u < 0.5 + 0.3 * shift else "no" for u in rng.random(n)]
    confidence = np.clip(rng.beta(8 - 5 * shift, 2, n), 0.5, 1.0)
    return labels, [float(c) for c in confidence]


def records(
    model: str,
    inputs: list[Any],
    labels: list[str],
    confidences: list[float],
    at: datetime = NOW,
) -> list[PredictionRecord]:
    return [
        make_record(
            id=uuid.uuid4(),
            ts=at - timedelta(seconds=30 + i % 3000),
            model_name=model,
            input={"text": value} if isinstance(value, str) else {"features": value},
            output=label,
            confidence=confidence,
        )
        for i, (value, label, confidence) in enumerate(
            zip(inputs, labels, confidences, strict=True)
        )
    ]


async def register(db: Database, artifacts: Artifacts, name: str, profile: dict[str, Any]) -> None:
    registry = ModelRegistry(Settings().inference, db)
    candidate = registry.inspect(artifacts.tabular.path, name)
    await registry.register(replace(candidate, reference_profile=profile))


async def scenario(
    db: Database,
    artifacts: Artifacts,
    *,
    reference_rows: int,
    current_rows: int,
    settings: Settings | None = None,
) -> dict[str, dict[str, Any]]:
    """Two models with the same reference: one sees the same population, one a shifted one."""
    rng = np.random.default_rng(42)
    ref_inputs = tabular(rng, reference_rows)
    profile = reference_profile(ref_inputs, *answers(rng, reference_rows, 0.0))
    stream = []
    for name, shift in (("steady", 0.0), ("shifted", 1.0)):
        await register(db, artifacts, name, profile)
        stream += records(
            name, tabular(rng, current_rows, shift), *answers(rng, current_rows, shift)
        )
    await PredictionWriter(db).write(stream)
    reports = await DriftService(db, (settings or Settings()).monitoring).run(WINDOW, now=NOW)
    return {report["model_name"]: report for report in reports}


@pytest.mark.parametrize(
    ("reference_rows", "numeric", "categorical"),
    [(5000, "wasserstein", "jensen_shannon"), (400, "ks", "chi_square")],
)
async def test_shifted_stream_drifts_and_steady_one_does_not(
    db: Database, artifacts: Artifacts, reference_rows: int, numeric: str, categorical: str
) -> None:
    reports = await scenario(db, artifacts, reference_rows=reference_rows, current_rows=2000)
    steady, shifted = reports["steady"], reports["shifted"]
    assert steady["status"] == shifted["status"] == "ok"
    assert steady["rows"] == shifted["rows"] == 2000

    assert steady["drift_detected"] is False
    assert steady["score"] == 0.0
    assert not any(f["drifted"] for f in steady["features"].values())
    assert not any(o["drifted"] for o in steady["outputs"].values())

    assert shifted["drift_detected"] is True
    assert shifted["score"] == pytest.approx(2 / 3)  # a and b moved, c did not
    assert {k for k, f in shifted["features"].items() if f["drifted"]} == {"a", "b"}
    assert {k for k, o in shifted["outputs"].items() if o["drifted"]} == {"label", "confidence"}
    assert shifted["features"]["a"]["psi"] > 0.2 > steady["features"]["a"]["psi"]

    assert {f["method"] for f in shifted["features"].values()} == {numeric}
    assert shifted["outputs"]["label"]["method"] == categorical
    assert "2 of 3 features drifted" in shifted["message"]

    stored = await DriftService(db, Settings().monitoring).history("shifted", None, 10)
    assert [r["drift_detected"] for r in stored] == [True]
    assert stored[0]["features"]["a"]["counts"] == shifted["features"]["a"]["counts"]


async def test_database_counts_equal_numpy(db: Database, artifacts: Artifacts) -> None:
    rng = np.random.default_rng(7)
    ref_inputs = tabular(rng, 3000)
    profile = reference_profile(ref_inputs, *answers(rng, 3000, 0.0))
    await register(db, artifacts, "m", profile)
    live = tabular(rng, 1500, 0.3)
    live[0] = {"a": 0.5}  # b and c missing: not counted for them
    live[1] = {
        "a": profile["features"]["a"]["edges"][3],
        "b": 1e9,
        "c": -1e9,
    }  # on an edge, far out
    await PredictionWriter(db).write(records("m", live, *answers(rng, 1500, 0.3)))
    (report,) = await DriftService(db, Settings().monitoring).run(WINDOW, now=NOW)
    for name in ("a", "b", "c"):
        edges = profile["features"][name]["edges"]
        values = [row[name] for row in live if name in row]
        expected = np.bincount(
            np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1
        )
        assert report["features"][name]["counts"] == expected.tolist()
        assert report["features"][name]["rows"] == len(values)


async def test_text_length_drift(db: Database, artifacts: Artifacts) -> None:
    rng = np.random.default_rng(3)
    words = ["good", "bad", "fine", "awful", "great", "terrible"]

    def texts(n: int, mean_words: float) -> list[str]:
        return [" ".join(rng.choice(words, max(1, int(rng.poisson(mean_words))))) for _ in range(n)]

    profile = reference_profile(texts(3000, 6), *answers(rng, 3000, 0.0))
    await register(db, artifacts, "short", profile)
    await register(db, artifacts, "long", profile)
    stream = records("short", texts(800, 6), *answers(rng, 800, 0.0))
    stream += records("long", texts(800, 20), *answers(rng, 800, 0.0))
    await PredictionWriter(db).write(stream)
    reports = {
        r["model_name"]: r
        for r in await DriftService(db, Settings().monitoring).run(WINDOW, now=NOW)
    }
    assert reports["short"]["drift_detected"] is False
    assert reports["long"]["drift_detected"] is True
    assert list(reports["long"]["features"]) == ["text_length"]


async def test_too_little_data_is_reported_not_judged(db: Database, artifacts: Artifacts) -> None:
    rng = np.random.default_rng(5)
    profile = reference_profile(tabular(rng, 3000), *answers(rng, 3000, 0.0))
    await register(db, artifacts, "quiet", profile)
    await register(db, artifacts, "bare", {})
    # Wildly shifted, but only 50 of them: no verdict either way.
    stream = records("quiet", tabular(rng, 50, 5.0), *answers(rng, 50, 1.0))
    stream += records("bare", tabular(rng, 500), *answers(rng, 500, 0.0))
    await PredictionWriter(db).write(stream)
    reports = {
        r["model_name"]: r
        for r in await DriftService(db, Settings().monitoring).run(WINDOW, now=NOW)
    }
    quiet, bare = reports["quiet"], reports["bare"]
    assert (quiet["status"], quiet["drift_detected"], quiet["score"]) == (
        "insufficient_data",
        False,
        None,
    )
    assert "50 answered predictions" in quiet["message"]
    assert (bare["status"], bare["drift_detected"]) == ("no_reference", False)
    assert "--validation" in bare["message"]


async def test_thresholds_are_settings(db: Database, artifacts: Artifacts) -> None:
    strict = Settings(drift_share=1.0)
    reports = await scenario(db, artifacts, reference_rows=5000, current_rows=2000, settings=strict)
    assert reports["shifted"]["score"] == pytest.approx(2 / 3)
    assert reports["shifted"]["drift_detected"] is False  # 2 of 3 < 100%


async def test_wide_windows_are_counted_on_a_sample(db: Database, artifacts: Artifacts) -> None:
    sampled = Settings(drift_max_values=10_000)
    # 6,000 rows x 3 features = 18,000 values > 10,000: PostgreSQL counts ~56% of rows.
    reports = await scenario(
        db, artifacts, reference_rows=5000, current_rows=6000, settings=sampled
    )
    steady, shifted = reports["steady"], reports["shifted"]
    assert (steady["drift_detected"], shifted["drift_detected"]) == (False, True)
    counted = shifted["features"]["a"]["rows"]
    assert shifted["rows"] == 6000  # the model's answers always come from every row
    if db.dialect == "postgresql":
        assert 0.45 * 6000 < counted < 0.67 * 6000
        assert "sample of rows" in shifted["message"]
    else:
        assert counted == 6000


async def test_the_drift_alert_opens_and_clears_only_on_a_verdict(db: Database) -> None:
    def report(status: str, detected: bool, version: int = 1) -> dict[str, Any]:
        return {"model_name": "m", "model_version": version, "status": status, "score": 0.5,
                "drift_detected": detected, "message": "2 of 4 features drifted",
                "features": {"a": {"drifted": detected}, "b": {"drifted": False}}}  # fmt: skip

    alerts = AlertService(db)
    # Production steady, canary drifting, in one pass: the alert opens (and stays open).
    opened = await alerts.apply(drift_findings([report("ok", False), report("ok", True, 2)]))
    assert [(a["rule"], a["data"]["drifted_features"]) for a in opened.opened] == [("drift", ["a"])]
    quiet = await alerts.apply(drift_findings([report("insufficient_data", False)]))
    assert (quiet.opened, quiet.resolved) == ([], [])
    cleared = await alerts.apply(drift_findings([report("ok", False)]))
    assert [a["rule"] for a in cleared.resolved] == ["drift"]


def test_drift_from_the_cli_and_over_http(
    tmp_path: Path, db_url: str, artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, db_url)

    async def seed() -> None:
        database = Database(settings.database)
        try:
            await migrate.upgrade(database)
            await scenario(database, artifacts, reference_rows=5000, current_rows=500)
        finally:
            await database.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("DATABASE_URL", db_url)
    result = CliRunner().invoke(cli, ["drift", "run", "--model", "shifted", "--window", "2h"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(x["model_name"], x["drift_detected"]) for x in lines if "alert" not in x] == [
        ("shifted", True)
    ]
    assert [(x["alert"], x["rule"]) for x in lines if "alert" in x] == [("opened", "drift")]
    listed = CliRunner().invoke(cli, ["drift", "reports", "--model", "shifted"])
    assert listed.exit_code == 0, listed.output
    assert len(listed.output.splitlines()) == 2  # scenario's run, then the CLI's
    assert all("shifted v1  DRIFT" in line for line in listed.output.splitlines())
    bad = CliRunner().invoke(cli, ["drift", "run", "--window", "soon"])
    assert bad.exit_code != 0
    assert "--window" in bad.output

    asyncio.run(read_over_http(settings))


async def read_over_http(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        latest = await client.get("/drift/reports/latest", params={"model": "steady"})
        assert latest.status_code == 200
        body = latest.json()
        assert (body["model_name"], body["status"], body["drift_detected"]) == (
            "steady",
            "ok",
            False,
        )
        assert set(body["features"]) == {"a", "b", "c"}
        assert set(body["outputs"]) == {"label", "confidence"}
        every = (await client.get("/drift/reports", params={"limit": 10})).json()["items"]
        assert sorted(r["model_name"] for r in every) == ["shifted", "shifted", "steady"]
        assert every[0]["computed_at"] >= every[-1]["computed_at"]
        missing = await client.get("/drift/reports/latest", params={"model": "nobody"})
        assert missing.status_code == 404
        assert "no drift report for nobody" in missing.json()["error"]["message"]
        bad_limit = await client.get("/drift/reports", params={"limit": 0})
        assert (bad_limit.status_code, bad_limit.json()["error"]["field"]) == (422, "limit")


async def test_tokens_and_out_of_vocabulary_of_a_text_model(
    db: Database, artifacts: Artifacts
) -> None:
    """The demo text model's own tokenizer: traffic like its validation split does not drift;
    traffic in words it never saw does, in tokens, out-of-vocabulary share and length."""
    registry = ModelRegistry(Settings().inference, db)
    model = artifacts.sentiment
    await registry.register(
        registry.inspect(
            model.path,
            "words",
            profiler=validation_profiler(model.validation, Settings().inference),
        ),
        stage="production",
    )
    version = await registry.production("words")
    assert version is not None
    tokens = (version.reference_profile or {})["tokens"]
    assert tokens["total"] > tokens["oov"] == 0  # its own validation split: all known
    rng = np.random.default_rng(8)
    known = [item.text or "" for item, _ in model.validation]
    foreign = ["zorbly", "quandle", "mimsy", "borogove", "frabjous", "tulgey", "vorpal"]
    same = [known[i] for i in rng.integers(0, len(known), 600)]
    rare = min((t for t in tokens["counts"] if t != "(other)"), key=tokens["counts"].get)
    odd = [" ".join([*rng.choice(foreign, 8), rare, rare, rare]) for _ in range(600)]
    stream = records("words", same, *answers(rng, 600, 0.0))
    await PredictionWriter(db).write(stream)
    service = DriftService(db, Settings().monitoring, registry.vocabulary)
    (steady,) = await service.run(WINDOW, "words", now=NOW)
    assert steady["features"]["tokens"]["status"] == "ok"
    assert steady["features"]["out_of_vocabulary"]["rate"] == 0.0
    assert steady["drift_detected"] is False

    later = NOW + timedelta(hours=2)
    await PredictionWriter(db).write(records("words", odd, *answers(rng, 600, 0.0), at=later))
    (shifted,) = await service.run(WINDOW, "words", now=later)
    assert shifted["drift_detected"] is True
    assert {k for k, f in shifted["features"].items() if f["drifted"]} == {
        "text_length",
        "tokens",
        "out_of_vocabulary",
    }
    assert shifted["features"]["out_of_vocabulary"]["rate"] > 0.5

    blind = await DriftService(db, Settings().monitoring).run(WINDOW, "words", now=NOW)
    assert blind[0]["features"]["tokens"]["status"] == "unavailable"  # no tokenizer given


def test_drift_cli_refusals_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:hunter2@127.0.0.1:9/nowhere")
    monkeypatch.setenv("PREDICTD_DB_CONNECT_TIMEOUT_S", "1")
    down = CliRunner().invoke(cli, ["drift", "run"])
    assert down.exit_code == 1
    assert down.output.startswith("error: ")
    assert "Traceback" not in down.output
    assert "hunter2" not in down.output
    bad = CliRunner().invoke(cli, ["drift", "reports", "--version", "0"])
    assert bad.exit_code == 2
    assert "--version" in bad.output
