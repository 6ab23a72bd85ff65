"""The only place that knows the auth cookies' names and sets or clears them.

Everything else, tests included, asks `cookie_names(settings)`: the names depend on the
settings, so no other module may spell them.
"""

from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from typing import Protocol
from urllib.parse import urlsplit

from fastapi import Response

from app.core.config import Settings

REFRESH_COOKIE_PATH = "/api/v1/auth"


@dataclass(frozen=True, slots=True)
class CookieNames:
    access: str
    refresh: str
    csrf: str

    def all(self) -> tuple[str, str, str]:
        return self.access, self.refresh, self.csrf


def cookie_names(settings: Settings) -> CookieNames:
    """The names the service sets and reads under these settings."""
    return _names(settings.cookie_secure, settings.cookie_domain)


@lru_cache(maxsize=8)  # read on every cookie-authenticated request
def _names(secure: bool, domain: str | None) -> CookieNames:
    """Prefixes browsers enforce, so a sibling subdomain cannot plant a cookie of that name.

    `__Host-` needs Secure, Path=/ and no Domain. The refresh cookie keeps its narrow path (it
    is sent to /api/v1/auth only), so it gets `__Secure-`: a tossed refresh cookie is useless
    anyway, since a cookie refresh needs a CSRF token signed for that token's session, and the
    CSRF cookie is `__Host-`. With COOKIE_DOMAIN every cookie is `__Secure-`; without Secure
    no prefix is allowed.
    """
    if not secure:
        host = refresh = ""
    elif domain:
        host = refresh = "__Secure-"
    else:
        host, refresh = "__Host-", "__Secure-"
    return CookieNames(
        access=f"{host}access_token", refresh=f"{refresh}refresh_token", csrf=f"{host}csrf_token"
    )


class BrowserTokens(Protocol):
    @property
    def access_token(self) -> str: ...

    @property
    def refresh_token(self) -> str: ...

    @property
    def csrf_token(self) -> str: ...


def set_auth_cookies(response: Response, settings: Settings, tokens: BrowserTokens) -> None:
    names = cookie_names(settings)
    response.set_cookie(
        names.access,
        tokens.access_token,
        max_age=settings.access_token_ttl_seconds,
        path="/",
        httponly=True,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
        domain=settings.cookie_domain,
    )
    response.set_cookie(
        names.refresh,
        tokens.refresh_token,
        max_age=settings.refresh_token_ttl_seconds,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
        domain=settings.cookie_domain,
    )
    set_csrf_cookie(response, settings, tokens.csrf_token)


def set_csrf_cookie(response: Response, settings: Settings, csrf_token: str) -> None:
    # Readable by JavaScript on purpose: the frontend echoes it in the X-CSRF-Token header.
    response.set_cookie(
        cookie_names(settings).csrf,
        csrf_token,
        max_age=settings.refresh_token_ttl_seconds,
        path="/",
        httponly=False,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
        domain=settings.cookie_domain,
    )


def clear_auth_cookies(response: Response, settings: Settings) -> None:
    names = cookie_names(settings)
    for name, path in (
        (names.access, "/"),
        (names.refresh, REFRESH_COOKIE_PATH),
        (names.csrf, "/"),
    ):
        response.delete_cookie(
            name,
            path=path,
            domain=settings.cookie_domain,
            secure=settings.cookie_secure,
            httponly=name != names.csrf,
            samesite=settings.cookie_samesite,
        )


def _site(url: str) -> tuple[str, str]:
    """What browsers call the site: the scheme and the registrable domain, approximated by
    the last two labels of the host (an IP address, or `localhost`, is a site of its own)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        ip_address(host)
    except ValueError:
        host = ".".join(host.split(".")[-2:])
    return parts.scheme, host


def _is_local(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost") or host in {"127.0.0.1", "::1"}


def cookie_warnings(settings: Settings) -> list[str]:
    """Set-ups in which a browser silently drops or withholds the cookies, each a line for the
    start-up log: the sign-in answers 200 and every later call is 401, with no other clue."""
    warnings = []
    frontend = urlsplit(settings.frontend_url)
    if (
        settings.cookie_secure
        and frontend.scheme == "http"
        and not _is_local(frontend.hostname or "")
    ):
        warnings.append(
            f"COOKIE_SECURE=true but FRONTEND_URL is plain http ({settings.frontend_url}): "
            "browsers drop Secure cookies on http pages other than localhost; serve the "
            "pages over https, or set COOKIE_SECURE=false for local development only"
        )
    for origin in settings.cors_origins:
        if _site(origin) != _site(settings.frontend_url):
            warnings.append(
                f"CORS origin {origin} is cross-site to FRONTEND_URL {settings.frontend_url}: "
                "the API cannot share cookies with both; pages must be same-site with the API "
                "(one host name, or sibling subdomains with COOKIE_DOMAIN), or use bearer tokens"
            )
    if settings.cookie_samesite == "none" and not settings.cookie_secure:
        warnings.append(
            "COOKIE_SAMESITE=none without COOKIE_SECURE: browsers refuse SameSite=None "
            "cookies that are not Secure"
        )
    return warnings
