"""The default project installs from its own pyproject into an empty virtualenv and passes.

The other tests share one environment holding every variant's dependencies, where a
dependency missing from the generated pyproject.toml would go unnoticed; this one would not.
It follows the generated README as a newcomer with only python3 would: `make install`
(python3 -m venv .venv; uv, absent from PATH, installed into it with pip; `uv sync --locked`)
and `make test` (.venv/bin/pytest). uv downloads from the package index what its cache lacks.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks.infra import BIN_DIR, clean_env
from support import output_of, pytest_summary, run


@pytest.mark.slow
@pytest.mark.xdist_group("fresh-venv")
def test_default_project_installs_with_readme_commands_and_passes(bake, tmp_path: Path) -> None:
    project = bake(tmp_path)
    readme = (project / "README.md").read_text()
    assert "make install" in readme, "README's install command changed"
    assert "make test" in readme, "README's test command changed"
    makefile = (project / "Makefile").read_text()
    assert "-m venv $(VENV)" in makefile
    assert "sync --locked" in makefile

    # Nothing of the shared test environment on PATH, and no uv: the system's python3 alone.
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["PATH"] = os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and Path(folder) != BIN_DIR and not (Path(folder) / "uv").exists()
    )
    assert shutil.which("uv", path=env["PATH"]) is None
    assert shutil.which("python3", path=env["PATH"]) is not None

    installed = run(["make", "install"], cwd=project, env=env, timeout=1200)
    assert installed.returncode == 0, output_of(installed)
    assert "uv is not on PATH: installing uv" in installed.stdout, output_of(installed)
    assert "uv sync --locked" in installed.stdout, output_of(installed)
    assert (project / ".venv" / "bin" / "uv").exists()

    tests = run(["make", "test"], cwd=project, env=env, timeout=1800)
    summary = pytest_summary(tests.stdout)
    assert tests.returncode == 0, output_of(tests)
    assert " passed" in summary, output_of(tests)
    assert "skipped" not in summary, output_of(tests)
