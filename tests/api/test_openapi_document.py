"""/openapi.json changes only on purpose: the document is compared with the reviewed copy
beside this test. After an intended API change, regenerate the copy with
``PREDICTD_UPDATE_OPENAPI=1 pytest tests/api/test_openapi_document.py`` and review its diff."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from predictd.app import create_app
from tests.support.app import make_settings

REVIEWED = Path(__file__).with_name("openapi.json")


def test_the_openapi_document_is_the_reviewed_one(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}"))
    document = orjson.dumps(app.openapi(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    if os.environ.get("PREDICTD_UPDATE_OPENAPI") == "1":
        REVIEWED.write_bytes(document)
    assert orjson.loads(document) == orjson.loads(REVIEWED.read_bytes()), (
        "the API description changed: if that is intended, regenerate tests/api/openapi.json "
        "(see this test's docstring) and review the diff"
    )
