"""Transformer exports through the CLI: `models register` takes the export directory or an
archive of it (what it leaves out is said), a hostile archive registers nothing,
`predictd train` refuses to fine-tune, and the demo's two variants are one choice."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

from typer.testing import CliRunner

from predictd.cli import app
from predictd.demo.train import DemoModel

runner = CliRunner()


def invoke(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


def test_an_export_directory_and_its_archive_register_as_one_bundle(
    env: str, transformer_export: DemoModel, tmp_path: Path
) -> None:
    export = Path(shutil.copytree(transformer_export.path, tmp_path / "export"))
    (export / "README.md").write_text("model card")
    out, err = invoke("models", "register", str(export), "--name", "reviews",
                      "--stage", "production")  # fmt: skip
    assert out.strip() == "registered reviews v1 (production)"
    assert "left out of the bundle (not used to serve): README.md" in err
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", tmp_path, "export")
    out, _ = invoke("models", "register", archive, "--name", "reviews")
    assert out.strip() == "registered reviews v2 (none)"
    shown = json.loads(invoke("models", "show", "reviews", "2")[0])
    assert shown["flavor"] == "transformer"
    assert shown["classes"] == ["negative", "neutral", "positive"]
    first = json.loads(invoke("models", "show", "reviews", "1")[0])
    assert first["artifact_sha256"] == shown["artifact_sha256"]  # the same bytes either way

    _, err = invoke("train", "--model", "reviews", code=1)
    assert "does not fine-tune transformers" in err


def test_a_hostile_archive_registers_nothing(
    env: str, transformer_export: DemoModel, tmp_path: Path
) -> None:
    archive = tmp_path / "export.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(transformer_export.path, arcname="export")
        info = tarfile.TarInfo("export/../../escape.py")
        tar.addfile(info)
    _, err = invoke("models", "register", str(archive), "--name", "evil", code=1)
    assert "member names must be relative" in err
    assert not (tmp_path.parent / "escape.py").exists()
    assert invoke("models", "list")[0] == ""


def test_the_demo_is_one_model_or_the_other(env: str) -> None:
    _, err = invoke("demo", "--tabular", "--transformer", code=1)
    assert "choose one" in err
