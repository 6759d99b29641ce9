"""The README is the manual: its configuration table must match the settings."""

from __future__ import annotations

from pathlib import Path

from predictd.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_configuration_table_matches_settings() -> None:
    text = README.read_text()
    start = text.index("<!-- settings:start -->\n") + len("<!-- settings:start -->\n")
    end = text.index("<!-- settings:end -->")
    assert text[start:end].strip() == markdown_table(), (
        "regenerate the table with `python -m predictd.settings`"
    )


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text()[:600]
    assert "make demo" in head
    assert "make test" in head
