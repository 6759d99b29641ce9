"""The container image, built from the real Dockerfile and run with podman.

No Docker daemon and no registry here: scripts/ensure_image_tools.sh installs podman, runc and
debootstrap and imports a Debian bookworm minbase with python3 under the Dockerfile's base
name; the build is offline (`--pull=never`, PIP_NO_INDEX=1) from a wheelhouse made on the host.
Then the image runs as its non-root user with a read-only root filesystem and one volume,
answers /predict with an API key, records every answer (SQLite in the volume, then
PostgreSQL), and stops on SIGTERM with status 0 and nothing lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import services
from tests.support.server import free_port, pg_dsn

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = ROOT / ".venv-checks" / "bin" / "hadolint"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "predictd-image"
CONF = CACHE / "containers.conf"
# One tag per process: under pytest-xdist two workers may each build it (layers are shared).
TAG = f"localhost/predictd:suite-{os.getpid()}"
UID = 10001
VOLUME = "/var/lib/predictd"
# Above PREDICTD_SHUTDOWN_DELAY_S (5 s) + PREDICTD_SHUTDOWN_FLUSH_S (10 s): what docs/deploy.md
# tells `docker stop -t` and compose's stop_grace_period.
GRACE_S = 30
REQUESTS = 25
TOOLS = "scripts/ensure_image_tools.sh"
# Built with an extra, so the Dockerfile's PREDICTD_EXTRAS path is the one proven; the
# OpenTelemetry extra is small and pure Python.
EXTRAS = "otel"
WHEELS = Path("deploy") / "image" / "wheels"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _base_image() -> str:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG BASE_IMAGE="):
            return line.split("=", 1)[1]
    raise AssertionError("the Dockerfile names no BASE_IMAGE")


def podman(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    done = subprocess.run(
        ["podman", "--runtime", "runc", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr[-4000:]}")
    return done


def test_dockerfile_copies_only_what_a_clean_checkout_has() -> None:
    """`docker build .` must work from a fresh clone (CI, a user): every path the Dockerfile
    copies from the context is tracked by git, and .dockerignore lets it in."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    assert sources
    for source in sources:
        path = source.rstrip("/")
        assert any(f == path or f.startswith(path + "/") for f in tracked), source
        assert any(path == a or path.startswith(a + "/") or a.startswith(path + "/")
                   for a in allowed), source  # fmt: skip


