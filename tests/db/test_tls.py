"""libpq's `sslmode`/`sslrootcert`/`sslcert`/`sslkey` in DATABASE_URL, the form managed
PostgreSQL services hand out, against a cluster of the test's own that only accepts TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
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

# Many tests here are refused during TLS negotiation on purpose. Once, in a CI run under load,
# asyncpg left the socket of such a refused attempt to the garbage collector, which then
# reported it inside a later test of this module (not reproduced in 30 runs alone). These
# tests assert on what connects and what is refused, not on asyncpg's clean-up.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning"
)

URL = "postgresql://u@db.example:5432/p"
LIBPQ_ENV = ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home (no ~/.postgresql files) and none of libpq's TLS variables, unless a test
    puts them there."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    for name in LIBPQ_ENV:
        monkeypatch.delenv(name, raising=False)
    return path


def dot_postgresql(home: Path, **files: Path) -> None:
    """Copy ``files`` into ``~/.postgresql`` under the names given (``root_crt=…`` is
    ``root.crt``)."""
    directory = home / ".postgresql"
    directory.mkdir(exist_ok=True)
    for name, source in files.items():
        target = directory / name.replace("_", ".")
        shutil.copyfile(source, target)
        target.chmod(0o600)


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


def test_system_roots_default_to_verify_full(tmp_path: Path) -> None:
    """libpq 16: sslrootcert=system makes the default sslmode verify-full."""
    _, tls = split_tls(make_url(f"{URL}?sslrootcert=system"))
    assert isinstance(tls, ssl.SSLContext)
    assert (tls.verify_mode, tls.check_hostname) == (ssl.CERT_REQUIRED, True)


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca"])
def test_system_roots_refuse_weaker_modes(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq 16 refuses any sslmode but verify-full with sslrootcert=system: anyone can get a
    certificate from a public CA for a host name of their own."""
    expected = rf"^DATABASE_URL: sslmode={mode} .*sslrootcert=system.*use sslmode=verify-full"
    with pytest.raises(PredictdError, match=expected):
        split_tls(make_url(f"{URL}?sslmode={mode}&sslrootcert=system"))
    monkeypatch.setenv("PGSSLMODE", mode)  # the default sslmode, as libpq takes it
    with pytest.raises(PredictdError, match=r"sslmode=.* \(from PGSSLMODE\)"):
        split_tls(make_url(f"{URL}?sslrootcert=system"))
    monkeypatch.setenv("PGSSLROOTCERT", "system")
    with pytest.raises(PredictdError, match=r"sslrootcert=system \(from PGSSLROOTCERT\)"):
        split_tls(make_url(f"{URL}?sslmode={mode}"))


@pytest.mark.parametrize("mode", ["allow", "prefer"])
@pytest.mark.parametrize("name", ["sslrootcert", "sslcert", "sslkey"])
def test_allow_and_prefer_refuse_tls_files(mode: str, name: str) -> None:
    """asyncpg takes a certificate only with a TLS context, and a context means `require`:
    rather than connect without the file given, the URL is refused."""
    with pytest.raises(PredictdError, match=rf"sslmode={mode} cannot use {name}.*sslmode=require"):
        split_tls(make_url(f"{URL}?sslmode={mode}&{name}=/some/file"))


def test_require_verifies_against_the_default_root_file(tmp_path: Path, home: Path) -> None:
    """libpq: require verifies like verify-ca when ~/.postgresql/root.crt exists."""
    make_certificates(tmp_path)
    dot_postgresql(home, root_crt=tmp_path / "ca.crt")
    _, tls = split_tls(make_url(f"{URL}?sslmode=require"))
    assert isinstance(tls, ssl.SSLContext)
    assert (tls.verify_mode, tls.check_hostname) == (ssl.CERT_REQUIRED, False)
    assert tls.cert_store_stats()["x509_ca"] == 1


def test_libpq_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PGSSLMODE and PGSSLROOTCERT stand in for missing URL parameters, as in libpq (and
    pg_dump, which `db backup` runs, reads them too)."""
    make_certificates(tmp_path)
    monkeypatch.setenv("PGSSLROOTCERT", str(tmp_path / "ca.crt"))
    _, tls = split_tls(make_url(f"{URL}?sslmode=verify-ca"))
    assert isinstance(tls, ssl.SSLContext)
    assert tls.cert_store_stats()["x509_ca"] == 1
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    _, tls = split_tls(make_url(URL))
    assert isinstance(tls, ssl.SSLContext)
    assert (tls.verify_mode, tls.check_hostname) == (ssl.CERT_REQUIRED, True)
    monkeypatch.setenv("PGSSLMODE", "sometimes")
    with pytest.raises(PredictdError, match="PGSSLMODE must be one of"):
        split_tls(make_url(URL))


def test_tls_errors_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every TLS configuration error is one `error: DATABASE_URL: …` line naming files and
    modes, never the URL and its password."""
    base = "postgresql://u:hunter2@db.example:5432/p?"
    runner = CliRunner()
    for query in (
        "sslmode=verify-full",
        "sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt",
        "sslmode=require&sslkey=/k",
        "sslmode=prefer&sslcert=/c",
        "sslmode=require&sslrootcert=system",
        "sslmode=require&sslcert=/nonexistent/c.crt&sslkey=/nonexistent/c.key",
    ):
        monkeypatch.setenv("DATABASE_URL", base + query)
        done = runner.invoke(app, ["db", "status"])
        assert done.exit_code == 1, done.output
        assert done.output.startswith("error: DATABASE_URL: "), done.output
        assert "hunter2" not in done.output, done.output
        assert len(done.output.splitlines()) == 1, done.output


