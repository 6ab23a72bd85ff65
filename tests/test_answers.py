"""Answers are validated before anything is written, and text answers are only ever data."""

from __future__ import annotations

import ast
import json
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from benchmarks.infra import TEMPLATE_DIR
from local_extensions import toml_string
from support import cookiecutter_cli, output_of, run


def test_every_question_has_a_plain_prompt() -> None:
    config = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
    prompts = config["__prompts__"]
    questions = [name for name in config if not name.startswith("_")]
    assert sorted(prompts) == sorted(questions)
    for name, prompt in prompts.items():
        if isinstance(config[name], list):  # a choice: a question plus a label per value
            assert prompt["__prompt__"].strip(), name
            assert sorted(k for k in prompt if k != "__prompt__") == sorted(config[name]), name
        else:
            assert prompt.strip(), name


def test_defaults_need_no_server(bake, tmp_path: Path) -> None:
    """Enter through every question: SQLite, in-memory limits, Docker files; no server needed."""
    project = bake(tmp_path)
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    names = " ".join(dependencies["dependencies"])
    assert "aiosqlite" in names
    assert "asyncpg" not in names
    assert "redis" not in names
    assert (project / "Dockerfile").exists()


def assert_nothing_left(output_dir: Path) -> None:
    assert sorted(p.name for p in output_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("context", "message"),
    [
        pytest.param(
            {"project_slug": "1bad"}, "project_slug='1bad' must start with", id="slug-digit"
        ),
        pytest.param({"project_slug": "Bad Slug"}, "project_slug='Bad Slug' must", id="slug-space"),
        pytest.param({"project_slug": "bad.slug"}, "project_slug='bad.slug' must", id="slug-dot"),
        # cookiecutter renders answers once, so literal template syntax needs raw blocks to
        # reach the hook; it must not reach a rendered file either.
        pytest.param(
            {"description": "{% raw %}{{ cookiecutter.project_slug }}{% endraw %}"},
            "description must not contain template syntax",
            id="description-template",
        ),
        pytest.param(
            {"project_name": "{% raw %}Auth {% if 1 %}{% endraw %}", "project_slug": "auth"},
            "project_name must not contain template syntax",
            id="name-template",
        ),
        pytest.param({"author_email": "not-an-email"}, "author_email='not-an-email'", id="email"),
        pytest.param(
            {"project_name": "N" * 61, "project_slug": "long"},
            "project_name is longer than 60 characters",
            id="name-too-long",
        ),
        pytest.param({"author_name": "  "}, "author_name must not be empty", id="blank"),
        pytest.param(
            {"description": "two\nlines"}, "description must be a single line", id="newline"
        ),
        pytest.param(
            {"author_name": "rub\x7fout"}, "author_name must be a single line", id="delete-char"
        ),
    ],
)
def test_bad_answer_fails_generation_and_leaves_nothing(
    bake, tmp_path: Path, capfd: pytest.CaptureFixture[str], context: dict, message: str
) -> None:
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    with pytest.raises(FailedHookException):
        bake(output_dir, **context)
    assert message in capfd.readouterr().err
    assert_nothing_left(output_dir)


def test_unknown_choice_is_refused_before_anything_is_written(bake, tmp_path: Path) -> None:
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    with pytest.raises(ValueError, match=r"mysql provided for choice variable database"):
        bake(output_dir, database="mysql")
    assert_nothing_left(output_dir)


def test_unknown_choice_from_a_replay_file_is_refused_by_the_hook(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A replay file skips cookiecutter's own choice check; the pre-gen hook still catches it."""
    config = tmp_path / "config.yaml"
    config.write_text(f"replay_dir: {tmp_path / 'replay'}\ncookiecutters_dir: {tmp_path / 'cc'}\n")
    cookiecutter(
        str(TEMPLATE_DIR),
        no_input=True,
        output_dir=str(tmp_path / "first"),
        config_file=str(config),
    )
    [replay_file] = (tmp_path / "replay").glob("*.json")
    replay = json.loads(replay_file.read_text())
    replay["cookiecutter"]["database"] = "mysql"
    replay_file.write_text(json.dumps(replay))
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(TEMPLATE_DIR),
            replay=str(replay_file),
            output_dir=str(output_dir),
            config_file=str(config),
        )
    assert "database='mysql' is not one of: sqlite, postgresql" in capfd.readouterr().err
    assert_nothing_left(output_dir)


