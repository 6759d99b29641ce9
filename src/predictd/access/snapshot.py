"""The local copy of the key table a server falls back on when it starts without a database.

It holds what checking a key needs — each key's hash, name, scopes and whether it is revoked —
never a key. It is rewritten whenever the server reads the key table and finds it changed:
a temporary file in the same directory, fsync'ed, renamed over the old one (mode 0600), so a
crash leaves the old copy or the new one, never half of one.

The file is read as untrusted input: one that is missing, unreadable, too large, writable by
others, not valid JSON or not in the expected shape is ignored with a warning (the server then
refuses keys until the database answers, as it would without a snapshot), never a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("predictd.access")

FILE_NAME = "keys.json"
FORMAT = 1
MAX_BYTES = 16 << 20  # far beyond any real key table; a larger file is not ours
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One row of the key table, as far as checking a key needs it."""

    key_id: int
    name: str
    digest: str
    scopes: tuple[str, ...]
    revoked: bool


def path_beside(spool_dir: Path) -> Path:
    return spool_dir / FILE_NAME


def encode(entries: list[KeyEntry]) -> bytes:
    """The file's content: stable for the same table, so an unchanged table is not rewritten."""
    keys = [
        {"id": e.key_id, "name": e.name, "hash": e.digest, "scopes": list(e.scopes),
         "revoked": e.revoked}
        for e in sorted(entries, key=lambda e: e.key_id)
    ]  # fmt: skip
    return json.dumps({"format": FORMAT, "keys": keys}, sort_keys=True).encode()


def write(path: Path, content: bytes) -> None:
    """Replace the snapshot atomically (blocking: call it in a thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".keys.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp made it 0600
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def read(path: Path) -> list[KeyEntry] | None:
    """The snapshot's entries; None (with a warning unless there is no file) when unusable."""
    try:
        with path.open("rb") as found:
            info = os.fstat(found.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
                return _ignored(path, "not a regular file of a sane size")
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or info.st_uid != os.geteuid():
                return _ignored(path, "writable by others, or owned by another user")
            content = found.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _ignored(path, repr(exc))
    try:
        return _parse(json.loads(content))
    except (ValueError, TypeError, KeyError) as exc:
        return _ignored(path, f"not a key snapshot ({exc})")


def _parse(data: Any) -> list[KeyEntry]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"format is not {FORMAT}")
    keys = data["keys"]
    if not isinstance(keys, list):
        raise ValueError("keys is not a list")
    return [_entry(item) for item in keys]


def _entry(item: Any) -> KeyEntry:
    if not isinstance(item, dict):
        raise ValueError("an entry is not an object")
    key_id, name, digest = item["id"], item["name"], item["hash"]
    scopes, revoked = item["scopes"], item["revoked"]
    if type(key_id) is not int or not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ValueError("an entry's id or name is malformed")
    if not isinstance(digest, str) or _HASH.fullmatch(digest) is None:
        raise ValueError("an entry's hash is not 64 hex digits")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("an entry's scopes are not a list of names")
    if type(revoked) is not bool:
        raise ValueError("an entry's revoked flag is not a boolean")
    return KeyEntry(key_id, name, digest, tuple(scopes), revoked)


def _ignored(path: Path, why: str) -> list[KeyEntry] | None:
    """None, after saying why the snapshot is not used."""
    log.warning("API key snapshot ignored", extra={"path": str(path), "why": why})
    return None
