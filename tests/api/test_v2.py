"""The Open Inference Protocol (V2 REST) through HTTP: JSON and binary tensors, compressed
bodies, errors that name the tensor at fault, recording, versions and the repository API."""

from __future__ import annotations

import gzip
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.conftest import Artifacts
from tests.support.app import id_counts, make_settings, register_demo, running_app, wait_shipped

TEXTS = ["I love this product", "This is terrible, I want a refund", "The box contains two cables"]
LABELS = ["positive", "negative", "neutral"]
ADMIN = {"authorization": "Bearer v2-admin"}


def bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def binary_request(header: dict[str, Any], data: bytes) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(header)
    return head + data, {"inference-header-content-length": str(len(head))}


def split_response(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    length = response.headers.get("inference-header-content-length")
    if length is None:
        return dict(response.json()), b""
    return dict(orjson.loads(response.content[: int(length)])), response.content[int(length) :]


def error(response: httpx.Response) -> dict[str, Any]:
    """The protocol's error shape: the message under "error", predictd's details beside it."""
    body = dict(response.json())
    assert isinstance(body["error"], str), body
    assert body["error"], body
    return body


async def test_text_model_json_and_binary_are_recorded_once(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    async with running_app(settings) as (app, client):
        assert (await client.get("/v2/health/live")).json() == {"live": True}
        assert (await client.get("/v2/health/ready")).json() == {"ready": True}
        server = (await client.get("/v2")).json()
        assert server["name"] == "predictd"
        assert "binary_tensor_data" in server["extensions"]

        meta = (await client.get("/v2/models/sentiment")).json()
        assert meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert [o["name"] for o in meta["outputs"]] == [
            "label",
            "confidence",
            "probabilities",
            "prediction_id",
        ]
        assert meta["parameters"]["classes"] == ["negative", "neutral", "positive"]
        assert (await client.get("/v2/models/sentiment/ready")).json()["ready"] is True

        body = {
            "id": "req-42",
            "inputs": [{"name": "text", "shape": [3, 1], "datatype": "BYTES", "data": TEXTS}],
        }
        answer = await client.post(
            "/v2/models/sentiment/infer", json=body, headers={"x-request-id": "v2-json"}
        )
        assert answer.status_code == 200, answer.text
        out = answer.json()
        assert (out["model_name"], out["model_version"], out["id"]) == ("sentiment", "1", "req-42")
        outputs = {o["name"]: o for o in out["outputs"]}
        assert outputs["label"] == {
            "name": "label",
            "datatype": "BYTES",
            "shape": [3],
            "data": LABELS,
        }
        probabilities = np.array(outputs["probabilities"]["data"]).reshape(3, 3)
        assert outputs["probabilities"]["shape"] == [3, 3]
        assert np.allclose(probabilities.sum(axis=1), 1.0)
        assert outputs["confidence"]["data"] == pytest.approx(probabilities.max(axis=1).tolist())
        json_ids = outputs["prediction_id"]["data"]

        # The same request as binary tensors, asking for binary outputs.
        header = {
            "inputs": [
                {
                    "name": "text",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(bytes_tensor(TEXTS))},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
        content, headers = binary_request(header, bytes_tensor(TEXTS))
        binary = await client.post("/v2/models/sentiment/infer", content=content, headers=headers)
        assert binary.status_code == 200, binary.text
        assert binary.headers["content-type"] == "application/octet-stream"
        head, data = split_response(binary)
        offset = 0
        chunks: dict[str, bytes] = {}
        for output in head["outputs"]:
            assert "data" not in output
            size = output["parameters"]["binary_data_size"]
            chunks[output["name"]] = data[offset : offset + size]
            offset += size
        assert offset == len(data)
        assert np.allclose(
            np.frombuffer(chunks["probabilities"], dtype="<f8").reshape(3, 3), probabilities
        )
        assert chunks["label"] == bytes_tensor(LABELS)
        binary_ids = [
            chunks["prediction_id"][i + 4 : i + 40].decode() for i in range(0, 3 * 40, 40)
        ]

        # One item goes through micro-batching like /predict; the answer is the same.
        single = {
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXTS[1]]}]
        }
        one = (await client.post("/v2/models/sentiment/infer", json=single)).json()
        assert one["outputs"][0]["data"] == ["negative"]
        await wait_shipped(app)
        recent = (await client.get("/analytics/recent", params={"limit": 20})).json()
    ids = json_ids + binary_ids + one["outputs"][3]["data"]
    assert await id_counts(db_url, ids) == dict.fromkeys(ids, 1)
    by_id = {item["id"]: item for item in recent["items"]}
    assert [by_id[i]["output"] for i in json_ids] == LABELS
    assert {by_id[i]["request_id"] for i in json_ids} == {"v2-json"}
    assert len({by_id[i]["batch_id"] for i in json_ids}) == 1


async def test_tabular_model_takes_a_matrix_or_one_input_per_feature(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url)
    await register_demo(settings, artifacts.tabular)
    names = list(artifacts.tabular.feature_names or ())
    validation = artifacts.tabular.validation[:4]
    rows = np.array(
        [[(item.features or {})[n] for n in names] for item, _label in validation],
        dtype=np.float32,
    )
    async with running_app(settings) as (_, client):
        meta = (await client.get("/v2/models/breast_cancer/versions/1")).json()
        assert meta["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 30]}]
        assert meta["parameters"]["feature_names"] == names
        matrix = {
            "inputs": [
                {"name": "features", "shape": [4, 30], "datatype": "FP32", "data": rows.tolist()}
            ],
            "outputs": [{"name": "label"}, {"name": "probabilities"}],
        }
        by_matrix = await client.post("/v2/models/breast_cancer/infer", json=matrix)
        assert by_matrix.status_code == 200, by_matrix.text
        outputs = by_matrix.json()["outputs"]
        assert [o["name"] for o in outputs] == ["label", "probabilities"]
        assert outputs[0]["datatype"] == "INT64"
        expected = [
            (
                await client.post(
                    "/predict", json={"features": dict(zip(names, r.tolist(), strict=True))}
                )
            ).json()["prediction"]
            for r in rows.astype(np.float64)
        ]
        assert outputs[0]["data"] == expected

        by_name = {
            "inputs": [
                {"name": n, "shape": [4, 1], "datatype": "FP64", "data": rows[:, i].tolist()}
                for i, n in enumerate(names)
            ]
        }
        named = await client.post("/v2/models/breast_cancer/infer", json=by_name)
        assert named.status_code == 200, named.text
        assert named.json()["outputs"][0]["data"] == expected

        # Binary FP32 matrix, and a per-output binary flag.
        raw = rows.tobytes()
        header = {
            "inputs": [
                {
                    "name": "features",
                    "shape": [4, 30],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [
                {"name": "label", "parameters": {"binary_data": True}},
                {"name": "confidence"},
            ],
        }
        content, headers = binary_request(header, raw)
        binary = await client.post(
            "/v2/models/breast_cancer/infer", content=content, headers=headers
        )
        head, data = split_response(binary)
        assert np.frombuffer(data, dtype="<i8").tolist() == expected
        assert head["outputs"][1]["data"]
        assert "parameters" not in head["outputs"][1]

        # A non-finite feature (binary data can carry one) is refused naming row and column.
        bad = rows.copy()
        bad[2, 5] = np.nan
        header["outputs"] = None
        content, headers = binary_request(header, bad.tobytes())
        refused = await client.post(
            "/v2/models/breast_cancer/infer", content=content, headers=headers
        )
        assert refused.status_code == 422
        assert error(refused)["field"] == "inputs[0].data[2][5]"
        missing = {"inputs": by_name["inputs"][1:]}
        refused = await client.post("/v2/models/breast_cancer/infer", json=missing)
        assert (refused.status_code, error(refused)["field"]) == (422, "inputs")
        assert names[0] in error(refused)["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "STRING", "data": ["a"]}]},
         "inputs[0].datatype"),
        ({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]},
         "inputs[0].data"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
         "inputs[0].datatype"),
        ({"inputs": [{"name": "text", "shape": [2, 2], "datatype": "BYTES",
                      "data": ["a", "b", "c", "d"]}]}, "inputs[0].shape"),
        ({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ok", ""]}]},
         "inputs[0].data[1]"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [7]}]},
         "inputs[0].data[0]"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
          "outputs": [{"name": "logits"}]}, "outputs[0].name"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
          "parameters": {"binary_data_output": "yes"}}, "parameters.binary_data_output"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                      "parameters": {"binary_data_size": 64}}]},
         "inputs[0].parameters.binary_data_size"),
        ({"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]},
         "inputs[0].shape"),
    ],
)  # fmt: skip
async def test_bad_tensors_are_422_naming_the_field_and_record_nothing(
    tmp_path: Path, artifacts: Artifacts, body: dict[str, Any], field: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    async with running_app(settings) as (app, client):
        response = await client.post(
            "/v2/models/sentiment/infer", json=body, headers={"x-request-id": "bad-1"}
        )
        assert response.status_code == 422, response.text
        found = error(response)
        assert (found["field"], found["code"], found["request_id"]) == (
            field,
            "invalid_input",
            "bad-1",
        )
        await wait_shipped(app)
    assert await id_counts(db_url) == {}


async def test_compressed_bodies_and_protocol_errors(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(
        tmp_path, db_url, model_path=artifacts.sentiment.path, max_body_bytes=64 * 1024
    )
    body = orjson.dumps(
        {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": TEXTS}]}
    )
    async with running_app(settings) as (_, client):
        url = "/v2/models/sentiment/infer"
        for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
            answer = await client.post(url, content=packed, headers={"content-encoding": encoding})
            assert answer.status_code == 200, (encoding, answer.text)
            assert answer.json()["outputs"][0]["data"] == LABELS
        # Raw deflate (no zlib wrapper), which some clients send.
        raw = zlib.compressobj(wbits=-15)
        packed = raw.compress(body) + raw.flush()
        answer = await client.post(url, content=packed, headers={"content-encoding": "deflate"})
        assert answer.status_code == 200, answer.text

        # The response compressed when asked; httpx inflates it.
        asked = await client.post(url, content=body, headers={"accept-encoding": "gzip"})
        assert asked.headers["content-encoding"] == "gzip"
        assert asked.json()["outputs"][0]["data"] == LABELS

        bomb = gzip.compress(b" " * (10 * 1024 * 1024))
        too_big = await client.post(url, content=bomb, headers={"content-encoding": "gzip"})
        assert too_big.status_code == 413
        assert error(too_big)["code"] == "payload_too_large"
        unknown = await client.post(url, content=body, headers={"content-encoding": "br"})
        assert (unknown.status_code, error(unknown)["field"]) == (415, "content-encoding")
        torn = await client.post(
            url, content=gzip.compress(body)[:-10], headers={"content-encoding": "gzip"}
        )
        assert torn.status_code == 415

        assert (await client.post("/v2/models/nope/infer", content=body)).status_code == 404
        assert error(await client.get("/v2/models/nope"))["code"] == "model_not_found"
        wrong_version = await client.get("/v2/models/sentiment/versions/9")
        assert wrong_version.status_code == 404
        assert "serving: 1" in error(wrong_version)["error"]
        not_json = await client.post(url, content=b"{nope")
        assert (not_json.status_code, error(not_json)["field"]) == (422, "body")
        header_too_long = await client.post(
            url, content=body, headers={"inference-header-content-length": str(len(body) + 1)}
        )
        assert error(header_too_long)["field"] == "inference-header-content-length"
        # The middleware inflates bodies for every route, not only V2.
        packed = gzip.compress(orjson.dumps({"text": TEXTS[0]}))
        plain = await client.post(
            "/predict",
            content=packed,
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )
        assert plain.status_code == 200, plain.text
        assert plain.json()["prediction"] == "positive"
        # Elsewhere the API keeps predictd's own error shape.
        classic = await client.post(
            "/predict", content=b"{}", headers={"content-type": "text/plain"}
        )
        assert classic.json()["error"]["code"] == "unsupported_media_type"


async def test_versions_and_the_repository_api(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, admin_token="v2-admin", canary_percent=50)
    await register_demo(settings, artifacts.sentiment)
    await register_demo(settings, artifacts.tabular)
    one = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXTS[0]]}]}
    async with running_app(settings) as (_, client):
        index = (await client.get("/v2/repository/index")).json()
        assert {(m["name"], m["state"]) for m in index} == {
            ("breast_cancer", "READY"),
            ("sentiment", "READY"),
        }
        pinned = await client.post("/v2/models/sentiment/versions/1/infer", json=one)
        assert pinned.json()["model_version"] == "1"

        assert (await client.post("/v2/repository/models/sentiment/unload")).status_code == 401
        unloaded = await client.post("/v2/repository/models/sentiment/unload", headers=ADMIN)
        assert unloaded.json() == {
            "name": "sentiment",
            "version": None,
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        }
        gone = await client.post("/v2/models/sentiment/infer", json=one)
        assert gone.status_code == 404
        not_ready = await client.get("/v2/models/sentiment/ready")
        assert not_ready.status_code == 400
        assert not_ready.json()["ready"] is False
        index = (await client.post("/v2/repository/index", json={"ready": False})).json()
        assert {
            "name": "sentiment",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        } in index
        ready_only = (await client.post("/v2/repository/index", json={"ready": True})).json()
        assert [m["name"] for m in ready_only] == ["breast_cancer"]
        # The registry watcher does not bring an unloaded model back by itself.
        await client.post("/models/reload", headers=ADMIN)
        assert (await client.post("/v2/models/sentiment/infer", json=one)).status_code == 404

        loaded = await client.post("/v2/repository/models/sentiment/load", headers=ADMIN)
        assert loaded.json()["state"] == "READY"
        back = await client.post("/v2/models/sentiment/infer", json=one)
        assert back.status_code == 200
        assert back.json()["outputs"][0]["data"] == ["positive"]
        missing = await client.post("/v2/repository/models/nope/load", headers=ADMIN)
        assert missing.status_code == 404
        assert error(missing)["code"] == "model_not_found"


