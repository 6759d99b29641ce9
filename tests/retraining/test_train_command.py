"""`predictd train` against a real server's predictions and the feedback sent for them: after a
concept shift the candidate wins back the accuracy production lost; its lineage, data and run
are kept; what cannot be used is counted, and too few labels register nothing."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks.retrain_recovery import (
    FEATURES,
    MODEL,
    Scenario,
    StreamRow,
    base_training_set,
    recovery,
    shifted_stream,
    write_artifacts,
)

from predictd.db.engine import Database
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.retraining.conftest import Cli, predict, send_feedback, wait_recorded
from tests.support.server import ServerPool

pytestmark = pytest.mark.slow


def register(cli: Cli, tmp_path: Path, scenario: Scenario, *, validation: bool = False) -> None:
    artifact, data = write_artifacts(scenario, tmp_path / "model")
    args = [
        "models",
        "register",
        str(artifact),
        "--name",
        MODEL,
        "--stage",
        "production",
        "--training-data",
        str(data),
    ]
    if validation:
        held = tmp_path / "validation.jsonl"
        rows = base_training_set(Scenario(seed=99, base_rows=300))
        held.write_text("".join(json.dumps({"features": f, "label": y}) + "\n" for f, y in rows))
        args += ["--validation", str(held)]
    assert f"registered {MODEL} v1 (production)" in cli(*args)[0]


def candidate_predictions(version: int, rows: list[StreamRow]) -> np.ndarray:
    """What a registered version answers, through the registry's verified loader."""

    async def load() -> Any:
        settings = Settings()
        db = Database(settings.database)
        try:
            registry = ModelRegistry(settings.inference, db)
            return registry.open_estimator(await registry.get(MODEL, version))
        finally:
            await db.dispose()

    estimator = asyncio.run(load())
    matrix = np.asarray([[r.features[n] for n in FEATURES] for r in rows])
    return np.asarray(estimator.predict(matrix))


def show(cli: Cli, version: int) -> tuple[dict[str, Any], str]:
    out, err = cli("models", "show", MODEL, str(version))
    shown: dict[str, Any] = json.loads(out)
    return shown, err


