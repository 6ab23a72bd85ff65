"""Drop the files the answers switched off, put the variant's ``uv.lock`` in place, write a
local ``.env`` and say what to run next.

Offline and safe to re-run (cruft renders and runs hooks again on update): an existing
``.env`` and its secret are kept. The locks were resolved in the template (``make lock``
there), so generating needs no package index.
"""

import json
import os
import re
import secrets
import shlex
import shutil
import sys
from pathlib import Path

ANSWERS = json.loads(
    r"""{{ {
        "project_slug": cookiecutter.project_slug,
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

# (database, rate_limiter) -> the lock of that variant's pyproject.toml, which becomes uv.lock.
# use_docker changes no dependency.
LOCKS = ".uv-locks"
LOCK_FOR = {
    ("sqlite", "memory"): f"{LOCKS}/sqlite-memory.lock",
    ("sqlite", "redis"): f"{LOCKS}/sqlite-redis.lock",
    ("postgresql", "memory"): f"{LOCKS}/postgresql-memory.lock",
    ("postgresql", "redis"): f"{LOCKS}/postgresql-redis.lock",
}
# The name the locks were resolved under (the default slug); the hook writes the real one.
LOCKED_NAME = "fastapi-auth"


def remove(path: Path) -> None:
    """Strict delete: a path missing from the table's target means the table is stale."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    else:
        raise FileNotFoundError(f"post-gen table names {path}, which the template does not have")


def normalized(name: str) -> str:
    """A distribution name the way uv writes it in uv.lock (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def place_lock(project: Path) -> None:
    """Write the variant's lock as uv.lock under the project's own name, in uv's package order.

    uv sorts ``[[package]]`` tables by name, so after renaming the project's own entry the
    tables are sorted again: the file is byte for byte what ``uv lock`` would write.
    """
    folder = project / LOCKS
    present = {f"{LOCKS}/{path.name}" for path in folder.iterdir()}
    if present != set(LOCK_FOR.values()):
        raise FileNotFoundError(f"{LOCKS}/ holds {sorted(present)}; the hook's table names others")
    text = (project / LOCK_FOR[ANSWERS["database"], ANSWERS["rate_limiter"]]).read_text()
    header, *packages = text.split("\n[[package]]\n")
    own = f'name = "{LOCKED_NAME}"\nversion = '
    if sum(package.startswith(own) for package in packages) != 1:
        raise ValueError(f"the lock has no single package named {LOCKED_NAME}")
    name = normalized(ANSWERS["project_slug"])
    renamed = [package.replace(own, f'name = "{name}"\nversion = ', 1) for package in packages]
    blocks = [block.rstrip("\n") for block in renamed]
    blocks.sort(key=lambda block: block.split('"', 2)[1])
    body = "\n\n[[package]]\n".join(blocks)
    (project / "uv.lock").write_text(f"{header}\n[[package]]\n{body}\n")
    remove(folder)


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
    place_lock(project)
    write_env(project)
    steps = next_steps(project)
    if steps is not None:
        print(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
