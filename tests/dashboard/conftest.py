"""The browser the dashboard tests drive."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import services


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium (or PREDICTD_CHROMIUM), driven by Playwright."""
    path = os.environ.get("PREDICTD_CHROMIUM") or shutil.which("chromium")
    if path is None:
        services.unavailable("chromium (apt-get install chromium)")
    assert path is not None
    return path
