"""libpq's `sslmode`/`sslrootcert`/`sslcert`/`sslkey` in DATABASE_URL, the form managed
PostgreSQL services hand out, against a cluster of the test's own that only accepts TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from predictd.cli import app
from predictd.db.engine import Database
from predictd.db.tls import split_tls
from predictd.errors import PredictdError
from predictd.registry.events import RegistryListener
from predictd.settings import Settings
from tests.support import pgcluster, services
from tests.support.pgcluster import OwnCluster, make_certificates

URL = "postgresql://u@db.example:5432/p"


# -- the translation ------------------------------------------------------------------------


def test_a_url_without_tls_parameters_is_left_alone() -> None:
    url = make_url(f"{URL}?application_name=x")
    assert split_tls(url) == (url, None)


@pytest.mark.parametrize(("mode", "expected"), [("disable", False), ("allow", "allow"),
                                                ("prefer", "prefer")])  # fmt: skip
def test_modes_without_verification(mode: str, expected: object) -> None:
    url, tls = split_tls(make_url(f"{URL}?sslmode={mode}&application_name=x"))
    assert tls == expected
    assert dict(url.query) == {"application_name": "x"}  # asyncpg never sees `sslmode`


def test_require_encrypts_without_verifying_unless_given_a_ca(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    _, tls = split_tls(make_url(f"{URL}?sslmode=require"))
    assert isinstance(tls, ssl.SSLContext)
    assert (tls.verify_mode, tls.check_hostname) == (ssl.CERT_NONE, False)
    # libpq: require with a root certificate verifies the chain, like verify-ca.
    _, tls = split_tls(make_url(f"{URL}?sslmode=require&sslrootcert={tmp_path / 'ca.crt'}"))
    assert isinstance(tls, ssl.SSLContext)
    assert (tls.verify_mode, tls.check_hostname) == (ssl.CERT_REQUIRED, False)


def test_verify_modes(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    ca = tmp_path / "ca.crt"
    for mode, hostname in (("verify-ca", False), ("verify-full", True)):
        _, tls = split_tls(make_url(f"{URL}?sslmode={mode}&sslrootcert={ca}"))
        assert isinstance(tls, ssl.SSLContext)
        assert (tls.verify_mode, tls.check_hostname) == (ssl.CERT_REQUIRED, hostname)
        assert tls.cert_store_stats()["x509_ca"] == 1
    _, tls = split_tls(make_url(f"{URL}?sslmode=verify-full&sslrootcert=system"))
    assert isinstance(tls, ssl.SSLContext)
    assert tls.check_hostname


def test_bad_tls_parameters_are_configuration_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    with pytest.raises(PredictdError, match=r"sslrootcert=<file>.*root\.crt does not exist"):
        split_tls(make_url(f"{URL}?sslmode=verify-full"))
    with pytest.raises(PredictdError, match=r"cannot use TLS file /nonexistent/ca\.crt"):
        split_tls(make_url(f"{URL}?sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt"))
    with pytest.raises(PredictdError, match="sslkey needs sslcert"):
        split_tls(make_url(f"{URL}?sslmode=require&sslkey=/k"))
    with pytest.raises(PredictdError, match="sslmode must be one of"):
        split_tls(make_url(f"{URL}?sslmode=always"))


# -- against a PostgreSQL that only accepts TLS -----------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[OwnCluster]:
    why = pgcluster.available()
    if why is not None:
        services.unavailable(f"a PostgreSQL cluster of the tests' own ({why})")
    cluster = OwnCluster(tls=True)
    try:
        cluster.start()
        asyncio.run(cluster.fetch("postgres", "CREATE DATABASE tls"))
        yield cluster
    finally:
        cluster.destroy()


def url_for(cluster: OwnCluster, host: str, query: str) -> str:
    return f"postgresql://postgres@{host}:{cluster.port}/tls?{query}"


def verified_url(cluster: OwnCluster) -> str:
    return url_for(cluster, "localhost", f"sslmode=verify-full&sslrootcert={cluster.ca_file}")


async def connection_is_tls(url: str) -> bool:
    db = Database(Settings(database_url=url, db_connect_timeout_s=5))
    try:
        async with db.engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            return bool(found)
    finally:
        await db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("host", "query"),
    [
        ("127.0.0.1", "sslmode=require"),
        ("127.0.0.1", "sslmode=prefer"),
        ("127.0.0.1", "sslmode=verify-ca&sslrootcert={ca}"),
        ("localhost", "sslmode=verify-full&sslrootcert={ca}"),
    ],
)
def test_connects_over_tls(tls_cluster: OwnCluster, host: str, query: str) -> None:
    url = url_for(tls_cluster, host, query.format(ca=tls_cluster.ca_file))
    assert asyncio.run(connection_is_tls(url))


@pytest.mark.postgres
def test_verification_refuses_the_wrong_server(tls_cluster: OwnCluster, tmp_path: Path) -> None:
    # The certificate names localhost, not 127.0.0.1: verify-full refuses, as libpq would.
    wrong_host = url_for(tls_cluster, "127.0.0.1", f"sslmode=verify-full&sslrootcert="
                         f"{tls_cluster.ca_file}")  # fmt: skip
    with pytest.raises((ssl.SSLCertVerificationError, DBAPIError), match="certificate"):
        asyncio.run(connection_is_tls(wrong_host))
    make_certificates(tmp_path)  # another CA, which did not sign the server's certificate
    wrong_ca = url_for(tls_cluster, "localhost", f"sslmode=verify-ca&sslrootcert={tmp_path}/ca.crt")
    with pytest.raises((ssl.SSLCertVerificationError, DBAPIError), match="certificate"):
        asyncio.run(connection_is_tls(wrong_ca))
    # And the server really refuses plain connections, so the passes above used TLS.
    with pytest.raises((OSError, DBAPIError), match="no encryption"):
        asyncio.run(connection_is_tls(url_for(tls_cluster, "127.0.0.1", "sslmode=disable")))


@pytest.mark.postgres
def test_cli_migrates_and_backs_up_over_tls(
    tls_cluster: OwnCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`db backup` hands pg_dump the URL as written: libpq verifies with the same CA."""
    url = url_for(
        tls_cluster, "localhost", f"sslmode=verify-full&sslrootcert={tls_cluster.ca_file}"
    )
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PREDICTD_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["db", "status"])
    assert done.exit_code == 0, done.output
    assert "sslmode=verify-full" in done.output
    assert "up to date" in done.output
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    done = runner.invoke(app, ["db", "backup", str(tmp_path / "tls.dump")])
    assert done.exit_code == 0, done.output
    assert "pg_dump backup written" in done.output
    assert (tmp_path / "tls.dump").stat().st_size > 0


@pytest.mark.postgres
async def test_the_registry_listener_connects_over_tls(tls_cluster: OwnCluster) -> None:
    url = url_for(
        tls_cluster, "localhost", f"sslmode=verify-full&sslrootcert={tls_cluster.ca_file}"
    )
    listener = RegistryListener(Settings(database_url=url), asyncio.Event())
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