def test_dockerfile_passes_hadolint() -> None:
    if not HADOLINT.exists():
        services.unavailable(f"hadolint ({TOOLS})")
    done = subprocess.run(
        [str(HADOLINT), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("podman") is None or not CONF.exists():
        services.unavailable(f"podman ({TOOLS})")
    if podman("image", "exists", _base_image(), check=False).returncode != 0:
        services.unavailable(f"the stand-in base image {_base_image()} ({TOOLS})")
    # The build context as `make image OFFLINE=1` lays it out, in a directory of its own so a
    # build here never races one in the checkout: the real Dockerfile and .dockerignore, the
    # package's source, and a wheelhouse with every dependency and the build backend (the
    # build has no index to reach).
    context = tmp_path_factory.mktemp("context")
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "predictd", context / "src" / "predictd", ignore=ignore)
    wheels = context / WHEELS
    wheels.mkdir(parents=True)
    # async-timeout: redis needs it below Python 3.11.3 (Debian's 3.11.2), which the host's
    # newer Python does not ask for when it resolves the wheelhouse.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels),
         f"{ROOT}[{EXTRAS}]", "async-timeout", "hatchling"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    # predictd must be built from the source in the context, not taken from the wheelhouse.
    for wheel in wheels.glob("predictd-*.whl"):
        wheel.unlink()
    started = time.monotonic()
    podman(
        "build", "--format", "docker", "--pull=never", "--network=host",
        "--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PREDICTD_EXTRAS={EXTRAS}",
        "-t", TAG, str(context),
    )  # fmt: skip
    size = podman("image", "inspect", TAG, "--format", "{{.Size}}").stdout.strip()
    print(f"image {TAG}: built in {time.monotonic() - started:.0f} s, {int(size) / 1e6:.0f} MB")
    yield TAG
    # The tag goes, the layers stay as the next run's build cache.
    podman("untag", TAG, check=False)


def test_image_config_is_non_root_with_health_check_and_sigterm(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["predictd"]
    assert config["Cmd"] == ["serve"]
    # podman shows the health check beside Config, docker inside it.
    health = config.get("Healthcheck") or inspected["Healthcheck"]
    assert "/health" in " ".join(health["Test"])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PREDICTD_AUTH"] == "on"
    assert env["PREDICTD_HOST"] == "0.0.0.0"
    for name in ("PREDICTD_SPOOL_DIR", "PREDICTD_ARTIFACT_DIR", "DATABASE_URL"):
        assert VOLUME in env[name], name
    assert VOLUME in config["Volumes"]


# Run inside the image: what must not be there. Other packages' own test directories (numpy's,
# scipy's) are theirs; predictd's tests, its source tree and any .git are not.
_CONTENTS = """
import os, shutil, predictd
found = [p for p in ("gcc", "cc", "c++", "clang", "make") if shutil.which(p)]
pkg = os.path.dirname(predictd.__file__)
found += [pkg + "/" + n for n in ("tests", "conftest.py") if os.path.exists(pkg + "/" + n)]
found += [p for p in ("/tests", "/src", "/app", "/opt/predictd/src") if os.path.exists(p)]
for dirpath, dirs, files in os.walk("/"):
    if dirpath.startswith(("/proc", "/sys", "/dev")):
        dirs[:] = []
    if ".git" in dirs or "pyproject.toml" in files or dirpath.endswith("/tests/support"):
        found.append(dirpath)
if os.getuid() != 10001 or os.getgid() != 10001:
    found.append("running as %d:%d" % (os.getuid(), os.getgid()))
print(repr(sorted(set(found))))
"""


def test_image_carries_the_extras_it_was_built_with(image: str) -> None:
    done = podman(
        "run", "--rm", "--network=host", "--entrypoint", "python3", image, "-c",
        "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http; print('ok')",
    )  # fmt: skip
    assert done.stdout.strip() == "ok", done.stdout + done.stderr


def test_image_holds_no_compiler_tests_or_git(image: str) -> None:
    done = podman(
        "run", "--rm", "--network=host", "--entrypoint", "python3", image, "-c", _CONTENTS
    )
    assert done.stdout.strip() == "[]", done.stdout


def _volume(tmp_path: Path) -> Path:
    """The volume with a trained model in it, owned by the image's user."""
    from predictd.demo.train import train_sentiment

    volume = tmp_path / "volume"
    trained = train_sentiment(volume / "models")
    model = volume / "models" / "sentiment.skops"
    if trained.path != model:
        shutil.move(trained.path, model)
    for path in [volume, *volume.rglob("*")]:
        os.chown(path, UID, UID)
    return volume


def _call(url: str, body: dict[str, object] | None = None, key: str | None = None) -> int:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class Run:
    """One container of the image, with the volume and the environment given."""

    def __init__(self, image: str, volume: Path, env: dict[str, str]) -> None:
        self.image, self.volume, self.port = image, volume, free_port()
        self.env = {"PREDICTD_PORT": str(self.port), **env}
        self.name = f"predictd-suite-{self.port}"

    def _options(self) -> list[str]:
        # --read-only-tmpfs=false: /tmp is read-only too, as under `docker run --read-only`.
        options = ["--network=host", "--read-only", "--read-only-tmpfs=false"]
        options += ["-v", f"{self.volume}:{VOLUME}"]
        for name, value in self.env.items():
            options += ["-e", f"{name}={value}"]
        return options

    def cli(self, *args: str) -> str:
        return podman("run", "--rm", *self._options(), self.image, *args).stdout

    def start(self) -> None:
        model = f"{VOLUME}/models/sentiment.skops"
        podman("run", "-d", "--name", self.name, *self._options(), "-e",
               f"PREDICTD_MODEL_PATH={model}", self.image)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if _call(f"http://127.0.0.1:{self.port}/ready") == 200:
                    return
            except OSError:
                pass
            state = podman("inspect", self.name, "--format", "{{.State.Status}}").stdout
            assert state.strip() == "running", self.logs()
            time.sleep(0.5)
        raise AssertionError(f"not ready in 120 s\n{self.logs()}")

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-6000:]

    def stop(self) -> tuple[int, float]:
        """SIGTERM (the image's STOPSIGNAL) with the documented grace: exit status, seconds."""
        started = time.monotonic()
        podman("stop", "-t", str(GRACE_S), self.name)
        took = time.monotonic() - started
        code = podman("inspect", self.name, "--format", "{{.State.ExitCode}}").stdout.strip()
        return int(code), took

    def remove(self) -> None:
        podman("rm", "-f", self.name, check=False)


def _serve_and_stop(run: Run, requests: int = REQUESTS, *, kill: bool = False) -> None:
    """Start, answer ``requests`` predictions with a fresh key, then stop: SIGTERM with the
    documented grace (exit status 0 within it), or SIGKILL with ``kill``."""
    # As a deployment would: migrate once (a Job, a compose one-off), then make a key.
    run.cli("db", "upgrade")
    key = run.cli("keys", "create", "--name", f"suite-{run.port}", "--scope", "predict").strip()
    run.start()
    try:
        url = f"http://127.0.0.1:{run.port}/predict"
        assert _call(url, {"text": "I love this product"}) == 401  # auth is on by default
        # The image's HEALTHCHECK command itself, run inside the container.
        podman("healthcheck", "run", run.name)
        for i in range(requests):
            assert _call(url, {"text": f"great product number {i}"}, key) == 200, run.logs()
        if kill:
            podman("kill", "--signal", "KILL", run.name)
            return
        code, took = run.stop()
        assert code == 0, run.logs()
        assert took < GRACE_S, run.logs()
        print(f"stopped with status {code} in {took:.1f} s")
    finally:
        run.remove()


def _sqlite_rows(volume: Path) -> int:
    with sqlite3.connect(volume / "predictd.db") as db:
        (rows,) = db.execute("SELECT count(*) FROM predictions").fetchone()
    return int(rows)


def test_sqlite_in_the_volume_keeps_every_answered_prediction(image: str, tmp_path: Path) -> None:
    volume = _volume(tmp_path)
    _serve_and_stop(Run(image, volume, {}))
    assert _sqlite_rows(volume) == REQUESTS
    # Everything the container wrote is in the volume: the database, the spool, the artifacts.
    assert (volume / "spool").is_dir()
    assert (volume / "artifacts").is_dir()


def test_the_spool_in_the_volume_outlives_a_killed_container(image: str, tmp_path: Path) -> None:
    volume = _volume(tmp_path)
    # Batches wait ten minutes to fill, so the answered predictions are only in the spool
    # when the container is killed; a new container on the same volume replays them.
    _serve_and_stop(Run(image, volume, {"PREDICTD_RECORD_FLUSH_MS": "600000"}), kill=True)
    _serve_and_stop(Run(image, volume, {}), requests=0)
    assert _sqlite_rows(volume) == REQUESTS


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not services.postgres_available():
        services.unavailable("postgresql (scripts/ensure_services.sh)")
    url = services.create_database()
    try:
        yield url
    finally:
        services.drop_database(url)


async def _count(url: str) -> int:
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        rows: int = await conn.fetchval("SELECT count(*) FROM predictions")
        return rows
    finally:
        await conn.close()


def test_postgresql_keeps_every_answered_prediction(
    image: str, tmp_path: Path, postgres_url: str
) -> None:
    _serve_and_stop(Run(image, _volume(tmp_path), {"DATABASE_URL": postgres_url}))
    assert asyncio.run(_count(postgres_url)) == REQUESTS
