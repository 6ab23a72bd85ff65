"""Every variant (database x rate_limiter x use_docker) bakes into a clean, working project."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import re
import sqlite3
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks.infra import TEMPLATE_DIR, Variant, clean_env
from expected_files import ONLY_WITH, expected_files
from support import alembic_on, output_of, pytest_summary, run, variant_params

ALL = variant_params()

# Leftover template syntax. Email templates under app/templates/ are Jinja2 files of the
# generated app itself; there `{{ }}`/`{% %}` are expected but no cookiecutter variable is.
UNRENDERED = re.compile(r"\{\{-?\s*cookiecutter|\{%")
OWN_JINJA = re.compile(r"cookiecutter|\{%-?\s*(?:end)?raw\b")


@pytest.mark.parametrize("variant", ALL)
def test_bake_succeeds(bakes, variant: Variant) -> None:
    result = bakes.get(variant)
    assert result.error is None, result.error
    assert result.project is not None
    assert result.project.is_dir()
    assert result.project.name == "fastapi-auth"


@pytest.mark.parametrize("variant", ALL)
def test_exact_file_set(baked, variant: Variant) -> None:
    expected = expected_files(variant)
    actual = set(baked.files)
    unexpected, missing = sorted(actual - expected), sorted(expected - actual)
    assert not unexpected, f"unexpected files: {unexpected}"
    assert not missing, f"missing files: {missing}"


@pytest.mark.parametrize("variant", ALL)
def test_nothing_left_unrendered(project: Path, baked) -> None:
    leftovers = [name for name in baked.files if "{{" in name or "{%" in name]
    for relative in sorted(baked.files):
        try:
            text = (project / relative).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        pattern = OWN_JINJA if relative.startswith("app/templates/") else UNRENDERED
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                leftovers.append(f"{relative}:{number}: {line.strip()}")
    assert leftovers == []


TABLE_SEPARATOR = re.compile(r"\|(\s*:?-+:?\s*\|)+")


def markdown_tables(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """The tables of a Markdown text, by header row, with their rows; and the stray rows: lines
    of pipes outside any table (a row after a paragraph shows as text, not in the table)."""
    tables: dict[str, list[str]] = {}
    stray: list[str] = []
    lines = [*text.splitlines(), ""]
    rows: list[str] | None = None
    fenced = False
    for line, following in itertools.pairwise(lines):
        fenced ^= line.startswith("```")
        if fenced or not line.startswith("|"):
            rows = None
        elif rows is None and TABLE_SEPARATOR.fullmatch(following):
            rows = tables[line] = []
        elif rows is None:
            stray.append(line)
        elif not TABLE_SEPARATOR.fullmatch(line):
            rows.append(line)
    return tables, stray


@pytest.mark.parametrize("variant", ALL)
def test_readme_tables_are_whole(project: Path) -> None:
    """Every row of the README is in a table (the health checks are in the API table)."""
    tables, stray = markdown_tables((project / "README.md").read_text())
    assert stray == []
    api = tables["| method and path | auth | what it does |"]
    assert any(row.startswith("| `GET /health/live`") for row in api)


@pytest.mark.parametrize("variant", ALL)
def test_readme_and_env_example_agree_about_redis_url(project: Path, variant: Variant) -> None:
    """The README's settings table and env.example offer the same Redis, the same way."""
    readme_row = next(
        line
        for line in (project / "README.md").read_text().splitlines()
        if line.startswith("| `REDIS_URL` |")
    )
    env_example = (project / "env.example").read_text()
    setting = re.search(r"^(#\s*)?REDIS_URL=(\S+)$", env_example, re.MULTILINE)
    assert setting is not None, "env.example has no REDIS_URL line"
    assert f"`{setting[2]}`" in readme_row
    if variant.rate_limiter == "memory":  # optional there: both say what turns it on
        assert setting[1], "the memory variant's env.example sets REDIS_URL"
        assert "pip install redis" in env_example
        assert "pip install redis" in readme_row


PARSERS = {
    ".toml": tomllib.loads,
    ".yml": lambda text: list(yaml.safe_load_all(text)),
    ".yaml": lambda text: list(yaml.safe_load_all(text)),
    ".json": json.loads,
}


@pytest.mark.parametrize("variant", ALL)
def test_structured_files_parse(project: Path, baked) -> None:
    parsed, broken = [], []
    for relative in sorted(baked.files):
        parse = PARSERS.get(Path(relative).suffix)
        if parse is None:
            continue
        try:
            parse((project / relative).read_text())
        except Exception as error:
            broken.append(f"{relative}: {error}")
        parsed.append(relative)
    assert broken == []
    assert {"pyproject.toml", ".pre-commit-config.yaml", ".github/workflows/ci.yml"} <= set(parsed)


def requirements(lines: list[str]) -> dict[str, Requirement]:
    parsed = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {canonicalize_name(requirement.name): requirement for requirement in parsed}


