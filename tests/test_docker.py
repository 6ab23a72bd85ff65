"""Docker variants: linted Dockerfiles, valid compose files, and a container start command
that really migrates and serves (run outside Docker, against real PostgreSQL and Redis)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.infra import Variant, clean_env
from benchmarks.procs import free_port
from support import group_alive, output_of, run, tool, variant_params, wait_until_ready

DOCKER = variant_params(use_docker="yes")


@pytest.mark.parametrize("variant", DOCKER)
def test_dockerfiles_pass_hadolint(project: Path, baked) -> None:
    dockerfiles = sorted(name for name in baked.files if Path(name).name.startswith("Dockerfile"))
    assert dockerfiles, "a docker variant has no Dockerfile"
    for name in dockerfiles:
        result = run([tool("hadolint"), "--no-color", name], cwd=project)
        assert result.returncode == 0, output_of(result)


@pytest.mark.parametrize("variant", DOCKER)
def test_compose_files_match_the_compose_spec(project: Path, baked) -> None:
    compose_files = sorted(
        name
        for name in baked.files
        if "/" not in name and name.startswith("docker-compose") and name.endswith(".yml")
    )
    assert compose_files == ["docker-compose.prod.yml", "docker-compose.yml"]
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *compose_files],
        cwd=project,
    )
    assert result.returncode == 0, output_of(result)


@pytest.mark.parametrize(
    "variant", variant_params(database="postgresql", rate_limiter="redis", use_docker="yes")
)
def test_container_start_command_serves_ready(
    project: Path, variant: Variant, fresh_database, redis_url: str, tmp_path: Path
) -> None:
    start = project / "scripts" / "start.sh"
    assert os.access(start, os.X_OK), "scripts/start.sh must be executable (it is the image's CMD)"
    port = free_port()
    env = clean_env(
        DATABASE_URL=fresh_database("start"),
        REDIS_URL=redis_url,
        SECRET_KEY=secrets.token_urlsafe(48),
        ENVIRONMENT="production",
        SMTP_HOST="127.0.0.1",  # production refuses to start without one; no mail is sent here
        FRONTEND_URL="https://app.example.com",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        COOKIE_SECURE="true",
    )
    log = tmp_path / "start.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(start)],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we can reap every worker
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/health/ready", process, log, timeout=90)
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends; start.sh exec'd gunicorn
        returncode = process.wait(timeout=60)
        assert returncode == 0, f"exit {returncode} on SIGTERM:\n{log.read_text()}"
        deadline = time.monotonic() + 10
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(process.pid), f"workers outlived the master:\n{log.read_text()}"
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait()
