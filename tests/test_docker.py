"""Docker variants: linted Dockerfiles, valid compose files, and the containers' commands run
outside Docker (there is no engine here): the start command really migrates and serves, the
dev container's `alembic revision` writes a migration, Redis keeps its password off `ps`.

The compose files are resolved by `docker compose config` (or the standalone `docker-compose`),
which interpolates, checks the guards and applies profiles without an engine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from benchmarks.infra import BIN_DIR, Variant, clean_env
from benchmarks.procs import free_port
from support import (
    TAG_AND_DIGEST,
    group_alive,
    output_of,
    run,
    tool,
    variant_params,
    wait_until_ready,
)

DOCKER = variant_params(use_docker="yes")
PYTHON = sys.executable


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


# --------------------------------------------------------------------------- compose files
PROD = ["-f", "docker-compose.prod.yml"]
PRODUCTION_ENV = {"FRONTEND_URL": "https://app.example.com", "SMTP_HOST": "smtp.example.com"}


def compose_command() -> list[str]:
    """Compose v2 as a docker plugin, else the standalone docker-compose (Debian's package)."""
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"], cwd=Path.cwd()).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone is None:
        pytest.fail("neither `docker compose` nor `docker-compose` is installed", pytrace=False)
    return [standalone]


class Deployment(NamedTuple):
    path: Path
    secrets: dict[str, str]  # secret name -> the value in its file


@pytest.fixture
def deployment(project: Path, tmp_path: Path) -> Deployment:
    """A copy of the project as an operator prepares it: `.env.production` and `secrets/`.

    Each secret is a distinct random marker, so that a test can look for it anywhere.
    """
    copy = tmp_path / "deploy"
    shutil.copytree(project, copy)
    write_env_file(copy / ".env.production", PRODUCTION_ENV)
    config = yaml.safe_load((copy / "docker-compose.prod.yml").read_text())
    values = {}
    (copy / "secrets").mkdir()
    for name, secret in config["secrets"].items():
        values[name] = f"secret-{name}-{secrets.token_hex(8)}"
        (copy / secret["file"]).write_text(values[name] + "\n")
    return Deployment(copy, values)


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))