@pytest.mark.parametrize("variant", ALL)
def test_dependencies_are_in_the_template_test_requirements(project: Path) -> None:
    """tests/requirements.txt installs every dependency of every variant, with the same bounds."""
    data = tomllib.loads((project / "pyproject.toml").read_text())
    needed = requirements(data["project"]["dependencies"] + data["dependency-groups"]["dev"])
    listed = requirements((TEMPLATE_DIR / "tests" / "requirements.txt").read_text().splitlines())
    assert sorted(set(needed) - set(listed)) == [], "missing from tests/requirements.txt"
    out_of_sync = [
        f"{name}: project {needed[name]} / tests {listed[name]}"
        for name in needed
        if needed[name].specifier != listed[name].specifier
        or not needed[name].extras <= listed[name].extras
    ]
    assert out_of_sync == []


@pytest.mark.parametrize("variant", ALL)
def test_python_is_ruff_clean(project: Path) -> None:
    check = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project)
    assert check.returncode == 0, output_of(check)
    formatted = run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=project
    )
    assert formatted.returncode == 0, output_of(formatted)


# use_docker adds no Python: one type check per database and rate limiter.
@pytest.mark.parametrize("variant", variant_params(use_docker="no"))
def test_python_is_strictly_typed(project: Path) -> None:
    """`make lint`'s mypy: strict, with the pydantic plugin, on app/, tests/ and alembic/."""
    result = run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull], cwd=project)
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    if errors:
        per_file = Counter(line.split(":", 1)[0] for line in errors)
        files = ", ".join(f"{name} ({count})" for name, count in sorted(per_file.items()))
        pytest.fail(
            f"mypy --strict: {len(errors)} errors in {len(per_file)} files: {files}\n\n"
            + "\n".join(errors),
            pytrace=False,
        )
    assert result.returncode == 0, output_of(result)


def run_generated_suite(
    project: Path, variant: Variant, fresh_database, redis_url: str | None, *args: str
) -> str:
    """The generated suite against the variant's servers, all green and nothing skipped."""
    extra = {}
    if variant.database == "postgresql":
        extra["TEST_DATABASE_URL"] = fresh_database("tests")
    if redis_url is not None:
        extra["TEST_REDIS_URL"] = redis_url
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args],
        cwd=project,
        env=clean_env(**extra),
        timeout=900,
    )
    summary = pytest_summary(result.stdout)
    assert result.returncode == 0, output_of(result)
    assert " passed" in summary, output_of(result)
    assert "skipped" not in summary, output_of(result)
    assert "SKIPPED" not in result.stdout, output_of(result)
    return result.stdout


DOCKER_FILES = ONLY_WITH[("use_docker", "yes")]
# What use_docker=yes may change outside the files it adds: the README's and Makefile's Docker
# sections, and .env's SECRET_KEY (each bake draws its own).
DOCKER_MAY_CHANGE = {"README.md", "Makefile", ".env"}


@pytest.mark.parametrize("variant", variant_params(use_docker="yes"))
def test_docker_adds_files_around_the_app_and_changes_nothing_in_it(
    bakes, baked, variant: Variant
) -> None:
    """The app, its tests, migrations and dependencies are the twin's without Docker, byte for
    byte: the generated suite that passes on the twin (below, with coverage) is this variant's."""
    twin = bakes.get(dataclasses.replace(variant, use_docker="no"))
    assert twin.project is not None
    assert twin.files <= baked.files, sorted(twin.files - baked.files)
    assert sorted(baked.files - twin.files) == sorted(DOCKER_FILES)
    changed = [
        name
        for name in sorted(twin.files - DOCKER_MAY_CHANGE)
        if (baked.project / name).read_bytes() != (twin.project / name).read_bytes()
    ]
    assert changed == []


# One suite run per app: use_docker=yes adds no code (above), so the no-Docker half of the
# variants covers every app, with CI's coverage floor measured on each.
@pytest.mark.parametrize("variant", variant_params(use_docker="no"))
def test_generated_test_suite_passes_ci_coverage_floor(
    project: Path, variant: Variant, fresh_database, redis_url: str | None
) -> None:
    """CI's test step (`pytest --cov=app`, tests/test_ci.py) with pyproject.toml's floor."""
    output = run_generated_suite(project, variant, fresh_database, redis_url, "--cov=app")
    floor = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["coverage"]["report"][
        "fail_under"
    ]
    reached = re.compile(rf"^Required test coverage of {floor}(\.0+)?% reached\.", re.MULTILINE)
    assert reached.search(output), output[-3000:]


# --------------------------------------------------------------------------- migrations
def table_names(database_url: str) -> set[str]:
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {name for (name,) in rows if not name.startswith("sqlite_")}

    import asyncpg

    async def go() -> set[str]:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row["tablename"] for row in rows}
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.mark.parametrize("variant", ALL)
def test_migrations_upgrade_check_downgrade(project: Path, fresh_database) -> None:
    database_url = fresh_database("alembic")
    alembic = alembic_on(project, database_url)
    alembic("upgrade", "head")
    assert table_names(database_url) - {"alembic_version"}, "upgrade head created no table"
    alembic("check")  # the models and the migrations agree
    alembic("downgrade", "base")
    assert table_names(database_url) - {"alembic_version"} == set(), "downgrade left tables"
    alembic("upgrade", "head")  # and the round trip leaves nothing (types, indexes) behind
