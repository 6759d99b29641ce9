"""deploy/terraform/azure, checked without a terraform binary: every file parses (python-hcl2),
names are consistent (variables declared and used, references to real resources, the outputs
the overlay needs), the security settings the issue asks for are there, and checkov reports no
failed check that is not skipped with a written reason."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.checks import ROOT, run, tool
from tests.support import services

TERRAFORM = ROOT / "deploy" / "terraform" / "azure"
PROD = ROOT / "deploy" / "k8s" / "overlays" / "prod"
SECRET_PROVIDER_CLASS = (
    ROOT / "deploy" / "k8s" / "components" / "azure-keyvault" / "secretproviderclass.yaml"
)
Blocks = dict[str, Any]

VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
# resource and data references inside expressions: azurerm_x.name / random_x.name / data.t.n
RESOURCE_REF = re.compile(r"(?<![\w.])((?:azurerm|random)_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")
DATA_REF = re.compile(r"\bdata\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)")
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+)(?::(.*))?")


def _parse(directory: Path) -> dict[str, Blocks]:
    """Every .tf file of `directory`, parsed by python-hcl2 inside .venv-checks."""
    python = tool("python")
    if run(python, "-c", "import hcl2").returncode != 0:
        services.unavailable("python-hcl2 (scripts/ensure_azure_tools.sh)")
    result = run(python, ROOT / "tests" / "deploy" / "hcl_dump.py", directory)
    assert result.returncode == 0, f"a .tf file does not parse: {result.stderr}"
    files: dict[str, Blocks] = json.loads(result.stdout)
    return files


@pytest.fixture(scope="module")
def parsed() -> dict[str, Blocks]:
    return _parse(TERRAFORM)


def _entries(files: dict[str, Blocks], kind: str) -> Iterator[tuple[str, Any]]:
    """(name, body) of every `variable`/`output` block, or ("type.name", body) of every
    `resource`/`data` block, over all files."""
    for blocks in files.values():
        for item in blocks.get(kind, []):
            for key, body in item.items():
                if kind in ("resource", "data"):
                    for name, inner in body.items():
                        yield f"{key}.{name}", inner
                else:
                    yield key, body


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The first nested block `name` of a resource body."""
    value = body[name]
    first = value[0] if isinstance(value, list) else value
    assert isinstance(first, dict)
    return first


def _resources(files: dict[str, Blocks]) -> dict[str, dict[str, Any]]:
    return dict(_entries(files, "resource"))


def test_every_file_parses(parsed: dict[str, Blocks]) -> None:
    on_disk = {p.name for p in TERRAFORM.glob("*.tf")}
    assert set(parsed) == on_disk
    assert {"versions.tf", "variables.tf", "outputs.tf"} <= on_disk


def _variable_problems(files: dict[str, Blocks]) -> tuple[set[str], set[str]]:
    """(used but not declared, declared but not used)."""
    declared = {name for name, _ in _entries(files, "variable")}
    used: set[str] = set()
    for blocks in files.values():
        # a variable's own validation mentions it; that is not a use
        rest = {kind: value for kind, value in blocks.items() if kind != "variable"}
        for text in _strings(rest):
            used.update(VAR_REF.findall(text))
    return used - declared, declared - used


def _dangling_references(files: dict[str, Blocks]) -> set[str]:
    """References to resources or data sources that no block declares. The lookbehind of
    RESOURCE_REF keeps `data.azurerm_x.y` out of the resource references."""
    declared = {name for name, _ in _entries(files, "resource")}
    declared |= {f"data.{name}" for name, _ in _entries(files, "data")}
    found = set()
    for text in _strings(list(files.values())):
        found |= {f"{kind}.{name}" for kind, name in RESOURCE_REF.findall(text)}
        found |= {f"data.{kind}.{name}" for kind, name in DATA_REF.findall(text)}
    return found - declared


def test_variables_are_declared_used_and_described(parsed: dict[str, Blocks]) -> None:
    assert _variable_problems(parsed) == (set(), set())
    for name, body in _entries(parsed, "variable"):
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_references_name_declared_resources(parsed: dict[str, Blocks]) -> None:
    assert _dangling_references(parsed) == set()


