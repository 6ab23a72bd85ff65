"""Set-ups in which browsers silently drop the cookies are named in the start-up log."""

import logging

import pytest

from app.main import create_app
from tests.helpers import make_settings


def startup_warnings(caplog: pytest.LogCaptureFixture, **settings: object) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app"):
        create_app(make_settings(**settings))
    return [record.getMessage() for record in caplog.records if "ookie" in record.getMessage()]


def test_the_test_set_up_is_warned_about_nothing(caplog: pytest.LogCaptureFixture) -> None:
    assert startup_warnings(caplog) == []


def test_secure_cookies_for_pages_on_plain_http_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "http://app.internal:5173"
    [line] = startup_warnings(caplog, frontend_url=url, cors_origins=[url])
    assert "COOKIE_SECURE" in line and url in line


@pytest.mark.parametrize("url", ["http://localhost:5173", "http://127.0.0.1:5173"])
def test_secure_cookies_on_plain_http_localhost_are_fine(
    caplog: pytest.LogCaptureFixture, url: str
) -> None:
    """Browsers treat http://localhost as a secure context."""
    assert startup_warnings(caplog, frontend_url=url, cors_origins=[url]) == []


def test_a_page_cross_site_to_the_frontend_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """localhost and 127.0.0.1 are two sites: cookies of one are not sent from the other."""
    [line] = startup_warnings(
        caplog, frontend_url="http://localhost:5173", cors_origins=["http://127.0.0.1:5173"]
    )
    assert "cross-site" in line and "http://127.0.0.1:5173" in line


def test_sibling_subdomains_are_the_same_site(caplog: pytest.LogCaptureFixture) -> None:
    assert (
        startup_warnings(
            caplog,
            frontend_url="https://app.example.com",
            cors_origins=["https://admin.example.com"],
        )
        == []
    )


def test_samesite_none_without_secure_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    [line] = startup_warnings(caplog, cookie_samesite="none", cookie_secure=False)
    assert "SameSite=None" in line
