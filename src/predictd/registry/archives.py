"""A ``.tar.gz`` or ``.zip`` of a model directory (an MLflow model, a transformer export),
unpacked as untrusted input.

Every member is checked before a byte of it is written: a relative name without ``..``,
backslashes or a drive; a regular file or a directory (links, devices and FIFOs are
refused, so nothing can point outside); no name twice. Members are copied in chunks
against a budget of bytes actually written, so an archive that lies about its sizes or
inflates without bound stops at the budget, and the member count is bounded too.
"""

from __future__ import annotations

import gzip
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from predictd.errors import ArtifactError
from predictd.inference import transformer_bundle

SUFFIXES = (".tar.gz", ".tgz", ".zip")
MAX_MEMBERS = 10_000
EXTRA_BYTES = 64 * 1024 * 1024  # beside the model file: MLmodel, environment files, examples
CHUNK = 1024 * 1024


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def unpack(archive: Path, dst: Path, max_bytes: int, marker: str = "MLmodel") -> Path:
    """Unpack ``archive`` into ``dst``; the directory holding its ``marker`` file (the top,
    or its one top-level directory)."""
    dst.mkdir(parents=True)
    budget = _Budget(archive.name, max_bytes + EXTRA_BYTES)
    try:
        if archive.name.lower().endswith(".zip"):
            _unzip(archive, dst, budget)
        else:
            _untar(archive, dst, budget)
    except ArtifactError:
        raise
    except (
        OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError,
        RuntimeError,  # an encrypted zip member
        NotImplementedError,  # a compression method zipfile lacks
    ) as exc:  # fmt: skip
        raise ArtifactError(f"{archive.name} is not a readable archive: {exc!r}") from exc
    if (dst / marker).is_file():
        return dst
    entries = list(dst.iterdir())
    if len(entries) == 1 and (entries[0] / marker).is_file():
        return entries[0]
    raise ArtifactError(
        f"{archive.name} has no {marker} at its top or in its one top-level directory"
    )


class _Budget:
    def __init__(self, archive: str, limit: int) -> None:
        self.archive, self.left, self.members = archive, limit, 0
        self.limit = limit

    def member(self) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise ArtifactError(f"{self.archive} has more than {MAX_MEMBERS} members")

    def copy(self, src: IO[bytes], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = target.open("xb")
        except FileExistsError:
            raise ArtifactError(f"{self.archive} holds {target.name!r} twice") from None
        with out:
            while chunk := src.read(CHUNK):
                self.left -= len(chunk)
                if self.left < 0:
                    raise ArtifactError(
                        f"{self.archive} unpacks to more than {self.limit} bytes; refused"
                    )
                out.write(chunk)


def _target(dst: Path, name: str, archive: str) -> Path:
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (
        "\x00" in name
        or "\\" in name
        or posix.is_absolute()
        or windows.drive
        or ".." in posix.parts
    ):
        raise ArtifactError(
            f"{archive} holds {name[:200]!r}: member names must be relative, without '..'"
        )
    return dst.joinpath(*posix.parts)


def _unzip(archive: Path, dst: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            budget.member()
            target = _target(dst, info.filename, archive.name)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: written without a file type
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif kind not in (0, stat.S_IFREG):
                raise ArtifactError(
                    f"{archive.name} holds {info.filename!r}, which is not a regular file "
                    "(a link?); refused"
                )
            else:
                with zipped.open(info) as src:
                    budget.copy(src, target)


class _Counted:
    """The decompressed tar stream, counted as tarfile reads it: header records (a PAX
    header is read whole into memory) count against the budget as well as member data."""

    def __init__(self, raw: gzip.GzipFile, budget: _Budget) -> None:
        self.raw, self.budget, self.read_bytes = raw, budget, 0
        self.limit = budget.limit + 2 * tarfile.BLOCKSIZE * (MAX_MEMBERS + 2)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size >= 0 else CHUNK)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise ArtifactError(
                f"{self.budget.archive} unpacks to more than {self.budget.limit} bytes; refused"
            )
        return data


def _untar(archive: Path, dst: Path, budget: _Budget) -> None:
    with gzip.open(archive, "rb") as raw:
        stream = _Counted(raw, budget)
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for info in tar:
                _untar_member(tar, info, dst, budget, archive.name)


def _untar_member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, dst: Path, budget: _Budget, archive: str
) -> None:
    budget.member()
    target = _target(dst, info.name, archive)
    if info.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    if not info.isfile():
        raise ArtifactError(
            f"{archive} holds {info.name!r}, which is not a regular file "
            "(a link or device); refused"
        )
    src = tar.extractfile(info)
    if src is None:  # pragma: no cover - isfile() members always have data
        raise ArtifactError(f"{archive}: cannot read {info.name!r}")
    with src:
        budget.copy(src, target)


def as_artifact(path: Path, workdir: Path, max_bytes: int) -> tuple[Path, list[str]]:
    """The one file to register for ``path``: the file itself, or the transformer bundle
    packed from an export directory or an archive of one (unpacked as untrusted input into
    ``workdir``); (that file, notes for the operator)."""
    if path.is_file() and not is_archive(path):
        return path, []
    if path.is_file():
        path = unpack(path, workdir / "unpacked", max_bytes, marker=transformer_bundle.CONFIG)
    elif not path.is_dir():
        raise ArtifactError(f"no artifact at {path}")
    packed, left_out = transformer_bundle.pack(path, workdir / "bundle", max_bytes)
    notes = (
        [f"left out of the bundle (not used to serve): {', '.join(left_out)}"] if left_out else []
    )
    return packed, notes


__all__ = ["as_artifact", "is_archive", "unpack"]
