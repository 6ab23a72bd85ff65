"""JWT rules: pinned algorithm, required claims, typ/aud/iss checked, no PII."""

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from httpx import AsyncClient, Response

from app.core.config import Settings
from app.core.security import derive_key
from app.models import User
from tests.helpers import Clock, Tokens, api_tokens, bearer

Forge = Callable[..., str]


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
async def tokens(client: AsyncClient, alice: User) -> Tokens:
    """Alice's API tokens, with the client's cookies dropped: only the bearer header counts."""
    issued = await api_tokens(client)
    client.cookies.clear()
    return issued


@pytest.fixture
def forge(settings: Settings) -> Forge:
    """Sign claims with the service's real key, to prove each rule is checked on its own."""
    key = derive_key(settings.secret_key.get_secret_value(), "jwt")

    def _forge(
        claims: dict[str, object],
        algorithm: str = "HS256",
        headers: dict[str, object] | None = None,
    ) -> str:
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    return _forge


def valid_claims(access: str) -> dict[str, Any]:
    return jwt.decode(access, options={"verify_signature": False})


async def me(client: AsyncClient, token: str) -> Response:
    return await client.get("/api/v1/users/me", headers=bearer(token))


async def test_access_token_claims_carry_no_personal_data(
    tokens: Tokens, settings: Settings
) -> None:
    claims = valid_claims(tokens["access_token"])
    assert set(claims) == {"sub", "sid", "jti", "typ", "iat", "exp", "iss", "aud"}
    assert claims["typ"] == "access"
    assert claims["iss"] == settings.jwt_issuer and claims["aud"] == settings.jwt_audience
    assert "alice" not in json.dumps(claims)
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds


async def test_a_correctly_forged_token_is_accepted(
    client: AsyncClient, tokens: Tokens, forge: Forge
) -> None:
    """Control case: the forge helper signs exactly like the service."""
    assert (await me(client, forge(valid_claims(tokens["access_token"])))).status_code == 200


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c: {**c, "typ": "refresh"}, id="wrong-typ"),
        pytest.param(lambda c: {**c, "aud": "someone-else"}, id="wrong-aud"),
        pytest.param(lambda c: {**c, "iss": "someone-else"}, id="wrong-iss"),
        pytest.param(lambda c: {**c, "exp": int(time.time()) - 60}, id="expired"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "exp"}, id="no-exp"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "iat"}, id="no-iat"),
        # Issued an hour from now: only a skewed or tampered signer makes these.
        pytest.param(lambda c: {**c, "iat": int(time.time()) + 3600}, id="issued-in-future"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "sub"}, id="no-sub"),
        pytest.param(lambda c: {**c, "sub": str(uuid.uuid4())}, id="other-user"),
        pytest.param(lambda c: {**c, "sid": str(uuid.uuid4())}, id="unknown-session"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "sid"}, id="no-sid"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "jti"}, id="no-jti"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "typ"}, id="no-typ"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "aud"}, id="no-aud"),
        pytest.param(lambda c: {**c, "aud": None}, id="null-aud"),
        pytest.param(lambda c: {**c, "aud": [c["aud"], "someone-else"]}, id="aud-list"),
        pytest.param(lambda c: {**c, "sub": "not-a-uuid"}, id="malformed-sub"),
        pytest.param(lambda c: {**c, "exp": "tomorrow"}, id="malformed-exp"),
    ],
)
async def test_forged_claims_are_refused(
    client: AsyncClient,
    tokens: Tokens,
    forge: Forge,
    mutate: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    token = forge(mutate(valid_claims(tokens["access_token"])))
    response = await me(client, token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_signed_payload_that_is_not_an_object_is_refused(
    client: AsyncClient, tokens: Tokens, settings: Settings
) -> None:
    """Genuinely signed, yet no claims at all: a 401, never a 500."""
    key = derive_key(settings.secret_key.get_secret_value(), "jwt")
    for payload in (b"[1, 2]", b'"access"', b"null", b"not json"):
        token = jwt.PyJWS().encode(payload, key, algorithm="HS256")
        response = await me(client, token)
        assert response.status_code == 401, payload
        assert response.json()["code"] == "invalid_token"


async def test_other_algorithms_are_refused(
    client: AsyncClient, tokens: Tokens, forge: Forge
) -> None:
    claims = valid_claims(tokens["access_token"])
    assert (await me(client, forge(claims, algorithm="HS512"))).status_code == 401


async def test_alg_none_is_refused(client: AsyncClient, tokens: Tokens) -> None:
    claims = valid_claims(tokens["access_token"])
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert (await me(client, token)).status_code == 401


async def test_embedded_jwk_header_is_refused(
    client: AsyncClient, tokens: Tokens, forge: Forge
) -> None:
    claims = valid_claims(tokens["access_token"])
    token = forge(claims, headers={"jwk": {"kty": "oct", "k": "AAAA"}})
    assert (await me(client, token)).status_code == 401


async def test_tampered_payload_is_refused(client: AsyncClient, tokens: Tokens) -> None:
    header, payload, signature = tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = str(uuid.uuid4())
    assert (await me(client, f"{header}.{b64(claims)}.{signature}")).status_code == 401


async def test_garbage_token_is_a_401_not_a_500(client: AsyncClient) -> None:
    for token in ("", "abc", "a.b.c", "ey.ey.ey"):
        assert (await me(client, token)).status_code == 401


async def test_refresh_token_cannot_be_used_as_access_token(
    client: AsyncClient, tokens: Tokens
) -> None:
    assert (await me(client, tokens["refresh_token"])).status_code == 401


async def test_a_token_accepted_before_is_refused_once_it_expires(
    client: AsyncClient, tokens: Tokens, settings: Settings, clock: Clock
) -> None:
    """Verified tokens are remembered (app/core/tokens.py), but the clock is read every time."""
    assert (await me(client, tokens["access_token"])).status_code == 200
    clock.advance(settings.access_token_ttl_seconds)
    response = await me(client, tokens["access_token"])
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_an_access_token_accepted_before_is_still_no_refresh_token(
    client: AsyncClient, tokens: Tokens
) -> None:
    """The remembered answer is 'genuine', not 'good for anything': the type is checked again."""
    assert (await me(client, tokens["access_token"])).status_code == 200
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]}
    )
    assert response.status_code == 401
