"""All configuration in one place, read from the environment and `.env` (secrets also from
the files their `*_FILE` twins name)."""

import math
import re
import sys
from collections import Counter
from collections.abc import Mapping
from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Where this project was generated to keep rate-limit counters: "memory" or "redis".
RATE_LIMITER = "{{ cookiecutter.rate_limiter }}"
PLACEHOLDER_SECRET = "replace-with-a-random-secret-of-at-least-32-bytes"  # noqa: S105

# Compared with letters and digits only, case folded: `CHANGEME.` is `changeme`.
PLACEHOLDER_WORDS = ("replacewitharandomsecret", "changeme", "replaceme", "secretkey")
MIN_SECRET_BITS = 128  # estimated from the key's own characters
GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"  # noqa: S105

CommaSeparated = Annotated[list[str], NoDecode]

# Settings that may instead name a file holding the value: `SECRET_KEY_FILE=/run/secrets/key`.
SECRET_SETTINGS = (
    "secret_key",
    "database_url",
    "redis_url",
    "smtp_password",
    "mfa_encryption_key",
    "metrics_token",
)


class UnsafeSettings(ValueError):
    """Settings the service refuses to run with, one sentence per problem, each naming it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SecretFileError(ValueError):
    """A `*_FILE` setting that cannot be used; the message names the file, never its content."""


def read_secret_file(name: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(f"{name}_FILE: {path} is not UTF-8 text") from None
    except OSError as error:
        raise SecretFileError(f"{name}_FILE: cannot read {path} ({error.strerror})") from None
    # `echo value > file` and editors end the file with a newline that is not part of the value.
    return text.removesuffix("\n").removesuffix("\r")


class SecretFiles(PydanticBaseSettingsSource):
    """The `NAME_FILE` twins of the secret settings, the convention of Docker images and compose
    `secrets:`: the value then stays out of the environment, which `docker inspect` and any
    process of the same user can read. Setting both a name and its twin is refused rather than
    ranked, since either choice would silently ignore what someone deliberately set."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None]):
        super().__init__(settings_cls)
        self.variables = variables  # lower-case names, as the case-insensitive sources keep them

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = self.variables.get(f"{field_name}_file")
        if not path:
            return None, field_name, False
        name = field_name.upper()
        if self.variables.get(field_name):
            raise SecretFileError(f"{name} and {name}_FILE are both set (.env counts); keep one")
        return read_secret_file(name, path), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for field_name in SECRET_SETTINGS:
            field = self.settings_cls.model_fields[field_name]
            value, _, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[field_name] = value
        return values


def secret_key_weakness(key: str) -> str | None:
    """Why a key is guessable, or None. Only the key itself can be judged, so this catches
    placeholders and low-entropy keys, not a random-looking key that was published."""
    folded = re.sub(r"[^a-z0-9]", "", key.lower())
    if any(word in folded for word in PLACEHOLDER_WORDS):
        return "is a placeholder"
    if re.fullmatch(r"(.+?)\1+", key.lower()):
        return "repeats one short pattern"
    counts = Counter(key).values()
    bits = -sum(n * math.log2(n / len(key)) for n in counts)
    if bits < MIN_SECRET_BITS:
        return "has too little randomness"
    return None


def frontend_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL in production (it is the base of every emailed link)"
    host = parts.hostname.lower()
    try:
        address = ip_address(host)
    except ValueError:
        local = host == "localhost" or host.endswith(".localhost")
    else:
        local = address.is_loopback or address.is_unspecified
    return "must not point at this machine in production" if local else None


