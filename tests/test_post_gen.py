"""The post-gen hook: a local, git-ignored `.env` with a fresh secret; safe to re-run; cruft;
the commands printed after generation."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from benchmarks.infra import TEMPLATE_DIR
from support import GIT_ENV, cookiecutter_cli, output_of, run, tool

PLACEHOLDER = re.compile(r"change|replace|placeholder|example|your|generate|<|^$|x{8}", re.I)


def env_value(path: Path, name: str) -> str:
    values = [
        line.split("=", 1)[1].strip().strip("\"'")
        for line in path.read_text().splitlines()
        if line.startswith(f"{name}=")
    ]
    assert len(values) == 1, f"{path.name} should set {name} exactly once"
    return values[0]


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV, "HOME": str(cwd)}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_env_has_a_fresh_secret_and_is_git_ignored(bake, tmp_path: Path) -> None:
    first = bake(tmp_path / "one")
    second = bake(tmp_path / "two")

    secret = env_value(first / ".env", "SECRET_KEY")
    assert len(secret) >= 32
    assert secret != env_value(second / ".env", "SECRET_KEY"), "every project gets its own secret"
    assert stat.S_IMODE((first / ".env").stat().st_mode) == 0o600

    placeholder = env_value(first / "env.example", "SECRET_KEY")
    assert PLACEHOLDER.search(placeholder), f"env.example holds a real-looking key: {placeholder}"
    assert secret not in (first / "env.example").read_text()

    assert git("init", "-q", cwd=first).returncode == 0
    assert git("check-ignore", "-q", ".env", cwd=first).returncode == 0, ".env must be ignored"
    assert git("check-ignore", "-q", "env.example", cwd=first).returncode == 1
    git("add", "-A", cwd=first)
    tracked = git("ls-files", cwd=first).stdout.split()
    assert ".env" not in tracked
    assert "env.example" in tracked


def test_env_lists_what_env_example_lists(bake, tmp_path: Path) -> None:
    project = bake(tmp_path)

    def names(path: Path) -> list[str]:
        return [
            line.split("=", 1)[0]
            for line in path.read_text().splitlines()
            if re.match(r"^[A-Z][A-Z0-9_]*=", line)
        ]

    assert names(project / ".env") == names(project / "env.example")


@pytest.mark.parametrize("use_docker", ["yes", "no"])
def test_hooks_are_safe_to_rerun(
    cookiecutter_config: Path, tmp_path: Path, use_docker: str
) -> None:
    """Generating again over an existing project (as cruft does) keeps its `.env` secret."""

    def generate() -> Path:
        return Path(
            cookiecutter(
                str(TEMPLATE_DIR),
                no_input=True,
                extra_context={"use_docker": use_docker},
                output_dir=str(tmp_path),
                overwrite_if_exists=True,
                config_file=str(cookiecutter_config),
            )
        )

    project = generate()
    secret = env_value(project / ".env", "SECRET_KEY")
    again = generate()
    assert again == project
    assert env_value(project / ".env", "SECRET_KEY") == secret
    assert (project / "Dockerfile").exists() == (use_docker == "yes")


def printed_commands(output: str) -> list[str]:
    """The indented command lines of the hook's closing message, without their comments."""
    return [line.split("#")[0].strip() for line in output.splitlines() if line.startswith("  ")]


def test_generation_ends_with_the_next_two_commands(tmp_path: Path) -> None:
    made = cookiecutter_cli("--no-input", str(TEMPLATE_DIR), cwd=tmp_path)
    assert made.returncode == 0, output_of(made)
    cd, then = printed_commands(made.stdout)
    assert cd == "cd fastapi-auth"
    project = tmp_path / "fastapi-auth"
    assert then == "make install run"
    targets = run(["make", "--dry-run", *shlex.split(then)[1:]], cwd=project)
    assert targets.returncode == 0, output_of(targets)


def test_the_printed_cd_finds_a_project_made_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    made = cookiecutter_cli("--no-input", "-o", str(elsewhere), str(TEMPLATE_DIR), cwd=tmp_path)
    assert made.returncode == 0, output_of(made)
    cd = printed_commands(made.stdout)[0]
    assert shlex.split(cd) == ["cd", str((elsewhere / "fastapi-auth").resolve())]


