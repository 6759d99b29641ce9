"""The tree drawn in errors.py's docstring is the class tree: every PredictdError subclass is
drawn under its parent with its status and code, and nothing drawn is missing."""

from __future__ import annotations

import importlib
import pkgutil
import re

import predictd
from predictd import errors
from predictd.errors import HttpError, PredictdError

LINE = re.compile(r"^(?P<indent>[│├└─ ]*)(?P<name>[A-Z]\w+) \((?P<status>\d+|any) (?P<code>\w+)\)")


def _drawn() -> dict[str, tuple[str | None, str, str]]:
    """name -> (parent, status, code) as the docstring draws them."""
    assert errors.__doc__ is not None
    drawn: dict[str, tuple[str | None, str, str]] = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        found = LINE.match(line)
        if found is None:
            continue
        depth = len(found["indent"]) // 4
        del stack[depth:]
        parent = stack[-1][1] if stack else None
        assert found["name"] not in drawn, f"{found['name']} is drawn twice"
        drawn[found["name"]] = (parent, found["status"], found["code"])
        stack.append((depth, found["name"]))
    return drawn


def _classes() -> dict[str, tuple[str | None, str, str]]:
    for module in pkgutil.walk_packages(predictd.__path__, "predictd."):
        # Subclasses may live beside what raises them; __main__ runs the CLI and the
        # migrations run Alembic when imported.
        if not module.name.endswith("__main__") and ".migrations" not in module.name:
            importlib.import_module(module.name)
    found: dict[str, tuple[str | None, str, str]] = {}
    pending: list[type[PredictdError]] = [PredictdError]
    while pending:
        cls = pending.pop()
        parent = None if cls is PredictdError else cls.__bases__[0].__name__
        status = "any" if cls is HttpError else str(cls.status)
        found[cls.__name__] = (parent, status, cls.code)
        pending += cls.__subclasses__()
    return found


def test_the_docstring_draws_the_error_classes() -> None:
    drawn, classes = _drawn(), _classes()
    assert drawn == classes


def test_a_class_missing_from_the_drawing_is_noticed() -> None:
    class Undrawn(errors.NotFound):  # defined here only to prove the test can fail
        code = "undrawn"

    try:
        assert "Undrawn" in _classes()
        assert "Undrawn" not in _drawn()
    finally:
        del Undrawn
