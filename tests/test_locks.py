"""Every variant ships a uv.lock that matches its pyproject.toml, under the project's own name;
`make install` installs exactly that lock, and refuses one that no longer matches."""

from __future__ import annotations

import itertools
import json
import os
import tomllib
from pathlib import Path

import pytest

from benchmarks.infra import DATABASES, RATE_LIMITERS, clean_env
from locks import COMBOS, uv, uv_env
from support import output_of, run

COMBO_IDS = [f"{database}-{rate_limiter}" for database, rate_limiter in COMBOS]


def lock_of(project: Path) -> dict[str, str]:
    """Package name -> version, as uv.lock pins them (the project's own entry left out)."""
    packages = tomllib.loads((project / "uv.lock").read_text())["package"]
    return {p["name"]: p["version"] for p in packages if p.get("source") != {"editable": "."}}


def make_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A newcomer's shell plus the template's uv on PATH (the shared uv cache is kept)."""
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    env["PATH"] = os.pathsep.join([str(Path(uv()).parent), os.environ.get("PATH", "")])
    return env


@pytest.mark.parametrize(("database", "rate_limiter"), COMBOS, ids=COMBO_IDS)
def test_generated_lock_is_current_without_network(
    bake, tmp_path: Path, database: str, rate_limiter: str
) -> None:
    project = bake(tmp_path, project_slug="my_auth-svc", database=database,
                   rate_limiter=rate_limiter, use_docker="no")  # fmt: skip
    assert not (project / ".uv-locks").exists()
    shipped = (project / "uv.lock").read_text()
    assert 'name = "my-auth-svc"' in shipped
    assert ("asyncpg" in lock_of(project)) == (database == "postgresql")
    assert ("redis" in lock_of(project)) == (rate_limiter == "redis")
    env = {**uv_env(), "UV_CACHE_DIR": str(tmp_path / "empty-cache")}
    checked = run([uv(), "lock", "--check", "--offline"], cwd=project, env=env)
    assert checked.returncode == 0, f"stale lock: run `make lock`\n{output_of(checked)}"
    relocked = run([uv(), "lock", "--offline"], cwd=project, env=env)
    assert relocked.returncode == 0, output_of(relocked)
    assert (project / "uv.lock").read_text() == shipped, "uv would rewrite the shipped lock"


def test_there_is_one_lock_per_database_and_rate_limiter_choice() -> None:
    assert sorted(COMBOS) == sorted(itertools.product(DATABASES, RATE_LIMITERS))


def test_use_docker_changes_no_dependency(bake, tmp_path: Path) -> None:
    with_docker = bake(tmp_path / "yes", use_docker="yes")
    without = bake(tmp_path / "no", use_docker="no")
    assert (with_docker / "pyproject.toml").read_text() == (without / "pyproject.toml").read_text()
    assert (with_docker / "uv.lock").read_text() == (without / "uv.lock").read_text()


def test_make_install_refuses_a_lock_the_pyproject_no_longer_matches(bake, tmp_path: Path) -> None:
    """A dependency added to pyproject.toml without `make lock`: `make install` stops with uv's
    message before installing anything. uv resolves against the index to see the lock is stale
    (offline, with a cold cache, it could only say a package is missing from the cache)."""
    project = bake(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace("dependencies = [\n", 'dependencies = [\n    "rich>=13",\n', 1)
    )
    installed = run(["make", "install"], cwd=project, env=make_env(tmp_path))
    assert installed.returncode != 0
    assert "uv sync --locked" in installed.stdout, output_of(installed)
    assert "needs to be updated" in installed.stderr, output_of(installed)
    site = project / ".venv" / "lib"
    assert not list(site.glob("python3*/site-packages/fastapi")), "installed from a stale lock"


@pytest.mark.slow
@pytest.mark.parametrize(("database", "rate_limiter"), COMBOS, ids=COMBO_IDS)
def test_make_install_syncs_exactly_the_lock(
    bake, tmp_path: Path, database: str, rate_limiter: str
) -> None:
    """`make install` (uv sync --locked; downloads what the shared uv cache lacks) on every
    variant, into a virtualenv of the machine's Python: the packages and versions of uv.lock."""
    project = bake(tmp_path, database=database, rate_limiter=rate_limiter, use_docker="no")
    env = make_env(tmp_path)
    installed = run(["make", "install"], cwd=project, env=env, timeout=900)
    assert installed.returncode == 0, output_of(installed)
    python = project / ".venv" / "bin" / "python"
    # uv's own verdict: the virtualenv holds exactly what uv.lock pins for this platform.
    checked = run(
        [uv(), "sync", "--locked", "--check"],
        cwd=project,
        env={**env, "UV_PROJECT_ENVIRONMENT": ".venv", "UV_PYTHON": str(python)},
    )
    assert checked.returncode == 0, output_of(checked)
    listed = run(
        [uv(), "pip", "list", "--format", "json", "--python", str(python)], cwd=project, env=env
    )
    assert listed.returncode == 0, output_of(listed)
    present = {p["name"]: p["version"] for p in json.loads(listed.stdout)}
    pinned = lock_of(project)
    driver = "asyncpg" if database == "postgresql" else "aiosqlite"
    for name in ("fastapi", "sqlalchemy", driver, "pytest", "ruff", "uv"):
        assert present.get(name) == pinned[name], name
    assert ("redis" in present) == (rate_limiter == "redis")