IGNORED_IN_COPY = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "*.pyc"
)
CRUFT_MARKER = "# pulled in by cruft update"


def cruft_runner(executable: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`cruft(*args, cwd=..., answers="")`: that cruft, with `answers` typed at its prompts."""
    cruft_env = {**os.environ, **GIT_ENV}

    def cruft(*args: str, cwd: Path, answers: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable, *args], cwd=cwd, env=cruft_env, input=answers, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip

    return cruft


def template_repository(tmp_path: Path) -> Path:
    """This template as a git repository of its own, one commit deep."""
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, template, ignore=IGNORED_IN_COPY)
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "v1")):
        assert git(*args, cwd=template).returncode == 0
    return template


def cruft_project(cruft: Callable[..., subprocess.CompletedProcess[str]], template: Path) -> Path:
    """`cruft create` of the default project, committed as the README says."""
    out = template.parent / "out"
    out.mkdir()
    created = cruft("create", str(template), "--no-input", "--output-dir", str(out), cwd=out)
    assert created.returncode == 0, output_of(created)
    project = out / "fastapi-auth"
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "gen")):
        assert git(*args, cwd=project).returncode == 0
    return project


def change_template(template: Path) -> None:
    gitignore = template / "{{cookiecutter.project_slug}}" / ".gitignore"
    gitignore.write_text(gitignore.read_text() + f"\n{CRUFT_MARKER}\n")
    assert git("commit", "-q", "-am", "v2", cwd=template).returncode == 0


def test_cruft_create_check_update(tmp_path: Path) -> None:
    """The README's cruft workflow: create a project, see it is current, pull a template change."""
    cruft = cruft_runner(tool("cruft"))
    template = template_repository(tmp_path)
    project = cruft_project(cruft, template)
    cruft_json = json.loads((project / ".cruft.json").read_text())
    assert cruft_json["context"]["cookiecutter"]["database"] == "sqlite"
    secret = env_value(project / ".env", "SECRET_KEY")

    checked = cruft("check", cwd=project)
    assert checked.returncode == 0, output_of(checked)

    change_template(template)
    stale = cruft("check", cwd=project)
    assert stale.returncode != 0, output_of(stale)
    updated = cruft("update", "--skip-apply-ask", cwd=project)
    assert updated.returncode == 0, output_of(updated)
    assert CRUFT_MARKER in (project / ".gitignore").read_text()
    assert env_value(project / ".env", "SECRET_KEY") == secret, "update must keep the secret"
    assert not list(project.rglob("*.rej")), "the update left rejected hunks"
    checked = cruft("check", cwd=project)
    assert checked.returncode == 0, output_of(checked)


@pytest.mark.slow
@pytest.mark.xdist_group("fresh-venv")
def test_cruft_update_asks_and_applies_with_the_readme_pins(tmp_path: Path) -> None:
    """The README's `pip install cruft ...` line, in a new virtualenv: `cruft update` shows its
    choices and applies the change when answered `y` (typer 0.29 crashes at this prompt)."""
    readme = (TEMPLATE_DIR / "README.md").read_text()
    [install] = [line for line in readme.splitlines() if line.startswith("pip install cruft")]
    requirements = shlex.split(install.split("#")[0])[2:]
    venv = tmp_path / "cruft-venv"
    for args in (
        ["python3", "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", *requirements],
    ):
        step = run(args, cwd=tmp_path, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        assert step.returncode == 0, output_of(step)
    cruft = cruft_runner(str(venv / "bin" / "cruft"))
    template = template_repository(tmp_path)
    project = cruft_project(cruft, template)
    change_template(template)

    updated = cruft("update", cwd=project, answers="y\n")
    assert updated.returncode == 0, output_of(updated)
    assert "Apply diff and update? (y, n, s, v)" in updated.stdout, output_of(updated)
    assert CRUFT_MARKER in (project / ".gitignore").read_text()
    checked = cruft("check", cwd=project)
    assert checked.returncode == 0, output_of(checked)