def metrics_token_problem(token: SecretStr | None) -> str | None:
    """/metrics tells how the service is used (sign-ins, failures, routes): only a scraper
    holding a token that cannot be guessed may read it."""
    if token is None:
        return "is not set: METRICS_ENABLED=true serves /metrics only to a scraper sending it"
    if len(token.get_secret_value().encode()) < 32:
        return "must be at least 32 bytes"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    project_name: str = {{ cookiecutter.project_name | python_string }}
    environment: Literal["development", "test", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line; console: readable lines. Unset: json in production.
    log_format: Literal["json", "console"] | None = None
    secret_key: SecretStr
    database_url: str = "{{ cookiecutter.__database_url }}"
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
    frontend_url: str = "http://localhost:5173"
    # The schema (and /docs) tell an attacker every route; production hides them unless asked.
    openapi_in_production: bool = False
    trusted_proxies: CommaSeparated = []

    # Email: without SMTP_HOST messages are written to the log instead
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: bool = True
    email_from: str = "no-reply@example.com"
    # Mail delivery: every message is queued in the outbox with the event that causes it and
    # sent right after that commit; each worker also looks for due mail (retries, and what a
    # process that died had queued) every MAIL_POLL_SECONDS (0: never; then run
    # `python -m app.cli send-mail` from a scheduler). A failed send is tried again after
    # MAIL_RETRY_BASE_SECONDS, doubling each time, until MAIL_MAX_ATTEMPTS attempts: then the
    # message is "dead" (logged).
    mail_poll_seconds: float = Field(2.0, ge=0)
    mail_max_attempts: int = Field(10, ge=1, le=100)
    mail_retry_base_seconds: int = Field(30, ge=1)

    # Passwords (argon2 memory cost is in KiB)
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_cost: int = Field(65536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)
    password_min_length: int = Field(15, ge=8, le=128)
    # Worker processes on this host (scripts/start.sh exports it); they share the cores that
    # hash passwords, so that N workers never run N times as many hashes as there are cores.
    web_concurrency: int = Field(1, ge=1)

    # Second factors and passkeys
    # A session may change its credentials or factors only this long after signing in (or
    # reauthenticating): a stolen, long-lived session cannot take the account over.
    reauth_max_age_seconds: int = Field(600, gt=0)
    mfa_challenge_ttl_seconds: int = Field(300, gt=0)
    # Encrypts TOTP secrets (and queued mail) at rest; without it a key is derived from SECRET_KEY.
    mfa_encryption_key: SecretStr | None = None
    # Holders of these roles must enrol a second factor before they can use anything else.
    mfa_required_roles: CommaSeparated = []
    # The passkey relying party: default the host and origin of FRONTEND_URL.
    webauthn_rp_id: str | None = None
    webauthn_origins: CommaSeparated = []

    # Data retention: `python -m app.cli purge`, and the service every PURGE_INTERVAL_SECONDS
    # (0: never; one worker at a time). Ended sessions are kept this long for the users'
    # and the admins' view of past sign-ins; audit events for investigations.
    session_retention_days: int = Field(30, ge=0)
    audit_retention_days: int = Field(365, ge=0)
    purge_interval_seconds: int = Field(3600, ge=0)
    purge_batch_size: int = Field(1000, ge=1, le=100_000)

    # GET /metrics in the Prometheus text format, for a scraper that sends
    # `Authorization: Bearer METRICS_TOKEN` (required, at least 32 bytes, when enabled)
    metrics_enabled: bool = False
    metrics_token: SecretStr | None = None

    # Requests: bodies over this many bytes are refused (413) before they are read
    max_request_body_bytes: int = Field(64 * 1024, ge=1)

    # Rate limits, in the notation of the `limits` package ("20/minute", "10 per 15 minutes")
    rate_limit_enabled: bool = True
    rate_limit_login_ip: str = "20/minute"
    rate_limit_login_account: str = "10 per 15 minutes"
    rate_limit_register_ip: str = "10/hour"
    rate_limit_email: str = "5/hour"
    rate_limit_email_ip: str = "20/hour"
    rate_limit_resend_email: str = "5/hour"
    rate_limit_email_change: str = "5/hour"
    rate_limit_notice: str = "3/hour"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        variables: dict[str, str | None] = {}
        for source in (dotenv_settings, env_settings):  # the environment wins, as for values
            if isinstance(source, EnvSettingsSource):
                variables.update(source.env_vars)
        files = SecretFiles(settings_cls, variables)
        return init_settings, files, env_settings, dotenv_settings, file_secret_settings

    @field_validator(
        "redis_url",
        "cookie_domain",
        "smtp_host",
        "smtp_user",
        "smtp_password",
        "mfa_encryption_key",
        "webauthn_rp_id",
        "log_format",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "cors_origins", "trusted_proxies", "mfa_required_roles", "webauthn_origins", mode="before"
    )
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
    def check_safety(self) -> "Settings":
        problems = []
        key = self.secret_key.get_secret_value()
        if len(key.encode()) < 32:
            problems.append(
                f"SECRET_KEY must be at least 32 bytes; generate one with {GENERATE_SECRET}"
            )
        elif self.environment == "production" and (weakness := secret_key_weakness(key)):
            problems.append(
                f"SECRET_KEY {weakness}: production needs a random key; "
                f"generate one with {GENERATE_SECRET}"
            )
        if self.metrics_enabled and (problem := metrics_token_problem(self.metrics_token)):
            problems.append(f"METRICS_TOKEN {problem}; generate one with {GENERATE_SECRET}")
        if self.environment == "production":
            if self.smtp_host is None:
                problems.append(
                    "SMTP_HOST is not set: production must send real email "
                    "(verification and password-reset links)"
                )
            if problem := frontend_url_problem(self.frontend_url):
                problems.append(f"FRONTEND_URL {problem}: {self.frontend_url!r}")
        if problems:
            raise UnsafeSettings(problems)
        return self

    @cached_property
    def trusted_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(item, strict=False) for item in self.trusted_proxies]

    @property
    def log_renderer(self) -> Literal["json", "console"]:
        """LOG_FORMAT, or by default JSON lines in production and readable ones elsewhere."""
        if self.log_format is not None:
            return self.log_format
        return "json" if self.environment == "production" else "console"

    @property
    def rp_id(self) -> str:
        """The passkeys' relying party: a registrable domain the pages are served under."""
        return self.webauthn_rp_id or urlsplit(self.frontend_url).hostname or "localhost"

    @property
    def rp_origins(self) -> list[str]:
        """Where passkey ceremonies may run: the pages' own origin unless listed."""
        if self.webauthn_origins:
            return self.webauthn_origins
        parts = urlsplit(self.frontend_url)
        return [f"{parts.scheme}://{parts.netloc}"]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_problems(error: ValidationError) -> list[str]:
    """One line per problem, each naming the environment variable."""
    lines = []
    for item in error.errors():
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, UnsafeSettings):
            lines += cause.problems
            continue
        name = ".".join(str(part) for part in item["loc"]).upper()
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if name else message)
    return lines


def settings_or_exit() -> Settings:
    """The settings of a process about to serve or migrate; or one line per problem on stderr
    and exit status 4, which gunicorn reads as "App failed to load" and stops, instead of
    respawning workers that fail the same way (uvicorn just exits)."""
    try:
        return get_settings()
    except SecretFileError as error:
        problems = [str(error)]
    except ValidationError as error:
        problems = settings_problems(error)
    for line in problems:
        print(f"Configuration error: {line}", file=sys.stderr)
    raise SystemExit(4) from None
