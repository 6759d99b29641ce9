"""Schemathesis against a real `predictd serve`, from its own /openapi.json: every operation,
a bounded number of generated requests each, with an admin credential (no 5xx, answers match
the declared schemas, status codes and content types) and without one (no 5xx, and no secured
operation answers anything but 401)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.result import Ok

from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo
from tests.support.server import ServerPool, ServerProcess

ADMIN = "fuzz-admin-token"
PUBLIC = {"/health", "/ready", "/v2/health/live", "/v2/health/ready", "/v2"}
EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, artifacts: Artifacts
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{root / 'predictd.db'}"
    asyncio.run(register_demo(make_settings(root, url), artifacts.sentiment))
    pool = ServerPool(root / "servers", artifacts.sentiment.path)
    pool.root.mkdir()
    try:
        yield pool.start(
            url,
            spool_dir=root / "spool",
            model=None,
            # No refusal limit: every unauthenticated request must reach the 401 itself.
            env={"PREDICTD_AUTH": "on", "PREDICTD_ADMIN_TOKEN": ADMIN,
                 "PREDICTD_ARTIFACT_DIR": str(root / "artifacts"),
                 "PREDICTD_REFUSAL_RATE_PER_S": "0"},
        )  # fmt: skip
    finally:
        pool.close()


def operations(server: ServerProcess) -> list[Any]:
    api = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    found = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), f"the server's own schema is invalid: {result.err()}"
        found.append(result.ok())
    assert len(found) > 25, [op.label for op in found]
    return found


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


# What the schema can promise. Not "positive data acceptance": a schema-valid body can still
# be wrong for the model being served (its feature names, a blank text), and that is a 422.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def test_with_credentials(fuzz_server: ServerProcess) -> None:
    headers = {"authorization": f"Bearer {ADMIN}"}
    for operation in operations(fuzz_server):

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.call_and_validate(base_url=fuzz_server.base_url, headers=headers, checks=CHECKS)

        check()


def test_without_credentials(fuzz_server: ServerProcess) -> None:
    for operation in operations(fuzz_server):

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=fuzz_server.base_url)
            label = case.operation.label
            assert response.status_code < 500, (label, response.text)
            if case.operation.path not in PUBLIC:
                assert response.status_code == 401, (label, response.status_code)

        check()
