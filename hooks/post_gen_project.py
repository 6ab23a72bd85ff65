"""Drop the files the answers switched off and write a local ``.env``.

Offline and safe to re-run (cruft renders and runs hooks again on update): an existing
``.env`` and its secret are kept.
"""

import json
import secrets
import shutil
import sys
from pathlib import Path

ANSWERS = json.loads(
    r"""{{ {
        "database": cookiecutter.database,
        "rate_limiter": cookiecutter.rate_limiter,
        "use_docker": cookiecutter.use_docker,
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


def main() -> int:
    project = Path.cwd()
    for (option, value), paths in REMOVE_WHEN.items():
        if ANSWERS[option] == value:
            for relative in paths:
                remove(project / relative)
    write_env(project)
    return 0


if __name__ == "__main__":
    sys.exit(main())
