"""Drop the files the answers switched off, write a local ``.env`` and say what to run next.

Offline and safe to re-run (cruft renders and runs hooks again on update): an existing
``.env`` and its secret are kept.
"""

import json
import os
import secrets
import shlex
import shutil
import sys
from pathlib import Path

ANSWERS = json.loads(
    r"""{{ {
        "database": cookiecutter.database,
        "rate_limiter": cookiecutter.rate_limiter,
        "use_docker": cookiecutter.use_docker,
        "output_dir": cookiecutter.get("_output_dir", ""),
    } | tojson }}"""
)

# (option, value) -> paths that answer makes unnecessary.
REMOVE_WHEN = {
    ("use_docker", "no"): [
        "Dockerfile",
        ".dockerignore",
        "docker-compose.yml",
        "docker-compose.prod.yml",
        "Caddyfile",
    ],
    ("database", "postgresql"): [
        "tests/test_sqlite_file.py",
    ],
    ("rate_limiter", "memory"): [
        "tests/test_redis_limiter.py",
    ],
}


def remove(path: Path) -> None:
    """Strict delete: a path missing from the table's target means the table is stale."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    else:
        raise FileNotFoundError(f"post-gen table names {path}, which the template does not have")


def write_env(project: Path) -> None:
    env = project / ".env"
    if env.exists():
        return
    lines = []
    for line in (project / "env.example").read_text().splitlines():
        if line.startswith("SECRET_KEY="):
            line = f"SECRET_KEY={secrets.token_urlsafe(48)}"
        lines.append(line)
    env.write_text("\n".join(lines) + "\n")
    env.chmod(0o600)


def next_steps(project: Path) -> str | None:
    """The two commands that take the new project to a running server.

    The hook runs inside the project; ``$PWD`` is still the directory of the shell that ran
    cookiecutter, so ``cd`` takes the short name when the project was made right there.
    Cruft (no ``_output_dir``) renders its updates in a temporary directory: nothing to say.
    """
    shell_dir = Path(os.environ.get("PWD", "/")).resolve()
    if project.parent == shell_dir:
        where = project.name
    elif ANSWERS["output_dir"]:
        where = str(project)
    else:
        return None
    return (
        f"Created {project.name}. Next:\n"
        f"  cd {shlex.quote(where)}\n"
        "  make install run    # then open http://127.0.0.1:8000/docs"
    )


def main() -> int:
    project = Path.cwd()
    for (option, value), paths in REMOVE_WHEN.items():
        if ANSWERS[option] == value:
            for relative in paths:
                remove(project / relative)
    write_env(project)
    steps = next_steps(project)
    if steps is not None:
        print(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