def versions(cli: Cli) -> list[str]:
    return [line.split("\t")[1] for line in cli("models", "list")[0].splitlines()]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_after_a_concept_shift_the_candidate_wins_back_the_lost_accuracy(
    servers: ServerPool, db_url: str, cli: Cli, tmp_path: Path
) -> None:
    scenario = Scenario()
    register(cli, tmp_path, scenario, validation=True)
    server = servers.start(db_url, spool_dir=tmp_path / "spool", model=None)
    stream = shifted_stream(scenario)
    with server.client() as client:
        answers = predict(client, stream)
        wait_recorded(db_url, answers)
        labelled = [
            (a.prediction_id, r.label) for a, r in zip(answers, stream, strict=True) if r.labelled
        ]
        send_feedback(client, labelled)

    out, err = cli("train", "--model", MODEL, "--json")
    result = json.loads(out)
    held = math.ceil(len(labelled) * 0.2)
    assert result["version"] == 2
    assert result["stage"] == "none"
    assert result["parent_version"] == 1
    assert result["rows"] == {
        "base": scenario.base_rows,
        "labelled": len(labelled),
        "train": len(labelled) - held,
        "holdout": held,
        "unusable_inputs": 0,
    }
    assert result["recent_weight"] == 20.0
    assert result["sample_weight"] is True
    assert "fitting Pipeline on" in err
    assert f"registered {MODEL} v2 (unstaged)" in err

    # Scored on the newest labelled rows, kept out of fitting: the candidate beats production.
    holdout = result["holdout"]
    assert holdout["candidate"]["accuracy"] > holdout["production"]["accuracy"] + 0.2
    assert set(holdout["candidate"]) == {"accuracy", "f1_macro"}
    assert set(result["validation"]) == {"candidate", "production"}

    # Measured on the shifted stream as served: the candidate wins back >= 80% of what was lost.
    truth = np.asarray([r.label for r in stream])
    served = np.asarray([a.prediction for a in answers])
    before = float(np.mean((served == truth)[[not r.shifted for r in stream]]))
    unseen = [n for n, r in enumerate(stream) if r.shifted and not r.labelled]
    after = float(np.mean(served[unseen] == truth[unseen]))
    retrained = candidate_predictions(2, [stream[n] for n in unseen])
    regained = recovery(before, after, float(np.mean(retrained == truth[unseen])))
    assert before - after > 0.3, (before, after)
    assert regained >= 0.8, (before, after, regained)

    # Lineage, data and the run are kept with the version.
    v1, _ = show(cli, 1)
    v2, shown_err = show(cli, 2)
    assert v2["parent_version"] == 1
    assert v2["tags"] == {"trained_by": "predictd train"}
    assert v2["metrics"] == holdout["candidate"]
    assert v2["hyperparameters"] == v1["hyperparameters"]
    assert v2["training_samples"] == scenario.base_rows + len(labelled) - held
    assert v2["training_data"]["format"] == "jsonl"
    assert v2["training_data"]["rows"] == v2["training_samples"]
    assert v2["validation_data"] == v1["validation_data"]
    run = v2["training_run"]
    assert {
        k: run[k]
        for k in ("parent_version", "rows", "recent_weight", "holdout", "validation", "params")
    } == {
        k: result[k]
        for k in ("parent_version", "rows", "recent_weight", "holdout", "validation", "params")
    }
    assert run["window"]["start"] < run["window"]["end"]
    assert v2["reference_profile"]["rows"] == held  # profiled and calibrated on the holdout
    assert len(v2["reference_profile"]["calibration"]) == 10
    assert "trained by predictd train from v1" in shown_err

    # --param changes a hyperparameter of the clone; an unknown one is named, nothing made.
    out, _ = cli(
        "train",
        "--model",
        MODEL,
        "--param",
        "clf__C=0.5",
        "--param",
        "clf__class_weight=balanced",
        "--json",
    )
    changed = json.loads(out)
    assert changed["params"] == {"clf__C": 0.5, "clf__class_weight": "balanced"}
    v3, _ = show(cli, 3)
    assert v3["hyperparameters"]["clf__C"] == 0.5
    assert v3["hyperparameters"]["clf__class_weight"] == "balanced"
    assert v1["hyperparameters"]["clf__C"] == 1.0
    _, err = cli("train", "--model", MODEL, "--param", "clf__Cc=2", code=1)
    assert "error: unknown parameter 'clf__Cc' for Pipeline" in err
    _, err = cli("train", "--model", MODEL, "--param", "C=2", code=1)
    assert "unknown parameter 'C' for Pipeline (did you mean clf__C?)" in err
    assert versions(cli) == ["v1", "v2", "v3"]

    # --no-base-data: the labelled rows alone.
    out, _ = cli("train", "--model", MODEL, "--no-base-data", "--json")
    alone = json.loads(out)
    assert alone["rows"]["base"] == 0
    v4, _ = show(cli, 4)
    assert v4["training_data"]["rows"] == len(labelled) - held
    assert alone["holdout"]["candidate"]["accuracy"] > alone["holdout"]["production"]["accuracy"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_hashed_inputs_are_unusable_and_too_few_labels_make_no_version(
    servers: ServerPool, db_url: str, cli: Cli, tmp_path: Path
) -> None:
    scenario = Scenario(base_rows=200, before=0, after=80, feedback=1.0)
    register(cli, tmp_path, scenario)
    stream = shifted_stream(scenario)
    hashed = servers.start(
        db_url,
        spool_dir=tmp_path / "spool-hash",
        model=None,
        env={"PREDICTD_STORE_INPUTS": "hash", "PREDICTD_INPUT_HASH_KEY": "k" * 32},
    )
    with hashed.client() as client:
        answers = predict(client, stream[:30])
        wait_recorded(db_url, answers)
        send_feedback(
            client, [(a.prediction_id, r.label) for a, r in zip(answers, stream[:30], strict=True)]
        )
    assert hashed.terminate() == 0

    _, err = cli("train", "--model", MODEL, "--min-labelled", "20", code=1)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {MODEL}: 0 usable labelled predictions")
    assert "20 needed; 30 more were unusable (30 with inputs stored as hash or none)" in err
    assert versions(cli) == ["v1"]

    full = servers.start(db_url, spool_dir=tmp_path / "spool-full", model=None)
    with full.client() as client:
        answers = predict(client, stream[30:])
        wait_recorded(db_url, answers)
        send_feedback(
            client, [(a.prediction_id, r.label) for a, r in zip(answers, stream[30:], strict=True)]
        )
    _, err = cli("train", "--model", MODEL, "--min-labelled", "60", code=1)
    assert "50 usable labelled predictions" in err
    assert "60 needed; 30 more were unusable" in err
    assert versions(cli) == ["v1"]

    out, err = cli("train", "--model", MODEL, "--min-labelled", "20", "--holdout", "0.2")
    assert out.startswith(f"registered {MODEL} v2 (unstaged) from v1: 200 base + 40 labelled")
    assert "10 held out" in out
    assert "read 80 labelled predictions" in err
    assert "50 usable, unusable: 30 with inputs stored as hash or none" in err
    v2, _ = show(cli, 2)
    assert v2["training_run"]["rows"] == {
        "base": 200,
        "labelled": 50,
        "train": 40,
        "holdout": 10,
        "unusable_inputs": 30,
    }


def test_bad_options_are_one_line_and_make_nothing(
    servers: ServerPool, db_url: str, cli: Cli, tmp_path: Path
) -> None:
    _, err = cli("train", "--model", "ghost", code=1)
    assert err.strip() == "error: 'ghost' has no production version to retrain"
    register(cli, tmp_path, Scenario(base_rows=100))
    for args, message in [
        (("--since", "soon"), "error: --since 'soon': use a positive number with s, m, h or d"),
        (("--holdout", "1.5"), "error: --holdout must be between 0 and 1 (a share)"),
        (("--recent-weight", "0"), "error: --recent-weight must be a positive number"),
        (("--param", "clf__C"), "error: --param 'clf__C': expected KEY=VALUE"),
    ]:
        _, err = cli("train", "--model", MODEL, *args, code=1)
        assert err.startswith(message), err
        assert len(err.strip().splitlines()) == 1
    _, err = cli("train", "--model", MODEL, code=1)
    assert "0 usable labelled predictions" in err
    assert "200 needed" in err
    assert versions(cli) == ["v1"]
