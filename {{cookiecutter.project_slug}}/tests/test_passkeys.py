"""Passkeys (SPEC §8): registration, usernameless sign-in, the second step after a password,
rename and removal, and the ways an attacker bends a WebAuthn ceremony (SPEC §11).

Every credential comes from `tests/authenticator.py`: real P-256 keys, real attestation and
assertion bytes, verified by py_webauthn inside the running app. What a browser or a
malicious client controls (origin, RP ID, user verification, the sign count, every byte of
the JSON) is forged per test, and each forgery must be refused with a 4xx that names why.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import cbor2
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlmodel import col, select

from app.core.config import Settings
from app.core.permissions import RoleName
from app.models import AuditEvent, AuditEventType, DeviceSession, Passkey, User
from app.utils.cookies import CookieNames
from tests import authenticator as authenticator_module
from tests.authenticator import SoftAuthenticator, b64url, b64url_decode
from tests.helpers import (
    ALICE,
    BROWSER,
    FRONTEND_ORIGIN,
    PASSWORD,
    RP_ID,
    Clock,
    Outbox,
    bearer,
    browser,
    create_user,
    make_settings,
    passkey_login,
    passkey_options,
    password_step,
    register_passkey,
    send_assertion,
)
from tests.test_admin import grant_role

BOB = "bob@example.com"
REGISTER = "/api/v1/auth/passkeys/register"
REGISTER_OPTIONS = "/api/v1/auth/passkeys/register/options"
SIGN_IN = "/api/v1/auth/passkeys/login"
SIGN_IN_OPTIONS = "/api/v1/auth/passkeys/login/options"
Json = dict[str, Any]


# --- fixtures and probes ---------------------------------------------------------------------


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    """Alice's laptop: a platform authenticator, used from the service's frontend."""
    return SoftAuthenticator(FRONTEND_ORIGIN)


@pytest.fixture
async def alice_passkey(signed_in: AsyncClient, authenticator: SoftAuthenticator) -> Json:
    return await register_passkey(signed_in, authenticator)


@pytest.fixture
async def visitor(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A browser with no cookies: whoever signs in with a passkey, or attacks the sign-in."""
    async with stranger(app) as http:
        yield http


def stranger(app: FastAPI) -> AsyncClient:
    """One more browser without cookies (to use as `async with`): a replaying attacker, a
    clone, or the owner on another visit."""
    return AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver",
        headers={"User-Agent": BROWSER},
    )


@pytest.fixture
async def bob(app: FastAPI) -> User:
    return await create_user(app, BOB)


@pytest.fixture
def bob_authenticator() -> SoftAuthenticator:
    return SoftAuthenticator(FRONTEND_ORIGIN)


@pytest.fixture
async def bob_passkey(app: FastAPI, bob: User, bob_authenticator: SoftAuthenticator) -> Json:
    async with browser(app, BOB) as http:
        return await register_passkey(http, bob_authenticator, "Bob's key")


async def events(app: FastAPI, event: AuditEventType) -> list[AuditEvent]:
    async with app.state.sessionmaker() as db:
        query = select(AuditEvent).where(AuditEvent.type == event)
        return list((await db.exec(query.order_by(col(AuditEvent.created_at)))).all())


async def sessions_of(app: FastAPI, email: str) -> list[DeviceSession]:
    async with app.state.sessionmaker() as db:
        query = select(DeviceSession).join(User).where(User.email == email)
        return list((await db.exec(query.order_by(col(DeviceSession.created_at)))).all())


async def stored_passkeys(app: FastAPI) -> list[Passkey]:
    async with app.state.sessionmaker() as db:
        return list((await db.exec(select(Passkey))).all())


async def listed(client: AsyncClient) -> list[Json]:
    response = await client.get("/api/v1/auth/mfa")
    assert response.status_code == 200, response.text
    passkeys: list[Json] = response.json()["passkeys"]
    return passkeys


def assert_refused(response: Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"], body
    assert "set-cookie" not in response.headers


def assert_4xx(response: Response) -> None:
    """A refusal a client can act on: a 4xx with `detail` and a stable `code`, no cookies."""
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body["detail"], str | list) and body["detail"], body
    assert isinstance(body["code"], str) and body["code"], body
    assert "set-cookie" not in response.headers


async def post_raw(client: AsyncClient, url: str, body: object) -> Response:
    """POST `body` as JSON text with non-ASCII escaped, so lone surrogates survive the trip
    (httpx's own encoder would refuse to send them)."""
    text = json.dumps(body).replace(json.dumps(DEEP), DEEP_JSON)
    headers = {"Content-Type": "application/json"}
    return await client.post(url, content=text.encode(), headers=headers)


def challenge_bytes(options: Json) -> bytes:
    return b64url_decode(options["challenge"])


# --- registration ----------------------------------------------------------------------------


