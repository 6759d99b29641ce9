"""Content-addressed artifact store: a file's name is its sha256, verified before every load.

By default the store is a local directory (``PREDICTD_ARTIFACT_DIR``). With
``PREDICTD_ARTIFACT_URL`` (any fsspec URL: ``s3://bucket/prefix``, ``gs://``, ``file://``...)
artifacts are uploaded there instead, so every server can load what any host registered; a
server downloads each one once into ``{artifact_dir}/cache/`` and verifies the cached copy's
sha256 before every load, exactly as for local files. Content addressing makes uploads and
downloads idempotent: the same bytes always have the same name.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from predictd.errors import ArtifactError, ArtifactTampered
from predictd.settings import InferenceSettings
from predictd.vocabulary import sha256_of

log = logging.getLogger("predictd.registry")

FSSPEC_HINT = "pip install 'predictd[fsspec]'"


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and in-filesystem path for ``url``, imported only when used."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:
        raise ArtifactError(f"PREDICTD_ARTIFACT_URL needs fsspec: {FSSPEC_HINT}") from exc
    try:
        fs, path = url_to_fs(url)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
        raise ArtifactError(
            f"cannot open artifact location {url!r}: {exc}; install the fsspec backend for it"
        ) from exc
    return fs, str(path)


def _is_local(fs: Any) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "file" in protocols


class ArtifactStore:
    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        self.url = url.rstrip("/") if url else None

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> ArtifactStore:
        return cls(settings.artifact_dir, settings.artifact_url)

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def put(self, source: Path) -> tuple[str, str]:
        """Copy ``source`` into the store; returns (uri, sha256)."""
        if not source.is_file():
            raise ArtifactError(f"no artifact at {source}")
        sha = sha256_of(source)
        name = f"{sha}{source.suffix or '.bin'}"
        if self.url is not None:
            return self._upload(source, f"{self.url}/{sha[:2]}/{name}"), sha
        target = self.root / sha[:2] / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".partial")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        return target.resolve().as_uri(), sha

    def _upload(self, source: Path, url: str) -> str:
        """Upload under a temporary name, then move into place, so a reader never sees a
        partial artifact under its final name; skipped when those bytes are already there."""
        fs, path = _filesystem(url)
        try:
            if not (fs.exists(path) and fs.size(path) == source.stat().st_size):
                fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
                tmp = f"{path}.{uuid.uuid4().hex}.partial"
                fs.put_file(str(source), tmp)
                fs.mv(tmp, path)
        except Exception as exc:  # each fsspec backend raises its own network/auth errors
            raise ArtifactError(f"could not upload {source.name} to {url}: {exc!r}") from exc
        # Local targets are recorded as file:// URIs and verified in place, never cached.
        return Path(path).resolve().as_uri() if _is_local(fs) else url

    @staticmethod
    def local_path(uri: str) -> Path:
        """The path a ``file://`` URI names (``Path.as_uri`` percent-encodes spaces and the
        like, so the URI is decoded rather than stripped)."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ArtifactError(f"unsupported artifact location {uri!r}")
        return Path(url2pathname(parts.path))

    def verified_path(self, uri: str, sha256: str) -> Path:
        """The artifact's local path, after checking its content still matches the registry
        (a remote artifact is downloaded to the cache first)."""
        if not uri.startswith("file://") and "://" in uri:
            return self._fetch(uri, sha256)
        path = self.local_path(uri)
        if not path.is_file():
            raise ArtifactError(f"artifact missing: {path}")
        self._check(path, sha256, uri)
        return path

    @staticmethod
    def _check(path: Path, sha256: str, uri: str) -> None:
        actual = sha256_of(path)
        if actual != sha256:
            raise ArtifactTampered(
                f"artifact {uri} has sha256 {actual[:12]}…, registry expects {sha256[:12]}…; "
                "its bytes changed after registration: put the original file back there"
            )

    def _fetch(self, uri: str, sha256: str) -> Path:
        """The verified cached copy of a remote artifact; a cached copy that no longer
        matches is downloaded again once, and a download that doesn't match is refused."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ArtifactError(f"invalid sha256 {sha256!r} for {uri}")
        suffix = PurePosixPath(uri).suffix
        name = sha256 + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,16}", suffix) else ".bin")
        cached = self.cache_dir / sha256[:2] / name
        if cached.is_file():
            if sha256_of(cached) == sha256:
                return cached
            log.warning("cached artifact %s does not match its sha256; downloading again", cached)
            cached.unlink(missing_ok=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{name}.{uuid.uuid4().hex}.partial")
        fs, path = _filesystem(uri)
        try:
            fs.get_file(path, str(tmp))
        except FileNotFoundError as exc:
            tmp.unlink(missing_ok=True)
            raise ArtifactError(f"artifact missing: {uri}") from exc
        except Exception as exc:  # each fsspec backend raises its own network/auth errors
            tmp.unlink(missing_ok=True)
            raise ArtifactError(f"could not download {uri}: {exc!r}") from exc
        try:
            self._check(tmp, sha256, uri)
        except ArtifactError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, cached)  # only verified bytes ever land under the final name
        return cached