def test_bad_answer_says_how_to_generate_again_from_the_saved_answers(tmp_path: Path) -> None:
    failed = cookiecutter_cli(
        "--no-input", str(TEMPLATE_DIR), "project_slug=My Auth", "author_name=Ada", cwd=tmp_path
    )
    assert failed.returncode != 0
    error, saved, command = failed.stderr.splitlines()[:3]
    assert error.startswith("ERROR: project_slug='My Auth' must start"), output_of(failed)
    assert saved.startswith("Your answers are saved in "), output_of(failed)
    program, option, replay_path, template = shlex.split(command)
    assert (program, option, template) == ("cookiecutter", "--replay-file", str(TEMPLATE_DIR))

    replay_file = Path(replay_path)
    replay = json.loads(replay_file.read_text())
    replay["cookiecutter"]["project_slug"] = "my-auth"
    replay_file.write_text(json.dumps(replay))
    again = cookiecutter_cli(option, replay_path, template, cwd=tmp_path)
    assert again.returncode == 0, output_of(again)
    pyproject = tomllib.loads((tmp_path / "my-auth" / "pyproject.toml").read_text())
    assert pyproject["project"]["authors"][0]["name"] == "Ada", "the other answers are kept"


@pytest.mark.parametrize(
    ("answer", "quoted_line"),
    [
        pytest.param("project_slug=My Auth", 0, id="hook-first-line"),
        pytest.param("database=mysql", -1, id="choice-last-line"),
    ],
)
def test_readme_quotes_what_a_bad_answer_prints(
    tmp_path: Path, answer: str, quoted_line: int
) -> None:
    failed = cookiecutter_cli("--no-input", str(TEMPLATE_DIR), answer, cwd=tmp_path)
    assert failed.returncode != 0
    printed = failed.stderr.splitlines()[quoted_line]
    assert printed in (TEMPLATE_DIR / "README.md").read_text(), output_of(failed)


NASTY_TEXT = [
    pytest.param('O\'Brien "Auth" \\ back\\\\slash', id="quotes-backslashes"),
    pytest.param("ends with a backslash \\", id="trailing-backslash"),
    pytest.param("'''; import os; os.system(\"touch PWNED\") #", id="triple-quote-injection"),
    pytest.param("\"); __import__('os').system('touch PWNED')#", id="call-injection"),
    pytest.param('"""+__import__("os").system("touch PWNED")+"""', id="docstring-injection"),
    pytest.param("Zoë's café ✓ <b>&amp;</b> $HOME `id`", id="unicode-markup"),
    pytest.param(("Long answer " * 16).strip(), id="longest-allowed"),  # the hook allows 200
]
MAX_NAME = 60  # project_name is a one-line title: the hook allows 60 characters


def string_constants(python_file: Path) -> set[str]:
    tree = ast.parse(python_file.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


@pytest.mark.parametrize("text", NASTY_TEXT)
def test_text_answers_render_as_data(
    bake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    output_dir = tmp_path / "out"
    name = text[:MAX_NAME]
    project = bake(
        output_dir,
        project_name=name,
        project_slug="safe-text",
        description=text,
        author_name=text,
    )

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == text
    assert pyproject["project"]["authors"][0]["name"] == text
    assert text in (project / "README.md").read_text()
    assert name in string_constants(project / "app" / "core" / "config.py")

    # The generated project's own `make lint` (ruff check + format) stays green.
    check = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project)
    assert check.returncode == 0, output_of(check)
    formatted = run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=project
    )
    assert formatted.returncode == 0, output_of(formatted)
    for where in (cwd, output_dir, TEMPLATE_DIR):
        assert list(where.rglob("PWNED")) == [], f"injected code ran in {where}"


def test_answers_are_rendered_once_by_cookiecutter(bake, tmp_path: Path) -> None:
    """Cookiecutter itself renders answers as Jinja once: ``{{ 7*7 }}`` arrives as ``49``."""
    project = bake(tmp_path, description="Costs {{ 7*7 }} coins")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == "Costs 49 coins"


def test_text_answers_read_in_pyproject_as_typed(bake, tmp_path: Path) -> None:
    """An apostrophe or an accent stays itself in the TOML source, not a JSON/HTML escape."""
    project = bake(tmp_path, author_name="Zoë O'Brien & <Co>", description="Ünïcode's fine")
    source = (project / "pyproject.toml").read_text()
    assert 'name = "Zoë O\'Brien & <Co>"' in source
    assert 'description = "Ünïcode\'s fine"' in source
    assert "\\u" not in source


@pytest.mark.parametrize(
    "text", ['say "hi"', "back\\slash", "tab\tnew\nline\r", "bell\x07 del\x7f", "Zoë ✓"]
)
def test_toml_strings_read_back_as_the_text(text: str) -> None:
    assert tomllib.loads(f"value = {toml_string(text)}")["value"] == text
