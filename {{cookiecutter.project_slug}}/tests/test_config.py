import secrets
import subprocess
import sys

import pytest
from httpx import AsyncClient
from pydantic import ValidationError

from app.core.config import PLACEHOLDER_SECRET, Settings
from tests.helpers import PROJECT, make_settings, subprocess_environment


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