async def test_a_candidate_version_can_be_asked_for_by_number(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    from predictd.db.engine import Database
    from predictd.registry.service import ModelRegistry

    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, admin_token="v2-admin", canary_percent=0.01)
    await register_demo(settings, artifacts.sentiment)
    db = Database(settings.database)
    try:
        registry = ModelRegistry(settings.inference, db)
        alt = artifacts.sentiment_alt
        candidate = registry.inspect(alt.path, alt.name, metrics=alt.metrics)
        await registry.register(candidate, stage="staging", reuse=False)
    finally:
        await db.dispose()
    one = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXTS[0]]}]}
    async with running_app(settings) as (app, client):
        meta = (await client.get("/v2/models/sentiment")).json()
        assert meta["versions"] == ["1", "2"]
        answer = await client.post("/v2/models/sentiment/versions/2/infer", json=one)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "2"
        pid = answer.json()["outputs"][3]["data"][0]
        assert (await client.get("/v2/models/sentiment/versions/2/ready")).json()["ready"]
        await wait_shipped(app)
        recent = (await client.get("/analytics/recent", params={"limit": 5})).json()
    row = next(i for i in recent["items"] if i["id"] == pid)
    assert (row["model_version"], row["variant"]) == (2, "canary")
    assert uuid.UUID(pid).version == 7
