"""The generated project's developer tooling works offline with its own dev dependencies:
pre-commit runs local hooks only, and Alembic formats new revisions with the ruff of the
interpreter running it (or say that they are left unformatted when it has none)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.infra import BIN_DIR, Variant, clean_env
from support import GIT_ENV, output_of, run, variant_params

BUILD_LEFTOVERS = shutil.ignore_patterns(".venv", "__pycache__", ".mypy_cache", ".ruff_cache")


def test_pre_commit_fetches_no_hook_repository(bake, tmp_path: Path) -> None:
    config = yaml.safe_load((bake(tmp_path) / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    languages = {hook["language"] for hook in config["repos"][0]["hooks"]}
    assert languages == {"unsupported"}, "every hook runs an installed tool; none builds an env"


@pytest.mark.parametrize("variant", variant_params())
def test_pre_commit_passes_on_every_file(project: Path, variant: Variant, tmp_path: Path) -> None:
    """`pre-commit run --all-files` in a fresh git repository of the project, with git unable
    to reach any host: the hooks pass and change nothing."""
    copy = tmp_path / project.name
    shutil.copytree(project, copy, ignore=BUILD_LEFTOVERS)
    env = clean_env(
        **GIT_ENV,
        HOME=str(tmp_path),
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        GIT_ALLOW_PROTOCOL="file",
    )
    for args in (["git", "init", "-q"], ["git", "add", "-A"]):
        assert run(args, cwd=copy, env=env).returncode == 0
    checked = run([str(BIN_DIR / "pre-commit"), "run", "--all-files"], cwd=copy, env=env)
    assert checked.returncode == 0, output_of(checked)


def path_without_ruff() -> str:
    path = os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not (Path(folder) / "ruff").exists() and Path(folder) != BIN_DIR
    )
    assert shutil.which("ruff", path=path) is None
    return path


def test_new_revision_is_formatted_without_ruff_on_path(bake, tmp_path: Path) -> None:
    """`make revision` with the project's interpreter, PATH holding no ruff at all."""
    project = bake(tmp_path / "out")
    env = clean_env(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", SECRET_KEY="k" * 64)
    env["PATH"] = path_without_ruff()
    make = ["make", f"BIN={BIN_DIR}/"]
    assert run([*make, "migrate"], cwd=project, env=env).returncode == 0
    made = run([*make, "revision", "m=add phone"], cwd=project, env=env)
    assert made.returncode == 0, output_of(made)
    [revision] = (project / "alembic" / "versions").glob("*_add_phone.py")
    formatted = run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(revision)],
        cwd=project,
    )
    assert formatted.returncode == 0, output_of(formatted)


def interpreter_without_ruff(where: Path) -> Path:
    """A virtualenv seeing every package of the test environment except ruff (offline)."""
    venv = where / "no-ruff"
    created = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=where)
    assert created.returncode == 0, output_of(created)
    [site] = (venv / "lib").glob("python3*/site-packages")
    [ours] = {Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()}
    for entry in ours.iterdir():
        if entry.name != "ruff" and not entry.name.startswith("ruff-"):
            (site / entry.name).symlink_to(entry)
    return venv / "bin" / "python"


def test_revision_without_ruff_installed_is_written_and_says_so(bake, tmp_path: Path) -> None:
    project = bake(tmp_path / "out")
    python = interpreter_without_ruff(tmp_path)
    assert run([str(python), "-c", "import ruff"], cwd=tmp_path).returncode != 0
    env = clean_env(SECRET_KEY="k" * 64)
    made = run([str(python), "-m", "alembic", "revision", "-m", "add phone"], cwd=project, env=env)
    assert made.returncode == 0, output_of(made)
    assert list((project / "alembic" / "versions").glob("*_add_phone.py")), output_of(made)
    assert "ruff not installed; migration left unformatted" in made.stdout, output_of(made)