def test_the_checks_catch_a_broken_module(tmp_path: Path) -> None:
    # the consistency checks above, shown failing on a module with each mistake in it
    (tmp_path / "main.tf").write_text(
        'variable "unused" {\n  type = string\n}\n'
        'resource "azurerm_resource_group" "main" {\n'
        "  name     = var.undeclared\n"
        "  location = azurerm_virtual_network.missing.location\n"
        "  tags     = data.azurerm_client_config.gone.tenant_id\n"
        "}\n"
    )
    files = _parse(tmp_path)
    assert _variable_problems(files) == ({"undeclared"}, {"unused"})
    assert _dangling_references(files) == {
        "azurerm_virtual_network.missing",
        "data.azurerm_client_config.gone",
    }
    (tmp_path / "broken.tf").write_text('resource "azurerm_resource_group" "x" {\n  name = \n')
    result = run(tool("python"), ROOT / "tests" / "deploy" / "hcl_dump.py", tmp_path)
    assert result.returncode != 0
    assert "broken.tf" in result.stderr


def test_outputs_the_overlay_needs(parsed: dict[str, Blocks]) -> None:
    outputs = dict(_entries(parsed, "output"))
    needed = {
        "acr_login_server",
        "aks_name",
        "key_vault_name",
        "key_vault_uri",
        "workload_identity_client_id",
        "tenant_id",
        "applicationinsights_connection_string",
        "artifact_url",
        "artifact_storage_account",
        "redis_url_secret_name",
        "input_hash_key_secret_name",
        "postgres_subnet_cidr",
        "redis_subnet_cidr",
    }
    assert needed <= set(outputs)
    resources = set(_resources(parsed))
    for name, body in outputs.items():
        assert body.get("description"), f"output {name} has no description"
        refs = {f"{k}.{n}" for k, n in RESOURCE_REF.findall(str(body["value"]))}
        refs |= {f"data.{k}.{n}" for k, n in DATA_REF.findall(str(body["value"]))}
        assert refs, f"output {name} references no resource"
        assert all(r in resources or r.startswith("data.") for r in refs), name
    assert outputs["applicationinsights_connection_string"]["sensitive"] is True


def test_providers_are_pinned(parsed: dict[str, Blocks]) -> None:
    terraform = _block(parsed["versions.tf"], "terraform")
    providers = _block(terraform, "required_providers")
    for name, spec in providers.items():
        pin = spec[0] if isinstance(spec, list) else spec
        assert re.fullmatch(r"~> \d+\.\d+", pin["version"]), f"{name} not pinned: {pin}"
        assert pin["source"] == f"hashicorp/{name}"


def test_postgres_is_private_and_requires_tls(parsed: dict[str, Blocks]) -> None:
    resources = _resources(parsed)
    server = resources["azurerm_postgresql_flexible_server.main"]
    assert server["public_network_access_enabled"] is False
    assert "azurerm_subnet.postgres" in server["delegated_subnet_id"]
    assert "azurerm_private_dns_zone.postgres" in server["private_dns_zone_id"]
    subnet = resources["azurerm_subnet.postgres"]
    delegation = _block(_block(subnet, "delegation"), "service_delegation")
    assert delegation["name"] == "Microsoft.DBforPostgreSQL/flexibleServers"
    settings = {
        body["name"]: body["value"]
        for key, body in resources.items()
        if key.startswith("azurerm_postgresql_flexible_server_configuration.")
    }
    assert settings["require_secure_transport"] == "on"
    # the URL handed to predictd asks for TLS too
    assert "sslmode=require" in _block(parsed["postgres.tf"], "locals")["database_url"]


def test_key_vault_holds_the_secrets_under_rbac(parsed: dict[str, Blocks]) -> None:
    resources = _resources(parsed)
    vault = resources["azurerm_key_vault.main"]
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    assert vault["soft_delete_retention_days"] >= 7
    assert _block(vault, "network_acls")["default_action"] == "Deny"
    secrets = {k: v for k, v in resources.items() if k.startswith("azurerm_key_vault_secret.")}
    assert {"azurerm_key_vault_secret.database_url", "azurerm_key_vault_secret.admin_token"} <= set(
        secrets
    )
    assert "local.database_url" in secrets["azurerm_key_vault_secret.database_url"]["value"]