def compose(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([*compose_command(), *args], cwd=cwd, env=clean_env(**env))


def resolved(cwd: Path, *args: str, **env: str) -> dict[str, Any]:
    """The compose model after interpolation, as `config` prints it."""
    result = compose(cwd, *args, "config", **env)
    assert result.returncode == 0, output_of(result)
    model: dict[str, Any] = yaml.safe_load(result.stdout)
    return model


def production(copy: Path, *args: str) -> dict[str, Any]:
    """The production model as the README runs it, with the proxy profile."""
    return resolved(copy, "--env-file", ".env.production", *PROD, "--profile", "proxy", *args)


def shell_script(command: list[str]) -> str:
    """The script of a `sh -c` command or a CMD-SHELL test, with compose's `$$` escape undone."""
    assert command[:-1] in (["sh", "-c"], ["CMD-SHELL"]), command
    return command[-1].replace("$$", "$")


@pytest.mark.parametrize("variant", DOCKER)
def test_every_compose_file_resolves(deployment: Deployment) -> None:
    copy, _ = deployment
    resolved(copy)
    resolved(copy, "--env-file", ".env.production", *PROD)
    assert "proxy" in production(copy)["services"]


@pytest.mark.parametrize("variant", DOCKER)
@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_production_compose_names_a_missing_required_setting(
    deployment: Deployment, missing: str
) -> None:
    copy, _ = deployment
    write_env_file(
        copy / ".env.production",
        {name: value for name, value in PRODUCTION_ENV.items() if name != missing},
    )
    result = compose(copy, "--env-file", ".env.production", *PROD, "config")
    assert result.returncode != 0
    assert f"set {missing} in .env.production" in result.stderr, output_of(result)


@pytest.mark.parametrize("variant", DOCKER)
def test_production_compose_refuses_the_development_env(
    deployment: Deployment,
) -> None:
    """Without --env-file compose reads `.env`, the generator's development settings."""
    copy, _ = deployment
    assert (copy / ".env").exists()
    result = compose(copy, *PROD, "config")
    assert result.returncode != 0
    assert "--env-file .env.production" in result.stderr, output_of(result)


@pytest.mark.parametrize("variant", DOCKER)
def test_production_secrets_reach_the_services_only_as_files(
    deployment: Deployment,
) -> None:
    copy, values = deployment
    model = production(copy)
    text = yaml.safe_dump(model)
    leaked = [name for name, value in values.items() if value in text]
    assert leaked == [], "secret values in the resolved compose model (environment or commands)"
    api = model["services"]["api"]["environment"]
    plain = [name for name in api if re.search("(PASSWORD|SECRET_KEY|_URL)$", name)]
    assert plain == ["FRONTEND_URL"]  # the others arrive as *_FILE twins
    for name, value in api.items():
        if name.endswith("_FILE"):
            assert value.startswith("/run/secrets/"), name


@pytest.mark.parametrize("variant", DOCKER)
def test_production_api_trusts_the_proxy_and_no_other_container(
    deployment: Deployment,
) -> None:
    copy, _ = deployment
    model = production(copy)
    services = model["services"]
    proxy = ip_address(services["proxy"]["networks"]["backend"]["ipv4_address"])
    assert services["api"]["environment"]["TRUSTED_PROXIES"] == str(proxy)
    (network,) = model["networks"]["backend"]["ipam"]["config"]
    assert proxy in ip_network(network["subnet"])
    assert proxy not in ip_network(network["ip_range"]), "docker may give it to another container"
    assert all(
        "ipv4_address" not in (service.get("networks", {}).get("backend") or {})
        for name, service in services.items()
        if name != "proxy"
    )
    lines = (copy / "Caddyfile").read_text().splitlines()
    caddyfile = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert "reverse_proxy api:8000" in caddyfile
    assert "trusted_proxies" not in caddyfile  # Caddy then drops a client's own X-Forwarded-For


CLIENT_IP_OF = """
import sys
from app.core.config import Settings
from app.utils.client_ip import client_ip
trusted = Settings(_env_file=None, trusted_proxies=sys.argv[1]).trusted_networks
for peer in sys.argv[2:]:
    print(client_ip(peer, "198.51.100.7, 203.0.113.9", trusted))
"""


@pytest.mark.parametrize("variant", variant_params(use_docker="yes", database="sqlite"))
def test_production_api_reads_x_forwarded_for_from_the_proxy_alone(
    deployment: Deployment,
) -> None:
    """The app's own rule on the resolved settings: Caddy's hop is believed (its rightmost
    entry is the client it saw), the gateway and any other container are the client."""
    model = production(deployment.path)
    trusted = model["services"]["api"]["environment"]["TRUSTED_PROXIES"]
    proxy = model["services"]["proxy"]["networks"]["backend"]["ipv4_address"]
    (network,) = model["networks"]["backend"]["ipam"]["config"]
    gateway = str(next(ip_network(network["subnet"]).hosts()))
    other = str(next(ip_network(network["ip_range"]).hosts()))
    result = run(
        [str(BIN_DIR / "python"), "-c", CLIENT_IP_OF, trusted, proxy, gateway, other],
        cwd=deployment.path,
        env=clean_env(SECRET_KEY=secrets.token_urlsafe(48)),
    )
    assert result.returncode == 0, output_of(result)
    assert result.stdout.split() == ["203.0.113.9", gateway, other]


@pytest.mark.parametrize("variant", variant_params(use_docker="yes", database="sqlite"))
def test_the_proxy_will_not_start_without_its_domain(
    deployment: Deployment,
) -> None:
    copy, _ = deployment
    model = production(copy)
    script = shell_script(model["services"]["proxy"]["command"])
    result = run(["sh", "-c", script], cwd=copy, env=clean_env(API_DOMAIN=""))
    assert result.returncode == 1
    assert "set API_DOMAIN in .env.production" in result.stderr


@pytest.mark.parametrize(
    "variant", variant_params(use_docker="yes", database="postgresql", rate_limiter="redis")
)
def test_redis_reads_its_password_from_the_secret_file_not_its_command_line(
    deployment: Deployment, tmp_path: Path
) -> None:
    copy, values = deployment
    redis = production(copy)["services"]["redis"]
    port = free_port()
    secret = copy / "secrets" / "redis_password"
    conf = tmp_path / "redis.conf"

    def here(script: str) -> str:  # the container's paths, on this machine
        return script.replace("/run/secrets/redis_password", str(secret)).replace(
            "/tmp/redis.conf", str(conf)
        )

    script = here(shell_script(redis["command"]))
    script = script.replace(
        f"redis-server {conf}", f"redis-server {conf} --bind 127.0.0.1 --port {port}"
    )
    assert f"--port {port}" in script
    server = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        health = here(shell_script(redis["healthcheck"]["test"])).replace(
            "redis-cli", f"redis-cli -p {port}"
        )
        deadline = time.monotonic() + 10
        while run(["sh", "-c", health], cwd=tmp_path).returncode != 0:
            assert server.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.1)
        anonymous = run(["redis-cli", "-p", str(port), "ping"], cwd=tmp_path)
        assert "NOAUTH" in anonymous.stdout + anonymous.stderr
        processes = run(["ps", "-eo", "args"], cwd=tmp_path).stdout
        # The server's title, which replaces its argv once it runs; the password is nowhere.
        assert f"redis-server 127.0.0.1:{port}" in processes
        assert values["redis_password"] not in processes
        assert conf.stat().st_mode & 0o077 == 0, "the generated config is readable by others"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


