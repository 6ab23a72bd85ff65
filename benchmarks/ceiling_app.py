"""The ceilings for GET /api/v1/users/me: what FastAPI alone manages on this machine.

    GET /bare  the same JSON shape as /users/me (the same pydantic model), no auth at all
    GET /jwt   the same, after decoding the `access_token` cookie with PyJWT on every request,
               the way the service's TokenCodec verifies a token it has not seen (one parse;
               HS256 pinned; iss, aud and every claim required; embedded-key headers refused)
               - but no database. The service remembers tokens it has verified (only the clock
               and the type are checked again), so with one cookie under load it skips this
               decode; the ceiling does not, as the issue defines it.

Served like the service (`uvicorn ceiling_app:app --app-dir benchmarks`, or gunicorn with
uvicorn workers). The JWT key, issuer and audience come from BENCH_JWT_* variables set by
benchmarks/run.py, which mints the cookie.
"""

import os
import uuid
from datetime import UTC, datetime
from typing import Annotated

import jwt
from fastapi import Cookie, FastAPI, HTTPException
from pydantic import BaseModel

KEY = bytes.fromhex(os.environ.get("BENCH_JWT_KEY", "00" * 64))
ISSUER = os.environ.get("BENCH_JWT_ISSUER", "fastapi-auth")
AUDIENCE = os.environ.get("BENCH_JWT_AUDIENCE", "fastapi-auth")
REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid", "jti", "typ", "iss", "aud"]
FORBIDDEN_HEADERS = {"jwk", "jku", "x5u", "x5c", "kid"}
CREATED_AT = datetime(2024, 1, 1, tzinfo=UTC)


class UserRead(BaseModel):
    """A copy of app.schemas.user.UserRead."""

    id: uuid.UUID
    email: str
    is_active: bool
    is_verified: bool
    roles: list[str]
    permissions: list[str]
    created_at: datetime
    last_login_at: datetime | None


def user(user_id: uuid.UUID) -> UserRead:
    return UserRead(
        id=user_id,
        email="bench@example.com",
        is_active=True,
        is_verified=True,
        roles=["admin", "user"],
        permissions=["users:read", "users:write"],
        created_at=CREATED_AT,
        last_login_at=CREATED_AT,
    )


app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
BARE_USER_ID = uuid.uuid4()


@app.get("/bare")
async def bare() -> UserRead:
    return user(BARE_USER_ID)


@app.get("/jwt")
async def with_jwt(
    access_token: Annotated[str | None, Cookie()] = None,
) -> UserRead:
    if not access_token:
        raise HTTPException(401, "Not authenticated")
    try:
        decoded = jwt.decode_complete(
            access_token,
            KEY,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": REQUIRED_CLAIMS},
        )
        if FORBIDDEN_HEADERS & decoded["header"].keys():
            raise HTTPException(401, "unexpected token header")
        claims = decoded["payload"]
        if claims["typ"] != "access":
            raise HTTPException(401, "wrong token type")
        user_id, _session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except (jwt.PyJWTError, ValueError) as exc:
        raise HTTPException(401, "Invalid or expired access token") from exc
    return user(user_id)
