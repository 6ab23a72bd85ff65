"""Every variant ships a uv.lock that matches its pyproject.toml, under the project's own name;
`make install` installs exactly that lock, and refuses one that no longer matches."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from benchmarks.infra import DATABASES, RATE_LIMITERS, TEMPLATE_DIR, clean_env
from locks import COMBOS, uv, uv_env
from support import output_of, pytest_summary, run, variant_params

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


# The Pythons the generated CI tests on (its matrix), as the template writes them.
CI_WORKFLOW = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / ".github" / "workflows" / "ci.yml"
CI_PYTHONS = json.loads(re.search(r"python-version: (\[.*\])", CI_WORKFLOW.read_text())[1])
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# A small part of the generated suite that goes through what differs between Python versions:
# the compiled dependencies (argon2, cryptography, asyncpg, pydantic-core), Alembic, sign-in,
# rotation, the mail outbox's encryption, the Redis limiter and a second factor.
SMOKE_TESTS = (
    "tests/test_migrations.py",
    "tests/test_register.py",
    "tests/test_login.py",
    "tests/test_refresh.py",
    "tests/test_outbox.py",
    "tests/test_redis_limiter.py",
    "tests/test_recovery_codes.py",
    "-k",
    "not send_mail",  # the `send-mail` command's own processes: the slowest, and not the point
)


def interpreter(version: str) -> Path | None:
    """An interpreter of `version` on this machine: pyenv's newest X.Y.*, else pythonX.Y on PATH
    (not a pyenv shim, which answers only for the versions pyenv has selected)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))

    def release(path: Path) -> list[int]:  # versions/3.13.0/bin/python3.13: [3, 13, 0]
        return [int(part) if part.isdigit() else -1 for part in path.parts[-3].split(".")]

    installed = sorted(root.glob(f"versions/{version}.*/bin/python{version}"), key=release)
    if installed:
        return installed[-1]
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if "shims" not in p
    )
    found = shutil.which(f"python{version}", path=path)
    return Path(found) if found else None


@pytest.mark.slow
@pytest.mark.parametrize("version", [v for v in CI_PYTHONS if v != THIS_PYTHON])
@pytest.mark.parametrize(
    "variant", variant_params(database="postgresql", rate_limiter="redis", use_docker="no")
)
def test_the_lock_installs_and_works_on_each_python_the_ci_tests(
    bake, tmp_path: Path, version: str, fresh_database, redis_url: str
) -> None:
    """The CI matrix tests Pythons this suite does not run on: `make install PYTHON=...` syncs
    the lock onto each one found here, and a part of the generated suite passes on it,
    against PostgreSQL and Redis. A dependency without a wheel or a release for that Python, or
    code that only works on the default one, fails here rather than in the project's CI."""
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (pyenv install {version})")
    project = bake(tmp_path, database="postgresql", rate_limiter="redis", use_docker="no")
    env = make_env(tmp_path)
    installed = run(["make", "install", f"PYTHON={python}"], cwd=project, env=env, timeout=900)
    assert installed.returncode == 0, output_of(installed)
    venv_python = project / ".venv" / "bin" / "python"
    reported = run([str(venv_python), "-c", "import sys; print(sys.version)"], cwd=project, env=env)
    assert reported.stdout.startswith(f"{version}."), output_of(reported)
    test_env = {
        **env,
        "PATH": os.pathsep.join([str(venv_python.parent), env["PATH"]]),  # its tools first
        "TEST_DATABASE_URL": fresh_database("py" + version.replace(".", "")),
        "TEST_REDIS_URL": redis_url,
    }
    tests = run([str(venv_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *SMOKE_TESTS],
                cwd=project, env=test_env, timeout=900)  # fmt: skip
    summary = pytest_summary(tests.stdout)
    assert tests.returncode == 0, output_of(tests)
    assert " passed" in summary, output_of(tests)
    assert "skipped" not in summary, output_of(tests)