# --------------------------------------------------------------------------- image installs
@dataclass
class Stage:
    """One build stage: what it starts from, its ENV (with the inherited one) and RUN scripts."""

    base: str
    env: dict[str, str] = field(default_factory=dict)
    instructions: list[str] = field(default_factory=list)  # one line each, continuations joined
    runs: list[str] = field(default_factory=list)  # RUN scripts without their --mount flags
    mounts: list[list[str]] = field(default_factory=list)  # each RUN's --mount flags


def dockerfile_stages(project: Path) -> dict[str, Stage]:
    """The Dockerfile's stages by name: a small reader for the instructions it uses."""
    text = (project / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in filter(None, map(str.strip, joined.splitlines())):
        keyword, _, rest = line.partition(" ")
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            inherited = stages[base].env if base in stages else {}
            stage = stages[name or base] = Stage(base, dict(inherited))
            continue
        assert stage is not None, f"{line!r} before any FROM"
        stage.instructions.append(line)
        if keyword == "ENV":
            stage.env.update(pair.split("=", 1) for pair in shlex.split(rest))
        elif keyword == "RUN":
            flags = re.findall(r"--mount=\S+", rest)
            stage.mounts.append(flags)
            stage.runs.append(re.sub(r"--mount=\S+\s*", "", rest).strip())
    return stages


def locked_version(project: Path, name: str) -> str:
    packages = tomllib.loads((project / "uv.lock").read_text())["package"]
    (version,) = [package["version"] for package in packages if package["name"] == name]
    return str(version)


@pytest.mark.parametrize("variant", DOCKER)
def test_the_image_installs_uv_lock_with_uv_and_a_cache_mount(project: Path) -> None:
    stages = dockerfile_stages(project)
    builder = stages["builder"]
    assert "COPY pyproject.toml uv.lock ./" in builder.instructions
    bootstrap, *syncs = builder.runs
    assert "--require-hashes --target /opt/uv" in bootstrap  # uv from the lock, not an image
    assert builder.env["PATH"].startswith("/opt/uv/bin:")
    assert syncs == ["uv sync --locked --no-dev --no-install-project"]
    assert builder.env["UV_PYTHON_DOWNLOADS"] == "never"
    assert stages["dev-builder"].base == "builder"
    assert stages["runtime"].base == stages["dev"].base == stages["builder"].base
    assert "COPY --from=builder /opt/venv /opt/venv" in stages["runtime"].instructions
    runtime = stages["runtime"].instructions
    copied = [line.split()[1] for line in runtime if line.startswith("COPY ")]
    assert not [source for source in copied if source.startswith(("web", "scripts/web", "tests"))]
    assert not [source for source in copied if source in {"scripts", "."}], "copies dev files"
    scripts = [script for stage in stages.values() for script in stage.runs]
    bypassing = [script for script in scripts if "pip " in script and script != bootstrap]
    assert bypassing == [], "an install bypassing uv.lock"
    for stage in stages.values():
        for script, mounts in zip(stage.runs, stage.mounts, strict=True):
            if script.startswith("uv "):
                assert mounts == ["--mount=type=cache,target=/root/.cache/uv"], script


def pulled_images(project: Path) -> dict[str, list[str]]:
    """Every image a build or a stack pulls, by the file naming it: the Dockerfile's FROM
    lines (not its own stages), compose `image:` keys (not the service it builds) and the CI
    job's service containers."""
    stages = dockerfile_stages(project)
    images = {"Dockerfile": [s.base for s in stages.values() if s.base not in stages]}
    for name in ("docker-compose.yml", "docker-compose.prod.yml"):
        services = yaml.safe_load((project / name).read_text())["services"].values()
        images[name] = [s["image"] for s in services if "image" in s and "build" not in s]
    jobs = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())["jobs"]
    services = [s for job in jobs.values() for s in job.get("services", {}).values()]
    images["ci.yml"] = [service["image"] for service in services]
    return images


