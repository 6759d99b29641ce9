"""Content-addressed artifact store: a file's name is its sha256, verified before every load."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from predictd.errors import ArtifactError
from predictd.settings import Settings


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        return cls(settings.artifact_dir)

    def put(self, source: Path) -> tuple[str, str]:
        """Copy ``source`` into the store; returns (uri, sha256)."""
        if not source.is_file():
            raise ArtifactError(f"no artifact at {source}")
        sha = sha256_of(source)
        target = self.root / sha[:2] / f"{sha}{source.suffix or '.bin'}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".partial")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        return target.resolve().as_uri(), sha

    @staticmethod
    def local_path(uri: str) -> Path:
        if not uri.startswith("file://"):
            raise ArtifactError(f"unsupported artifact location {uri!r}")
        return Path(uri.removeprefix("file://"))

    def verified_path(self, uri: str, sha256: str) -> Path:
        """The artifact's path, after checking its content still matches the registry."""
        path = self.local_path(uri)
        if not path.is_file():
            raise ArtifactError(f"artifact missing: {path}")
        actual = sha256_of(path)
        if actual != sha256:
            raise ArtifactError(
                f"artifact {path.name} has sha256 {actual[:12]}…, registry expects {sha256[:12]}…"
            )
        return path
