"""How a predicted label and a true one are compared."""

from __future__ import annotations

from typing import Any


def label_key(value: Any) -> str:
    """Labels compare by text, so a client's "1" matches a model's 1 (JSON bools as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