@pytest.mark.parametrize(
    "variant", variant_params(use_docker="yes", database="postgresql", rate_limiter="redis")
)
def test_every_pulled_image_is_pinned_by_tag_and_digest(project: Path) -> None:
    """`name:tag@sha256:...`: the digest is what is pulled, the tag says what it is. A tag can
    be pushed again; a digest cannot. One image has one reference in every file."""
    images = pulled_images(project)
    everywhere = [image for found in images.values() for image in found]
    unpinned = [image for image in everywhere if not TAG_AND_DIGEST.fullmatch(image)]
    assert unpinned == [], "pin `name:x.y[.z][-variant]@sha256:<index digest>`"
    by_name: dict[str, set[str]] = {}
    for image in everywhere:
        by_name.setdefault(image.split(":")[0], set()).add(image)
    assert {name: refs for name, refs in by_name.items() if len(refs) > 1} == {}
    assert set(by_name) == {"python", "postgres", "redis", "caddy", "axllent/mailpit"}
    # A `# syntax=` directive pulls its frontend, an image too: BuildKit's bundled one is used.
    assert not (project / "Dockerfile").read_text().startswith("# syntax=")


def installed(python: Path) -> dict[str, str]:
    listed = run([tool("uv"), "pip", "list", "--format", "json", "--python", str(python)],
                 cwd=python.parent)  # fmt: skip
    assert listed.returncode == 0, output_of(listed)
    return {package["name"]: package["version"] for package in json.loads(listed.stdout)}


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant", variant_params(use_docker="yes", database="postgresql", rate_limiter="redis")
)
def test_the_image_install_commands_give_the_locked_runtime_and_dev_tools(
    project: Path, tmp_path: Path
) -> None:
    """The builder and dev-builder RUN scripts, minus Docker: in a build context holding what
    the Dockerfile copies, with /opt/venv and the image's Python mapped to this machine."""
    stages = dockerfile_stages(project)
    context = tmp_path / "build"
    context.mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(project / name, context)
    venv = tmp_path / "opt-venv"

    def here(value: str) -> str:
        for image_path, local in (
            ("/opt/venv", venv),
            ("/opt/uv", tmp_path / "opt-uv"),
            ("/usr/local/bin/python3", PYTHON),
            ("$PATH", os.environ["PATH"]),
        ):
            value = value.replace(image_path, str(local))
        return value

    pinned = {name: locked_version(project, name) for name in ("fastapi", "asyncpg", "redis")}
    for stage, present, absent in (
        ("builder", ["fastapi", "asyncpg", "redis"], ["pytest", "ruff", "mypy"]),
        ("dev-builder", ["fastapi", "pytest", "ruff", "mypy"], []),
    ):
        env = clean_env(**{name: here(value) for name, value in stages[stage].env.items()})
        for script in stages[stage].runs:
            result = run(["sh", "-c", here(script)], cwd=context, env=env, timeout=900)
            assert result.returncode == 0, output_of(result)
        uv = run([str(tmp_path / "opt-uv" / "bin" / "uv"), "--version"], cwd=context)
        assert uv.stdout.split()[:2] == ["uv", locked_version(project, "uv")], output_of(uv)
        packages = installed(venv / "bin" / "python")
        assert [name for name in present if name not in packages] == [], stage
        assert [name for name in absent if name in packages] == [], stage
        assert {name: packages[name] for name in pinned} == pinned, stage


