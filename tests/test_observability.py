"""JSON log lines carry the request id and never uvicorn's colour codes."""

from __future__ import annotations

import logging

import orjson

from predictd.observability import JsonFormatter, TextFormatter, request_id_var


def test_json_lines_carry_request_id_and_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "predictd.x", "levelname": "INFO", "msg": "hello %s", "args": ("there",),
         "model": "m", "color_message": "\x1b[36mhello\x1b[0m"}
    )  # fmt: skip
    token = request_id_var.set("req-7")
    try:
        line = orjson.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello there"
    assert line["request_id"] == "req-7"
    assert line["model"] == "m"
    assert "color_message" not in line
    assert line["ts"].endswith("+00:00")


def test_text_lines_keep_the_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "predictd.x", "levelname": "ERROR", "msg": "refused", "model": "m", "version": 3}
    )
    line = TextFormatter("%(levelname)s %(message)s").format(record)
    assert line == "ERROR refused model=m version=3"
