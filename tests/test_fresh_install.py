"""The default project installs from its own pyproject into an empty virtualenv and passes.

The other tests share one environment holding every variant's dependencies, where a
dependency missing from the generated pyproject.toml would go unnoticed; this one would not.
It follows the generated README: `make install` (python3 -m venv .venv, then
.venv/bin/pip install -e ".[dev]") and `make test` (.venv/bin/pytest); pip uses the
machine's package index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.infra import clean_env
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
    assert 'pip install -e ".[dev]"' in makefile

    # Nothing of the shared test environment on PATH: only the system and the new .venv.
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["PATH"] = os.environ.get("PATH", "")

    installed = run(["make", "install"], cwd=project, env=env, timeout=1200)
    assert installed.returncode == 0, output_of(installed)
    assert (project / ".venv" / "bin" / "python").exists()

    tests = run(["make", "test"], cwd=project, env=env, timeout=900)
    summary = pytest_summary(tests.stdout)
    assert tests.returncode == 0, output_of(tests)
    assert " passed" in summary, output_of(tests)
    assert "skipped" not in summary, output_of(tests)
