"""Timing and enumeration attacks on the emailed flows, and the email change they protect.

An attacker who cannot read the victim's mail still sees two things: the answer and how long
it took. Both must be the same whether or not an address has an account. Time is measured by
counting the work done before the response is complete (SQL statements, password hashes,
mails queued), never by a clock: equal work is what makes equal time.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import event
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.security import PasswordHasher
from app.models import OneTimeToken, User
from app.services.deferred import Deferred
from app.services.email import Email, Mailer
from tests.helpers import (
    BROWSER,
    PASSWORD,
    Outbox,
    browser,
    create_user,
    find_user,
    link_token,
    login,
    make_settings,
)

API = "/api/v1"
NEW_PASSWORD = "a completely different passphrase"


@dataclass(frozen=True)
class Work:
    statements: int
    hashes: int
    mails: int


class WorkMeter:
    """Counts what the app does for one request until the last byte of its answer is sent.

    Work done after that (the deferred part) is not counted: that is the point of it.
    """

    def __init__(self, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
        self.app = app
        self.active = False
        self.statements = self.hashes = self.mails = 0
        self._engine = app.state.engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._on_statement)
        for name in ("hash", "verify"):
            self._count(monkeypatch, PasswordHasher, name, "hashes")
        self._count(monkeypatch, Mailer, "enqueue", "mails")

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._on_statement)

    def _on_statement(self, *_args: object) -> None:
        if self.active:
            self.statements += 1

    def _count(self, monkeypatch: pytest.MonkeyPatch, owner: type, name: str, field: str) -> None:
        original = getattr(owner, name)

        def counting(*args: object, **kwargs: object) -> object:
            if self.active:
                setattr(self, field, getattr(self, field) + 1)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app as the client sees it: counting stops when the response is complete."""

        async def send_and_stop(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.active = False
            await send(message)

        self.statements = self.hashes = self.mails = 0
        self.active = True
        try:
            await self.app(scope, receive, send_and_stop)
        finally:
            self.active = False

    def work(self) -> Work:
        return Work(self.statements, self.hashes, self.mails)

    async def measure(self, request: Callable[[], Awaitable[Response]]) -> tuple[Response, Work]:
        """One request, alone: earlier deferred work has finished, so only its own counts."""
        await settle(self.app)
        response = await request()
        return response, self.work()


@pytest.fixture
def meter(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkMeter]:
    work_meter = WorkMeter(app, monkeypatch)
    yield work_meter
    work_meter.close()


@pytest.fixture
async def metered(meter: WorkMeter, outbox: Outbox) -> AsyncIterator[AsyncClient]:
    """A client whose every request is metered."""
    async with AsyncClient(
        transport=ASGITransport(app=meter),
        base_url="https://testserver",
        headers={"User-Agent": BROWSER},
    ) as http:
        yield http


async def settle(app: FastAPI) -> None:
    """Let the work done after the response finish (mail included)."""
    await app.state.context.mailer.wait_idle()


def same_answer(first: Response, second: Response) -> None:
    assert first.status_code == second.status_code
    assert first.content == second.content


async def compare(
    meter: WorkMeter,
    known: Callable[[], Awaitable[Response]],
    unknown: Callable[[], Awaitable[Response]],
) -> tuple[Response, Work]:
    """The answers and the work before them are identical; returns one of each."""
    known_response, known_work = await meter.measure(known)
    unknown_response, unknown_work = await meter.measure(unknown)
    same_answer(known_response, unknown_response)
    assert known_work == unknown_work
    return known_response, known_work


async def live_tokens(db: AsyncSession, purpose: str) -> int:
    db.expire_all()
    query = select(func.count()).select_from(OneTimeToken)
    query = query.where(col(OneTimeToken.purpose) == purpose, col(OneTimeToken.used_at).is_(None))
    return (await db.exec(query)).one()


# --- forgot, resend, register: known and unknown addresses cost the same ------------------


@pytest.mark.parametrize(
    ("path", "verified", "page", "subject"),
    [
        pytest.param("password/forgot", True, "reset-password", "Reset", id="forgot-password"),
        pytest.param("verify-email/resend", False, "verify-email", "Confirm", id="resend"),
    ],
)
async def test_an_emailed_link_request_does_the_same_work_for_known_and_unknown_addresses(
    app: FastAPI,
    metered: AsyncClient,
    meter: WorkMeter,
    outbox: Outbox,
    path: str,
    verified: bool,
    page: str,
    subject: str,
) -> None:
    await create_user(app, "known@example.com", is_verified=verified)
    url = f"{API}/auth/{path}"
    answer, _work = await compare(
        meter,
        lambda: metered.post(url, json={"email": "known@example.com"}),
        lambda: metered.post(url, json={"email": "nobody@example.com"}),
    )
    assert answer.status_code == 202
    await settle(app)
    [message] = outbox
    assert message.to == "known@example.com" and subject in message.subject
    link_token(message, page)


async def test_register_does_the_same_work_for_known_and_unknown_addresses(
    app: FastAPI, metered: AsyncClient, meter: WorkMeter, outbox: Outbox, alice: User
) -> None:
    register = f"{API}/auth/register"
    answer, work = await compare(
        meter,
        lambda: metered.post(register, json={"email": "alice@example.com", "password": PASSWORD}),
        lambda: metered.post(register, json={"email": "fresh@example.com", "password": PASSWORD}),
    )
    assert answer.status_code == 202
    assert work.hashes == 1  # the new password is hashed for both: same cost
    await settle(app)
    assert [m.subject for m in outbox.to("alice@example.com")] == [
        "Someone tried to register with your address"
    ]
    [confirm] = outbox.to("fresh@example.com")
    link_token(confirm)


async def test_an_email_change_to_a_taken_address_does_the_same_work_as_to_a_free_one(
    app: FastAPI, metered: AsyncClient, meter: WorkMeter, outbox: Outbox, alice: User
) -> None:
    await create_user(app, "bob@example.com")
    metered.headers["X-CSRF-Token"] = (await login(metered)).json()["csrf_token"]
    answer, _work = await compare(
        meter,
        lambda: request_change(metered, "bob@example.com"),
        lambda: request_change(metered, "alice@new.example"),
    )
    assert answer.status_code == 200
    assert answer.json()["email"] == "alice@example.com"  # nothing changed yet
    await settle(app)
    [confirm] = outbox.to("alice@new.example")
    link_token(confirm)
    assert not outbox.to("bob@example.com", "Confirm")


async def test_a_deferred_failure_is_logged_without_secrets_and_the_service_keeps_answering(
    app: FastAPI,
    client: AsyncClient,
    alice: User,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> Email:
        raise RuntimeError("secret-token-value")

    monkeypatch.setattr(Mailer, "render", broken)
    response = await client.post(f"{API}/auth/password/forgot", json={"email": "alice@example.com"})
    assert response.status_code == 202
    await settle(app)
    assert "RuntimeError" in caplog.text
    assert "secret-token-value" not in caplog.text
    assert (await client.get("/health/live")).status_code == 200


# --- notices to one address are rate limited ----------------------------------------------


async def test_repeated_registrations_for_one_address_send_at_most_the_notice_limit(
    app: FastAPI, client: AsyncClient, outbox: Outbox, alice: User
) -> None:
    for _ in range(8):
        response = await client.post(
            f"{API}/auth/register", json={"email": "alice@example.com", "password": PASSWORD}
        )
        assert response.status_code == 202
    await settle(app)
    limit = app.state.context.limits.notice.item.amount
    assert 1 <= len(outbox.to("alice@example.com", "Someone tried")) <= limit < 8


async def test_a_burst_of_registrations_for_one_address_sends_at_most_the_notice_limit(
    app: FastAPI, client: AsyncClient, outbox: Outbox, alice: User
) -> None:
    body = {"email": "alice@example.com", "password": PASSWORD}
    await asyncio.gather(*(client.post(f"{API}/auth/register", json=body) for _ in range(8)))
    await settle(app)
    limit = app.state.context.limits.notice.item.amount
    assert 1 <= len(outbox.to("alice@example.com", "Someone tried")) <= limit


# --- the email change takes effect only once the new address is verified ------------------


async def request_change(http: AsyncClient, email: str) -> Response:
    return await http.patch(f"{API}/users/me", json={"email": email, "current_password": PASSWORD})


async def can_log_in(client: AsyncClient, email: str) -> bool:
    response = await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    return response.status_code == 200


async def test_a_change_to_a_taken_address_answers_like_a_free_one_and_changes_nothing(
    app: FastAPI, client: AsyncClient, db: AsyncSession, outbox: Outbox, alice: User
) -> None:
    await create_user(app, "bob@example.com")
    async with browser(app, "alice@example.com") as alice_browser:
        taken = await request_change(alice_browser, "bob@example.com")
        free = await request_change(alice_browser, "alice@new.example")
    same_answer(taken, free)
    await settle(app)
    assert await find_user(db, "alice@example.com") is not None
    assert await find_user(db, "alice@new.example") is None
    assert await can_log_in(client, "alice@example.com")
    assert await can_log_in(client, "bob@example.com")


async def test_an_email_change_takes_effect_only_when_the_new_address_confirms(
    app: FastAPI, client: AsyncClient, db: AsyncSession, outbox: Outbox, alice: User
) -> None:
    async with browser(app, "alice@example.com") as alice_browser:
        response = await request_change(alice_browser, "Alice@New.example")
    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"
    await settle(app)

    assert await can_log_in(client, "alice@example.com")  # the old address keeps working
    assert not await can_log_in(client, "alice@new.example")
    assert outbox.to("alice@example.com")  # and its owner is told
    [confirm] = outbox.to("alice@new.example")

    confirmed = await client.post(f"{API}/auth/verify-email", json={"token": link_token(confirm)})
    assert confirmed.status_code == 200, confirmed.text
    assert await can_log_in(client, "alice@new.example")
    assert not await can_log_in(client, "alice@example.com")
    user = await find_user(db, "alice@new.example")
    assert user is not None and user.is_verified
    await settle(app)
    assert outbox.to("alice@example.com", "email address was changed")


async def test_a_change_link_works_once(
    app: FastAPI, client: AsyncClient, outbox: Outbox, alice: User
) -> None:
    async with browser(app, "alice@example.com") as alice_browser:
        await request_change(alice_browser, "alice@new.example")
    await settle(app)
    token = link_token(outbox.to("alice@new.example")[0])
    answers = await asyncio.gather(
        *(client.post(f"{API}/auth/verify-email", json={"token": token}) for _ in range(20))
    )
    assert sorted(r.status_code for r in answers) == [200] + [400] * 19
    assert {r.json()["code"] for r in answers if r.status_code == 400} == {"invalid_link"}


async def test_a_second_email_change_request_revokes_the_first_link(
    app: FastAPI, client: AsyncClient, outbox: Outbox, alice: User
) -> None:
    async with browser(app, "alice@example.com") as alice_browser:
        await request_change(alice_browser, "first@new.example")
        await settle(app)
        await request_change(alice_browser, "second@new.example")
    await settle(app)
    first = link_token(outbox.to("first@new.example")[0])
    second = link_token(outbox.to("second@new.example")[0])

    stale = await client.post(f"{API}/auth/verify-email", json={"token": first})
    assert stale.status_code == 400 and stale.json()["code"] == "invalid_link"
    assert not await can_log_in(client, "first@new.example")
    fresh = await client.post(f"{API}/auth/verify-email", json={"token": second})
    assert fresh.status_code == 200
    assert await can_log_in(client, "second@new.example")


async def test_confirming_a_change_to_an_address_taken_meanwhile_fails_clearly(
    app: FastAPI, client: AsyncClient, db: AsyncSession, outbox: Outbox, alice: User
) -> None:
    async with browser(app, "alice@example.com") as alice_browser:
        await request_change(alice_browser, "wanted@example.com")
    await settle(app)
    token = link_token(outbox.to("wanted@example.com")[0])
    await create_user(app, "wanted@example.com")

    response = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"
    assert await can_log_in(client, "alice@example.com")


async def test_two_accounts_racing_for_one_new_address_leave_it_to_exactly_one(
    app: FastAPI, client: AsyncClient, db: AsyncSession, outbox: Outbox, alice: User
) -> None:
    await create_user(app, "bob@example.com")
    for email in ("alice@example.com", "bob@example.com"):
        async with browser(app, email) as signed:
            await request_change(signed, "contested@example.com")
    await settle(app)
    tokens = [link_token(m) for m in outbox.to("contested@example.com")]
    assert len(tokens) == 2
    answers = await asyncio.gather(
        *(client.post(f"{API}/auth/verify-email", json={"token": t}) for t in tokens)
    )
    assert sorted(r.status_code for r in answers) == [200, 409]
    assert await can_log_in(client, "contested@example.com")
    remaining = [await find_user(db, e) for e in ("alice@example.com", "bob@example.com")]
    assert sum(user is not None for user in remaining) == 1


# --- a new one-time token revokes the older ones of its purpose ---------------------------


async def test_a_new_reset_link_revokes_the_older_one(
    app: FastAPI, client: AsyncClient, outbox: Outbox, alice: User
) -> None:
    forgot = {"email": "alice@example.com"}
    await client.post(f"{API}/auth/password/forgot", json=forgot)
    await settle(app)
    await client.post(f"{API}/auth/password/forgot", json=forgot)
    await settle(app)
    old, new = (link_token(m, "reset-password") for m in outbox.to("alice@example.com"))

    body = {"new_password": NEW_PASSWORD}
    stale = await client.post(f"{API}/auth/password/reset", json={**body, "token": old})
    assert stale.status_code == 400 and stale.json()["code"] == "invalid_link"
    fresh = await client.post(f"{API}/auth/password/reset", json={**body, "token": new})
    assert fresh.status_code == 200, fresh.text


async def test_a_new_verification_link_revokes_the_older_one(
    app: FastAPI, client: AsyncClient, outbox: Outbox
) -> None:
    await client.post(
        f"{API}/auth/register", json={"email": "new@example.com", "password": PASSWORD}
    )
    await settle(app)
    await client.post(f"{API}/auth/verify-email/resend", json={"email": "new@example.com"})
    await settle(app)
    old, new = (link_token(m) for m in outbox.to("new@example.com"))

    stale = await client.post(f"{API}/auth/verify-email", json={"token": old})
    assert stale.status_code == 400 and stale.json()["code"] == "invalid_link"
    assert (await client.post(f"{API}/auth/verify-email", json={"token": new})).status_code == 200


class TestBursts:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(rate_limit_email="100/hour", rate_limit_email_ip="100/hour")

    async def test_a_burst_of_reset_requests_leaves_one_live_link(
        self, app: FastAPI, client: AsyncClient, db: AsyncSession, alice: User
    ) -> None:
        body = {"email": "alice@example.com"}
        answers = await asyncio.gather(
            *(client.post(f"{API}/auth/password/forgot", json=body) for _ in range(30))
        )
        assert {r.status_code for r in answers} == {202}
        await settle(app)
        assert await live_tokens(db, "reset_password") == 1


# --- one purpose's limit cannot be used to block another ----------------------------------

ATTACKER_IP = "203.0.113.66"


async def hammer(app: FastAPI, path: str, email: str) -> None:
    """From the attacker's own address, until the per-address limit answers 429."""
    async with AsyncClient(
        transport=ASGITransport(app=app, client=(ATTACKER_IP, 5000)),
        base_url="https://testserver",
    ) as attacker:
        for _ in range(50):
            response = await attacker.post(path, json={"email": email})
            if response.status_code == 429:
                return
    raise AssertionError(f"{path} was never limited")


async def test_hammering_forgot_password_does_not_block_the_email_change(
    app: FastAPI, client: AsyncClient, outbox: Outbox, alice: User
) -> None:
    await hammer(app, f"{API}/auth/password/forgot", "alice@example.com")
    await hammer(app, f"{API}/auth/verify-email/resend", "alice@example.com")
    async with browser(app, "alice@example.com") as alice_browser:
        response = await request_change(alice_browser, "alice@new.example")
    assert response.status_code == 200, response.text
    await settle(app)
    assert outbox.to("alice@new.example")


async def test_hammering_forgot_password_does_not_block_the_resend(
    app: FastAPI, client: AsyncClient, outbox: Outbox
) -> None:
    await create_user(app, "pending@example.com", is_verified=False)
    await hammer(app, f"{API}/auth/password/forgot", "pending@example.com")
    await settle(app)
    outbox.clear()
    response = await client.post(
        f"{API}/auth/verify-email/resend", json={"email": "pending@example.com"}
    )
    assert response.status_code == 202
    await settle(app)
    assert outbox.to("pending@example.com", "Confirm")


async def test_email_change_requests_are_limited_per_account(
    app: FastAPI, outbox: Outbox, alice: User
) -> None:
    async with browser(app, "alice@example.com") as alice_browser:
        codes = [
            (await request_change(alice_browser, f"n{n}@new.example")).status_code
            for n in range(12)
        ]
    assert codes.count(200) == app.state.context.limits.email_change.item.amount
    assert codes[-1] == 429


# --- the runner itself ----------------------------------------------------------------------


async def test_work_handed_over_during_a_request_waits_for_the_end_of_it() -> None:
    later = Deferred()
    ran: list[str] = []

    async def job() -> None:
        ran.append("job")

    async with later.hold():
        later.run("test job", job)
        await asyncio.sleep(0)  # a chance to run, which it must not take
        assert ran == []
    await later.wait_idle()
    assert ran == ["job"]


def test_waiting_for_idle_ends_when_the_last_job_has_just_finished() -> None:
    """The shutdown wait of every app and test. On Python 3.12+ `gather` over tasks that are
    all done returns without yielding to the event loop, so a wait that counted on the tasks'
    done callbacks having run spun for ever (seen: a hung test suite). The scenario runs on a
    loop of its own in a thread, so that a wait that never yields fails this test instead of
    hanging the suite."""
    returned = threading.Event()

    async def scenario() -> None:
        later = Deferred()

        async def job() -> None:
            pass

        later.run("test job", job)
        await asyncio.sleep(0)  # the job runs to its end; its done callbacks are only scheduled
        await later.wait_idle()
        returned.set()

    threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True).start()
    assert returned.wait(timeout=10), "wait_idle never returned"


async def test_waiting_for_idle_waits_for_work_that_work_hands_over() -> None:
    later = Deferred()
    ran: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0.01)
        ran.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        later.run("second job", second)
        ran.append("first")

    later.run("first job", first)
    await asyncio.wait_for(later.wait_idle(), timeout=5)
    assert ran == ["first", "second"]


async def test_work_handed_over_outside_a_request_starts_at_once() -> None:
    later = Deferred()
    ran: list[str] = []

    async def job() -> None:
        ran.append("job")

    later.run("test job", job)
    await asyncio.sleep(0)
    assert ran == ["job"]
