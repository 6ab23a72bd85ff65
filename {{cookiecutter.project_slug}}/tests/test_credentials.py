"""Where the access token comes from: a bearer header for API clients, else the cookie."""

from tests.conftest import PASSWORD, create_user


async def bearer_token(client, email: str) -> str:
    form = {"username": email, "password": PASSWORD}
    response = await client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def test_the_docs_authorize_button_signs_in_at_the_token_endpoint(client):
    schema = (await client.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["AccessToken"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert schema["paths"]["/api/v1/users/me"]["get"]["security"] == [{"AccessToken": []}]
    assert "security" not in schema["paths"]["/api/v1/auth/login"]["post"]


async def test_a_bearer_token_is_used_before_the_cookie(app, signed_in):
    await create_user(app, "bob@example.com")
    bob = await bearer_token(signed_in, "bob@example.com")
    response = await signed_in.get("/api/v1/users/me", headers={"Authorization": f"Bearer {bob}"})
    assert response.status_code == 200
    assert response.json()["email"] == "bob@example.com"


async def test_another_authorization_scheme_falls_back_to_the_cookie(signed_in):
    for header in ("Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer "):
        response = await signed_in.get("/api/v1/users/me", headers={"Authorization": header})
        assert response.status_code == 200, header
        assert response.json()["email"] == "alice@example.com"


async def test_an_empty_bearer_header_does_not_skip_the_cookies_csrf_check(signed_in):
    del signed_in.headers["X-CSRF-Token"]
    response = await signed_in.post("/api/v1/auth/logout", headers={"Authorization": "Bearer "})
    assert response.status_code == 403
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


async def test_no_credentials_at_all_gets_a_401_that_names_the_scheme(client):
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated", "code": "not_authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"
