"""`predictd models ...` through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from predictd.cli import app
from tests.conftest import Artifacts

runner = CliRunner()


def invoke(*args: str, code: int = 0) -> str:
    """What a command printed on stdout when it succeeded, on stderr when it failed."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.stderr


def test_register_list_show_promote_rollback_archive(
    env: str, artifacts: Artifacts, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.9, "f1": 0.8}))
    path = str(artifacts.sentiment.path)
    assert "registered sent v1 (none)" in invoke(
        "models", "register", path, "--name", "sent", "--metrics-json", str(metrics)
    )
    assert "registered sent v2 (production)" in invoke(
        "models", "register", path, "--name", "sent", "--stage", "production"
    )
    listing = invoke("models", "list", "--name", "sent")
    assert "sent\tv1\tnone\tLogisticRegression\taccuracy=0.900 f1=0.800" in listing
    assert "sent\tv2\tproduction" in listing

    shown = json.loads(invoke("models", "show", "sent", "1"))
    assert shown["metrics"] == {"accuracy": 0.9, "f1": 0.8}
    assert len(shown["artifact_sha256"]) == 64

    assert "sent v1 is now production" in invoke("models", "promote", "sent", "1")
    assert "sent v2 is now production" in invoke("models", "rollback", "sent")
    assert "sent v1 is now staging" in invoke("models", "stage", "sent", "1")
    assert "sent v1 archived" in invoke("models", "archive", "sent", "1")
    production = invoke("models", "archive", "sent", "2", code=1)
    assert "production version" in production
    assert "already the production version" in invoke("models", "stage", "sent", "2", code=1)


def test_a_pickle_is_refused_unless_allowed(
    env: str, artifacts: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import joblib
    from skops.io import get_untrusted_types
    from skops.io import load as skops_load

    estimator = skops_load(
        artifacts.sentiment.path, trusted=get_untrusted_types(file=artifacts.sentiment.path)
    )
    pickled = tmp_path / "sentiment.joblib"
    joblib.dump(estimator, pickled)
    refused = invoke("models", "register", str(pickled), "--name", "sent", code=1)
    assert "PREDICTD_ALLOW_PICKLE" in refused
    assert invoke("models", "list").strip() == ""
    monkeypatch.setenv("PREDICTD_ALLOW_PICKLE", "true")
    assert "registered sent v1 (none)" in invoke(
        "models", "register", str(pickled), "--name", "sent"
    )
    assert json.loads(invoke("models", "show", "sent", "1"))["flavor"] == "pickle"


def test_errors_are_one_line_and_exit_1(env: str, tmp_path: Path) -> None:
    assert "not found" in invoke("models", "promote", "ghost", "3", code=1)
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"nope")
    out = invoke("models", "register", str(junk), "--name", "junk", code=1)
    assert out.startswith("error: ")
    assert "Traceback" not in out
    assert "no model named 'ghost'" in invoke("models", "rollback", "ghost", code=1)


def test_bad_register_options_register_nothing(
    env: str, artifacts: Artifacts, tmp_path: Path
) -> None:
    path = str(artifacts.sentiment.path)
    assert "--stage" in invoke("models", "register", path, "--name", "m", "--stage", "live", code=1)
    bad_metrics = tmp_path / "bad.json"
    bad_metrics.write_text('{"accuracy": "high"}')
    out = invoke(
        "models", "register", path, "--name", "m", "--metrics-json", str(bad_metrics), code=1
    )
    assert "--metrics-json" in out
    missing = invoke("models", "register", str(tmp_path / "nope.skops"), "--name", "m", code=1)
    assert "no artifact at" in missing
    assert invoke("models", "list").strip() == ""
    assert not (tmp_path / "artifacts").exists() or not any(
        p.is_file() for p in (tmp_path / "artifacts").rglob("*")
    )


def test_register_with_validation_data_calibrates_the_confidence(
    env: str, tmp_path: Path, artifacts: Artifacts
) -> None:
    from skops.io import get_untrusted_types
    from skops.io import load as skops_load

    from predictd.demo.train import load_sentiment_data
    from predictd.monitoring.calibration import calibration_bins

    texts, labels = load_sentiment_data()
    texts, labels = texts[::3], labels[::3]
    path = artifacts.sentiment.path
    validation = tmp_path / "validation.jsonl"
    validation.write_text(
        "\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels, strict=True))
    )
    invoke("models", "register", str(path), "--name", "cal", "--validation", str(validation))
    shown = json.loads(invoke("models", "show", "cal", "1"))

    model = skops_load(path, trusted=get_untrusted_types(file=path))
    proba = model.predict_proba(texts)
    predicted = [model.classes_[row.argmax()] for row in proba]
    expected = calibration_bins(
        (float(row.max()), p == y) for row, p, y in zip(proba, predicted, labels, strict=True)
    )
    profile = shown["reference_profile"]
    assert profile["calibration"] == pytest.approx(expected)
    assert profile["rows"] == len(texts)
    lengths = profile["text_length"]
    assert sum(lengths["counts"]) == lengths["count"] == len(texts)
    assert lengths["mean"] == pytest.approx(sum(map(len, texts)) / len(texts))
    assert sum(profile["predicted_labels"].values()) == len(texts)
    assert sum(profile["confidence_bins"]) == len(texts)

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine", "label": "positive"}\n{"text": "no label"}\n')
    out = invoke("models", "register", str(path), "--name", "bad", "--validation", str(broken),
                 code=1)  # fmt: skip
    assert "--validation line 2" in out
    assert "bad" not in invoke("models", "list")


def test_register_keeps_hyperparameters_tags_and_lineage(env: str, artifacts: Artifacts) -> None:
    path = str(artifacts.sentiment.path)
    invoke("models", "register", path, "--name", "lin")
    out = invoke("models", "register", path, "--name", "lin", "--tag", "team=nlp",
                 "--tag", "data:source=s3://bucket/x=1", "--parent-version", "1")  # fmt: skip
    assert "registered lin v2" in out
    shown = json.loads(invoke("models", "show", "lin", "2"))
    assert shown["tags"] == {"team": "nlp", "data:source": "s3://bucket/x=1"}
    assert shown["parent_version"] == 1
    params = shown["hyperparameters"]
    regularisation = [value for key, value in params.items() if key.endswith("__C")]
    assert regularisation, sorted(params)
    assert isinstance(regularisation[0], float)
    assert json.loads(invoke("models", "show", "lin", "1"))["parent_version"] is None

    # Refused, by the option, and nothing registered.
    assert "--tag 'team'" in invoke("models", "register", path, "--name", "lin", "--tag",
                                    "team", code=1)  # fmt: skip
    assert "--tag 'bad key=1'" in invoke("models", "register", path, "--name", "lin", "--tag",
                                         "bad key=1", code=1)  # fmt: skip
    assert "given twice" in invoke("models", "register", path, "--name", "lin", "--tag", "a=1",
                                   "--tag", "a=2", code=1)  # fmt: skip
    assert "version 9 not found" in invoke("models", "register", path, "--name", "lin",
                                           "--parent-version", "9", code=1)  # fmt: skip
    assert "lin\tv3" not in invoke("models", "list", "--name", "lin")
