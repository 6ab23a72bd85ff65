"""Validate the answers before anything is written.

Answers arrive through ``tojson`` so quotes, backslashes or code in an answer stay data.
A bad answer exits 1 with one line saying what is wrong and how to re-run without typing
every answer again; cookiecutter then removes the half-made project directory.
"""

import json
import re
import shlex
import sys
from pathlib import Path

ANSWERS = json.loads(
    r"""{{ {
        "project_name": cookiecutter.project_name,
        "project_slug": cookiecutter.project_slug,
        "description": cookiecutter.description,
        "author_name": cookiecutter.author_name,
        "author_email": cookiecutter.author_email,
        "database": cookiecutter.database,
        "rate_limiter": cookiecutter.rate_limiter,
        "use_docker": cookiecutter.use_docker,
    } | tojson }}"""
)
# Where the answers came from, to tell the user how to re-run (cruft sets no ``_repo_dir``).
SOURCE = json.loads(
    r"""{{ {
        "template": cookiecutter.get("_template", ""),
        "repo_dir": cookiecutter.get("_repo_dir", ""),
    } | tojson }}"""
)

# {% raw %}
MIN_COOKIECUTTER = (2, 7)
CHOICES = {
    "database": ("sqlite", "postgresql"),
    "rate_limiter": ("memory", "redis"),
    "use_docker": ("yes", "no"),
}
TEXT_FIELDS = ("project_name", "description", "author_name", "author_email")
SLUG = re.compile(r"^[a-z][a-z0-9_-]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TEMPLATE_SYNTAX = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
MAX_TEXT = 200
MAX_NAME = 60  # the name is a title in code and docs; keep it one readable line


def problems() -> list[str]:
    found = []
    try:
        import cookiecutter

        version = tuple(int(part) for part in cookiecutter.__version__.split(".")[:2])
    except (ImportError, ValueError):
        version = MIN_COOKIECUTTER
    if version < MIN_COOKIECUTTER:
        found.append(
            f"this template needs cookiecutter >= 2.7 (you have {cookiecutter.__version__}); "
            'run: pip install -U "cookiecutter>=2.7"'
        )
    for name, allowed in CHOICES.items():
        if ANSWERS[name] not in allowed:
            found.append(f"{name}={ANSWERS[name]!r} is not one of: {', '.join(allowed)}")
    slug = ANSWERS["project_slug"]
    if not SLUG.match(slug):
        found.append(
            f"project_slug={slug!r} must start with a lower-case letter and hold only "
            "lower-case letters, digits, '-' and '_' (for example: my-auth-service)"
        )
    for name in TEXT_FIELDS:
        value = ANSWERS[name]
        if not value.strip():
            found.append(f"{name} must not be empty")
        elif len(value) > MAX_TEXT:
            found.append(f"{name} is longer than {MAX_TEXT} characters")
        elif any(ord(char) < 32 or ord(char) == 127 for char in value):
            found.append(f"{name} must be a single line without control characters")
        elif TEMPLATE_SYNTAX.search(value):
            found.append(f"{name} must not contain template syntax such as '{{{{' or '{{%'")
    if len(ANSWERS["project_name"]) > MAX_NAME:
        found.append(
            f"project_name is longer than {MAX_NAME} characters; put detail in the description"
        )
    if not EMAIL.match(ANSWERS["author_email"]):
        found.append(f"author_email={ANSWERS['author_email']!r} is not an email address")
    return found


def saved_replay() -> Path | None:
    """The replay file cookiecutter wrote for this run, when it can be found for certain.

    Cookiecutter saves the answers as ``<replay_dir>/<template folder>.json`` before it runs
    this hook. The file is named only when it holds exactly these answers: a ``--config-file``
    elsewhere or an older file would send the user to the wrong answers.
    """
    if not SOURCE["repo_dir"]:
        return None
    try:
        from cookiecutter.config import get_user_config
        from cookiecutter.exceptions import CookiecutterException
    except ImportError:
        return None
    try:
        replay = Path(get_user_config()["replay_dir"]) / f"{Path(SOURCE['repo_dir']).name}.json"
        saved = json.loads(replay.read_text())["cookiecutter"]
    except (CookiecutterException, OSError, ValueError, KeyError, TypeError):
        return None
    return replay if all(saved.get(key) == value for key, value in ANSWERS.items()) else None


def replay_hint() -> str:
    """How to correct the answers and generate again without typing them all."""
    template = shlex.quote(SOURCE["template"] or "<template>")
    replay = saved_replay()
    if replay is not None:
        return (
            f"Your answers are saved in {replay}: correct them there, then run\n"
            f"  cookiecutter --replay-file {shlex.quote(str(replay))} {template}"
        )
    return (
        "Cookiecutter saved your answers in its replay_dir (default ~/.cookiecutter_replay/), "
        "named after the template folder: correct them there, then run\n"
        f"  cookiecutter --replay-file <that file> {template}"
    )


if __name__ == "__main__":
    errors = problems()
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        print(replay_hint(), file=sys.stderr)
    sys.exit(1 if errors else 0)
# {% endraw %}
