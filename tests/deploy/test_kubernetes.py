"""The Kubernetes manifests (deploy/k8s): each overlay renders with kubectl's kustomize,
every object validates against the Kubernetes 1.30 schemas (kubernetes-validate, strict),
checkov finds nothing that is not skipped with a reason, every variable set is a real setting
whose value predictd accepts, the commands exist, and the probes and drain add up.

The tools come from scripts/ensure_k8s_tools.sh (kubectl from apt; kubernetes-validate and
checkov in .venv-checks)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from predictd.cli.main import app
from predictd.db.engine import Database
from predictd.monitoring.series import MonitorSeries
from predictd.observability import Metrics
from predictd.settings import GROUPS, Settings, env_names
from tests.support import services

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CHECKS = ROOT / ".venv-checks" / "bin"
# What is rendered: an overlay, plus opt-in components in a kustomization of the test's own.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "dev": ("dev", []),
    "prod": ("prod", []),
    "prod+rps": ("prod", ["requests-autoscaling"]),
}
OVERLAYS = list(VARIANTS)
KUBERNETES = "1.30.0"
ENSURE = "(scripts/ensure_k8s_tools.sh)"

# Custom resources: not in the Kubernetes schemas, so kubernetes-validate only warns about
# them. They are taken out of its run by kind, each checked here by hand instead.
CRDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1 (Prometheus Operator): test_monitoring",
    "PrometheusRule": "monitoring.coreos.com/v1 (Prometheus Operator): test_monitoring",
    "SecretProviderClass": "secrets-store.csi.x-k8s.io/v1 (Secrets Store CSI): test_settings",
}

# Variables predictd reads that are not settings fields: the secrets directory, read in
# Settings.settings_customise_sources.
EXTRA_VARIABLES = {"PREDICTD_SECRETS_DIR"}
# Not predictd's at all, and allowed by exact name only (a prefix would let a misspelt one
# through): adlfs, the az:// backend of PREDICTD_ARTIFACT_URL in prod, reads the storage
# account from AZURE_STORAGE_ACCOUNT_NAME and authenticates with DefaultAzureCredential (the
# workload identity) only when AZURE_STORAGE_ANON=false; it is anonymous otherwise.
ADLFS_VARIABLES = {"AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ANON"}
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DOCS = ROOT / "docs" / "deploy.md"

Doc = dict[str, Any]
NS_LABEL = "kubernetes.io/metadata.name"


def _tool(name: str) -> str:
    path = shutil.which(name) if name == "kubectl" else str(CHECKS / name)
    if path is None or not Path(path).exists():
        services.unavailable(f"{name} {ENSURE}")
    assert path is not None
    return path


_RENDERED: dict[str, list[Doc]] = {}


def render(variant: str) -> list[Doc]:
    if variant not in _RENDERED:
        overlay, components = VARIANTS[variant]
        with tempfile.TemporaryDirectory() as scratch:
            # Kustomize refuses absolute paths to other kustomizations: relative ones.
            def rel(path: Path) -> str:
                return os.path.relpath(path, scratch)

            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [rel(K8S / "overlays" / overlay)],
                "components": [rel(K8S / "components" / c) for c in components],
            }
            Path(scratch, "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            # Without components: the overlay itself, as an operator renders it.
            target = scratch if components else str(K8S / "overlays" / overlay)
            out = subprocess.run(
                [_tool("kubectl"), "kustomize", target],
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert out.returncode == 0, out.stderr
        _RENDERED[variant] = [d for d in yaml.safe_load_all(out.stdout) if d]
    return _RENDERED[variant]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "Job"):
            yield name, d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield name, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def config(docs: list[Doc]) -> dict[str, str]:
    maps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert [m["metadata"]["name"].rsplit("-", 1)[0] for m in maps] == ["predictd-config"]
    data: dict[str, str] = maps[0]["data"]
    return data


def secret_variables(docs: list[Doc]) -> dict[str, str]:
    """The variables the secrets volume provides: the dev Secret's keys, or the Key Vault
    objects' aliases (with stand-in values)."""
    secrets = [d for d in docs if d["kind"] == "Secret"]
    providers = [d for d in docs if d["kind"] == "SecretProviderClass"]
    assert len(secrets) + len(providers) == 1
    if secrets:
        data = secrets[0]["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}
    objects = yaml.safe_load(providers[0]["spec"]["parameters"]["objects"])["array"]
    aliases = [yaml.safe_load(o)["objectAlias"] for o in objects]
    return {a: "postgresql://u:p@db/predictd" if a == "DATABASE_URL" else "x" for a in aliases}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders_every_part(overlay: str) -> None:
    kinds = {d["kind"] for d in render(overlay)}
    assert kinds >= {
        "Namespace", "ResourceQuota", "LimitRange", "ServiceAccount", "ConfigMap", "Deployment",
        "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
        "Job", "CronJob",
    }  # fmt: skip
    for d in render(overlay):
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "predictd", d["metadata"]["name"]
    if overlay.startswith("prod"):
        assert kinds >= set(CRDS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_validate_against_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    docs = render(overlay)
    crds = [d for d in docs if d["kind"] in CRDS]
    for d in crds:  # skipped by kind: make sure it is the resource we think it is
        assert d["apiVersion"] == CRDS[d["kind"]].split(" ")[0], d["apiVersion"]
    builtin = [d for d in docs if d["kind"] not in CRDS]
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    out = subprocess.run(
        [_tool("kubernetes-validate"), "-k", KUBERNETES, "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert report.count(" passed for resource ") == len(builtin), report
    assert "WARN" not in report, report  # a schema not found is only a warning


def test_the_validator_rejects_a_wrong_object(tmp_path: Path) -> None:
    """Strict mode catches a misspelt field, so a pass above means something."""
    deployment = one(render("dev"), "Deployment", "predictd")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    out = subprocess.run(
        [_tool("kubernetes-validate"), "-k", KUBERNETES, "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "readinessprobe" in out.stdout + out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_fails_nothing_unjustified(overlay: str, tmp_path: Path) -> None:
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump_all(render(overlay)))
    # --skip-download: offline, no look-ups of guidelines on the vendor's platform.
    command = [_tool("checkov"), "-d", str(tmp_path), "--framework", "kubernetes"]
    out = subprocess.run(
        [*command, "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(out.stdout)
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in result["results"]["failed_checks"]
    ]
    assert failed == [], failed
    assert result["summary"]["parsing_errors"] == 0
    assert result["summary"]["passed"] > 100  # it really looked at the objects
    for skipped in result["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason) > 10, f"{skipped['check_id']} skipped without a reason"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_are_real_and_accepted(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(overlay)
    real = {
        n for model in GROUPS.values() for f in model.model_fields.values() for n in env_names(f)
    }
    settings_source = (ROOT / "src" / "predictd" / "settings.py").read_text()
    assert all(f'"{name}"' in settings_source for name in EXTRA_VARIABLES)
    values = config(docs)
    secrets = secret_variables(docs)
    named = set(values) | set(secrets)
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            named |= {e["name"] for e in container.get("env", [])}
    assert named - real - EXTRA_VARIABLES - ADLFS_VARIABLES == set()
    if values.get("PREDICTD_ARTIFACT_URL", "").startswith("az://"):
        # adlfs needs both, or it reads anonymously from no account
        assert values["AZURE_STORAGE_ANON"] == "false"
        assert re.fullmatch(r"[a-z0-9]{3,24}", values["AZURE_STORAGE_ACCOUNT_NAME"])
    else:
        assert not set(values) & ADLFS_VARIABLES
    assert {"DATABASE_URL", "PREDICTD_ADMIN_TOKEN", "PREDICTD_INPUT_HASH_KEY"} <= set(secrets)
    # The values as predictd reads them: the ConfigMap as the environment, the secrets as
    # the files of PREDICTD_SECRETS_DIR.
    for name in [n for n in os.environ if n.startswith("PREDICTD_")]:
        monkeypatch.delenv(name)
    for name in ("DATABASE_URL", "REDIS_URL", *ADLFS_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name, value in secrets.items():
        (tmp_path / name).write_text(value)
    monkeypatch.setenv("PREDICTD_SECRETS_DIR", str(tmp_path))
    settings = Settings(_env_file=None)
    assert settings.database.url.startswith("postgresql")
    assert settings.access.admin_token is not None
    assert settings.agent.execute_interval_s == 0  # the agent Deployment executes actions


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_exist(overlay: str) -> None:
    runner = CliRunner()
    for name, spec in pod_specs(render(overlay)):
        for container in spec["containers"]:
            assert container["command"] == ["predictd"], name
            result = runner.invoke(app, [*container["args"], "--help"])
            assert result.exit_code == 0, f"{name}: predictd {container['args']}: {result.output}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_drain(overlay: str) -> None:
    docs = render(overlay)
    values = config(docs)
    spec = one(docs, "Deployment", "predictd")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(values["PREDICTD_PORT"])}
    assert values["PREDICTD_HOST"] == "0.0.0.0"
    probes = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in probes.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(values["PREDICTD_SHUTDOWN_DELAY_S"]) + float(values["PREDICTD_SHUTDOWN_FLUSH_S"])
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain
    # The spool is on a volume at PREDICTD_SPOOL_DIR.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[values["PREDICTD_SPOOL_DIR"]] == "spool"
    agent = one(docs, "Deployment", "predictd-agent")["spec"]["template"]["spec"]
    assert agent["containers"][0]["args"] == ["actions", "run"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay: str) -> None:
    docs = render(overlay)
    secrets_dir = config(docs)["PREDICTD_SECRETS_DIR"]
    for name, spec in pod_specs(docs):
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == "predictd", name
        pod = spec["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (10001,) * 3, name
        assert pod["runAsNonRoot"] is True
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "memory" in container["resources"]["limits"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts[secrets_dir] == "secrets", name
            source = {k for k in volumes["secrets"] if k != "name"}
            assert source == ({"csi"} if overlay.startswith("prod") else {"secret"}), name
    sa = one(docs, "ServiceAccount", "predictd")
    assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_meet(overlay: str) -> None:
    """Service, PDB, HPA and NetworkPolicy reach the serving pods; the ingress policy lets in
    only the ingress controller and Prometheus; egress is DNS, PostgreSQL and Redis (+ HTTPS
    in prod, for Blob Storage and Key Vault)."""
    docs = render(overlay)
    server = one(docs, "Deployment", "predictd")
    labels = server["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector.items() <= labels.items())

    assert selects(one(docs, "Service", "predictd")["spec"]["selector"])
    assert selects(one(docs, "PodDisruptionBudget", "predictd")["spec"]["selector"]["matchLabels"])
    hpa = one(docs, "HorizontalPodAutoscaler", "predictd")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "predictd"
    assert hpa["minReplicas"] >= 1
    agent = one(docs, "Deployment", "predictd-agent")["spec"]["template"]["metadata"]["labels"]
    assert not one(docs, "Service", "predictd")["spec"]["selector"].items() <= agent.items()
    ingress = one(docs, "NetworkPolicy", "predictd-server-ingress")["spec"]
    assert selects(ingress["podSelector"]["matchLabels"])
    peers = [p for rule in ingress["ingress"] for p in rule["from"]]
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    egress = one(docs, "NetworkPolicy", "predictd-egress")["spec"]
    ports = {p["port"] for rule in egress["egress"] for p in rule["ports"]}
    assert ports == ({53, 5432, 6380, 443} if overlay.startswith("prod") else {53, 5432, 6379})
    deny = one(docs, "NetworkPolicy", "predictd-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_monitoring() -> None:
    """The ServiceMonitor scrapes the Service's named port at /metrics with a bearer key from
    a Secret (/metrics is not public), and the rules use metrics predictd exports."""
    docs = render("prod")
    service = one(docs, "Service", "predictd")
    monitor = one(docs, "ServiceMonitor", "predictd")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["endpoints"]] == [("http", "/metrics")]
    assert monitor["endpoints"][0]["port"] in port_names
    assert config(docs)["PREDICTD_METRICS_PUBLIC"] == "false"
    authorization = monitor["endpoints"][0]["authorization"]
    assert authorization["type"] == "Bearer"
    assert authorization["credentials"] == {"name": "predictd-metrics-token", "key": "token"}
    # the docs say how to make that Secret, with a read-scoped key
    text = DOCS.read_text()
    assert "predictd keys create --name prometheus --scope read" in text
    assert "create secret generic predictd-metrics-token" in text
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    # The monitor's series (accuracy, drift, partitions) come from a collector reading the
    # database; its families are there before any read.
    series = MonitorSeries(Database(Settings(database_url="sqlite://").database), metrics,
                           timedelta(hours=1))  # fmt: skip
    exported: set[str] = set()
    for family in [*registry.collect(), *series.collect()]:
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
        exported |= {f"{family.name}_sum", f"{family.name}_count"}
    rules = one(docs, "PrometheusRule", "predictd")["spec"]["groups"]
    exprs = [r["expr"] for group in rules for r in group["rules"]]
    assert exprs
    assert all(r.get("alert") or r.get("record") for g in rules for r in g["rules"])
    used = {m for expr in exprs for m in re.findall(r"\bpredictd_[a-z0-9_]+", expr)}
    assert used
    assert used <= exported, used - exported


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling(overlay: str) -> None:
    """CPU always; requests per second (custom metrics API) with the opt-in component."""
    metrics = one(render(overlay), "HorizontalPodAutoscaler", "predictd")["spec"]["metrics"]
    kinds = [(m["type"], m.get("resource", m.get("pods", {})).get("name")) for m in metrics]
    assert kinds[0] == ("Resource", "cpu")
    custom = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
    assert custom == (["predictd_http_requests_per_second"] if "rps" in overlay else [])


def test_checkov_catches_a_privileged_container(tmp_path: Path) -> None:
    """The checkov run above would see a real problem: a privileged, writable container."""
    deployment = json.loads(json.dumps(one(render("dev"), "Deployment", "predictd")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"].update(privileged=True, readOnlyRootFilesystem=False)
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(deployment))
    command = [_tool("checkov"), "-d", str(tmp_path), "--framework", "kubernetes"]
    out = subprocess.run(
        [*command, "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    failed = {c["check_id"] for c in json.loads(out.stdout)["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_22"} <= failed


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (cpu in cores, memory in bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * factor
    return float(text)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_quota_fits_the_busiest_moment(overlay: str) -> None:
    """The HPA at its maximum mid-rollout (plus the surge), the agent, the migration and every
    CronJob at once: all within the namespace's ResourceQuota, or a scale-up would stall."""
    docs = render(overlay)
    hard = {
        k: quantity(v) for k, v in one(docs, "ResourceQuota", "predictd")["spec"]["hard"].items()
    }
    surge = 1.25  # maxSurge 25%
    needed = {"requests.cpu": 0.0, "requests.memory": 0.0, "limits.memory": 0.0, "pods": 0.0}
    for name, spec in pod_specs(docs):
        if name == "Deployment/predictd":
            max_replicas = one(docs, "HorizontalPodAutoscaler", "predictd")["spec"]["maxReplicas"]
            count = -(-max_replicas * surge // 1)
        elif name.startswith("Deployment/"):
            count = one(docs, "Deployment", name.split("/")[1])["spec"]["replicas"] + 1
        else:
            count = 1
        needed["pods"] += count
        for container in spec["containers"]:
            resources = container["resources"]
            needed["requests.cpu"] += count * quantity(resources["requests"]["cpu"])
            needed["requests.memory"] += count * quantity(resources["requests"]["memory"])
            needed["limits.memory"] += count * quantity(resources["limits"]["memory"])
    for key, value in needed.items():
        assert value <= hard[key], f"{key}: {value} needed, quota {hard[key]}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_are_not_public_behind_an_ingress(overlay: str) -> None:
    """An Ingress routes every path to the Service, /metrics included: there /metrics must
    keep asking for a read-scoped key (PREDICTD_METRICS_PUBLIC false, the default)."""
    docs = render(overlay)
    exposed = any(
        path["backend"]["service"]["name"] == "predictd"
        for ingress in docs
        if ingress["kind"] == "Ingress"
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    )
    assert exposed  # every overlay has the Ingress; otherwise this test proves nothing
    public = config(docs).get("PREDICTD_METRICS_PUBLIC", "false").lower()
    assert public in ("false", "0", "no", "off"), f"{overlay}: /metrics public on the internet"


def test_the_prometheusrule_is_rules_yml() -> None:
    """components/monitoring's PrometheusRule is generated from deploy/prometheus/rules.yml:
    the same groups, alerts, expressions and severities (not a second, drifting rule set)."""
    rules = yaml.safe_load(RULES.read_text())["groups"]
    rendered = one(render("prod"), "PrometheusRule", "predictd")["spec"]["groups"]
    assert rendered == rules
    generator = ROOT / "scripts" / "generate_prometheusrule.py"
    out = subprocess.run(
        [sys.executable, str(generator), "--check"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr


def test_dev_dependencies_live_outside_the_restricted_namespace() -> None:
    """Dev's PostgreSQL and Redis are Services in predictd-deps: the predictd namespace
    enforces Pod Security `restricted` (stock postgres/redis pods fail it) and denies all
    ingress by default, so a `postgres` in predictd would be unreachable or not run at all.
    The egress policy lets every predictd pod (server, agent, migrate Job, CronJobs) reach
    exactly that namespace on those ports."""
    docs = render("dev")
    labels = one(docs, "Namespace", "predictd")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    secrets = secret_variables(docs)
    ports = {}
    for name in ("DATABASE_URL", "REDIS_URL"):
        url = urlsplit(secrets[name])
        assert url.hostname is not None
        namespace_of_host = url.hostname.split(".")[1:2]
        assert namespace_of_host == ["predictd-deps"], f"{name}: {url.hostname} is not there"
        ports[name] = url.port
    egress = one(docs, "NetworkPolicy", "predictd-egress")["spec"]
    assert egress["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "predictd"}
    labelled = [
        d["spec"]["template"]["metadata"]["labels"]
        if d["kind"] != "CronJob"
        else d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "Job", "CronJob")
    ]
    assert all(pod["app.kubernetes.io/name"] == "predictd" for pod in labelled)
    for port in ports.values():
        rules = [r for r in egress["egress"] if any(p["port"] == port for p in r["ports"])]
        assert len(rules) == 1, port
        peers = rules[0]["to"]
        assert peers == [{"namespaceSelector": {"matchLabels": {NS_LABEL: "predictd-deps"}}}]
    text = DOCS.read_text()
    assert "kubectl create namespace predictd-deps" in text


def _docs_yaml_blocks(text: str) -> list[Doc]:
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, flags=re.S)
    return [d for block in blocks for d in yaml.safe_load_all(block) if isinstance(d, dict)]


def test_docs_name_the_image_and_the_secret_provider_class_as_the_manifests_do() -> None:
    """A kustomize `images:` entry that names another image is silently ignored, and a
    SecretProviderClass example that differs from the component misleads: the docs use the
    exact image name of base and the component's SecretProviderClass."""
    text = DOCS.read_text()
    k8s = text[text.index("## Kubernetes") : text.index("## Prometheus and Grafana")]
    azure = text[text.index("## Azure") : text.index("## CI pipeline")]
    images = {
        c["image"].split(":")[0]
        for _, spec in pod_specs(render("prod"))
        for c in spec["containers"]
    }
    assert len(images) == 1
    named = re.findall(r"images:\s*-\s*name:\s*([^\s,`]+)", k8s + azure)
    named += [
        entry["name"] for d in _docs_yaml_blocks(k8s + azure) for entry in d.get("images", [])
    ]
    assert named
    assert set(named) == images
    component = yaml.safe_load(
        (K8S / "components" / "azure-keyvault" / "secretproviderclass.yaml").read_text()
    )
    shown = [d for d in _docs_yaml_blocks(azure) if d.get("kind") == "SecretProviderClass"]
    assert len(shown) == 1

    def objects(spc: Doc) -> list[Doc]:
        return [
            yaml.safe_load(o) for o in yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"]
        ]

    assert shown[0]["metadata"]["name"] == component["metadata"]["name"]
    assert objects(shown[0]) == objects(component)
    secrets_dir = config(render("prod"))["PREDICTD_SECRETS_DIR"]
    mounts = set(re.findall(r"(?:mountPath|PREDICTD_SECRETS_DIR)\W+(/[\w/.-]+)", azure))
    assert mounts <= {secrets_dir}, mounts


def test_docs_list_what_the_prod_overlay_needs_in_the_cluster() -> None:
    """Terraform installs AKS and its add-ons (CSI driver, workload identity); the prod
    overlay also references an nginx ingress class, a cert-manager ClusterIssuer and the
    Prometheus Operator's CRDs, which the Azure steps must tell the operator to install."""
    docs = render("prod")
    text = DOCS.read_text()
    azure = text[text.index("## Azure") : text.index("## CI pipeline")]
    ingress = one(docs, "Ingress", "predictd")
    needed = []
    if ingress["spec"]["ingressClassName"] == "nginx":
        needed.append("ingress-nginx")
    issuer = ingress["metadata"]["annotations"].get("cert-manager.io/cluster-issuer")
    if issuer:
        needed += ["cert-manager", f"ClusterIssuer `{issuer}`"]
    if {d["kind"] for d in docs} & {"ServiceMonitor", "PrometheusRule"}:
        needed += ["Prometheus Operator", "kube-prometheus-stack"]
    assert needed
    missing = [n for n in needed if n not in azure]
    assert missing == []
