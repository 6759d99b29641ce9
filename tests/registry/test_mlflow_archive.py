"""A .tar.gz or .zip of an MLflow model directory is unpacked member by member, refusing
anything that could land outside, link elsewhere, or inflate without bound."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from predictd.errors import ArtifactError
from predictd.registry.archives import EXTRA_BYTES, unpack
from tests.registry.mlflow_models import MlflowModels

MiB = 1024 * 1024


def tar_of(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path


def model_files(mlflow_models: MlflowModels, prefix: str = "") -> dict[str, bytes]:
    root = mlflow_models.cloudpickle_dir
    return {prefix + p.name: p.read_bytes() for p in root.iterdir()}


@pytest.mark.parametrize("prefix", ["", "model/", "./"])
def test_an_archive_of_a_model_directory_unpacks(
    mlflow_models: MlflowModels, tmp_path: Path, prefix: str
) -> None:
    for archive in (
        tar_of(tmp_path / "m.tar.gz", model_files(mlflow_models, prefix)),
        zip_of(tmp_path / "m.zip", model_files(mlflow_models, prefix)),
    ):
        root = unpack(archive, tmp_path / archive.name.replace(".", "-"), MiB)
        assert (root / "MLmodel").is_file()
        assert (root / "model.pkl").read_bytes() == (
            mlflow_models.cloudpickle_dir / "model.pkl"
        ).read_bytes()


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil", "a/../../evil", "a\\..\\evil"])
def test_members_outside_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    for archive in (
        tar_of(tmp_path / "m.tar.gz", {"MLmodel": b"x", name: b"evil"}),
        zip_of(tmp_path / "m.zip", {"MLmodel": b"x", name: b"evil"}),
    ):
        with pytest.raises(ArtifactError, match="member names must be relative"):
            unpack(archive, tmp_path / archive.name.replace(".", "-"), MiB)
    assert not (tmp_path.parent / "evil").exists()


def test_links_are_refused(tmp_path: Path) -> None:
    archive = tar_of(tmp_path / "m.tar.gz", {"MLmodel": b"x"}, links={"model.pkl": "/etc/passwd"})
    with pytest.raises(ArtifactError, match=r"'model\.pkl', which is not a regular file"):
        unpack(archive, tmp_path / "out", MiB)
    link = zipfile.ZipInfo("model.pkl")
    link.external_attr = (0o120777) << 16  # a symbolic link, as zip stores one
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as zipped:
        zipped.writestr(link, "/etc/passwd")
    with pytest.raises(ArtifactError, match="not a regular file"):
        unpack(tmp_path / "m.zip", tmp_path / "out2", MiB)


def test_what_inflates_past_the_budget_is_refused(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "m.zip", {"MLmodel": b"x", "model.pkl": b"\0" * (70 * MiB)})
    assert archive.stat().st_size < MiB
    with pytest.raises(ArtifactError, match="unpacks to more than"):
        unpack(archive, tmp_path / "out", 1)


def test_a_header_that_inflates_past_the_budget_is_refused(tmp_path: Path) -> None:
    """A PAX header is read whole into memory by tarfile: it counts against the budget too."""
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("MLmodel")
        info.pax_headers = {"comment": "x" * (EXTRA_BYTES + 16 * MiB)}
        tar.addfile(info, io.BytesIO(b""))
    assert archive.stat().st_size < MiB
    with pytest.raises(ArtifactError, match="unpacks to more than"):
        unpack(archive, tmp_path / "out", 1)


def test_an_encrypted_zip_is_refused_in_one_line(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "m.zip", {"MLmodel": b"x"})
    data = bytearray(archive.read_bytes())
    data[6] |= 1  # general purpose flag, bit 0: encrypted (local header)
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 1  # and in the central directory
    archive.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="not a readable archive"):
        unpack(archive, tmp_path / "out", MiB)


def test_an_archive_without_mlmodel_or_unreadable_is_refused(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "m.zip", {"a/MLmodel": b"x", "b/MLmodel": b"x"})
    with pytest.raises(ArtifactError, match="no MLmodel at its top"):
        unpack(archive, tmp_path / "out", MiB)
    (tmp_path / "bad.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(ArtifactError, match="not a readable archive"):
        unpack(tmp_path / "bad.tar.gz", tmp_path / "out2", MiB)
    twice = zip_of(tmp_path / "twice.zip", {"MLmodel": b"x"})
    with zipfile.ZipFile(twice, "a") as zipped, pytest.warns(UserWarning, match="Duplicate"):
        zipped.writestr("MLmodel", b"y")
    with pytest.raises(ArtifactError, match="holds 'MLmodel' twice"):
        unpack(twice, tmp_path / "out3", MiB)
