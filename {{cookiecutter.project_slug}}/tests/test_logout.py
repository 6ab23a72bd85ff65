from tests.conftest import PASSWORD


async def test_logout_revokes_the_session_at_once(signed_in, cookie):
    access = signed_in.cookies[cookie.access]
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 204
    cleared = response.headers.get_list("set-cookie")
    assert {c.split("=", 1)[0] for c in cleared} == set(cookie.all())
    assert all("Max-Age=0" in c for c in cleared)

    # The access token has not expired, but its session has: refused on the next request.
    signed_in.cookies.clear()
    response = await signed_in.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {access}"}
    )
    assert response.status_code == 401


async def test_cookie_logout_needs_the_csrf_header(signed_in):
    del signed_in.headers["X-CSRF-Token"]
    response = await signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 403
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


async def test_csrf_token_of_another_session_is_refused(client, alice, cookie):
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


async def test_cross_site_requests_are_refused(signed_in):
    response = await signed_in.post("/api/v1/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403


async def test_bearer_requests_are_exempt_from_csrf(client, alice):
    tokens = (
        await client.post(
            "/api/v1/auth/token", data={"username": "alice@example.com", "password": PASSWORD}
        )
    ).json()
    response = await client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 204
