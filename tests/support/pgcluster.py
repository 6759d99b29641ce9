"""A PostgreSQL cluster of the test's own, so a test may stop it, kill it (`-m immediate`) or
freeze it (SIGSTOP of the postmaster and every backend) without touching the shared server.

Built with the machine's own `initdb`/`pg_ctl` (run as the `postgres` user when the tests run
as root, since PostgreSQL refuses to run as root). Listens on 127.0.0.1:<free port>, trust
auth, and keeps its data in a private temporary directory removed on ``destroy()``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.support.server import free_port

START_TIMEOUT_S = 30


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def available() -> str | None:
    """None when an own cluster can be made here, else why not."""
    if _bin_dir() is None:
        return "pg_ctl/initdb not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


def make_certificates(directory: Path, host: str = "localhost") -> None:
    """A throwaway CA (``ca.crt``) and a server certificate it signed (``server.crt``/``.key``)
    naming only ``host``, so a connection to 127.0.0.1 fails verify-full but passes
    verify-ca; and a client certificate for the user ``postgres`` (``client.crt``/``.key``).
    Made with the openssl command line tool."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl not found"
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True,
                       timeout=60)  # fmt: skip

    run("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=predictd test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}")
    (directory / "server.ext").write_text(
        f"subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-out",
        "server.crt", "-CAcreateserial", "-days", "2", "-extfile", "server.ext")  # fmt: skip
    (directory / "server.key").chmod(0o600)  # PostgreSQL refuses a key others can read
    run("req", *curve, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=postgres")
    (directory / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n"
    )
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-out",
        "client.crt", "-CAcreateserial", "-days", "2", "-extfile", "client.ext")  # fmt: skip
    (directory / "client.key").chmod(0o600)  # libpq refuses a key others can read


class OwnCluster:
    """One throwaway cluster; ``start()``, ``stop(mode)``, ``freeze()``/``thaw()``. With
    ``tls=True`` it has ``ssl = on`` with a certificate for ``localhost`` signed by a CA of
    its own (``ca_file``), and refuses TCP connections without TLS, so any client that got in
    used TLS; the database ``certdb`` (not created here) also wants a client certificate for
    ``postgres`` signed by that CA (``client_cert``/``client_key``)."""

    def __init__(self, *, tls: bool = False, replica_of: OwnCluster | None = None) -> None:
        """``replica_of``: a running cluster this one streams from (pg_basebackup -R), a
        read-only hot standby."""
        bin_dir = _bin_dir()
        assert bin_dir is not None, available()
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="predictd-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        if replica_of is None:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "--no-sync", "-E", "UTF8")  # fmt: skip
        else:  # initdb -A trust let replication connections from 127.0.0.1 in
            self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(replica_of.port),
                      "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream")  # fmt: skip
        # Appended: for a replica these override what the copy brought from its primary.
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\n"  # no OS crash is simulated; a killed server keeps the page cache
                "max_connections = 60\n"
                "shared_buffers = 32MB\n"
            )
        if tls:
            certs = self.root / "certs"
            certs.mkdir()
            make_certificates(certs)
            if self._as:
                account = pwd.getpwnam("postgres")
                for path in (certs, *certs.iterdir()):
                    os.chown(path, account.pw_uid, account.pw_gid)
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    "ssl = on\n"
                    f"ssl_cert_file = '{certs / 'server.crt'}'\n"
                    f"ssl_key_file = '{certs / 'server.key'}'\n"
                    f"ssl_ca_file = '{certs / 'ca.crt'}'\n"  # asks clients for a certificate
                )
            (self.data / "pg_hba.conf").write_text(
                "local all all trust\nhostssl certdb all 127.0.0.1/32 cert\n"
                "hostssl all all 127.0.0.1/32 trust\n"
                "hostssl all all ::1/128 trust\n"
            )

    @property
    def ca_file(self) -> Path:
        """The CA that signed a TLS cluster's server certificate."""
        return self.root / "certs" / "ca.crt"

    @property
    def client_cert(self) -> Path:
        """A client certificate for ``postgres`` that ``certdb`` accepts; ``client_key``."""
        return self.root / "certs" / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.root / "certs" / "client.key"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"{tool} {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return "<no server log>"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(START_TIMEOUT_S), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast` is an orderly stop; `immediate` is a crash (recovery runs at next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        return None

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, walwriter, ...)."""
        pid = self.postmaster_pid()
        if pid is None:
            return []
        children = Path(f"/proc/{pid}/task/{pid}/children")
        with contextlib.suppress(OSError):
            return [pid, *(int(c) for c in children.read_text().split())]
        return [pid]

    def signal_all(self, signum: int) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def freeze(self) -> None:
        """SIGSTOP everything: connections stay open, nothing answers (a hung host)."""
        self.signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_all(signal.SIGCONT)

    def destroy(self) -> None:
        self.thaw()
        if self.running:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.stop("immediate")
        pid = self.postmaster_pid()
        if pid is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- inspection -----------------------------------------------------------------------

    async def fetch(self, database: str, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url(database), timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


def wait_until_up(cluster: OwnCluster, timeout_s: float = START_TIMEOUT_S) -> None:
    import asyncio

    async def ping() -> bool:
        try:
            await cluster.fetch("postgres", "SELECT 1")
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        return True

    deadline = time.monotonic() + timeout_s
    while not asyncio.run(ping()):
        assert time.monotonic() < deadline, f"own PostgreSQL not up\n{cluster.log_tail()}"
        time.sleep(0.1)
