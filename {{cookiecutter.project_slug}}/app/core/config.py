"""All configuration in one place, read from the environment and `.env`."""

from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRET = "replace-with-a-random-secret-of-at-least-32-bytes"  # noqa: S105

CommaSeparated = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    project_name: str = {{ cookiecutter.project_name | python_string }}
    environment: Literal["development", "test", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    secret_key: SecretStr
    {%- if cookiecutter.database == "postgresql" %}
    database_url: str = "postgresql+asyncpg://app:app@localhost:5432/app"
    {%- else %}
    database_url: str = "sqlite+aiosqlite:///./app.db"
    {%- endif %}
    redis_url: str | None = None

    # Tokens and sessions
    access_token_ttl_seconds: int = Field(900, gt=0)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, gt=0)
    session_idle_timeout_seconds: int = Field(7 * 24 * 3600, gt=0)
    refresh_grace_seconds: int = Field(10, ge=0)
    verify_email_token_ttl_seconds: int = Field(48 * 3600, gt=0)
    reset_password_token_ttl_seconds: int = Field(3600, gt=0)
    session_binding: Literal["strict", "warn", "off"] = "strict"
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "{{ cookiecutter.project_slug }}"
    jwt_audience: str = "{{ cookiecutter.project_slug }}"

    # Cookies and browsers
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_domain: str | None = None
    cors_origins: CommaSeparated = []
    frontend_url: str = "http://localhost:3000"
    trusted_proxies: CommaSeparated = []

    # Email: without SMTP_HOST messages are written to the log instead
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: bool = True
    email_from: str = "no-reply@example.com"

    # Passwords (argon2 memory cost is in KiB)
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_cost: int = Field(65536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)
    password_min_length: int = Field(15, ge=8, le=128)
    # Worker processes on this host (scripts/start.sh exports it); they share the cores that
    # hash passwords, so that N workers never run N times as many hashes as there are cores.
    web_concurrency: int = Field(1, ge=1)

    # Requests whose body is larger are refused with 413 before it is read (64 KiB)
    max_request_body_bytes: int = Field(64 * 1024, ge=1024)

    # Rate limits, in the notation of the `limits` package ("20/minute", "10 per 15 minutes")
    rate_limit_enabled: bool = True
    rate_limit_login_ip: str = "20/minute"
    rate_limit_login_account: str = "10 per 15 minutes"
    rate_limit_register_ip: str = "10/hour"
    rate_limit_email: str = "5/hour"
    rate_limit_email_ip: str = "20/hour"

    @field_validator(
        "redis_url", "cookie_domain", "smtp_host", "smtp_user", "smtp_password", mode="before"
    )
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def split_commas(cls, value: str | list[str]) -> list[str]:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ip_network(item, strict=False)
        return value

    @field_validator("cors_origins")
    @classmethod
    def no_wildcard_origin(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("CORS_ORIGINS must list explicit origins; '*' cannot carry cookies")
        return value

    @model_validator(mode="after")
    def check_secret_key(self) -> "Settings":
        key = self.secret_key.get_secret_value()
        if len(key.encode()) < 32:
            raise ValueError(
                "SECRET_KEY must be at least 32 bytes; generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if self.environment == "production" and key == PLACEHOLDER_SECRET:
            raise ValueError("SECRET_KEY is still the placeholder from env.example")
        return self

    @cached_property
    def trusted_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(item, strict=False) for item in self.trusted_proxies]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]
