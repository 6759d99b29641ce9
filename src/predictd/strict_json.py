"""JSON read so that it means one thing: ``json.loads`` keeps the last of a key given twice,
so a file could say one thing to a reviewer and another to predictd. Pass ``unique_keys`` as
``object_pairs_hook`` to refuse it instead."""

from __future__ import annotations

from typing import Any


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"key {key[:40]!r} appears twice")
        found[key] = value
    return found
