"""Behind a proxy (a Kubernetes ingress), the client address predictd keeps and rate-limits by
is the one the proxy forwarded, but only when the proxy is one PREDICTD_FORWARDED_ALLOW_IPS
names: anyone else's X-Forwarded-For is ignored, or a client could choose its own address."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from predictd.settings import Settings
from tests.support.server import ServerPool, wait_for

FORWARDED = "203.0.113.7"  # TEST-NET-3: nobody's real address


def _client_ip_recorded(servers: ServerPool, tmp_path: Path, allow: str) -> str:
    url = f"sqlite:///{tmp_path / allow.replace('/', '_')}.db"
    server = servers.start(
        url, spool_dir=tmp_path / f"spool-{len(servers.started)}",
        env={"PREDICTD_FORWARDED_ALLOW_IPS": allow},
    )  # fmt: skip
    with server.client() as client:
        answer = client.post(
            "/predict",
            json={"text": "I love this product"},
            headers={"x-forwarded-for": f"{FORWARDED}, 127.0.0.1"},
        )
    assert answer.status_code == 200, answer.text
    prediction_id = answer.json()["prediction_id"].replace("-", "")

    def recorded() -> list[tuple[str]]:
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return db.execute(
                "SELECT client_ip FROM predictions WHERE replace(id, '-', '') = ?",
                (prediction_id,),
            ).fetchall()

    wait_for(lambda: bool(recorded()), timeout_s=30, what="the prediction's row")
    [(client_ip,)] = recorded()
    return client_ip


def test_a_trusted_proxy_forwards_the_client_address(servers: ServerPool, tmp_path: Path) -> None:
    assert _client_ip_recorded(servers, tmp_path, "127.0.0.0/8") == FORWARDED


def test_an_untrusted_peer_cannot_choose_its_address(servers: ServerPool, tmp_path: Path) -> None:
    assert _client_ip_recorded(servers, tmp_path, "10.0.0.0/8") == "127.0.0.1"


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "ingress-nginx", "10.0.0.1,nope"])
def test_a_proxy_list_entry_that_is_not_an_address_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match=r"forwarded_allow_ips[\s\S]*not an IP address"):
        Settings(_env_file=None, PREDICTD_FORWARDED_ALLOW_IPS=bad)