@pytest.mark.slow
@pytest.mark.parametrize("variant", DOCKER[:1])
def test_the_image_refuses_a_uv_whose_hash_is_not_the_locks(project: Path, tmp_path: Path) -> None:
    """A swapped wheel (a compromised mirror, a re-uploaded file): pip checks the download
    against uv.lock's hashes and the build stops."""
    bootstrap = dockerfile_stages(project)["builder"].runs[0]
    lock = (project / "uv.lock").read_text()
    package = lock[lock.index('\nname = "uv"\n') :]
    wheels = package[: package.index("]\n")]
    forged = re.sub(r'hash = "sha256:[0-9a-f]{64}"', f'hash = "sha256:{"0" * 64}"', wheels)
    (tmp_path / "uv.lock").write_text(lock.replace(wheels, forged))
    script = bootstrap.replace("/usr/local/bin/python3", PYTHON)
    result = run(["sh", "-c", script.replace("/opt/uv", str(tmp_path / "opt-uv"))], cwd=tmp_path)
    assert result.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in result.stdout + result.stderr
    assert not (tmp_path / "opt-uv" / "bin" / "uv").exists()


# --------------------------------------------------------------------------- dev stack
@pytest.mark.parametrize("variant", DOCKER)
def test_dev_stack_builds_the_dev_stage_as_the_host_user(project: Path) -> None:
    model = resolved(project, HOST_UID="1234", HOST_GID="5678")
    build = model["services"]["api"]["build"]
    assert build["target"] == "dev"
    assert {key: str(value) for key, value in build["args"].items()} == {
        "UID": "1234",
        "GID": "5678",
    }
    stages = dockerfile_stages(project)
    dev = stages["dev"]
    # The dev tools (pytest, ruff, mypy): the virtualenv of the stage that syncs the dev group.
    assert "COPY --from=dev-builder /opt/venv /opt/venv" in dev.instructions
    assert stages["dev-builder"].runs == ["uv sync --locked --no-install-project"]
    assert "USER ${UID}:${GID}" in dev.instructions


@pytest.mark.parametrize("variant", DOCKER)
def test_alembic_revision_autogenerate_works_as_in_the_dev_container(
    project: Path, variant: Variant, fresh_database, tmp_path: Path
) -> None:
    """`docker compose run --rm api alembic revision --autogenerate -m x`, minus Docker: the
    service's environment (`.env`, then its `environment:`), the project as the working
    directory, and the image's PATH, which is the virtualenv alone."""
    copy = tmp_path / "dev"
    shutil.copytree(project, copy)
    api = resolved(copy)["services"]["api"]
    environment = {**read_env_file(copy / ".env"), **api.get("environment", {})}
    if variant.database == "postgresql":  # the `db` service is not here
        environment["DATABASE_URL"] = fresh_database("revision")
    environment.pop("REDIS_URL", None)  # nor `redis`: the limiter falls back to memory
    env = clean_env(**{name: str(value) for name, value in environment.items()})
    env["PATH"] = os.pathsep.join([str(BIN_DIR), "/usr/bin", "/bin"])
    versions = copy / "alembic" / "versions"
    before = set(versions.iterdir())

    for command in (
        ["alembic", "upgrade", "head"],
        ["alembic", "revision", "--autogenerate", "-m", "x"],
    ):
        result = run(command, cwd=copy, env=env)
        assert result.returncode == 0, output_of(result)

    (created,) = set(versions.iterdir()) - before
    assert created.name.endswith("_x.py")
    result = run([tool("ruff"), "format", "--check", str(created)], cwd=copy)
    assert result.returncode == 0, output_of(result)


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}
