"""PREDICTD_AUTH=off serves loopback only, however the app is run: the app factory refuses a
non-loopback PREDICTD_HOST, and requests that reach a non-loopback address of a server bound
elsewhere (`uvicorn --host 0.0.0.0`) are refused, unless PREDICTD_INSECURE_NO_AUTH."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from predictd.access.exposure import ExposedWithoutAuth
from predictd.app import create_app
from predictd.settings import Settings
from tests.support import services
from tests.support.server import free_port, wait_for

pytestmark = pytest.mark.slow


def outward_address() -> str:
    """This host's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address: str = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        # counted in the run's skip summary; a failure under PREDICTD_REQUIRE_SERVICES=1
        services.unavailable("a non-loopback IPv4 address on this host")
    return address


@contextlib.contextmanager
def uvicorn_factory(
    tmp_path: Path, port: int, env: Mapping[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """`uvicorn --factory predictd.app:create_app_from_env --host 0.0.0.0`, not `serve`."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREDICTD_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    environment.update({
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "PREDICTD_SPOOL_DIR": str(tmp_path / "spool"),
        "PREDICTD_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "PREDICTD_AUTH": "off",
        **env,
    })  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "--factory", "predictd.app:create_app_from_env",
               "--host", "0.0.0.0", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(command, env=environment, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    return False


def summary_status(address: str) -> int:
    return httpx.get(f"http://{address}/analytics/summary", timeout=10).status_code


def test_the_factory_refuses_auth_off_on_a_public_host() -> None:
    with pytest.raises(
        ExposedWithoutAuth, match=r"refusing to serve 0\.0\.0\.0 with PREDICTD_AUTH"
    ):
        create_app(Settings(auth="off", host="0.0.0.0"))
    create_app(Settings(auth="off", host="0.0.0.0", insecure_no_auth=True))
    create_app(Settings(auth="on", host="0.0.0.0"))
    create_app(Settings(auth="off", host="::1"))


def test_plain_uvicorn_with_a_public_predictd_host_does_not_start(tmp_path: Path) -> None:
    with uvicorn_factory(tmp_path, free_port(), {"PREDICTD_HOST": "0.0.0.0"}) as proc:
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert b"refusing to serve 0.0.0.0 with PREDICTD_AUTH=off" in output, output.decode()


def test_plain_uvicorn_on_every_address_answers_loopback_only(tmp_path: Path) -> None:
    outward = outward_address()
    port = free_port()
    with uvicorn_factory(tmp_path, port, {}) as proc:
        wait_for(lambda: listening(port, proc), 60, "uvicorn to listen")
        # /health answers before start-up has migrated the database: wait for analytics
        wait_for(lambda: summary_status(f"127.0.0.1:{port}") == 200, 60, "loopback analytics")
        remote = httpx.get(f"http://{outward}:{port}/analytics/summary", timeout=10)
        assert remote.status_code == 403, remote.text
        assert remote.json()["error"]["code"] == "loopback_only"
        assert httpx.get(f"http://{outward}:{port}/ready", timeout=10).status_code == 403
    port = free_port()
    with uvicorn_factory(tmp_path, port, {"PREDICTD_INSECURE_NO_AUTH": "true"}) as proc:
        wait_for(lambda: listening(port, proc), 60, "uvicorn to listen")
        wait_for(lambda: summary_status(f"{outward}:{port}") == 200, 60, "remote analytics")
