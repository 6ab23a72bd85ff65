import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from httpx import AsyncClient
from pydantic import ValidationError

from app.core.config import PLACEHOLDER_SECRET, SECRET_SETTINGS, SecretFileError, Settings
from tests.helpers import PROJECT, import_app, make_settings, subprocess_environment


def test_short_secret_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        make_settings(secret_key="too-short")


def test_production_refuses_the_placeholder_secret() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        make_settings(environment="production", secret_key=PLACEHOLDER_SECRET)


def test_wildcard_cors_origin_is_refused() -> None:
    with pytest.raises(ValidationError, match="explicit origins"):
        make_settings(cors_origins=["*"])


def test_comma_separated_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("SECRET_KEY", secrets.token_urlsafe(48))

    settings = Settings(_env_file=None)
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_secret_key_never_shows_in_repr() -> None:
    settings = make_settings()
    assert settings.secret_key.get_secret_value() not in repr(settings)


def test_password_minimum_may_be_lowered_to_eight_but_no_further() -> None:
    assert make_settings(password_min_length=8).password_min_length == 8
    with pytest.raises(ValidationError, match="greater than or equal to 8"):
        make_settings(password_min_length=7)


def test_env_example_documents_every_setting() -> None:
    """env.example lists every setting (commented out or set), each under a comment."""
    lines = (PROJECT / "env.example").read_text().splitlines()
    documented = {}
    for number, line in enumerate(lines):
        name = line.lstrip("# ").split("=", 1)[0]
        if "=" in line and name.isupper():
            documented[name] = number
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in documented]
    assert missing == []
    for name, number in documented.items():
        assert lines[number - 1].startswith("#"), f"{name} has no comment above it"


# --- Production refuses what would be unsafe, one line per setting, no traceback ---------------
SAFE_PRODUCTION = {
    "environment": "production",
    "smtp_host": "smtp.example.com",
    "frontend_url": "https://app.example.com",
}
WEAK_SECRETS = {
    "placeholder in upper case": PLACEHOLDER_SECRET.upper(),
    "placeholder with a trailing dot": PLACEHOLDER_SECRET + ".",
    "one letter repeated": "a" * 32,
    "one digit repeated": "0" * 32,
    "a word repeated": "changeme" * 4,
    "a long unit repeated": "Xy7#kQ2!" * 2 + "Xy7#kQ2!" * 2,
}


