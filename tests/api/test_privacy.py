"""Privacy: PREDICTD_STORE_INPUTS=hash keeps a keyed hash and no text, none keeps nothing; the
hash mode needs its key; credentials never reach a log line."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from predictd.db.engine import Database
from predictd.db.tables import predictions
from predictd.observability import JsonFormatter, TextFormatter, redact
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo, running_app, wait_shipped

SECRET_TEXT = "my card number is 4111 1111 1111 1111"


async def stored(settings: Settings) -> list[object]:
    db = Database(settings.database)
    try:
        async with db.engine.connect() as conn:
            return [row[0] for row in await conn.execute(select(predictions.c.input))]
    finally:
        await db.dispose()


@pytest.mark.parametrize("mode", ["hash", "none"])
async def test_inputs_kept_as_a_keyed_hash_or_not_at_all(
    tmp_path: Path, db_url: str, artifacts: Artifacts, mode: str
) -> None:
    settings = make_settings(tmp_path, db_url, store_inputs=mode, input_hash_key="k1",
                             admin_token="boot")  # fmt: skip
    await register_demo(settings, artifacts.sentiment)
    async with running_app(settings) as (app, client):
        for text in (SECRET_TEXT, SECRET_TEXT, "something else"):
            assert (await client.post("/predict", json={"text": text})).status_code == 200
        await wait_shipped(app)
        recent = await client.get("/analytics/recent", params={"include_input": "true"},
                                  headers={"authorization": "Bearer boot"})  # fmt: skip
        assert recent.status_code == 200
        assert "4111" not in recent.text
    inputs = await stored(settings)
    assert len(inputs) == 3
    assert "4111" not in repr(inputs)
    if mode == "none":
        assert inputs == [None, None, None]
    else:
        digests = [i["hmac_sha256"] for i in inputs]  # type: ignore[index]
        assert len(set(digests)) == 2  # equal inputs still match
        other = make_settings(tmp_path / "o", f"sqlite:///{tmp_path / 'o.db'}",
                              store_inputs="hash", input_hash_key="k2")  # fmt: skip
        await register_demo(other, artifacts.sentiment)
        async with running_app(other) as (app, client):
            await client.post("/predict", json={"text": SECRET_TEXT})
            await wait_shipped(app)
        (elsewhere,) = await stored(other)
        assert elsewhere["hmac_sha256"] not in digests  # type: ignore[index]  # keyed


def test_hash_mode_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="PREDICTD_INPUT_HASH_KEY"):
        Settings(store_inputs="hash")


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter("%(message)s")])
def test_credentials_never_reach_a_log_line(formatter: logging.Formatter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("predictd.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "request with Authorization: Bearer pdk_abcdefghijklmnop to postgresql://app:hunter2@db:5432/p",
            extra={
                "headers": {"authorization": "Bearer sekret-token"},
                "dsn": "redis://:pw1@r:6379",
            },
        )
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    for secret in ("pdk_abcdefghijklmnop", "hunter2", "sekret-token", "pw1"):
        assert secret not in line, line
    assert "[redacted]" in line
    assert redact("a key pdk_0123456789abcdef alone") == "a key pdk_[redacted] alone"
    assert redact("tokens=12 model=sentiment") == "tokens=12 model=sentiment"
    assert redact("https://ghp_0123456789abcdefghij@github.com/x") == (
        "https://[redacted]@github.com/x"
    )
    assert redact("postgresql://postgres@db:5432/x") == "postgresql://postgres@db:5432/x"
    sas = "https://a.blob.core.windows.net/c/m?sv=2024-01-01&sig=abc%2Bdef&se=2026"
    assert redact(sas) == "https://a.blob.core.windows.net/c/m?sv=2024-01-01&sig=[redacted]&se=2026"
    assert "SECRETSIG" not in redact("s3://b/k?X-Amz-Signature=SECRETSIG&X-Amz-Date=1")
