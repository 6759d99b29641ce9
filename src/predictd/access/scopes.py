"""What a key may do. ``admin`` holds every other scope."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

Scope = Literal["predict", "read", "operate", "approve", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# With PREDICTD_AUTH=off (a loopback demo) anyone holds these; nothing else.
ANONYMOUS: frozenset[Scope] = frozenset({"predict", "read"})


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    """'predict,read' (or a list) -> scopes; an unknown one raises ValueError naming it."""
    items = text.split(",") if isinstance(text, str) else list(text)
    found: set[Scope] = set()
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item not in SCOPES:
            raise ValueError(f"unknown scope {item!r}: use {', '.join(SCOPES)}")
        found.add(item)
    if not found:
        raise ValueError(f"give at least one scope: {', '.join(SCOPES)}")
    return frozenset(found)


def parse_known(items: Iterable[str]) -> frozenset[Scope]:
    """Stored scopes, ignoring any this version does not know (a newer one may add some)."""
    return frozenset(s for s in SCOPES if s in set(items))


def grants(held: Iterable[Scope], needed: Scope) -> bool:
    held = frozenset(held)
    return needed in held or "admin" in held