@pytest.mark.parametrize("secret", WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_production_refuses_a_weak_secret_key(secret: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings(**{**SAFE_PRODUCTION, "secret_key": secret})


@pytest.mark.parametrize("secret", [secrets.token_urlsafe(48), secrets.token_hex(32)])
def test_production_accepts_a_random_secret_key(secret: str) -> None:
    assert make_settings(**{**SAFE_PRODUCTION, "secret_key": secret}).environment == "production"


def test_weak_secrets_are_allowed_outside_production() -> None:
    assert make_settings(secret_key="a" * 32).secret_key.get_secret_value() == "a" * 32


def test_production_refuses_to_run_without_an_smtp_server() -> None:
    with pytest.raises(ValidationError, match="SMTP_HOST"):
        make_settings(**{**SAFE_PRODUCTION, "smtp_host": None})


@pytest.mark.parametrize(
    "url",
    [
        "http://app.example.com",
        "https://localhost:3000",
        "https://127.0.0.1",
        "https://[::1]:8443",
        "https://app.localhost",
        "app.example.com",
    ],
)
def test_production_refuses_an_http_or_local_frontend_url(url: str) -> None:
    with pytest.raises(ValidationError, match="FRONTEND_URL"):
        make_settings(**{**SAFE_PRODUCTION, "frontend_url": url})


UNSAFE_PRODUCTION_ENV = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "changeme" * 4,
    "SMTP_HOST": "",
    "FRONTEND_URL": "http://localhost:3000",
}


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "from app.main import app"],
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        [
            sys.executable,
            "-m",
            "gunicorn",
            "app.main:app",
            "--bind",
            "127.0.0.1:0",
            "--worker-class",
            "app.worker.Worker",  # the worker class of scripts/start.sh
            "--workers",
            "1",
        ],
    ],
    ids=["import", "uvicorn", "gunicorn"],
)
def test_the_service_will_not_start_and_says_why_in_one_line_per_setting(
    command: list[str],
) -> None:
    result = subprocess.run(
        command,
        cwd=PROJECT,
        env=subprocess_environment(**UNSAFE_PRODUCTION_ENV),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    for setting in ("SECRET_KEY", "SMTP_HOST", "FRONTEND_URL"):
        assert len([line for line in lines if setting in line]) == 1, result.stderr


class TestProductionSchema:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(**SAFE_PRODUCTION)

    async def test_the_schema_and_docs_are_hidden(self, client: AsyncClient) -> None:
        assert (await client.get("/openapi.json")).status_code == 404
        assert (await client.get("/docs")).status_code == 404


class TestProductionSchemaOptIn:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(**SAFE_PRODUCTION, openapi_in_production=True)

    async def test_the_schema_is_served_when_asked_for(self, client: AsyncClient) -> None:
        assert (await client.get("/openapi.json")).status_code == 200


# --- Secrets from files: the `*_FILE` twins that Docker secrets are handed over in ---------------
FILE_SECRETS = {
    "secret_key": secrets.token_urlsafe(48),
    "database_url": "postgresql+asyncpg://app:s3cr3t-pw@db:5432/app",
    "redis_url": "redis://:s3cr3t-pw@redis:6379/0",
    "smtp_password": "s3cr3t smtp pw",
    "mfa_encryption_key": secrets.token_urlsafe(32),
    "metrics_token": secrets.token_urlsafe(32),
}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment holding none of the secret settings nor their twins but a valid key."""
    for field in SECRET_SETTINGS:
        monkeypatch.delenv(field.upper(), raising=False)
        monkeypatch.delenv(f"{field.upper()}_FILE", raising=False)
    monkeypatch.setenv("SECRET_KEY", secrets.token_urlsafe(48))
    return monkeypatch


def plain(value: object) -> object:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def write_secret(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secret"
    path.write_text(text)
    return path


@pytest.mark.parametrize("field", SECRET_SETTINGS)
def test_every_secret_setting_can_be_read_from_the_file_its_twin_names(
    field: str, secret_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_env.delenv(field.upper(), raising=False)
    path = write_secret(tmp_path, FILE_SECRETS[field] + "\n")
    secret_env.setenv(f"{field.upper()}_FILE", str(path))

    assert plain(getattr(Settings(_env_file=None), field)) == FILE_SECRETS[field]


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("pw with spaces \n", "pw with spaces "),
        ("windows-line-end\r\n", "windows-line-end"),
        ("two-newlines\n\n", "two-newlines\n"),
        ("no-newline", "no-newline"),
    ],
)
def test_only_the_final_line_end_of_a_secret_file_is_dropped(
    content: str, value: str, secret_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_env.setenv("SMTP_PASSWORD_FILE", str(write_secret(tmp_path, content)))

    password = Settings(_env_file=None).smtp_password
    assert password is not None
    assert password.get_secret_value() == value


def test_a_setting_and_its_file_twin_together_are_refused_without_the_value(
    secret_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = secrets.token_urlsafe(48)
    secret_env.setenv("SECRET_KEY", key)
    secret_env.setenv("SECRET_KEY_FILE", str(write_secret(tmp_path, key)))

    with pytest.raises(SecretFileError, match="SECRET_KEY and SECRET_KEY_FILE") as caught:
        Settings(_env_file=None)
    assert key not in str(caught.value)


def test_a_setting_in_dot_env_and_its_file_twin_are_refused_too(
    secret_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SMTP_PASSWORD={FILE_SECRETS['smtp_password']}\n")
    secret_env.setenv("SMTP_PASSWORD_FILE", str(write_secret(tmp_path, "other")))

    with pytest.raises(SecretFileError, match="SMTP_PASSWORD and SMTP_PASSWORD_FILE"):
        Settings(_env_file=dotenv)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing", "No such file"), ("", "Is a directory")],
    ids=["missing", "directory"],
)
def test_an_unreadable_secret_file_is_named_with_the_reason(
    name: str, reason: str, secret_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / name
    secret_env.setenv("DATABASE_URL_FILE", str(path))

    with pytest.raises(SecretFileError, match=f"DATABASE_URL_FILE: cannot read {path} .{reason}"):
        Settings(_env_file=None)


def test_a_binary_secret_file_is_refused_without_its_bytes(
    secret_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\xff\xfeleaked")
    secret_env.setenv("REDIS_URL_FILE", str(path))

    with pytest.raises(SecretFileError, match="not UTF-8") as caught:
        Settings(_env_file=None)
    assert "leaked" not in str(caught.value)
    assert "xff" not in str(caught.value)


@pytest.mark.parametrize("problem", ["missing file", "weak key"])
def test_a_bad_secret_file_stops_the_service_in_one_line_without_the_secret(
    problem: str, tmp_path: Path
) -> None:
    weak = "unique-marker-" + "ab" * 5  # under 32 bytes: refused in every environment
    path = tmp_path / "missing" if problem == "missing file" else write_secret(tmp_path, weak)
    environment = subprocess_environment(SECRET_KEY_FILE=str(path))
    del environment["SECRET_KEY"]
    result = import_app(tmp_path, environment)
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("Configuration error:") == 1, result.stderr
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert weak not in result.stderr
