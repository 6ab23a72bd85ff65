"""The generated CI: a valid, zizmor-clean workflow with pinned actions and a read-only token,
tests on every supported Python with a coverage floor, and the services each variant needs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.infra import Variant
from support import TAG_AND_DIGEST, output_of, run, tool, variant_params

ALL = variant_params()
WORKFLOW = ".github/workflows/ci.yml"
SERVICE_SETTINGS = {"postgres": "TEST_DATABASE_URL", "redis": "TEST_REDIS_URL"}

PINNED = re.compile(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}")
RELEASE = re.compile(r"# v\d+\.\d+\.\d+")
USES_LINE = re.compile(r"^\s*(?:- )?uses: (?P<ref>\S+)\s*(?P<comment>.*)$", re.MULTILINE)
PYTHON_CLASSIFIER = re.compile(r"Programming Language :: Python :: (\d+\.\d+)$")


def workflow(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / WORKFLOW).read_text())


def pyproject(project: Path) -> dict[str, Any]:
    return tomllib.loads((project / "pyproject.toml").read_text())


def pinned_python(project: Path) -> str:
    return (project / ".python-version").read_text().strip()


def ci_pythons(project: Path) -> list[str]:
    return workflow(project)["jobs"]["test"]["strategy"]["matrix"]["python-version"]


@pytest.mark.parametrize("variant", ALL)
def test_workflow_matches_the_github_workflow_schema(project: Path) -> None:
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", WORKFLOW],
        cwd=project,
    )
    assert result.returncode == 0, output_of(result)


@pytest.mark.parametrize("variant", ALL)
def test_workflow_has_no_zizmor_finding(project: Path) -> None:
    """Unpinned actions or images, persisted checkout credentials, a broad token: zizmor's
    audits, the pedantic ones included (a service image pinned by tag alone is one)."""
    zizmor = [tool("zizmor"), "--offline", "--no-progress", "--pedantic", WORKFLOW]
    result = run(zizmor, cwd=project)
    assert result.returncode == 0, output_of(result)  # zizmor exits 10+ on findings


@pytest.mark.parametrize("variant", ALL)
def test_actions_are_pinned_by_commit_with_their_release_in_a_comment(project: Path) -> None:
    uses = USES_LINE.findall((project / WORKFLOW).read_text())
    assert uses, "the workflow uses no action"
    unpinned = [f"{ref} {comment}" for ref, comment in uses if not PINNED.fullmatch(ref)]
    unnamed = [f"{ref} {comment}" for ref, comment in uses if not RELEASE.fullmatch(comment)]
    assert unpinned == []
    assert unnamed == [], "each pin names its release: `@<sha> # v1.2.3`"


@pytest.mark.parametrize("variant", ALL)
def test_one_pin_per_action(project: Path) -> None:
    pins: dict[str, set[str]] = {}
    for ref, comment in USES_LINE.findall((project / WORKFLOW).read_text()):
        action = ref.split("@", 1)[0]
        pins.setdefault(action, set()).add(f"{ref} {comment}")
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


@pytest.mark.parametrize("variant", ALL)
def test_the_token_can_only_read_the_repository(project: Path) -> None:
    config = workflow(project)
    assert config["permissions"] == {"contents": "read"}
    widened = [name for name, job in config["jobs"].items() if "permissions" in job]
    assert widened == []


@pytest.mark.parametrize("variant", ALL)
def test_checkout_keeps_no_credentials(project: Path) -> None:
    checkouts = [
        step
        for job in workflow(project)["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts, "no job checks the code out"
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)


@pytest.mark.parametrize("variant", ALL)
def test_tests_run_on_every_python_the_package_claims(project: Path) -> None:
    project_table = pyproject(project)["project"]
    claimed = [
        match[1]
        for classifier in project_table["classifiers"]
        if (match := PYTHON_CLASSIFIER.fullmatch(classifier))
    ]
    tested = ci_pythons(project)
    assert tested == claimed
    assert project_table["requires-python"] == f">={tested[0]}"


@pytest.mark.parametrize("variant", ALL)
def test_types_are_checked_for_the_oldest_tested_python(project: Path) -> None:
    assert pyproject(project)["tool"]["mypy"]["python_version"] == ci_pythons(project)[0]


@pytest.mark.parametrize("variant", ALL)
def test_lint_and_types_run_once_on_the_pinned_python(project: Path) -> None:
    lint = workflow(project)["jobs"]["lint"]
    assert "strategy" not in lint
    setup = next(step for step in lint["steps"] if "setup-python" in step.get("uses", ""))
    assert setup["with"]["python-version-file"] == ".python-version"
    assert pinned_python(project) in ci_pythons(project)
    commands = "\n".join(step.get("run", "") for step in lint["steps"])
    for command in ("ruff check .", "ruff format --check .", "mypy"):
        assert command in commands


@pytest.mark.parametrize("variant", variant_params(use_docker="yes"))
def test_the_image_runs_the_pinned_python(project: Path) -> None:
    dockerfile = (project / "Dockerfile").read_text()
    bases = re.findall(r"^FROM python:(\d+\.\d+)\b", dockerfile, re.MULTILINE)
    assert bases, "the Dockerfile has no python base image"
    assert set(bases) == {pinned_python(project)}


@pytest.mark.parametrize("variant", ALL)
def test_the_test_job_enforces_the_coverage_floor(project: Path) -> None:
    steps = workflow(project)["jobs"]["test"]["steps"]
    assert steps[-1]["run"] == "pytest --cov=app"
    floor = pyproject(project)["tool"]["coverage"]["report"]["fail_under"]
    assert isinstance(floor, int)
    assert floor > 0


@pytest.mark.parametrize("variant", ALL)
def test_services_are_the_ones_the_variant_needs(project: Path, variant: Variant) -> None:
    job = workflow(project)["jobs"]["test"]
    services, env = set(job.get("services", {})), set(job.get("env", {}))
    needed = {
        "postgres": variant.database == "postgresql",
        "redis": variant.rate_limiter == "redis",
    }
    assert services == {name for name, wanted in needed.items() if wanted}
    assert env == {SERVICE_SETTINGS[name] for name in services}


@pytest.mark.parametrize("variant", variant_params(database="postgresql", rate_limiter="redis"))
def test_service_images_are_pinned_by_release_and_digest(project: Path) -> None:
    services = workflow(project)["jobs"]["test"]["services"]
    images = [service["image"] for service in services.values()]
    assert images, "no service image"
    floating = [image for image in images if not TAG_AND_DIGEST.fullmatch(image)]
    assert floating == [], "pin `name:x.y[.z][-variant]@sha256:...`, not a tag that moves"