class TestRegistration:
    async def test_creation_options_prefer_a_resident_key_and_require_user_verification(
        self, signed_in: AsyncClient, settings: Settings
    ) -> None:
        response = await signed_in.post(REGISTER_OPTIONS)
        assert response.status_code == 200, response.text
        options = response.json()
        assert options["rp"] == {"id": RP_ID, "name": settings.project_name}
        assert options["user"]["name"] == ALICE
        assert options["authenticatorSelection"]["residentKey"] == "preferred"
        assert options["authenticatorSelection"]["userVerification"] == "required"
        assert options["excludeCredentials"] == []
        assert len(challenge_bytes(options)) >= 16  # at least 128 bits
        assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]

    async def test_creation_options_exclude_the_passkeys_already_registered(
        self, signed_in: AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        await register_passkey(signed_in, authenticator, "Phone")
        laptop = SoftAuthenticator(FRONTEND_ORIGIN)
        await register_passkey(signed_in, laptop, "Laptop")

        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        excluded = {item["id"] for item in options["excludeCredentials"]}
        held = {c.id_b64 for c in authenticator.credentials + laptop.credentials}
        assert excluded == held
        with pytest.raises(ValueError, match="InvalidStateError"):
            authenticator.create(options)  # the browser will not register the phone twice

    async def test_a_registered_passkey_is_listed_audited_and_announced(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        authenticator: SoftAuthenticator,
        outbox: Outbox,
    ) -> None:
        passkey = await register_passkey(signed_in, authenticator, "Work laptop")

        assert set(passkey) == {"id", "name", "created_at", "last_used_at"}
        assert passkey["name"] == "Work laptop"
        assert passkey["last_used_at"] is None
        assert await listed(signed_in) == [passkey]
        [added] = await events(app, AuditEventType.PASSKEY_ADDED)
        assert added.detail == "Work laptop"
        [row] = await stored_passkeys(app)
        assert row.credential_id == authenticator.credentials[0].id
        assert row.sign_count == 0
        await app.state.context.mailer.wait_idle()
        [notice] = outbox.to(ALICE, "Your sign-in methods changed")
        assert "A passkey was added: Work laptop." in notice.text

    @pytest.mark.parametrize(
        "forged",
        [
            {"user_verified": False},
            {"origin": "https://evil.example"},
            {"origin": "http://frontend.example"},
            {"origin": "https://login.frontend.example"},
            {"rp_id": "evil.example"},
            {"rp_id": "example"},
        ],
        ids=["no-user-verification", "other-origin", "http-origin", "sub-origin", "rp-id", "tld"],
    )
    async def test_an_attestation_forged_or_without_user_verification_is_refused(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        authenticator: SoftAuthenticator,
        forged: Json,
    ) -> None:
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        credential = authenticator.create(options, **forged)

        response = await signed_in.post(REGISTER, json={"credential": credential})
        assert_refused(response, 400, "invalid_passkey")
        assert await stored_passkeys(app) == []
        assert await events(app, AuditEventType.PASSKEY_ADDED) == []

    async def test_an_attestation_is_accepted_once(
        self, app: FastAPI, signed_in: AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        credential = authenticator.create(options)
        first = await signed_in.post(REGISTER, json={"credential": credential})
        assert first.status_code == 201, first.text

        again = await signed_in.post(REGISTER, json={"credential": credential})
        assert_refused(again, 400, "invalid_passkey")
        assert len(await stored_passkeys(app)) == 1

    async def test_a_refused_attestation_spends_its_options(
        self, app: FastAPI, signed_in: AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        """A failed try cannot be followed by another answer to the same challenge."""
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        bad = authenticator.create(options, origin="https://evil.example")
        assert (await signed_in.post(REGISTER, json={"credential": bad})).status_code == 400

        good = authenticator.create(options)
        assert_refused(
            await signed_in.post(REGISTER, json={"credential": good}), 400, "invalid_passkey"
        )
        assert await stored_passkeys(app) == []

    async def test_expired_creation_options_are_refused(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        authenticator: SoftAuthenticator,
        settings: Settings,
        clock: Clock,
    ) -> None:
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        clock.advance(settings.mfa_challenge_ttl_seconds + 1)

        response = await signed_in.post(
            REGISTER, json={"credential": authenticator.create(options)}
        )
        assert_refused(response, 400, "invalid_passkey")
        assert await stored_passkeys(app) == []

    async def test_a_sign_in_challenge_cannot_register_a_passkey(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        visitor: AsyncClient,
        authenticator: SoftAuthenticator,
    ) -> None:
        creation = (await signed_in.post(REGISTER_OPTIONS)).json()
        sign_in = await passkey_options(visitor)
        credential = authenticator.create({**creation, "challenge": sign_in["challenge"]})

        response = await signed_in.post(REGISTER, json={"credential": credential})
        assert_refused(response, 400, "invalid_passkey")
        assert await stored_passkeys(app) == []

    async def test_another_users_creation_options_cannot_register_a_passkey(
        self, app: FastAPI, signed_in: AsyncClient, bob: User
    ) -> None:
        """Options are bound to the account that asked: bob's challenge, answered in alice's
        session, would put a passkey on the wrong account."""
        async with browser(app, BOB) as bob_http:
            options = (await bob_http.post(REGISTER_OPTIONS)).json()
        credential = SoftAuthenticator(FRONTEND_ORIGIN).create(options)

        response = await signed_in.post(REGISTER, json={"credential": credential})
        assert_refused(response, 400, "invalid_passkey")
        assert await stored_passkeys(app) == []

    async def test_a_credential_id_registered_to_someone_else_cannot_be_registered_again(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        bob_passkey: Json,
        bob_authenticator: SoftAuthenticator,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An attacker who learnt bob's credential id registers a key of their own under it:
        refused, and bob's passkey stays bob's."""
        stolen_id = bob_authenticator.credentials[0].id
        monkeypatch.setattr(
            authenticator_module, "secrets", SimpleNamespace(token_bytes=lambda _n: stolen_id)
        )
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        credential = SoftAuthenticator(FRONTEND_ORIGIN).create(options)
        assert credential["rawId"] == b64url(stolen_id)

        response = await signed_in.post(REGISTER, json={"credential": credential})
        assert_refused(response, 409, "already_exists")
        [row] = await stored_passkeys(app)
        assert str(row.id) == bob_passkey["id"]
        assert await listed(signed_in) == []

    async def test_passkey_changes_need_a_recent_sign_in(
        self,
        signed_in: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        settings: Settings,
        clock: Clock,
    ) -> None:
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        credential = SoftAuthenticator(FRONTEND_ORIGIN).create(options)
        clock.advance(settings.reauth_max_age_seconds + 1)
        path = f"/api/v1/auth/passkeys/{alice_passkey['id']}"

        for response in (
            await signed_in.post(REGISTER_OPTIONS),
            await signed_in.post(REGISTER, json={"credential": credential}),
            await signed_in.patch(path, json={"name": "Renamed"}),
            await signed_in.delete(path),
        ):
            assert_refused(response, 403, "reauthentication_required")
        assert await listed(signed_in) == [alice_passkey]

        reauth = await signed_in.post("/api/v1/auth/reauthenticate", json={"password": PASSWORD})
        assert reauth.status_code == 204, reauth.text
        assert (await signed_in.patch(path, json={"name": "Renamed"})).status_code == 200
        assert (await signed_in.delete(path)).status_code == 204


# --- usernameless sign-in ----------------------------------------------------------------------


class TestUsernamelessSignIn:
    async def test_options_without_a_token_allow_any_passkey_and_require_user_verification(
        self, visitor: AsyncClient
    ) -> None:
        options = await passkey_options(visitor)
        assert options.get("allowCredentials", []) == []
        assert options["userVerification"] == "required"
        assert options["rpId"] == RP_ID
        assert len(challenge_bytes(options)) >= 16
        assert "set-cookie" not in (await visitor.post(SIGN_IN_OPTIONS, json={})).headers

    async def test_a_passkey_alone_signs_in_like_a_password_login(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        cookie: CookieNames,
    ) -> None:
        before = len(await sessions_of(app, ALICE))

        response = await passkey_login(visitor, authenticator)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user"]["email"] == ALICE
        cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
        access, refresh, csrf = (cookies[name] for name in cookie.all())
        assert "HttpOnly" in access and "HttpOnly" in refresh and "Secure" in access
        assert f"{cookie.csrf}={body['csrf_token']}" in csrf
        me = await visitor.get("/api/v1/users/me")
        assert me.status_code == 200 and me.json()["email"] == ALICE

        sessions = await sessions_of(app, ALICE)
        assert len(sessions) == before + 1
        assert sessions[-1].auth_method == "passkey"
        details = [e.detail for e in await events(app, AuditEventType.LOGIN_SUCCEEDED)]
        assert details == ["password", "passkey"]  # alice's earlier sign-in, then this one
        [passkey] = await listed(visitor)
        assert passkey["last_used_at"] is not None

    async def test_a_user_handle_naming_another_account_is_refused(
        self,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        bob_passkey: Json,
        bob_authenticator: SoftAuthenticator,
    ) -> None:
        """The signature does not cover `userHandle`: alice's client rewrites it to bob's
        (WebAuthn §7.2: the handle must name the credential's owner)."""
        bobs_handle = b64url(bob_authenticator.credentials[0].user_handle)
        assertion = authenticator.get(await passkey_options(visitor))
        forged = {**assertion, "response": {**assertion["response"], "userHandle": bobs_handle}}

        assert_refused(await send_assertion(visitor, forged), 401, "passkey_rejected")
        assert (await visitor.get("/api/v1/users/me")).status_code == 401

    async def test_a_usernameless_assertion_without_a_user_handle_is_refused(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        """Only a discoverable passkey, which returns its user handle, signs in alone."""
        assertion = authenticator.get(await passkey_options(visitor))
        del assertion["response"]["userHandle"]

        assert_refused(await send_assertion(visitor, assertion), 401, "passkey_rejected")

    async def test_a_passkey_of_an_inactive_account_does_not_sign_in(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
    ) -> None:
        async with app.state.sessionmaker() as db:
            alice = (await db.exec(select(User).where(User.email == ALICE))).one()
            alice.is_active = False
            db.add(alice)
            await db.commit()

        assert_refused(await passkey_login(visitor, authenticator), 401, "passkey_rejected")

    async def test_a_removed_passkey_no_longer_signs_in(
        self,
        signed_in: AsyncClient,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
    ) -> None:
        removed = await signed_in.delete(f"/api/v1/auth/passkeys/{alice_passkey['id']}")
        assert removed.status_code == 204
        assert_refused(await passkey_login(visitor, authenticator), 401, "passkey_rejected")


# --- the second step after a password -------------------------------------------------------


class TestSecondStep:
    async def test_a_password_login_of_an_account_with_a_passkey_asks_for_a_second_step(
        self, app: FastAPI, visitor: AsyncClient, alice_passkey: Json
    ) -> None:
        before = len(await sessions_of(app, ALICE))
        for response in (
            await visitor.post("/api/v1/auth/login", json={"email": ALICE, "password": PASSWORD}),
            await visitor.post(
                "/api/v1/auth/token", data={"username": ALICE, "password": PASSWORD}
            ),
        ):
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["mfa_required"] is True
            assert "passkey" in body["methods"]
            assert len(body["mfa_token"]) >= 22  # at least 128 bits of base64url
            assert "set-cookie" not in response.headers
            assert "access_token" not in body
        assert len(await sessions_of(app, ALICE)) == before

    async def test_second_step_options_list_only_that_users_passkeys(
        self,
        signed_in: AsyncClient,
        visitor: AsyncClient,
        authenticator: SoftAuthenticator,
        bob_passkey: Json,
    ) -> None:
        await register_passkey(signed_in, authenticator, "Phone")
        laptop = SoftAuthenticator(FRONTEND_ORIGIN)
        await register_passkey(signed_in, laptop, "Laptop")
        token = await password_step(visitor)

        options = await passkey_options(visitor, token)
        allowed = [item["id"] for item in options["allowCredentials"]]
        mine = [c.id_b64 for c in authenticator.credentials + laptop.credentials]
        assert sorted(allowed) == sorted(mine)
        assert options["userVerification"] == "required"

    async def test_a_passkey_finishes_a_browser_login_with_cookies(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        cookie: CookieNames,
    ) -> None:
        token = await password_step(visitor)

        response = await passkey_login(visitor, authenticator, token)
        assert response.status_code == 200, response.text
        assert response.json()["user"]["email"] == ALICE
        set_cookies = " ".join(response.headers.get_list("set-cookie"))
        assert all(f"{name}=" in set_cookies for name in cookie.all())
        assert (await visitor.get("/api/v1/users/me")).status_code == 200
        assert (await sessions_of(app, ALICE))[-1].auth_method == "password+passkey"
        details = [e.detail for e in await events(app, AuditEventType.LOGIN_SUCCEEDED)]
        assert details[-1] == "password+passkey"

    async def test_a_passkey_finishes_a_token_login_with_a_token_pair(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        token = await password_step(visitor, api=True)

        response = await passkey_login(visitor, authenticator, token)
        assert response.status_code == 200, response.text
        pair = response.json()
        assert set(pair) == {"access_token", "refresh_token", "token_type"}
        assert "set-cookie" not in response.headers
        me = await visitor.get("/api/v1/users/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 200 and me.json()["email"] == ALICE

    async def test_a_passkey_without_a_user_handle_finishes_a_login(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        """A security key that stores no user handle still serves as the second step: the
        password already named the account."""
        token = await password_step(visitor)
        assertion = authenticator.get(await passkey_options(visitor, token))
        del assertion["response"]["userHandle"]

        assert (await send_assertion(visitor, assertion, token)).status_code == 200

    async def test_the_mfa_token_is_spent_by_a_passkey(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        token = await password_step(visitor)
        options = await passkey_options(visitor, token)
        assertion = authenticator.get(options)
        assert (await send_assertion(visitor, assertion, token)).status_code == 200

        assert_refused(await send_assertion(visitor, assertion, token), 401, "invalid_mfa_token")
        fresh = await visitor.post(SIGN_IN_OPTIONS, json={"mfa_token": token})
        assert_refused(fresh, 401, "invalid_mfa_token")
        code = await visitor.post(
            "/api/v1/auth/mfa/verify", json={"mfa_token": token, "code": "123456"}
        )
        assert_refused(code, 401, "invalid_mfa_token")

    async def test_another_users_passkey_cannot_finish_alices_login(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        bob_passkey: Json,
        bob_authenticator: SoftAuthenticator,
    ) -> None:
        """Bob knows alice's password and holds a passkey of his own: it does not pass for
        hers, and the attempt is a failed second step on alice's account."""
        token = await password_step(visitor)
        options = await passkey_options(visitor, token)
        assertion = bob_authenticator.get(options, credential=bob_authenticator.credentials[0])

        assert_refused(await send_assertion(visitor, assertion, token), 401, "passkey_rejected")
        assert (await visitor.get("/api/v1/users/me")).status_code == 401
        async with app.state.sessionmaker() as db:
            alice = (await db.exec(select(User).where(User.email == ALICE))).one()
        failed = await events(app, AuditEventType.MFA_FAILED)
        assert [e.user_id for e in failed] == [alice.id]

    async def test_a_passkey_unknown_to_the_service_cannot_finish_a_login(
        self, app: FastAPI, visitor: AsyncClient, alice_passkey: Json
    ) -> None:
        token = await password_step(visitor)
        options = await passkey_options(visitor, token)
        stranger_key = SoftAuthenticator(FRONTEND_ORIGIN)
        stranger_key.create(
            {
                "rp": {"id": RP_ID},
                "user": {"id": b64url(b"someone")},
                "challenge": options["challenge"],
                "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            }
        )
        assertion = stranger_key.get(options, credential=stranger_key.credentials[0])

        assert_refused(await send_assertion(visitor, assertion, token), 401, "passkey_rejected")
        assert len(await events(app, AuditEventType.MFA_FAILED)) == 1


# --- forged and replayed assertions ---------------------------------------------------------

FORGERIES = [
    {"origin": "https://evil.example"},
    {"origin": "http://frontend.example"},
    {"origin": "https://login.frontend.example"},
    {"rp_id": "evil.example"},
    {"rp_id": "example"},
    {"user_verified": False},
]
FORGERY_IDS = ["other-origin", "http-origin", "sub-origin", "rp-id", "tld", "no-user-verification"]


class TestForgedAssertions:
    @pytest.mark.parametrize("forged", FORGERIES, ids=FORGERY_IDS)
    async def test_a_forged_passkey_sign_in_is_refused_and_audited(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        forged: Json,
    ) -> None:
        before = len(await sessions_of(app, ALICE))

        response = await passkey_login(visitor, authenticator, **forged)
        assert_refused(response, 401, "passkey_rejected")
        assert len(await sessions_of(app, ALICE)) == before
        assert len(await events(app, AuditEventType.MFA_FAILED)) == 1

    @pytest.mark.parametrize("forged", FORGERIES, ids=FORGERY_IDS)
    async def test_a_forged_second_step_is_refused_audited_and_told_to_the_owner(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        outbox: Outbox,
        forged: Json,
    ) -> None:
        token = await password_step(visitor)

        response = await passkey_login(visitor, authenticator, token, **forged)
        assert_refused(response, 401, "passkey_rejected")
        assert len(await events(app, AuditEventType.MFA_FAILED)) == 1
        await app.state.context.mailer.wait_idle()
        assert outbox.to(ALICE, "Someone knows your password")
        # The genuine passkey still finishes this sign-in: one failure does not kill it.
        assert (await passkey_login(visitor, authenticator, token)).status_code == 200

    async def test_five_refused_passkeys_kill_the_second_step(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        token = await password_step(visitor)
        for _ in range(5):
            forged = await passkey_login(visitor, authenticator, token, user_verified=False)
            assert_refused(forged, 401, "passkey_rejected")
        options = await visitor.post(SIGN_IN_OPTIONS, json={"mfa_token": token})
        assert_refused(options, 401, "invalid_mfa_token")

    async def test_the_same_assertion_signs_in_once(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
    ) -> None:
        assertion = authenticator.get(await passkey_options(visitor))
        assert (await send_assertion(visitor, assertion)).status_code == 200

        async with stranger(app) as attacker:
            assert_refused(await send_assertion(attacker, assertion), 401, "invalid_mfa_token")

    async def test_a_new_assertion_on_a_used_challenge_is_refused(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
    ) -> None:
        options = await passkey_options(visitor)
        assert (await send_assertion(visitor, authenticator.get(options))).status_code == 200

        second = authenticator.get(options)  # freshly signed, higher count, same challenge
        assert_refused(await send_assertion(visitor, second), 401, "invalid_mfa_token")

    async def test_a_challenge_the_service_never_issued_is_refused(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        options = {"challenge": b64url(b"chosen by the attacker!!"), "rpId": RP_ID}
        response = await send_assertion(visitor, authenticator.get(options))
        assert_refused(response, 401, "invalid_mfa_token")

    @pytest.mark.parametrize(
        ("lagging", "stored"),
        [(3, 6), (6, 6), (0, 6)],
        ids=["behind", "equal", "zero-after-counting"],
    )
    async def test_a_sign_count_that_went_backwards_is_refused_and_audited(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        lagging: int,
        stored: int,
    ) -> None:
        """A counter behind the stored one means a cloned authenticator: its assertion is
        authentic, and refused."""
        credential = authenticator.credentials[0]
        credential.sign_count = stored - 1
        assert (await passkey_login(visitor, authenticator)).status_code == 200  # stores 6

        async with stranger(app) as clone:
            response = await passkey_login(clone, authenticator, sign_count=lagging)
            assert_refused(response, 401, "passkey_rejected")
        [regression] = await events(app, AuditEventType.PASSKEY_SIGN_COUNT_REGRESSION)
        assert regression.detail == f"Laptop: {lagging} after {stored}"
        [row] = await stored_passkeys(app)
        assert row.sign_count == stored
        # The genuine authenticator, still counting, carries on.
        async with stranger(app) as owner:
            assert (await passkey_login(owner, authenticator)).status_code == 200

    async def test_an_authenticator_that_always_reports_zero_is_accepted(
        self, app: FastAPI, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        """Many platform authenticators (synced passkeys) never count: 0 after 0 is fine."""
        for _ in range(3):
            async with stranger(app) as http:
                response = await passkey_login(http, authenticator, sign_count=0)
                assert response.status_code == 200, response.text
        assert await events(app, AuditEventType.PASSKEY_SIGN_COUNT_REGRESSION) == []

    async def test_a_registration_challenge_cannot_sign_in(
        self,
        signed_in: AsyncClient,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
    ) -> None:
        creation = (await signed_in.post(REGISTER_OPTIONS)).json()
        options = {"challenge": creation["challenge"], "rpId": RP_ID}

        alone = await send_assertion(visitor, authenticator.get(options))
        assert_refused(alone, 401, "invalid_mfa_token")
        token = await password_step(visitor)
        await passkey_options(visitor, token)
        second_step = await send_assertion(visitor, authenticator.get(options), token)
        assert_refused(second_step, 401, "passkey_rejected")

    async def test_a_challenge_answers_only_its_own_sign_in(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        """A usernameless challenge does not finish a password login, nor the reverse."""
        token = await password_step(visitor)
        second_step = await passkey_options(visitor, token)
        usernameless = await passkey_options(visitor)

        step_alone = await send_assertion(visitor, authenticator.get(second_step))
        assert_refused(step_alone, 401, "invalid_mfa_token")
        alone_with_token = await send_assertion(visitor, authenticator.get(usernameless), token)
        assert_refused(alone_with_token, 401, "passkey_rejected")

    async def test_new_second_step_options_replace_the_previous_challenge(
        self, visitor: AsyncClient, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        token = await password_step(visitor)
        first = await passkey_options(visitor, token)
        await passkey_options(visitor, token)

        response = await send_assertion(visitor, authenticator.get(first), token)
        assert_refused(response, 401, "passkey_rejected")

    async def test_an_expired_sign_in_challenge_is_refused(
        self,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        settings: Settings,
        clock: Clock,
    ) -> None:
        ttl = settings.mfa_challenge_ttl_seconds
        almost = await passkey_options(visitor)
        expired = await passkey_options(visitor)
        clock.advance(ttl - 5)
        assert (await send_assertion(visitor, authenticator.get(almost))).status_code == 200
        clock.advance(6)

        response = await send_assertion(visitor, authenticator.get(expired))
        assert_refused(response, 401, "invalid_mfa_token")

    async def test_an_expired_second_step_is_refused(
        self,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        settings: Settings,
        clock: Clock,
    ) -> None:
        token = await password_step(visitor)
        options = await passkey_options(visitor, token)
        clock.advance(settings.mfa_challenge_ttl_seconds + 1)

        response = await send_assertion(visitor, authenticator.get(options), token)
        assert_refused(response, 401, "invalid_mfa_token")


# --- rename and delete --------------------------------------------------------------------


class TestRenameAndDelete:
    async def test_a_passkey_can_be_renamed(
        self, app: FastAPI, signed_in: AsyncClient, alice_passkey: Json
    ) -> None:
        path = f"/api/v1/auth/passkeys/{alice_passkey['id']}"
        response = await signed_in.patch(path, json={"name": "Yubikey 5C"})
        assert response.status_code == 200, response.text
        assert response.json() == {**alice_passkey, "name": "Yubikey 5C"}
        assert await listed(signed_in) == [response.json()]
        [renamed] = await events(app, AuditEventType.PASSKEY_RENAMED)
        assert renamed.detail == "Yubikey 5C"

    @pytest.mark.parametrize("name", ["", "x" * 65, "bad\u0000name", "tab\tname", "\ud800"])
    async def test_a_bad_name_is_refused(
        self, signed_in: AsyncClient, alice_passkey: Json, name: str
    ) -> None:
        path = f"/api/v1/auth/passkeys/{alice_passkey['id']}"
        response = await signed_in.patch(
            path,
            content=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert_4xx(response)
        assert await listed(signed_in) == [alice_passkey]

    async def test_deleting_a_passkey_audits_and_announces_it(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        visitor: AsyncClient,
        alice_passkey: Json,
        outbox: Outbox,
    ) -> None:
        response = await signed_in.delete(f"/api/v1/auth/passkeys/{alice_passkey['id']}")
        assert response.status_code == 204, response.text
        assert await listed(signed_in) == []
        [removed] = await events(app, AuditEventType.PASSKEY_REMOVED)
        assert removed.detail == "Laptop"
        await app.state.context.mailer.wait_idle()
        assert [m for m in outbox.to(ALICE) if "A passkey was removed: Laptop." in m.text]
        # The password alone signs in again: there is no second factor left.
        login = await visitor.post(
            "/api/v1/auth/login", json={"email": ALICE, "password": PASSWORD}
        )
        assert login.status_code == 200 and "user" in login.json()

    async def test_deleting_the_last_factor_removes_the_recovery_codes(
        self, signed_in: AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        phone = await register_passkey(signed_in, authenticator, "Phone")
        laptop = await register_passkey(signed_in, SoftAuthenticator(FRONTEND_ORIGIN), "Laptop")
        codes = await signed_in.post("/api/v1/auth/mfa/recovery-codes")
        assert codes.status_code == 200 and len(codes.json()["recovery_codes"]) == 10

        assert (await signed_in.delete(f"/api/v1/auth/passkeys/{phone['id']}")).status_code == 204
        assert (await signed_in.get("/api/v1/auth/mfa")).json()["recovery_codes_left"] == 10
        assert (await signed_in.delete(f"/api/v1/auth/passkeys/{laptop['id']}")).status_code == 204
        status = (await signed_in.get("/api/v1/auth/mfa")).json()
        assert status == {"totp": False, "passkeys": [], "recovery_codes_left": 0}

    async def test_another_users_passkey_cannot_be_renamed_or_deleted(
        self, app: FastAPI, signed_in: AsyncClient, bob_passkey: Json
    ) -> None:
        bobs = f"/api/v1/auth/passkeys/{bob_passkey['id']}"
        unknown = f"/api/v1/auth/passkeys/{uuid.uuid4()}"

        for path in (bobs, unknown):
            assert_refused(await signed_in.patch(path, json={"name": "mine now"}), 404, "not_found")
            assert_refused(await signed_in.delete(path), 404, "not_found")
        assert (await signed_in.delete(bobs)).json() == (await signed_in.delete(unknown)).json()
        [row] = await stored_passkeys(app)
        assert (str(row.id), row.name) == (bob_passkey["id"], "Bob's key")
        assert await events(app, AuditEventType.PASSKEY_RENAMED) == []


# --- malformed credentials ------------------------------------------------------------------

Mutation = Callable[[Json], object]  # a genuine credential in, whatever is sent out
Edit = Callable[[Json], Json]


def edit_response(**fields: object) -> Edit:
    """Set (or, with None, remove) fields of `credential.response`."""

    def mutate(credential: Json) -> Json:
        response = dict(credential["response"])
        for name, value in fields.items():
            if value is None:
                response.pop(name, None)
            else:
                response[name] = value
        return {**credential, "response": response}

    return mutate


def edit(**fields: object) -> Edit:
    """Set (or, with None, remove) fields of the credential itself."""

    def mutate(credential: Json) -> Json:
        changed = dict(credential)
        for name, value in fields.items():
            if value is None:
                changed.pop(name, None)
            else:
                changed[name] = value
        return changed

    return mutate


def client_data(raw: str) -> Edit:
    """Replace clientDataJSON with this exact text (so it can carry a lone surrogate)."""
    return edit_response(clientDataJSON=b64url(raw.encode()))


def with_challenge(kind: str, challenge_json: str) -> Edit:
    """clientDataJSON of this ceremony whose challenge is `challenge_json` (raw JSON text)."""
    fields = [f'"type":"{kind}"', f'"challenge":{challenge_json}', f'"origin":"{FRONTEND_ORIGIN}"']
    return client_data("{" + ",".join(fields) + "}")


def replace_attestation(change: Edit) -> Edit:
    def mutate(credential: Json) -> Json:
        attestation: Json = cbor2.loads(b64url_decode(credential["response"]["attestationObject"]))
        changed = change(attestation)
        return edit_response(attestationObject=b64url(cbor2.dumps(changed)))(credential)

    return mutate


def with_cose_key(cose: bytes) -> Edit:
    """The attested public key replaced by these bytes (the credential id kept)."""

    def change(attestation: Json) -> Json:
        auth_data: bytes = attestation["authData"]
        id_length = int.from_bytes(auth_data[53:55], "big")
        return {**attestation, "authData": auth_data[: 55 + id_length] + cose}

    return replace_attestation(change)


def truncated_auth_data(attestation: Json) -> Json:
    return {**attestation, "authData": attestation["authData"][:40]}


# A placeholder `post_raw` swaps for JSON nested deeper than Python's recursion limit.
DEEP = "__deeply-nested__"
DEEP_JSON = '{"a":' * 3000 + "0" + "}" * 3000


OFF_CURVE = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32})

# Malformed input common to both ceremonies: wrong types, missing and huge fields, bad
# base64, NUL and lone surrogates. Each must be a 4xx naming the problem.
COMMON: dict[str, Mutation] = {
    "credential-a-string": lambda _c: "public-key",
    "credential-a-list": lambda c: [c],
    "no-response": edit(response=None),
    "response-a-list": edit(response=["clientDataJSON"]),
    "wrong-type": edit(type="password"),
    "type-a-number": edit(type=1),
    "id-not-rawid": edit(id=b64url(b"another credential")),
    "rawid-bad-base64": edit(rawId="A"),
    "rawid-nul": edit(rawId="AAAA\u0000"),
    "id-lone-surrogate": edit(id="\ud800"),
    "huge-rawid": edit(rawId="A" * 20_000),
    "no-client-data": edit_response(clientDataJSON=None),
    "client-data-a-number": edit_response(clientDataJSON=12345),
    "client-data-bad-base64": edit_response(clientDataJSON="A"),
    "client-data-not-base64url": edit_response(clientDataJSON="eyJ0eXBlIjo+/="),
    "client-data-not-json": edit_response(clientDataJSON=b64url(b"\xff\xfe{not json")),
    "client-data-a-list": client_data("[1, 2, 3]"),
    "client-data-empty": edit_response(clientDataJSON=""),
    "huge-client-data": edit_response(clientDataJSON="A" * 20_000),
    "extensions-a-list": edit(clientExtensionResults=[1, 2]),
    "extensions-too-many": edit(clientExtensionResults={str(n): n for n in range(100)}),
    "extensions-deep": edit(clientExtensionResults={"x": DEEP}),
    "attachment-unknown": edit(authenticatorAttachment="telepathy"),
    "transports-wrong-type": edit_response(transports=[1, 2]),
    "transports-huge": edit_response(transports=["usb"] * 1000),
}


def ceremony_challenge(kind: str) -> dict[str, Mutation]:
    """Challenges that are no challenge of ours: each must be refused before any lookup."""
    return {
        "challenge-lone-surrogate": with_challenge(kind, '"\\ud800"'),
        "challenge-nul": with_challenge(kind, '"abc\\u0000def"'),
        "challenge-a-number": with_challenge(kind, "12345"),
        "challenge-null": with_challenge(kind, "null"),
        "challenge-huge": with_challenge(kind, json.dumps("A" * 10_000)),
    }


REGISTRATION: dict[str, Mutation] = {
    **COMMON,
    **ceremony_challenge("webauthn.create"),
    "no-attestation": edit_response(attestationObject=None),
    "attestation-bad-base64": edit_response(attestationObject="A"),
    "attestation-not-cbor": edit_response(attestationObject=b64url(b"\xff\xff\xff\xff")),
    "attestation-a-list": edit_response(attestationObject=b64url(cbor2.dumps([1, 2]))),
    "attestation-without-auth-data": replace_attestation(lambda a: {"fmt": "none", "attStmt": {}}),
    "attestation-auth-data-a-string": replace_attestation(lambda a: {**a, "authData": "x"}),
    "attestation-truncated-auth-data": replace_attestation(truncated_auth_data),
    "attestation-fmt-unknown": replace_attestation(lambda a: {**a, "fmt": "made-up"}),
    "attestation-fmt-a-number": replace_attestation(lambda a: {**a, "fmt": 7}),
    "attestation-none-with-statement": replace_attestation(
        lambda a: {**a, "attStmt": {"sig": b"x"}}
    ),
    "attestation-packed-garbage": replace_attestation(
        lambda a: {**a, "fmt": "packed", "attStmt": {"alg": -7, "sig": b"garbage"}}
    ),
    "attestation-packed-bad-x5c": replace_attestation(
        lambda a: {**a, "fmt": "packed", "attStmt": {"alg": -7, "sig": b"x", "x5c": [b"x"]}}
    ),
    "cose-key-without-alg": with_cose_key(cbor2.dumps({1: 2})),
    "cose-key-a-number": with_cose_key(cbor2.dumps(5)),
    "cose-key-empty-map": with_cose_key(cbor2.dumps({})),
    "cose-key-unknown-alg": with_cose_key(cbor2.dumps({1: 2, 3: -9999, -1: 1})),
    "cose-key-missing": with_cose_key(b""),
}
BAD_NAMES = {"name-nul": "Laptop\u0000", "name-lone-surrogate": "\udfff", "name-huge": "x" * 10_000}
REGISTRATION.update({key: (lambda c: c) for key in BAD_NAMES})

SIGN_IN_MUTATIONS: dict[str, Mutation] = {
    **COMMON,
    **ceremony_challenge("webauthn.get"),
    "no-authenticator-data": edit_response(authenticatorData=None),
    "authenticator-data-bad-base64": edit_response(authenticatorData="A"),
    "authenticator-data-truncated": edit_response(authenticatorData=b64url(b"\x00" * 10)),
    "authenticator-data-empty": edit_response(authenticatorData=""),
    "no-signature": edit_response(signature=None),
    "signature-bad-base64": edit_response(signature="A"),
    "signature-garbage": edit_response(signature=b64url(b"\x30\x06garbage")),
    "signature-empty": edit_response(signature=""),
    "huge-signature": edit_response(signature="A" * 20_000),
    "user-handle-bad-base64": edit_response(userHandle="A"),
    "user-handle-a-number": edit_response(userHandle=5),
    "rawid-unknown": lambda c: {**c, "id": b64url(b"x" * 32), "rawId": b64url(b"x" * 32)},
}


class TestMalformedCredentials:
    """Whatever arrives, the answer is a 4xx with `detail` and `code`, never a 500, and
    nothing is stored or signed in."""

    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(rate_limit_enabled=False)

    @pytest.mark.parametrize("case", sorted(REGISTRATION))
    async def test_a_malformed_registration_is_refused_and_stores_nothing(
        self, app: FastAPI, signed_in: AsyncClient, authenticator: SoftAuthenticator, case: str
    ) -> None:
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        credential = REGISTRATION[case](authenticator.create(options))
        body: Json = {"credential": credential}
        if case in BAD_NAMES:
            body["name"] = BAD_NAMES[case]

        response = await post_raw(signed_in, REGISTER, body)
        assert_4xx(response)
        assert await stored_passkeys(app) == []
        assert await events(app, AuditEventType.PASSKEY_ADDED) == []

    @pytest.mark.parametrize("case", sorted(SIGN_IN_MUTATIONS))
    @pytest.mark.parametrize("step", ["alone", "second-step"])
    async def test_a_malformed_sign_in_is_refused_and_signs_nobody_in(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        case: str,
        step: str,
    ) -> None:
        before = len(await sessions_of(app, ALICE))
        token = await password_step(visitor) if step == "second-step" else None
        options = await passkey_options(visitor, token)
        body: Json = {"credential": SIGN_IN_MUTATIONS[case](authenticator.get(options))}
        if token is not None:
            body["mfa_token"] = token

        response = await post_raw(visitor, SIGN_IN, body)
        assert_4xx(response)
        assert len(await sessions_of(app, ALICE)) == before
        assert (await visitor.get("/api/v1/users/me")).status_code == 401

    @pytest.mark.parametrize(
        "mfa_token",
        ["", "\u0000", "\ud800", "x" * 10_000, 12345, ["token"]],
        ids=["empty", "nul", "lone-surrogate", "huge", "number", "list"],
    )
    async def test_a_malformed_mfa_token_is_refused(
        self,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
        mfa_token: object,
    ) -> None:
        assertion = authenticator.get(await passkey_options(visitor))
        assert_4xx(await post_raw(visitor, SIGN_IN_OPTIONS, {"mfa_token": mfa_token}))
        body = {"mfa_token": mfa_token, "credential": assertion}
        assert_4xx(await post_raw(visitor, SIGN_IN, body))

    async def test_a_body_over_the_limit_is_refused_before_it_is_read(
        self, signed_in: AsyncClient, visitor: AsyncClient
    ) -> None:
        huge = {"credential": {"id": "A" * 70_000}}
        assert_4xx(await post_raw(signed_in, REGISTER, huge))
        assert_4xx(await post_raw(visitor, SIGN_IN, huge))

    async def test_a_public_key_that_is_no_point_on_the_curve_is_not_stored(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        visitor: AsyncClient,
        authenticator: SoftAuthenticator,
    ) -> None:
        """Stored, such a key would turn every later sign-in with it into a server error."""
        options = (await signed_in.post(REGISTER_OPTIONS)).json()
        credential = with_cose_key(OFF_CURVE)(authenticator.create(options))
        response = await post_raw(signed_in, REGISTER, {"credential": credential})
        assert_refused(response, 400, "invalid_passkey")
        assert await stored_passkeys(app) == []


# --- concurrency ----------------------------------------------------------------------------

BURST = 8


class TestConcurrentSignIns:
    async def test_a_burst_of_the_same_assertion_signs_in_exactly_once(
        self, app: FastAPI, alice_passkey: Json, authenticator: SoftAuthenticator
    ) -> None:
        async with stranger(app) as http:
            assertion = authenticator.get(await passkey_options(http))
        before = len(await sessions_of(app, ALICE))

        async def one() -> Response:
            async with stranger(app) as attacker:
                return await send_assertion(attacker, assertion)

        responses = await asyncio.gather(*(one() for _ in range(BURST)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [401] * (BURST - 1), [r.text for r in responses]
        # A loser finds the challenge spent, or (when it read the passkey after the winner
        # stored the new count) the same count again: a replay either way, never a sign-in.
        codes = {r.json()["code"] for r in responses if r.status_code == 401}
        assert codes <= {"invalid_mfa_token", "passkey_rejected"}
        assert len(await sessions_of(app, ALICE)) == before + 1
        assert len(await events(app, AuditEventType.LOGIN_SUCCEEDED)) == 2  # alice's password, +1

    async def test_a_burst_of_the_same_second_step_signs_in_exactly_once(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
    ) -> None:
        token = await password_step(visitor)
        assertion = authenticator.get(await passkey_options(visitor, token))
        before = len(await sessions_of(app, ALICE))

        async def one() -> Response:
            async with stranger(app) as attacker:
                return await send_assertion(attacker, assertion, token)

        responses = await asyncio.gather(*(one() for _ in range(BURST)))
        assert sorted(r.status_code for r in responses) == [200] + [401] * (BURST - 1)
        assert len(await sessions_of(app, ALICE)) == before + 1

    async def test_a_burst_of_forged_second_steps_gets_only_the_challenges_attempts(
        self,
        app: FastAPI,
        visitor: AsyncClient,
        alice_passkey: Json,
        authenticator: SoftAuthenticator,
    ) -> None:
        """Each attempt is counted before its assertion is checked, as for codes: however the
        burst interleaves, one mfa_token gets MAX_ATTEMPTS verifications and no more."""
        token = await password_step(visitor)
        options = await passkey_options(visitor, token)
        forged = [authenticator.get(options, origin="https://evil.example") for _ in range(12)]

        async def one(assertion: Json) -> Response:
            async with stranger(app) as attacker:
                return await send_assertion(attacker, assertion, token)

        responses = await asyncio.gather(*(one(assertion) for assertion in forged))
        codes = sorted(r.json()["code"] for r in responses)
        assert codes == ["invalid_mfa_token"] * 7 + ["passkey_rejected"] * 5, codes
        assert len(await events(app, AuditEventType.MFA_FAILED)) == 5


# --- a passkey is multi-factor on its own ---------------------------------------------------


class TestPasskeySatisfiesMfa:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(mfa_required_roles=["admin"])

    async def test_an_admin_with_only_a_passkey_reaches_the_admin_api(
        self, app: FastAPI, visitor: AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        root = await create_user(app, "root@example.com")
        await grant_role(app, root, RoleName.ADMIN)
        async with browser(app, "root@example.com") as password_only:
            refused = await password_only.get("/api/v1/admin/users")
            assert_refused(refused, 403, "mfa_enrollment_required")
            await register_passkey(password_only, authenticator, "Admin key")

        signed = await passkey_login(visitor, authenticator)
        assert signed.status_code == 200, signed.text
        visitor.headers["X-CSRF-Token"] = signed.json()["csrf_token"]
        users = await visitor.get("/api/v1/admin/users")
        assert users.status_code == 200, users.text
        assert "root@example.com" in {u["email"] for u in users.json()["items"]}
