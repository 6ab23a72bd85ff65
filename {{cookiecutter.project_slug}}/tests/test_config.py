import pytest
from pydantic import ValidationError

from app.core.config import PLACEHOLDER_SECRET
from tests.conftest import make_settings


def test_short_secret_key_is_refused():
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        make_settings(secret_key="too-short")


def test_production_refuses_the_placeholder_secret():
    with pytest.raises(ValidationError, match="placeholder"):
        make_settings(environment="production", secret_key=PLACEHOLDER_SECRET)


def test_wildcard_cors_origin_is_refused():
    with pytest.raises(ValidationError, match="explicit origins"):
        make_settings(cors_origins=["*"])


def test_comma_separated_lists_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    from app.core.config import Settings

    settings = Settings(_env_file=None)
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_secret_key_never_shows_in_repr():
    settings = make_settings()
    assert settings.secret_key.get_secret_value() not in repr(settings)


def test_password_minimum_may_be_lowered_to_eight_but_no_further():
    assert make_settings(password_min_length=8).password_min_length == 8
    with pytest.raises(ValidationError, match="greater than or equal to 8"):
        make_settings(password_min_length=7)


def test_env_example_documents_every_setting():
    """env.example lists every setting (commented out or set), each under a comment."""
    from app.core.config import Settings
    from tests.conftest import PROJECT

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
