"""A small local record of the last production version this host loaded, so a server can
start serving while the database is down."""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import orjson

from predictd.registry.models import ModelVersion

log = logging.getLogger("predictd.registry")


class LoadManifest:
    def __init__(self, artifact_dir: Path) -> None:
        self.path = artifact_dir / "manifest.json"

    def _entries(self) -> dict[str, Any]:
        try:
            entries: dict[str, Any] = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError:
            log.warning("ignoring an unreadable load manifest", extra={"path": str(self.path)})
            return {}
        return entries

    def read(self, name: str | None) -> ModelVersion | None:
        entries = self._entries()
        entry = entries.get(name) if name else entries.get(entries.get("_default", ""))
        return ModelVersion.from_json(entry) if entry else None

    def read_all(self) -> tuple[list[ModelVersion], str | None]:
        """Every model this host last served, and which one was the default."""
        entries = self._entries()
        default = entries.pop("_default", None)
        return [ModelVersion.from_json(e) for e in entries.values()], default

    def write(self, version: ModelVersion, *, default: bool) -> None:
        """Record ``version``; best effort (the manifest is only a start-up fallback), and
        safe for several servers sharing the directory: the read-update-write holds a file
        lock, and each writer renames its own temporary file into place."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with (self.path.parent / "manifest.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                entries = self._entries()
                entries[version.name] = version.to_json()
                if default:
                    entries["_default"] = version.name
                tmp = self.path.with_name(f".manifest.{os.getpid()}.{uuid.uuid4().hex}.tmp")
                tmp.write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2))
                os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not update the load manifest", extra={"error": repr(exc)})