def test_registry_cluster_and_roles(parsed: dict[str, Blocks]) -> None:
    resources = _resources(parsed)
    assert resources["azurerm_container_registry.main"]["admin_enabled"] is False
    aks = resources["azurerm_kubernetes_cluster.main"]
    assert aks["oidc_issuer_enabled"] is True
    assert aks["workload_identity_enabled"] is True
    assert aks["local_account_disabled"] is True
    assert _block(aks, "key_vault_secrets_provider")["secret_rotation_enabled"] is True
    oms = _block(aks, "oms_agent")
    assert "azurerm_log_analytics_workspace.main" in oms["log_analytics_workspace_id"]
    insights = resources["azurerm_application_insights.main"]
    assert "azurerm_log_analytics_workspace.main" in insights["workspace_id"]

    roles = {
        body["role_definition_name"]: body
        for key, body in resources.items()
        if key.startswith("azurerm_role_assignment.")
    }
    assert "kubelet_identity" in roles["AcrPull"]["principal_id"]
    assert "azurerm_container_registry.main" in roles["AcrPull"]["scope"]
    user = roles["Key Vault Secrets User"]
    assert "azurerm_user_assigned_identity.predictd" in user["principal_id"]
    assert "azurerm_key_vault.main" in user["scope"]
    federated = resources["azurerm_federated_identity_credential.predictd"]
    assert "oidc_issuer_url" in federated["issuer"]
    assert federated["subject"].startswith("system:serviceaccount:")


def _skips_in_source() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(TERRAFORM.glob("*.tf")):
        for line in path.read_text().splitlines():
            match = SKIP_COMMENT.search(line)
            if match:
                found.append((path.name, match.group(1), (match.group(2) or "").strip()))
    return found


def test_every_checkov_skip_says_why() -> None:
    for file, check, reason in _skips_in_source():
        assert len(reason) >= 30, f"{file}: skip of {check} without a real reason"


