"""Where the access token comes from: a bearer header for API clients, else the cookie."""

from fastapi import FastAPI
from httpx import AsyncClient

from tests.helpers import api_tokens, bearer, create_user


async def test_the_docs_authorize_button_signs_in_at_the_token_endpoint(
    client: AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["AccessToken"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert schema["paths"]["/api/v1/users/me"]["get"]["security"] == [{"AccessToken": []}]
    assert "security" not in schema["paths"]["/api/v1/auth/login"]["post"]


async def test_a_bearer_token_is_used_before_the_cookie(
    app: FastAPI, signed_in: AsyncClient
) -> None:
    await create_user(app, "bob@example.com")
    bob = await api_tokens(signed_in, "bob@example.com")
    response = await signed_in.get("/api/v1/users/me", headers=bearer(bob["access_token"]))
    assert response.status_code == 200
    assert response.json()["email"] == "bob@example.com"


async def test_another_authorization_scheme_falls_back_to_the_cookie(
    signed_in: AsyncClient,
) -> None:
    for header in ("Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer "):
        response = await signed_in.get("/api/v1/users/me", headers={"Authorization": header})
        assert response.status_code == 200, header
        assert response.json()["email"] == "alice@example.com"


async def test_an_empty_bearer_header_does_not_skip_the_cookies_csrf_check(
    signed_in: AsyncClient,
) -> None:
    del signed_in.headers["X-CSRF-Token"]
    response = await signed_in.post("/api/v1/auth/logout", headers={"Authorization": "Bearer "})
    assert response.status_code == 403
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


async def test_no_credentials_at_all_gets_a_401_that_names_the_scheme(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["www-authenticate"] == "Bearer"
