"""Shared vocabulary of the template tests: the variants as pytest params, running commands.

The variants themselves, the clean environment and the servers come from benchmarks/infra.py,
which the benchmarks use too.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.infra import BIN_DIR, VARIANTS, clean_env, cookiecutter_config
from benchmarks.procs import free_port

# An image pinned by release and digest: `name:x.y[.z][-variant]@sha256:<64 hex>`. Docker pulls
# the digest (a tag can be pushed again); the tag says what it is.
TAG_AND_DIGEST = re.compile(
    r"[a-z0-9][\w./-]*:v?\d+\.\d+(?:\.\d+)?(?:-[\w.-]+)?@sha256:[0-9a-f]{64}"
)

# A git identity and no system config, for the repositories the tests make.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def variant_params(**only: str) -> list:
    """Variants as pytest params, filtered by answer, grouped so one xdist worker owns each bake."""
    return [
        pytest.param(v, id=v.id, marks=pytest.mark.xdist_group(v.id))
        for v in VARIANTS
        if all(getattr(v, key) == value for key, value in only.items())
    ]


def tool(name: str) -> str:
    """A console script of the interpreter running the tests, else one from PATH."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -r tests/requirements.txt)")
    return found


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def alembic_on(project: Path, database_url: str) -> Callable[..., None]:
    """`alembic(*args)`: the project's Alembic against `database_url`; fails the test on error."""
    env = clean_env(DATABASE_URL=database_url, SECRET_KEY=secrets.token_hex(32))

    def alembic(*args: str) -> None:
        result = run([sys.executable, "-m", "alembic", *args], cwd=project, env=env)
        assert result.returncode == 0, output_of(result)

    return alembic


def cookiecutter_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`cookiecutter ARGS` typed in a shell in `cwd`; its config and replay dir live there too."""
    config = cookiecutter_config(cwd / ".cookiecutter")
    env = clean_env(COOKIECUTTER_CONFIG=str(config), HOME=str(cwd), PWD=str(cwd))
    return run([tool("cookiecutter"), *args], cwd=cwd, env=env)


def output_of(result: subprocess.CompletedProcess[str], tail: int = 200) -> str:
    lines = (result.stdout + result.stderr).splitlines()
    return f"$ {' '.join(map(str, result.args))}\nexit {result.returncode}\n" + "\n".join(
        lines[-tail:]
    )


PYTEST_SUMMARY = re.compile(
    r"^=*\s*(\d+ (?:passed|failed|skipped|errors?|xfailed|xpassed|warnings?|deselected)\b"
    r".*\bin [\d.]+s\b.*?)\s*=*$",
    re.MULTILINE,
)


def pytest_summary(output: str) -> str:
    """The closing `N passed, M skipped in 3.2s` line of a pytest run (with or without -q)."""
    matches = PYTEST_SUMMARY.findall(output)
    return matches[-1] if matches else ""


def list_files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def wait_until_ready(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log when it dies or stalls."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}: {error.read()[:500]!r}"
        except OSError as error:
            last = repr(error)
        time.sleep(0.25)
    pytest.fail(f"{url} not ready after {timeout}s (last: {last}):\n{log.read_text()}")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def serving(project: Path, env: dict[str, str], log: Path, timeout: float = 90) -> Iterator[str]:
    """Run the generated service with uvicorn (one worker) for the block; yield its base URL."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/health/live", process, log, timeout)
        yield base
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM a server started in its own session (workers and reloaders too), then SIGKILL."""
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
