"""Account deletion (SPEC §12): `DELETE /users/me` with the current password, and the admin's
`DELETE /admin/users/{id}`, which does the same.

The account goes with everything that hangs off it (sessions, emailed links, factors, passkeys,
recovery codes, pending sign-in steps), at once: its tokens stop working on the next request.
Its audit events stay (type and time) without the email, IP addresses, user agents or a detail
that names something of the person's; the address is told. The password is guessed through the
account's sign-in failure allowance, like every other password check (the burst test is in
tests/test_attack_bruteforce.py, the step-up in tests/test_step_up.py), and the last active
admin cannot leave, however many admins try at once.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import SQLModel, col, func, select

from app.core.config import Settings
from app.core.permissions import RoleName
from app.models import (
    AuditEvent,
    DeviceSession,
    MfaChallenge,
    OneTimeToken,
    Passkey,
    RecoveryCode,
    Role,
    TotpFactor,
    User,
    UserRole,
)
from app.services.accounts import IMPERSONAL_DETAIL
from app.services.email import Email
from app.utils.cookies import CookieNames
from tests.authenticator import SoftAuthenticator
from tests.helpers import (
    ALICE,
    BROWSER,
    FRONTEND_ORIGIN,
    PASSWORD,
    Clock,
    Outbox,
    api_tokens,
    bearer,
    browser,
    create_user,
    device,
    enable_totp,
    give_role,
    make_settings,
    passkey_login,
    refresh,
    register_passkey,
    start_login,
)
from tests.test_attack_input import json_body_cases

ME = "/api/v1/users/me"
LOGIN = "/api/v1/auth/login"
ROOT = "root@example.com"
WRONG = "not the password, just a guess"
# A password that must never come back in an answer.
SECRET = "tangerine-otter-kettle-9413"
PASSKEY_NAME = "Alice's phone"
DEPENDANTS: tuple[type[SQLModel], ...] = (
    DeviceSession,
    OneTimeToken,
    TotpFactor,
    RecoveryCode,
    Passkey,
    MfaChallenge,
    UserRole,
)


@pytest.fixture
def settings() -> Settings:
    """Room for the sign-ins a test makes from one address: the IP limit is not the subject."""
    return make_settings(rate_limit_login_ip="1000/minute")


async def delete_me(http: AsyncClient, password: str = PASSWORD, **headers: str) -> Response:
    return await http.request("DELETE", ME, json={"password": password}, headers=headers)


async def dependants(app: FastAPI, user_id: uuid.UUID) -> dict[str, int]:
    """How many rows of each table hang off the user, and whether the user is there."""
    counts = {"user": 0}
    async with app.state.sessionmaker() as db:
        for table in DEPENDANTS:
            user_id_column = col(table.user_id)  # type: ignore[attr-defined]
            query = select(func.count()).select_from(table).where(user_id_column == user_id)
            counts[str(table.__tablename__)] = (await db.exec(query)).one()
        counts["user"] = 1 if await db.get(User, user_id) is not None else 0
    return counts


async def audit_log(app: FastAPI) -> list[AuditEvent]:
    async with app.state.sessionmaker() as db:
        return list((await db.exec(select(AuditEvent).order_by(col(AuditEvent.created_at)))).all())


def columns(event: AuditEvent) -> str:
    """Every column of the event as text, to search for what must not be there."""
    return repr(event.model_dump())


async def notices(app: FastAPI, outbox: Outbox, email: str = ALICE) -> list[Email]:
    await app.state.context.mailer.wait_idle()
    return outbox.to(email, "Your account was deleted")


async def make_admin(app: FastAPI, email: str) -> User:
    user = await create_user(app, email)
    await give_role(app, user, RoleName.ADMIN)
    return user


async def active_admins(app: FastAPI) -> list[str]:
    async with app.state.sessionmaker() as db:
        rows = await db.exec(
            select(User.email)
            .join(UserRole, col(UserRole.user_id) == User.id)
            .join(Role, col(Role.id) == UserRole.role_id)
            .where(col(User.is_active).is_(True), col(Role.name) == RoleName.ADMIN)
        )
        return sorted(rows.all())


# --- the user's own deletion -----------------------------------------------------------------


async def test_deleting_the_account_signs_it_out_and_clears_the_cookies(
    app: FastAPI, signed_in: AsyncClient, alice: User, cookie: CookieNames
) -> None:
    response = await delete_me(signed_in)
    assert response.status_code == 204, response.text
    cleared = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    assert set(cleared) == set(cookie.all())
    assert all("Max-Age=0" in c for c in cleared.values())
    assert not any((await dependants(app, alice.id)).values())


async def test_a_deleted_account_cannot_sign_in_and_its_tokens_stop_at_once(
    app: FastAPI, client: AsyncClient, alice: User
) -> None:
    tokens = await api_tokens(client)
    async with browser(app, ALICE) as laptop:
        assert (await laptop.get(ME)).status_code == 200
        deleted = await delete_me(client, **bearer(tokens["access_token"]))
        assert deleted.status_code == 204, deleted.text
        assert (await laptop.get(ME)).status_code == 401
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    login = await client.post(LOGIN, json={"email": ALICE, "password": PASSWORD})
    assert login.status_code == 401
    assert login.json()["code"] == "invalid_credentials"  # as for an address never registered


async def test_every_row_that_hangs_off_the_account_goes_with_it(
    app: FastAPI, signed_in: AsyncClient, alice: User, clock: Clock
) -> None:
    await enable_totp(signed_in, clock)  # a factor and recovery codes
    authenticator = SoftAuthenticator(FRONTEND_ORIGIN)
    await register_passkey(signed_in, authenticator)
    async with device(app) as phone:
        await start_login(phone)  # a second step left pending
    forgot = await signed_in.post("/api/v1/auth/password/forgot", json={"email": ALICE})
    assert forgot.status_code == 202
    await app.state.context.mailer.wait_idle()  # the reset link is saved after the response
    before = await dependants(app, alice.id)
    assert all(before.values()), before  # each table really had rows to lose

    assert (await delete_me(signed_in)).status_code == 204

    assert await dependants(app, alice.id) == dict.fromkeys(before, 0)
    async with device(app) as laptop:  # the passkey signs nobody in any more
        assert (await passkey_login(laptop, authenticator)).status_code == 401


async def test_its_audit_events_stay_without_personal_data(
    app: FastAPI, client: AsyncClient, alice: User
) -> None:
    async with device(app, ip="203.0.113.7") as stranger:  # a failed sign-in, audited
        await stranger.post(LOGIN, json={"email": ALICE, "password": WRONG})
    async with device(app, ip="203.0.113.8") as home:
        tokens = await api_tokens(home)
    async with device(app, ip="198.51.100.9") as mobile:  # an IP change, audited with both
        tokens = (await refresh(mobile, tokens["refresh_token"])).json()
        access = bearer(tokens["access_token"])
        options = await mobile.post("/api/v1/auth/passkeys/register/options", headers=access)
        credential = SoftAuthenticator(FRONTEND_ORIGIN).create(options.json())
        body = {"credential": credential, "name": PASSKEY_NAME}
        added = await mobile.post("/api/v1/auth/passkeys/register", json=body, headers=access)
        assert added.status_code == 201, added.text
        before = [event for event in await audit_log(app) if event.user_id == alice.id]
        assert {"login_failed", "login_succeeded", "session_ip_changed", "passkey_added"} <= {
            event.type for event in before
        }
        assert (await delete_me(mobile, **access)).status_code == 204

    after = {event.id: event for event in await audit_log(app)}
    for event in before:  # every event stays, its type and time with it
        kept = after[event.id]
        assert (kept.type, kept.created_at) == (event.type, event.created_at)
        assert (kept.user_id, kept.ip_address, kept.user_agent) == (None, None, None)
        if event.type not in IMPERSONAL_DETAIL:
            assert kept.detail is None, event.type
    for event in after.values():
        for personal in (ALICE, "203.0.113.", "198.51.100.", BROWSER, "Firefox", PASSKEY_NAME):
            assert personal not in columns(event), (event.type, personal)
    [deleted] = [event for event in after.values() if event.type == "user_deleted"]
    assert (deleted.user_id, deleted.ip_address, deleted.user_agent) == (None, None, None)
    assert deleted.detail == f"user {alice.id} by themselves"


async def test_another_users_audit_events_are_left_alone(
    app: FastAPI, signed_in: AsyncClient, alice: User
) -> None:
    bob = await create_user(app, "bob@example.com")
    async with browser(app, "bob@example.com", ip="192.0.2.44"):
        pass
    assert (await delete_me(signed_in)).status_code == 204
    [bobs] = [event for event in await audit_log(app) if event.user_id == bob.id]
    assert (bobs.ip_address, bobs.user_agent) == ("192.0.2.44", BROWSER)


async def test_the_address_is_told(
    app: FastAPI, signed_in: AsyncClient, alice: User, outbox: Outbox
) -> None:
    outbox.clear()
    assert (await delete_me(signed_in)).status_code == 204
    [notice] = await notices(app, outbox)
    assert "was deleted" in notice.text and "administrator" not in notice.text
    assert "was deleted" in notice.html


async def test_two_deletions_at_once_delete_once(
    app: FastAPI, signed_in: AsyncClient, alice: User, outbox: Outbox
) -> None:
    """A double click, or two tabs: one deletion, one event, one notice, and no 5xx."""
    outbox.clear()
    responses = await asyncio.gather(delete_me(signed_in), delete_me(signed_in))
    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 204 and 400 <= statuses[1] < 500, [r.text for r in responses]
    assert [event.type for event in await audit_log(app)].count("user_deleted") == 1
    assert len(await notices(app, outbox)) == 1


# --- sign-ins racing the deletion ------------------------------------------------------------


def answered_cleanly(response: Response) -> bool:
    """A 2xx, or a 4xx that says what went wrong (`detail` and `code`): never a 5xx."""
    if response.is_success:
        return True
    body = response.json()
    return 400 <= response.status_code < 500 and bool(body.get("detail") and body.get("code"))


class TestSignInsRacingTheDeletion:
    """Someone who has the password (the owner on another device, or whoever stole it) signs in
    again and again while the owner deletes the account: a sign-in that read the account before
    it went must not write its session (or its failed attempt) after it, as a 500."""

    @pytest.fixture
    def settings(self) -> Settings:
        """No limit in the way: every attempt reaches the password check."""
        return make_settings(
            rate_limit_login_ip="1000/minute", rate_limit_login_account="1000/minute"
        )

    @pytest.mark.parametrize("attempt", range(2))
    @pytest.mark.parametrize("second_factor", [False, True], ids=["password", "totp"])
    async def test_each_sign_in_ends_cleanly_and_no_session_outlives_the_account(
        self,
        app: FastAPI,
        signed_in: AsyncClient,
        alice: User,
        clock: Clock,
        second_factor: bool,
        attempt: int,
    ) -> None:
        """Sign-ins start one after another while the deletion runs, so some read the account
        before it goes and finish after; one in four has the wrong password. With a second
        factor, a right password opens a pending second step instead of a session."""
        if second_factor:
            await enable_totp(signed_in, clock)
        async with AsyncExitStack() as stack:
            deletion = asyncio.create_task(delete_me(signed_in))
            devices: list[AsyncClient] = []
            sign_ins: list[asyncio.Task[Response]] = []
            while not deletion.done() and len(devices) < 40:
                http = await stack.enter_async_context(device(app, ip=f"203.0.113.{len(devices)}"))
                password = WRONG if len(devices) % 4 == 0 else PASSWORD
                body = {"email": ALICE, "password": password}
                sign_ins.append(asyncio.create_task(http.post(LOGIN, json=body)))
                devices.append(http)
                await asyncio.sleep(0.01)
            deleted, answers = await deletion, await asyncio.gather(*sign_ins)
            assert deleted.status_code == 204, deleted.text
            unclean = [(r.status_code, r.text) for r in answers if not answered_cleanly(r)]
            assert unclean == []
            after = await signed_in.post(LOGIN, json={"email": ALICE, "password": PASSWORD})
            assert after.json()["code"] == "invalid_credentials"  # as for an unknown address
            for http, answer in zip(devices, answers, strict=True):
                if answer.is_success:  # signed in just before: the session went with the account
                    assert (await http.get(ME)).status_code == 401
        assert not any((await dependants(app, alice.id)).values())


# --- refusals: nothing is deleted ------------------------------------------------------------


async def assert_still_there(app: FastAPI, http: AsyncClient, user: User) -> None:
    assert (await http.get(ME)).status_code == 200
    assert (await dependants(app, user.id))["user"] == 1
    assert "user_deleted" not in {event.type for event in await audit_log(app)}


async def test_a_wrong_password_deletes_nothing(
    app: FastAPI, signed_in: AsyncClient, alice: User, outbox: Outbox
) -> None:
    response = await delete_me(signed_in, WRONG)
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_password"  # as for POST /auth/password/change
    await assert_still_there(app, signed_in, alice)
    assert await notices(app, outbox) == []


class TestWrongPasswordsCount:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(rate_limit_login_account="3 per 15 minutes")

    async def test_each_wrong_password_uses_the_accounts_sign_in_failure_allowance(
        self, app: FastAPI, signed_in: AsyncClient, alice: User
    ) -> None:
        """Signing in verified the password: the allowance is whole again, then three wrong
        guesses here use it up for deletion and sign-in alike."""
        for _ in range(3):
            assert (await delete_me(signed_in, WRONG)).json()["code"] == "wrong_password"
        assert (await delete_me(signed_in)).json()["code"] == "rate_limited"
        async with device(app) as laptop:
            login = await laptop.post(LOGIN, json={"email": ALICE, "password": PASSWORD})
            assert login.json()["code"] == "rate_limited"
        await assert_still_there(app, signed_in, alice)


class TestCsrf:
    async def test_a_cookie_request_without_the_csrf_header_is_refused(
        self, app: FastAPI, signed_in: AsyncClient, alice: User
    ) -> None:
        del signed_in.headers["X-CSRF-Token"]
        response = await delete_me(signed_in)
        assert response.status_code == 403 and response.json()["code"] == "csrf_failed"
        signed_in.headers["X-CSRF-Token"] = "forged"
        response = await delete_me(signed_in)
        assert response.status_code == 403 and response.json()["code"] == "csrf_failed"
        await assert_still_there(app, signed_in, alice)

    async def test_a_cross_site_request_is_refused(
        self, app: FastAPI, signed_in: AsyncClient, alice: User
    ) -> None:
        response = await delete_me(signed_in, **{"Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 403 and response.json()["code"] == "csrf_failed"
        response = await delete_me(signed_in, Origin="https://evil.example")
        assert response.status_code == 403 and response.json()["code"] == "csrf_failed"
        await assert_still_there(app, signed_in, alice)

    async def test_without_any_credential_it_is_a_401(self, client: AsyncClient) -> None:
        assert (await delete_me(client)).status_code == 401


# Raw JSON bodies, spliced as sent: json.dumps would escape a lone surrogate the same way.
BAD_BODIES = {
    "no-body": None,
    "empty-object": "{}",
    "empty-password": '{"password": ""}',
    "oversized": '{"password": "' + SECRET * 5 + '"}',
    "nul": '{"password": "' + SECRET + '\\u0000"}',
    "lone-surrogate": '{"password": "' + SECRET + '\\ud800"}',
    "not-a-string": '{"password": 4132}',
    "a-list": f'["{SECRET}"]',
    "extra-field": '{"password": "' + SECRET + '", "is_active": false}',
    "not-json": "password=" + SECRET,
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES)
async def test_a_malformed_body_is_refused_without_echo(
    app: FastAPI, signed_in: AsyncClient, alice: User, body: str | None
) -> None:
    content = None if body is None else body.encode()
    headers = {"Content-Type": "application/json"}
    response = await signed_in.request("DELETE", ME, content=content, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert SECRET not in response.text
    await assert_still_there(app, signed_in, alice)


def test_the_input_walkers_attack_its_body(app: FastAPI) -> None:
    """tests/test_attack_input.py sends malformed values and bodies to every JSON route."""
    assert ("DELETE", "/api/v1/users/me") in {(m, p) for m, p, _, _ in json_body_cases(app)}


def test_its_schema_documents_what_it_can_answer(app: FastAPI) -> None:
    operation = app.openapi()["paths"][ME]["delete"]
    assert operation["operationId"] == "users-delete-me"
    assert all("CsrfToken" in requirement for requirement in operation["security"])
    responses = operation["responses"]
    assert {"204", "400", "401", "403", "409", "413", "422", "429"} <= set(responses)
    for status, code in (
        ("400", "wrong_password"),
        ("403", "reauthentication_required"),
        ("403", "csrf_failed"),
        ("409", "last_admin"),
        ("429", "rate_limited"),
    ):
        assert f"`{code}`" in responses[status]["description"], (status, code)


# --- admins ----------------------------------------------------------------------------------


@pytest.fixture
async def root(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """An admin, signed in from an address of its own."""
    await make_admin(app, ROOT)
    async with browser(app, ROOT, ip="192.0.2.10") as http:
        yield http


async def test_the_admin_delete_anonymises_and_tells_the_same_way(
    app: FastAPI, root: AsyncClient, alice: User, outbox: Outbox
) -> None:
    async with browser(app, ALICE, ip="203.0.113.8") as laptop:
        await register_passkey(laptop, SoftAuthenticator(FRONTEND_ORIGIN), name=PASSKEY_NAME)
        before = [event for event in await audit_log(app) if event.user_id == alice.id]
        deleted = await root.delete(f"/api/v1/admin/users/{alice.id}")
        assert deleted.status_code == 204, deleted.text
        assert (await laptop.get(ME)).status_code == 401
    assert not any((await dependants(app, alice.id)).values())
    after = {event.id: event for event in await audit_log(app)}
    for event in before:
        kept = after[event.id]
        assert (kept.type, kept.created_at) == (event.type, event.created_at)
        assert (kept.user_id, kept.ip_address, kept.user_agent) == (None, None, None)
    for event in after.values():
        for personal in (ALICE, "203.0.113.", PASSKEY_NAME):
            assert personal not in columns(event), (event.type, personal)
    [record] = [event for event in after.values() if event.type == "user_deleted"]
    async with app.state.sessionmaker() as db:
        admin = (await db.exec(select(User).where(User.email == ROOT))).one()
    # The admin's own act keeps who and from where: that is the admin's record, not alice's.
    assert (record.user_id, record.ip_address) == (admin.id, "192.0.2.10")
    assert record.detail == f"user {alice.id} by admin {admin.id}"
    [notice] = await notices(app, outbox)
    assert "by an administrator" in notice.text


async def test_an_admin_deletes_their_own_account_here_not_through_the_admin_api(
    app: FastAPI, root: AsyncClient
) -> None:
    await make_admin(app, "second@example.com")
    async with app.state.sessionmaker() as db:
        admin = (await db.exec(select(User).where(User.email == ROOT))).one()
    refused = await root.delete(f"/api/v1/admin/users/{admin.id}")
    assert refused.status_code == 409 and refused.json()["code"] == "self_lockout"
    assert (await delete_me(root)).status_code == 204
    assert await active_admins(app) == ["second@example.com"]


async def test_the_last_active_admin_cannot_delete_their_account(
    app: FastAPI, root: AsyncClient, outbox: Outbox
) -> None:
    await make_admin(app, "retired@example.com")
    async with app.state.sessionmaker() as db:  # an inactive admin does not count
        retired = (await db.exec(select(User).where(User.email == "retired@example.com"))).one()
        retired.is_active = False
        db.add(retired)
        await db.commit()
    response = await delete_me(root)
    assert response.status_code == 409
    assert response.json()["code"] == "last_admin"
    assert await active_admins(app) == [ROOT]
    assert (await root.get(ME)).status_code == 200
    assert await notices(app, outbox, ROOT) == []


@pytest.mark.parametrize("count", [2, 5])
async def test_admins_deleting_themselves_at_once_leave_one_admin(app: FastAPI, count: int) -> None:
    emails = [f"admin{n}@example.com" for n in range(count)]
    async with AsyncExitStack() as stack:
        clients = []
        for email in emails:
            await make_admin(app, email)
            clients.append(await stack.enter_async_context(browser(app, email)))
        responses = await asyncio.gather(*(delete_me(http) for http in clients))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [204] * (count - 1) + [409], [r.text for r in responses]
    [refused] = [response for response in responses if response.status_code == 409]
    assert refused.json()["code"] == "last_admin"
    assert len(await active_admins(app)) == 1
