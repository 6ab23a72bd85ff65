"""Every variant (database x rate_limiter x use_docker) bakes into a clean, working project."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from expected_files import expected_files
from support import Variant, clean_env, output_of, pytest_summary, run, variant_params

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


@pytest.mark.parametrize("variant", ALL)
def test_structured_files_parse(project: Path, baked) -> None:
    parsed = []
    for relative in sorted(baked.files):
        path = project / relative
        if path.suffix == ".toml":
            tomllib.loads(path.read_text())
        elif path.suffix in (".yml", ".yaml"):
            list(yaml.safe_load_all(path.read_text()))
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            continue
        parsed.append(relative)
    assert "pyproject.toml" in parsed


@pytest.mark.parametrize("variant", ALL)
def test_python_is_ruff_clean(project: Path) -> None:
    check = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project)
    assert check.returncode == 0, output_of(check)
    formatted = run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=project
    )
    assert formatted.returncode == 0, output_of(formatted)


@pytest.mark.parametrize("variant", ALL)
def test_generated_test_suite_passes(
    project: Path, variant: Variant, fresh_database, redis_url: str | None
) -> None:
    extra = {}
    if variant.database == "postgresql":
        extra["TEST_DATABASE_URL"] = fresh_database("tests")
    if redis_url is not None:
        extra["TEST_REDIS_URL"] = redis_url
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=project,
        env=clean_env(**extra),
        timeout=900,
    )
    summary = pytest_summary(result.stdout)
    assert result.returncode == 0, output_of(result)
    assert " passed" in summary, output_of(result)
    assert "skipped" not in summary, output_of(result)
    assert "SKIPPED" not in result.stdout, output_of(result)


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
    env = clean_env(DATABASE_URL=database_url, SECRET_KEY=secrets.token_hex(32))

    def alembic(*args: str) -> None:
        result = run([sys.executable, "-m", "alembic", *args], cwd=project, env=env)
        assert result.returncode == 0, output_of(result)

    alembic("upgrade", "head")
    assert table_names(database_url) - {"alembic_version"}, "upgrade head created no table"
    alembic("check")  # the models and the migrations agree
    alembic("downgrade", "base")
    assert table_names(database_url) - {"alembic_version"} == set(), "downgrade left tables"
    alembic("upgrade", "head")  # and the round trip leaves nothing (types, indexes) behind
