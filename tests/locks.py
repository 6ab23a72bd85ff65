"""The generated project's ``uv.lock``: one per database x rate_limiter, kept in the template.

The post-gen hook copies the variant's lock into place, so generating needs no network. After
a change to the generated ``pyproject.toml`` run ``make lock`` in the template repository (it
runs this module: each variant's pyproject is rendered and ``uv lock`` updates its lock from the
committed one, keeping every version it can); ``make lock UPGRADE=1`` takes the newest
releases. tests/test_locks.py fails while a lock is stale.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
LOCK_DIR = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / ".uv-locks"
COMBOS = tuple(itertools.product(("sqlite", "postgresql"), ("memory", "redis")))


def lock_path(database: str, rate_limiter: str) -> Path:
    return LOCK_DIR / f"{database}-{rate_limiter}.lock"


def uv_env() -> dict[str, str]:
    """uv resolves for every supported Python; it needs an interpreter, not the pinned one."""
    return {**os.environ, "UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never"}


def uv() -> str:
    candidate = Path(sys.executable).parent / "uv"
    return str(candidate) if candidate.exists() else shutil.which("uv") or "uv"


def render(output_dir: Path, database: str, rate_limiter: str) -> Path:
    """The variant's files as the template has them, hooks off: default slug, all locks."""
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "config.yaml"
        config.write_text(f"cookiecutters_dir: {home}/c\nreplay_dir: {home}/r\n")
        return Path(
            cookiecutter(
                str(TEMPLATE_DIR),
                no_input=True,
                accept_hooks=False,
                extra_context={
                    "database": database,
                    "rate_limiter": rate_limiter,
                    "use_docker": "no",
                },
                output_dir=str(output_dir),
                config_file=str(config),
            )
        )


def relock(database: str, rate_limiter: str, upgrade: bool) -> bool:
    """Re-resolve one variant's lock; True when the committed file changed."""
    with tempfile.TemporaryDirectory(prefix="template-lock-") as tmp:
        project = render(Path(tmp), database, rate_limiter)
        target = lock_path(database, rate_limiter)
        if target.exists():
            shutil.copyfile(target, project / "uv.lock")
        args = [uv(), "lock", "--quiet", *(["--upgrade"] if upgrade else [])]
        subprocess.run(args, cwd=project, env=uv_env(), check=True)
        new = (project / "uv.lock").read_text()
    changed = not target.exists() or target.read_text() != new
    target.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="take the newest releases")
    args = parser.parse_args(argv)
    LOCK_DIR.mkdir(exist_ok=True)
    for database, rate_limiter in COMBOS:
        changed = relock(database, rate_limiter, args.upgrade)
        state = "updated" if changed else "unchanged"
        print(f"{lock_path(database, rate_limiter).relative_to(TEMPLATE_DIR)}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
