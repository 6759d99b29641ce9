"""The users' CI workflow (.github/workflows/ci.yml) passes actionlint (with shellcheck on its
`run:` steps) and keeps the promises docs/deploy.md ("CI pipeline") makes: real PostgreSQL and
Redis for `make test` with services required, the image built, a push to GHCR on `v*` tags
only, minimal permissions and pinned actions."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.checks import ROOT, run, tool
from tests.support import services

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
# A full commit sha: a tag, even an exact release (v1.2.3), can be moved to other code.
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _actionlint(path: Path) -> str:
    """actionlint's findings for one workflow ("" when clean); shellcheck must be there too,
    or the `run:` steps would go unchecked without a word."""
    if shutil.which("shellcheck") is None:
        services.unavailable("shellcheck (scripts/ensure_azure_tools.sh)")
    done = run(tool("actionlint"), "-no-color", "-oneline", path, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout + done.stderr


def test_workflow_passes_actionlint() -> None:
    assert _actionlint(WORKFLOW) == ""


def test_actionlint_catches_what_it_should(tmp_path: Path) -> None:
    """The check is live: a runner label that does not exist, an untrusted pull-request title
    pasted into a shell script, and an unquoted variable (shellcheck's SC2086) are each found."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request\n"
        "permissions: {contents: read}\n"
        "jobs:\n"
        "  test:\n"
        "    runs-on: ubuntu-no-such-label\n"
        "    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
        "      - run: ls $HOME/*\n"
    )
    found = _actionlint(bad)
    assert "ubuntu-no-such-label" in found
    assert "github.event.pull_request.title" in found
    assert "untrusted" in found
    assert "SC2086" in found


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as True
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    return on


def test_test_job_runs_make_test_against_real_services(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    assert set(job["services"]) == {"postgres", "redis"}
    assert "5432:5432" in job["services"]["postgres"]["ports"]
    assert "6379:6379" in job["services"]["redis"]["ports"]
    env = job["env"]
    assert env["PREDICTD_REQUIRE_SERVICES"] == "1"
    assert env["PREDICTD_TEST_POSTGRES_URL"].startswith("postgresql://postgres@127.0.0.1:5432/")
    assert env["PREDICTD_TEST_REDIS_URL"].startswith("redis://127.0.0.1:6379/")
    commands = [step.get("run", "") for step in job["steps"]]
    assert "make test" in commands
    assert "scripts/ensure_azure_tools.sh" in commands


def test_image_is_built_and_pushed_on_tags_only(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    builds = [s.get("run", "") for s in jobs["image"]["steps"]]
    assert any(c.startswith("docker build") for c in builds)
    publish = jobs["publish"]
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert set(publish["needs"]) == {"test", "image"}
    push = next(s for s in publish["steps"] if "docker/build-push-action" in s.get("uses", ""))
    assert push["with"]["push"] is True
    login = next(s for s in publish["steps"] if "docker/login-action" in s.get("uses", ""))
    assert login["with"]["registry"] == "ghcr.io"
    assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    assert _triggers(workflow)["push"]["tags"] == ["v*"]


def test_permissions_are_minimal(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", {})
        writes = {scope for scope, level in granted.items() if level == "write"}
        assert writes == ({"packages"} if name == "publish" else set()), name


def test_dependabot_proposes_the_action_bumps() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"] for u in config["updates"]}
    assert "github-actions" in ecosystems


def test_actions_are_pinned(workflow: dict[str, Any]) -> None:
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses
    assert [u for u in uses if not PINNED.match(u)] == []
