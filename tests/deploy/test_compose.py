"""compose.yaml against the Compose specification (its JSON schema, vendored), the files it
mounts and reads, and predictd's settings: every variable it gives predictd is one predictd
reads, the commands are real predictd commands after the image's entrypoint, and the committed
env files hold no secret."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr
from typer.testing import CliRunner

from predictd.cli import app
from predictd.settings import GROUPS, Settings, env_names
from tests.support import services

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
CHECK_JSONSCHEMA = ROOT / ".venv-checks" / "bin" / "check-jsonschema"
PREDICTD_SERVICES = ("predictd", "migrate")
_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_INTERPOLATION = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}")  # ${NAME:-default}


def compose() -> dict[str, Any]:
    # PyYAML's safe loader resolves the `<<` merge keys compose.yaml uses, as Compose does.
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def settings_variables() -> dict[str, bool]:
    """Every variable predictd's settings read -> whether its value is a secret."""
    found: dict[str, bool] = {}
    for model in GROUPS.values():
        for info in model.model_fields.values():
            secret = "SecretStr" in str(info.annotation) or info.annotation is SecretStr
            for name in env_names(info):
                found[name] = secret
    return found


def env_files(service: dict[str, Any]) -> list[tuple[Path, bool]]:
    """(path, required) of a service's env_file entries, in every form the spec allows."""
    entries = service.get("env_file", [])
    entries = [entries] if isinstance(entries, str | dict) else entries
    out: list[tuple[Path, bool]] = []
    for entry in entries:
        if isinstance(entry, str):
            out.append((ROOT / entry, True))
        else:
            out.append((ROOT / entry["path"], bool(entry.get("required", True))))
    return out


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount (short or long syntax)."""
    mounts: list[tuple[Path, str]] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            if source.startswith((".", "/")):
                mounts.append((ROOT / source, rest.split(":")[0]))
        elif volume.get("type") == "bind":
            mounts.append((ROOT / volume["source"], volume["target"]))
    return mounts


def test_compose_is_valid_compose_specification() -> None:
    if not CHECK_JSONSCHEMA.exists():
        services.unavailable("check-jsonschema (scripts/ensure_observability_tools.sh)")
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--schemafile", str(SCHEMA), str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The vendored schema is the Compose specification's, not something smaller.
    assert json.loads(SCHEMA.read_text())["title"] == "Compose Specification"


def test_compose_services_and_order() -> None:
    spec = compose()
    services_ = spec["services"]
    assert set(services_) >= {"postgres", "redis", "migrate", "predictd", "prometheus", "grafana"}
    assert "healthcheck" in services_["postgres"]
    assert any(
        str(v).endswith(":/var/lib/postgresql/data") for v in services_["postgres"]["volumes"]
    )
    assert services_["migrate"]["command"] == ["db", "upgrade"]
    assert services_["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    after = services_["predictd"]["depends_on"]["migrate"]["condition"]
    assert after == "service_completed_successfully"
    for name in PREDICTD_SERVICES:
        assert services_[name]["image"] == "ghcr.io/predictd/predictd:latest"
        assert services_[name]["build"] == "."
    # Docker must not SIGKILL predictd before its shutdown delay and recorder flush are done.
    grace = services_["predictd"]["stop_grace_period"]
    assert grace.endswith("s"), grace
    defaults = Settings(_env_file=None)
    assert (
        float(grace[:-1]) > defaults.server.shutdown_delay_s + defaults.recording.shutdown_flush_s
    )
    assert "/health" in " ".join(services_["predictd"]["healthcheck"]["test"])
    # Only the one-shot migrate service changes the schema.
    assert services_["predictd"]["environment"]["PREDICTD_AUTO_MIGRATE"] == "false"
    # Named volumes used by services are declared.
    declared = set(spec.get("volumes", {}))
    for service in services_.values():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in declared, volume


def test_every_referenced_file_exists() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            assert (ROOT / context).is_dir(), f"{name}: build context {context}"
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name}: bind mount source {source} missing"
        for path, required in env_files(service):
            if required:
                assert path.is_file(), f"{name}: env_file {path} missing"
            else:
                # An optional file holds the operator's secrets: never committed.
                ignored = subprocess.run(
                    ["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False
                )
                assert ignored.returncode == 0, f"{path} must be git-ignored"
    for kind in ("configs", "secrets"):
        for key, entry in spec.get(kind, {}).items():
            if "file" in entry:
                assert (ROOT / entry["file"]).is_file(), f"{kind}.{key}: {entry['file']}"


def test_prometheus_and_grafana_config_point_at_mounted_files(tmp_path: Path) -> None:
    spec = compose()
    prometheus = spec["services"]["prometheus"]
    mounts = {target: source for source, target in bind_mounts(prometheus)}
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"], "no rules loaded"
    for rule_file in config["rule_files"]:
        assert rule_file in mounts, f"rule file {rule_file} is not mounted"
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    assert "predictd:8000" in targets
    assert spec["services"]["predictd"]["environment"]["PREDICTD_METRICS_PUBLIC"] == "true"
    # promtool checks the config with the mounted paths put back to this checkout's files.
    promtool = shutil.which("promtool")
    if promtool is None:
        services.unavailable("promtool (scripts/ensure_observability_tools.sh)")
    assert promtool is not None
    config["rule_files"] = [str(mounts[f]) for f in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(json.dumps(config))
    result = subprocess.run(
        [promtool, "check", "config", str(local)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr

    grafana = {target: source for source, target in bind_mounts(spec["services"]["grafana"])}
    provisioning = grafana["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [datasource] = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "predictd.yml").read_text())
    [provider] = providers["providers"]
    dashboards_dir = provider["options"]["path"]
    mounted = [t for t in grafana if t.startswith(dashboards_dir + "/")]
    assert mounted, f"no dashboard mounted under {dashboards_dir}"
    for target in mounted:
        json.loads(grafana[target].read_text())  # a dashboard Grafana can load


def test_committed_env_files_hold_no_password_or_token() -> None:
    """Every committed env file is read even when the operator made no copy: a placeholder
    secret in one would be a well-known credential in a running stack."""
    committed = sorted((ROOT / "deploy" / "compose").glob("*.env.example"))
    assert committed
    secret = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$")
    for path in committed:
        for key in read_env_file(path):
            assert not secret.search(key), f"{path} sets {key}"


def test_predictd_environment_names_only_real_settings() -> None:
    known = settings_variables()
    spec = compose()
    for name in PREDICTD_SERVICES:
        service = spec["services"][name]
        given: dict[str, str] = {}
        for path, _ in env_files(service):
            if path.exists() and path.name.endswith(".example"):
                for key, value in read_env_file(path).items():
                    given[key] = value
                    # A committed file sets no secret: a placeholder would run for real
                    # when the operator's copy is missing.
                    assert not known.get(key), f"{path} sets the secret {key}"
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        given.update({k: str(v) for k, v in environment.items()})
        assert given, name
        for key in given:
            assert _NAME.match(key), key
            assert key in known, f"{name}: {key} is not a predictd setting"


def _entrypoint() -> list[str]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            parsed: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
            return parsed
    raise AssertionError("the Dockerfile has no ENTRYPOINT")


def test_commands_are_predictd_commands_after_the_entrypoint() -> None:
    """Compose appends `command` to the image's ENTRYPOINT: the two together must be a
    predictd command that exists (`predictd predictd serve` would not)."""
    assert _entrypoint() == ["predictd"]
    runner = CliRunner()
    spec = compose()
    for name in PREDICTD_SERVICES:
        command = spec["services"][name]["command"]
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, f"{name}: predictd {command}: {result.output}"
    assert spec["services"]["predictd"]["command"] == ["serve"]


def test_predictd_containers_are_read_only_without_privilege_escalation() -> None:
    spec = compose()
    for name in PREDICTD_SERVICES:
        service = spec["services"][name]
        assert service["read_only"] is True, name
        assert "no-new-privileges:true" in service["security_opt"], name


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """What Compose gives the container with no operator file: the committed env files in
    order, then `environment`, with ${NAME:-default} taken at its default."""
    given: dict[str, str] = {}
    for path, _ in env_files(service):
        if path.exists():
            given.update(read_env_file(path))
    given.update({k: str(v) for k, v in service.get("environment", {}).items()})
    return {k: _INTERPOLATION.sub(lambda m: m.group(1), v) for k, v in given.items()}


def test_predictd_settings_accept_the_compose_environment() -> None:
    """predictd's own settings validate what compose gives the `predictd` and `migrate`
    containers (a bad value would stop them at startup)."""
    spec = compose()
    for name in PREDICTD_SERVICES:
        values: dict[str, Any] = dict(service_environment(spec["services"][name]))
        settings = Settings(_env_file=None, **values)
        assert settings.database.url.startswith("postgresql"), name
        assert settings.database.auto_migrate is False
    values = dict(service_environment(spec["services"]["predictd"]))
    served = Settings(_env_file=None, **values)
    assert served.access.auth == "on"
    assert served.access.metrics_public is True
    assert served.server.host == "0.0.0.0"  # inside its container: reached through the port
