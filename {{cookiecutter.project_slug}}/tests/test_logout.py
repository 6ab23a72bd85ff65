import asyncio
from datetime import timedelta

from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.tokens import TokenCodec
from app.models import DeviceSession, User
from app.models.base import utcnow
from app.utils.cookies import CookieNames
from tests.helpers import PASSWORD, api_tokens, bearer, browser


async def test_logout_revokes_the_session_at_once(
    signed_in: AsyncClient, cookie: CookieNames
) -> None:
    access = signed_in.cookies[cookie.access]
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 204
    cleared = response.headers.get_list("set-cookie")
    assert {c.split("=", 1)[0] for c in cleared} == set(cookie.all())
    assert all("Max-Age=0" in c for c in cleared)

    # The access token has not expired, but its session has: refused on the next request.
    signed_in.cookies.clear()
    response = await signed_in.get("/api/v1/users/me", headers=bearer(access))
    assert response.status_code == 401


async def test_cookie_logout_needs_the_csrf_header(signed_in: AsyncClient) -> None:
    del signed_in.headers["X-CSRF-Token"]
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 403
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


async def test_csrf_token_of_another_session_is_refused(
    client: AsyncClient, alice: User, cookie: CookieNames
) -> None:
    """A token planted from a sibling subdomain was signed for another session."""
    first = await client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    planted = first.json()["csrf_token"]
    await client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    client.cookies.set(cookie.csrf, planted, domain="testserver")
    response = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": planted})
    assert response.status_code == 403


async def test_cross_site_requests_are_refused(signed_in: AsyncClient) -> None:
    response = await signed_in.post("/api/v1/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403


async def test_bearer_requests_are_exempt_from_csrf(client: AsyncClient, alice: User) -> None:
    tokens = await api_tokens(client)
    response = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert response.status_code == 204


# --- Logout once the access token has expired, and with a dead session -------------------------
async def only_session(db: AsyncSession) -> DeviceSession:
    return (await db.exec(select(DeviceSession).execution_options(populate_existing=True))).one()


def assert_clears_every_cookie(response: Response, cookie: CookieNames) -> None:
    cleared = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    assert set(cleared) == set(cookie.all())
    assert all("Max-Age=0" in c for c in cleared.values())


def expired_access(app: FastAPI, session: DeviceSession) -> str:
    codec: TokenCodec = app.state.context.tokens
    return codec.access_token(session.user_id, session.id, utcnow() - timedelta(hours=2))


async def test_logout_with_only_the_refresh_cookie_revokes_the_session(
    signed_in: AsyncClient, db: AsyncSession, cookie: CookieNames
) -> None:
    """The browser dropped the access cookie when it expired; the refresh cookie remains."""
    signed_in.cookies.delete(cookie.access)
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 204
    assert_clears_every_cookie(response, cookie)
    assert (await only_session(db)).revoked_at is not None


async def test_logout_with_an_expired_access_cookie_falls_back_to_the_refresh_cookie(
    app: FastAPI, signed_in: AsyncClient, db: AsyncSession, cookie: CookieNames
) -> None:
    expired = expired_access(app, await only_session(db))
    signed_in.cookies.delete(cookie.access)
    signed_in.cookies.set(cookie.access, expired, domain="testserver")
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 204
    assert_clears_every_cookie(response, cookie)
    assert (await only_session(db)).revoked_at is not None


async def test_an_api_client_logs_out_with_its_refresh_token_in_the_body(
    client: AsyncClient, alice: User, db: AsyncSession
) -> None:
    tokens = await api_tokens(client)
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    assert (await only_session(db)).revoked_at is not None


async def test_logout_by_refresh_cookie_needs_the_csrf_header(
    signed_in: AsyncClient, db: AsyncSession, cookie: CookieNames
) -> None:
    signed_in.cookies.delete(cookie.access)
    del signed_in.headers["X-CSRF-Token"]
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert (await only_session(db)).revoked_at is None


async def test_logout_of_a_session_already_gone_still_clears_the_cookies(
    app: FastAPI, signed_in: AsyncClient, cookie: CookieNames
) -> None:
    async with browser(app, "alice@example.com") as other:
        assert (await other.post("/api/v1/auth/logout-all")).status_code == 204
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 204
    assert_clears_every_cookie(response, cookie)


async def test_logout_with_a_forged_refresh_cookie_is_refused(
    signed_in: AsyncClient, cookie: CookieNames
) -> None:
    signed_in.cookies.clear()
    signed_in.cookies.set(cookie.refresh, "not.a.token", domain="testserver", path="/api/v1/auth")
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 401


# --- GET /auth/csrf: restoring the CSRF token after a reload -----------------------------------
async def reload_csrf(http: AsyncClient) -> Response:
    """What a reloaded page does: it lost the token it kept in memory."""
    http.headers.pop("X-CSRF-Token", None)
    return await http.get("/api/v1/auth/csrf")


async def test_the_access_cookie_gets_a_csrf_token_that_works(
    signed_in: AsyncClient, cookie: CookieNames
) -> None:
    response = await reload_csrf(signed_in)
    assert response.status_code == 200
    token = response.json()["csrf_token"]
    assert signed_in.cookies[cookie.csrf] == token
    logout = await signed_in.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token})
    assert logout.status_code == 204


async def test_the_refresh_cookie_alone_gets_a_csrf_token_that_refreshes(
    signed_in: AsyncClient, cookie: CookieNames
) -> None:
    signed_in.cookies.delete(cookie.access)
    signed_in.cookies.delete(cookie.csrf)
    response = await reload_csrf(signed_in)
    assert response.status_code == 200
    token = response.json()["csrf_token"]
    refreshed = await signed_in.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": token})
    assert refreshed.status_code == 200


async def test_no_cookie_gets_no_csrf_token(client: AsyncClient) -> None:
    response = await client.get("/api/v1/auth/csrf")
    assert response.status_code == 401


async def test_a_revoked_session_gets_no_csrf_token(app: FastAPI, signed_in: AsyncClient) -> None:
    async with browser(app, "alice@example.com") as other:
        await other.post("/api/v1/auth/logout-all")
    assert (await reload_csrf(signed_in)).status_code == 401


async def test_a_cross_site_page_gets_no_csrf_token(signed_in: AsyncClient) -> None:
    response = await signed_in.get("/api/v1/auth/csrf", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403


async def test_a_burst_of_refresh_cookie_logouts_all_clear_and_none_fails(
    signed_in: AsyncClient, db: AsyncSession, cookie: CookieNames
) -> None:
    """A browser with several tabs, each logging out at once after the access token expired."""
    signed_in.cookies.delete(cookie.access)
    responses = await asyncio.gather(*(signed_in.post("/api/v1/auth/logout") for _ in range(50)))
    assert {response.status_code for response in responses} == {204}
    for response in responses:
        assert_clears_every_cookie(response, cookie)
    assert (await only_session(db)).revoked_at is not None