def test_an_encrypted_client_key_fails_without_a_prompt(tmp_path: Path) -> None:
    """sslpassword is not supported: a key with a pass phrase is a configuration error, never
    OpenSSL's pass phrase prompt (which blocks a server started from a terminal)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-passout", "pass:secret", "-keyout",
                    "k.pem", "-out", "c.pem", "-subj", "/CN=x", "-days", "1"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)  # fmt: skip
    url = f"{URL}?sslmode=require&sslcert={tmp_path}/c.pem&sslkey={tmp_path}/k.pem"
    code = (
        "from sqlalchemy.engine import make_url\n"
        "from predictd.db.tls import split_tls\n"
        "from predictd.errors import PredictdError\n"
        "try:\n"
        f"    split_tls(make_url({url!r}))\n"
        "except PredictdError as exc:\n"
        "    print(exc.message)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, start_new_session=True, timeout=60,
                          check=False)  # fmt: skip
    assert "pass phrase" not in done.stdout + done.stderr
    assert done.stdout.startswith(f"DATABASE_URL: cannot use TLS file {tmp_path}/c.pem (key "), (
        done.stdout + done.stderr
    )


def test_bad_tls_parameters_are_configuration_errors() -> None:
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
        asyncio.run(cluster.fetch("postgres", "CREATE DATABASE certdb"))
        yield cluster
    finally:
        cluster.destroy()


def url_for(cluster: OwnCluster, host: str, query: str, database: str = "tls") -> str:
    return f"postgresql://postgres@{host}:{cluster.port}/{database}?{query}"


def verified_url(cluster: OwnCluster) -> str:
    return url_for(cluster, "localhost", f"sslmode=verify-full&sslrootcert={cluster.ca_file}")


async def connection_is_tls(url: str) -> bool:
    db = Database(Settings(database_url=url, db_connect_timeout_s=5).database)
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
        services.unavailable("pg_dump (PostgreSQL's client programs)")
    done = runner.invoke(app, ["db", "backup", str(tmp_path / "tls.dump")])
    assert done.exit_code == 0, done.output
    assert "pg_dump backup written" in done.output
    assert (tmp_path / "tls.dump").stat().st_size > 0


@pytest.mark.postgres
async def test_the_registry_listener_connects_over_tls(tls_cluster: OwnCluster) -> None:
    url = url_for(
        tls_cluster, "localhost", f"sslmode=verify-full&sslrootcert={tls_cluster.ca_file}"
    )
    listener = RegistryListener(Settings(database_url=url).database, asyncio.Event())
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.postgres
def test_system_roots_verify_the_host_name(
    tls_cluster: OwnCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`?sslrootcert=system` alone is verify-full: the test CA is not among the system's, and
    once it is (OpenSSL's SSL_CERT_FILE), the certificate must still name the host."""
    with pytest.raises((ssl.SSLCertVerificationError, DBAPIError), match="certificate"):
        asyncio.run(connection_is_tls(url_for(tls_cluster, "localhost", "sslrootcert=system")))
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cluster.ca_file))
    assert asyncio.run(connection_is_tls(url_for(tls_cluster, "localhost", "sslrootcert=system")))
    with pytest.raises((ssl.SSLCertVerificationError, DBAPIError), match="certificate"):
        asyncio.run(connection_is_tls(url_for(tls_cluster, "127.0.0.1", "sslrootcert=system")))
    with pytest.raises(PredictdError, match="use sslmode=verify-full"):
        asyncio.run(connection_is_tls(url_for(tls_cluster, "127.0.0.1",
                                              "sslmode=verify-ca&sslrootcert=system")))  # fmt: skip


@pytest.mark.postgres
def test_client_certificates(tls_cluster: OwnCluster) -> None:
    """`certdb` wants a client certificate: require and above send sslcert/sslkey; allow and
    prefer, which cannot, refuse the URL instead of connecting without it."""
    files = f"sslcert={tls_cluster.client_cert}&sslkey={tls_cluster.client_key}"
    with pytest.raises(DBAPIError, match="certificate"):
        asyncio.run(connection_is_tls(url_for(tls_cluster, "127.0.0.1", "sslmode=require",
                                              "certdb")))  # fmt: skip
    for mode in ("require", "verify-ca"):
        query = f"sslmode={mode}&sslrootcert={tls_cluster.ca_file}&{files}"
        url = url_for(tls_cluster, "127.0.0.1", query, "certdb")
        assert asyncio.run(connection_is_tls(url))
    for mode in ("allow", "prefer"):
        url = url_for(tls_cluster, "127.0.0.1", f"sslmode={mode}&{files}", "certdb")
        with pytest.raises(PredictdError, match=f"sslmode={mode} cannot use sslcert"):
            asyncio.run(connection_is_tls(url))


@pytest.mark.postgres
def test_default_files_in_dot_postgresql(
    tls_cluster: OwnCluster, tmp_path: Path, home: Path
) -> None:
    """As libpq: ~/.postgresql/postgresql.crt/.key are sent as the client certificate, and
    root.crt turns require into verify-ca."""
    dot_postgresql(home, root_crt=tls_cluster.ca_file, postgresql_crt=tls_cluster.client_cert,
                   postgresql_key=tls_cluster.client_key)  # fmt: skip
    for mode in ("prefer", "require", "verify-ca"):
        url = url_for(tls_cluster, "127.0.0.1", f"sslmode={mode}", "certdb")
        assert asyncio.run(connection_is_tls(url)), mode
    make_certificates(tmp_path)  # another CA, which did not sign the server's certificate
    dot_postgresql(home, root_crt=tmp_path / "ca.crt")
    with pytest.raises((ssl.SSLCertVerificationError, DBAPIError), match="certificate"):
        asyncio.run(connection_is_tls(url_for(tls_cluster, "127.0.0.1", "sslmode=require")))
