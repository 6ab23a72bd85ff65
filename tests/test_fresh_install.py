"""The default project installs from its own pyproject into an empty virtualenv and passes.

The other tests share one environment holding every variant's dependencies, where a
dependency missing from the generated pyproject.toml would go unnoticed; this one would not.
It follows the generated README: `make install` (`uv sync --locked`: the committed lock)
and `make test` (.venv/bin/pytest).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from support import clean_env, output_of, pytest_summary, run, tool


@pytest.mark.slow
@pytest.mark.xdist_group("fresh-venv")
def test_default_project_installs_with_readme_commands_and_passes(bake, tmp_path: Path) -> None:
    project = bake(tmp_path)
    readme = (project / "README.md").read_text()
    assert "make install" in readme, "README's install command changed"
    assert "make test" in readme, "README's test command changed"
    makefile = (project / "Makefile").read_text()
    assert "uv sync --locked" in makefile
    assert "pip install -e . --group dev" in makefile

    # Nothing of the shared test environment on PATH: only the system and the new .venv.
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1", UV_PYTHON=sys.executable,
                    UV_PYTHON_DOWNLOADS="never")  # fmt: skip
    env["PATH"] = os.pathsep.join([str(Path(tool("uv")).parent), os.environ.get("PATH", "")])

    installed = run(["make", "install"], cwd=project, env=env, timeout=1200)
    assert installed.returncode == 0, output_of(installed)
    assert (project / ".venv" / "bin" / "python").exists()

    tests = run(["make", "test"], cwd=project, env=env, timeout=900)
    summary = pytest_summary(tests.stdout)
    assert tests.returncode == 0, output_of(tests)
    assert " passed" in summary, output_of(tests)
    assert "skipped" not in summary, output_of(tests)