def test_checkov_finds_no_unjustified_failure() -> None:
    checkov = tool("checkov")
    # --skip-download: no call to the Bridgecrew platform; the checks bundled with the package run.
    result = run(
        checkov,
        "-d",
        TERRAFORM,
        "--framework",
        "terraform",
        "--skip-download",
        "--output",
        "json",
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert failed == [], "checkov failures without a justified skip:\n" + "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    assert skipped == {check for _, check, _ in _skips_in_source()}, "stale or unread skip"


def test_docs_name_every_output(parsed: dict[str, Blocks]) -> None:
    # docs/deploy.md ("Azure") tells the operator where each output goes in the overlay
    docs = (ROOT / "docs" / "deploy.md").read_text()
    azure = docs[docs.index("## Azure") :]
    missing = [name for name, _ in _entries(parsed, "output") if f"`{name}`" not in azure]
    assert missing == []


def _variable_default(files: dict[str, Blocks], name: str) -> Any:
    return dict(_entries(files, "variable"))[name]["default"]


def test_key_vault_has_every_secret_the_secret_provider_class_mounts(
    parsed: dict[str, Blocks],
) -> None:
    """The CSI driver fails the whole mount (and the pod) on one missing object: every
    objectName of the azure-keyvault component is a secret Terraform writes, by that name."""
    spc = yaml.safe_load(SECRET_PROVIDER_CLASS.read_text())
    objects = yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"]
    mounted = {yaml.safe_load(o)["objectName"] for o in objects}
    assert len(mounted) == 4
    created = {
        body["name"]
        for key, body in _resources(parsed).items()
        if key.startswith("azurerm_key_vault_secret.")
    }
    assert mounted - created == set()


def test_redis_is_private_and_tls_only(parsed: dict[str, Blocks]) -> None:
    resources = _resources(parsed)
    redis = resources["azurerm_redis_cache.main"]
    assert redis["non_ssl_port_enabled"] is False
    assert redis["minimum_tls_version"] == "1.2"
    assert redis["public_network_access_enabled"] is False
    endpoint = resources["azurerm_private_endpoint.redis"]
    assert "azurerm_subnet.redis" in endpoint["subnet_id"]
    connection = _block(endpoint, "private_service_connection")
    assert "azurerm_redis_cache.main" in connection["private_connection_resource_id"]
    assert connection["subresource_names"] == "redisCache"
    zone = resources["azurerm_private_dns_zone.redis"]
    assert zone["name"] == "privatelink.redis.cache.windows.net"
    group = _block(endpoint, "private_dns_zone_group")
    assert "azurerm_private_dns_zone.redis" in str(group["private_dns_zone_ids"])
    link = resources["azurerm_private_dns_zone_virtual_network_link.redis"]
    assert "azurerm_virtual_network.main" in link["virtual_network_id"]
    # the URL predictd gets: TLS (rediss) on the TLS port, the key percent-encoded
    url = _block(parsed["redis.tf"], "locals")["redis_url"]
    assert url.startswith('${format("rediss://:%s@%s:%d/0"'), url
    assert "urlencode(azurerm_redis_cache.main.primary_access_key)" in url
    assert "ssl_port" in url
    secret = resources["azurerm_key_vault_secret.redis_url"]
    assert "local.redis_url" in secret["value"]


def test_prod_egress_matches_the_terraform_subnets(parsed: dict[str, Blocks]) -> None:
    """The prod overlay's egress policy allows PostgreSQL and Redis by CIDR: those CIDRs are
    the subnets Terraform creates (their defaults), or the pods cannot reach either."""
    policy = yaml.safe_load((PROD / "egress.yaml").read_text())
    by_port: dict[int, set[str]] = {}
    for rule in policy["spec"]["egress"]:
        cidrs = {peer["ipBlock"]["cidr"] for peer in rule.get("to", []) if "ipBlock" in peer}
        for port in rule["ports"]:
            by_port.setdefault(port["port"], set()).update(cidrs)
    assert by_port[5432] == {_variable_default(parsed, "postgres_subnet_cidr")}
    assert by_port[6380] == {_variable_default(parsed, "redis_subnet_cidr")}
    resources = _resources(parsed)
    assert "var.postgres_subnet_cidr" in str(resources["azurerm_subnet.postgres"])
    assert "var.redis_subnet_cidr" in str(resources["azurerm_subnet.redis"])


def test_prod_artifact_url_names_the_terraform_container(parsed: dict[str, Blocks]) -> None:
    settings = dict(
        line.split("=", 1)
        for line in (PROD / "config.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    container = _resources(parsed)["azurerm_storage_container.artifacts"]["name"]
    assert settings["PREDICTD_ARTIFACT_URL"].startswith(f"az://{container}/")
    output = dict(_entries(parsed, "output"))["artifact_url"]["value"]
    assert output.endswith("}/models"), output
    assert settings["PREDICTD_ARTIFACT_URL"] == f"az://{container}/models"
    # adlfs: the account (a placeholder of the output's shape) and credentialed access
    assert re.fullmatch(r"st[a-z0-9]{3,22}", settings["AZURE_STORAGE_ACCOUNT_NAME"])
    assert settings["AZURE_STORAGE_ANON"] == "false"


def test_prod_trusts_forwarded_addresses_from_the_aks_subnet_only(
    parsed: dict[str, Blocks],
) -> None:
    """With Azure CNI the ingress controller's pods have AKS-subnet addresses: that subnet,
    and nothing wider, is whom predictd believes X-Forwarded-For from."""
    settings = dict(
        line.split("=", 1)
        for line in (PROD / "config.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert settings["PREDICTD_FORWARDED_ALLOW_IPS"] == _variable_default(parsed, "aks_subnet_cidr")
    assert 'network_plugin = "azure"' in (TERRAFORM / "aks.tf").read_text()


def test_state_and_tfvars_are_git_ignored() -> None:
    """State holds every generated secret in clear text; tfvars the subscription and IPs."""
    ignored = [
        "terraform.tfstate",
        "terraform.tfstate.backup",
        "terraform.tfstate.1700000000.backup",
        "terraform.tfvars",
        "prod.tfvars",
        ".terraform/providers/registry.terraform.io/hashicorp/azurerm/x",
    ]
    kept = [".terraform.lock.hcl", "terraform.tfvars.example", "main.tf"]
    for name in ignored + kept:
        path = (TERRAFORM / name).relative_to(ROOT)
        result = run("git", "check-ignore", "--no-index", "-q", path)
        assert result.returncode == (0 if name in ignored else 1), f"{path}: {result.stderr}"


def test_remote_state_backend_is_offered() -> None:
    """A commented-out azurerm backend to fill in, and the docs say why (state holds secrets)."""
    versions = (TERRAFORM / "versions.tf").read_text()
    assert re.search(r'^\s*#\s*backend "azurerm" \{', versions, flags=re.M)
    docs = (ROOT / "docs" / "deploy.md").read_text()
    azure = docs[docs.index("## Azure") :]
    assert "-migrate-state" in azure
    assert "state holds" in azure
