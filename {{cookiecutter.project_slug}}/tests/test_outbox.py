"""Durable mail: the outbox keeps every message until it is delivered, once.

A message is written with the event that causes it and delivered by a worker with retries:
an SMTP outage delays mail and loses none, a crash after the commit loses nothing, two workers
never send one message twice, and a body with a live link is sealed until sent, then erased.
"""

import asyncio
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock as service_clock
from app.core.config import Settings
from app.core.secretbox import SecretBox, SecretUnreadable
from app.main import create_app
from app.models.outbox import MailStatus, OutboxMessage
from app.services import outbox as mail_queue
from app.services.email import Email, Mailer
from app.services.outbox import CLAIM_TIME
from app.services.retention import Purger
from tests.helpers import (
    ALICE,
    PASSWORD,
    PROJECT,
    TEST_DATABASE_URL,
    Clock,
    Inbox,
    Outbox,
    device,
    find_user,
    free_port,
    link_token,
    make_settings,
    smtp_server,
    smtp_settings,
    subprocess_environment,
    text_parts,
)
from tests.test_cli import cli

API = "/api/v1"


def mailer_of(app: FastAPI) -> Mailer:
    mailer: Mailer = app.state.context.mailer
    return mailer


async def register(app: FastAPI, email: str) -> None:
    """A registration as a browser sends it; waits for the work after the response (the
    account, its link, the first delivery round)."""
    async with device(app) as http:
        response = await http.post(
            f"{API}/auth/register", json={"email": email, "password": PASSWORD}
        )
    assert response.status_code == 202, response.text
    await mailer_of(app).wait_idle()


async def queue_quietly(app: FastAPI, *recipients: str, token: str = "T0K") -> list[uuid.UUID]:
    """Queue a reset mail to each recipient and commit, as an event does; then nothing: the
    process died right after its commit, before any delivery."""
    mailer = mailer_of(app)
    async with app.state.sessionmaker() as db:
        for to in recipients:
            email = mailer.render(
                "reset_password", to, link=mailer.link("reset-password", token), minutes=60
            )
            mail_queue.enqueue(db, mailer.courier.box, email, "reset_password")
        await db.commit()
        rows = await db.exec(
            select(OutboxMessage.id).where(col(OutboxMessage.recipient).in_(recipients))
        )
        return list(rows.all())


async def messages(db: AsyncSession, to: str | None = None) -> list[OutboxMessage]:
    """The outbox's rows as the database has them now, oldest first."""
    query = select(OutboxMessage).order_by(col(OutboxMessage.created_at))
    if to is not None:
        query = query.where(col(OutboxMessage.recipient) == to)
    return list((await db.exec(query.execution_options(populate_existing=True))).all())


async def stored_body(db: AsyncSession, message_id: uuid.UUID) -> bytes | None:
    """The body column exactly as stored."""
    query = select(OutboxMessage.body).where(col(OutboxMessage.id) == message_id)
    return (await db.exec(query)).one()


def seconds_until(moment: datetime) -> float:
    return (moment - service_clock.now()).total_seconds()


class Failing:
    """A backend whose every send fails, with an error that quotes the recipient."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, email: Email) -> None:
        self.calls += 1
        raise ConnectionRefusedError(f"refused: {email.to}")


# --- an SMTP outage delays mail and loses none ---------------------------------------------------


class TestSmtpOutage:
    @pytest.fixture
    def port(self) -> int:
        return free_port()

    @pytest.fixture
    def settings(self, port: int) -> Settings:
        return smtp_settings(port)

    async def test_a_registration_while_the_smtp_server_is_down_is_mailed_once_it_is_back(
        self, app: FastAPI, db: AsyncSession, port: int, settings: Settings, clock: Clock
    ) -> None:
        inbox = Inbox()
        server = smtp_server(port, inbox)
        try:
            await register(app, "first@example.com")
            assert [m["To"] for m in inbox.messages] == ["first@example.com"]
        finally:
            server.stop()  # the SMTP server goes away mid-run

        await register(app, "second@example.com")
        [pending] = await messages(db, "second@example.com")
        assert (pending.status, pending.attempts) == (MailStatus.PENDING, 1)
        assert pending.last_error is not None and "example.com" not in pending.last_error
        base = settings.mail_retry_base_seconds
        assert 0.75 * base - 1 <= seconds_until(pending.next_attempt_at) <= 1.25 * base
        # Not due yet: a round now leaves it alone.
        report = await mailer_of(app).deliver_due()
        assert (report.sent, report.failed) == (0, 0)

        server = smtp_server(port, inbox)  # back, on the same port
        try:
            clock.advance(1.25 * base + 1)
            assert (await mailer_of(app).deliver_due()).sent == 1
            assert (await mailer_of(app).deliver_due()).sent == 0  # nothing twice
        finally:
            server.stop()

        [_first, second] = inbox.messages
        assert second["To"] == "second@example.com"
        parts = text_parts(second)
        received = Email(second["To"], second["Subject"], parts["text/plain"], parts["text/html"])
        token = link_token(received, "verify-email")
        async with device(app) as http:
            verified = await http.post(f"{API}/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
        [sent] = await messages(db, "second@example.com")
        assert (sent.status, sent.attempts, sent.body) == (MailStatus.SENT, 2, None)


# --- a crash between the commit and the send loses nothing ---------------------------------------


class Hanging:
    """A backend stuck in its first send, like a worker that is about to be killed."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def send(self, email: Email) -> None:
        self.entered.set()
        await asyncio.Event().wait()


@pytest.fixture
def no_delivery_after_commit(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies right after a commit that queued mail: its delivery never starts."""
    monkeypatch.setattr(mailer_of(app), "_schedule_delivery", lambda: None)


async def test_mail_of_a_process_that_died_after_the_commit_is_sent_after_a_restart(
    app: FastAPI, db: AsyncSession, no_delivery_after_commit: None
) -> None:
    await register(app, "new@example.com")
    [queued] = await messages(db, "new@example.com")
    assert (queued.status, queued.attempts) == (MailStatus.PENDING, 0)

    restarted = create_app(make_settings(mail_poll_seconds=0.05))
    box = Outbox()
    mailer_of(restarted).backend = box
    async with LifespanManager(restarted):
        for _ in range(200):  # its worker looks at once, then every 0.05 s
            if box:
                break
            await asyncio.sleep(0.05)
        [message] = box
        assert message.to == "new@example.com"
        async with device(restarted) as http:
            token = link_token(message, "verify-email")
            verified = await http.post(f"{API}/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
    assert len(box) == 1


def unreachable_database(tmp_path: Path) -> str:
    """A database that cannot be reached: PostgreSQL on a port nobody listens on (a server
    that is down), or a SQLite "file" that is a directory."""
    url = make_url(TEST_DATABASE_URL)
    if url.get_backend_name() == "sqlite":
        return url.set(database=str(tmp_path)).render_as_string(False)
    return url.set(host="127.0.0.1", port=free_port()).render_as_string(False)


def poller_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == mail_queue.__name__]


async def test_while_the_database_is_down_the_poller_warns_once_and_once_more_when_it_is_back(
    app: FastAPI,
    db: AsyncSession,
    no_delivery_after_commit: None,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """A service whose database is down polls on, every MAIL_POLL_SECONDS, without a warning
    each time: one when it starts failing, one when it works again, and the mail queued in the
    meantime goes out."""
    await register(app, "new@example.com")  # queued; its process died before sending it
    caplog.set_level(logging.INFO, logger=mail_queue.__name__)
    down = unreachable_database(tmp_path)
    cut_off = create_app(make_settings(database_url=down, mail_poll_seconds=0.01))
    box = Outbox()
    mailer_of(cut_off).backend = box
    async with LifespanManager(cut_off):
        await asyncio.sleep(1)  # dozens of rounds, each failing
        [warning] = poller_records(caplog)
        assert "Mail delivery failed" in warning
        # The database is back (the service's sessions now reach the running one).
        cut_off.state.sessionmaker.configure(bind=app.state.engine)
        for _ in range(200):
            if box:
                break
            await asyncio.sleep(0.02)
        assert [message.to for message in box] == ["new@example.com"]
        await asyncio.sleep(0.2)  # more rounds, all fine
    assert poller_records(caplog) == [warning, "Mail delivery works again"]


async def test_a_message_whose_worker_was_killed_mid_send_goes_out_when_its_claim_runs_out(
    app: FastAPI, outbox: Outbox, clock: Clock
) -> None:
    await queue_quietly(app, ALICE)
    mailer = mailer_of(app)
    hanging = Hanging()
    mailer.backend = hanging
    worker = asyncio.create_task(mailer.deliver_due())
    await asyncio.wait_for(hanging.entered.wait(), timeout=10)
    worker.cancel()  # killed while sending
    with pytest.raises(asyncio.CancelledError):
        await worker

    mailer.backend = outbox
    assert (await mailer.deliver_due()).sent == 0  # still claimed by the dead worker
    clock.advance(CLAIM_TIME.total_seconds() + 1)
    assert (await mailer.deliver_due()).sent == 1
    assert [m.to for m in outbox] == [ALICE]


# --- two workers never send one message twice ----------------------------------------------------


async def test_concurrent_workers_on_two_engines_deliver_every_message_exactly_once(
    app: FastAPI, settings: Settings
) -> None:
    recipients = [f"user{n}@example.com" for n in range(40)]
    await queue_quietly(app, *recipients)
    other = create_app(settings)  # another process: its own engine and connections
    async with LifespanManager(other):
        boxes = [Outbox() for _ in range(4)]
        workers = [
            Mailer(settings, application.state.sessionmaker, backend=box)
            for application, box in zip([app, app, other, other], boxes, strict=True)
        ]
        reports = await asyncio.gather(*(w.deliver_due() for w in workers for _ in range(3)))
    delivered = sorted(m.to for box in boxes for m in box)
    assert delivered == sorted(recipients)
    assert sum(report.sent for report in reports) == len(recipients)


async def test_two_send_mail_processes_side_by_side_send_each_message_once(
    app: FastAPI, db: AsyncSession
) -> None:
    recipients = [f"user{n}@example.com" for n in range(150)]
    await queue_quietly(app, *recipients)

    async def send_mail() -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "send-mail",
            cwd=PROJECT,
            env=subprocess_environment(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        return out.decode()

    outputs = await asyncio.gather(send_mail(), send_mail())
    sent = [int(match[1]) for output in outputs if (match := re.search(r"(\d+) sent", output))]
    assert len(sent) == 2 and sum(sent) == len(recipients)
    assert {m.status for m in await messages(db)} == {MailStatus.SENT}


# --- dead letters --------------------------------------------------------------------------------


class TestDeadLetters:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(mail_max_attempts=3)

    async def test_after_the_last_attempt_a_message_is_dead_and_not_tried_again(
        self,
        app: FastAPI,
        db: AsyncSession,
        settings: Settings,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        mailer = mailer_of(app)
        failing = Failing()
        mailer.backend = failing
        await register(app, "new@example.com")  # the first attempt, right after the commit
        base = settings.mail_retry_base_seconds
        for attempt in (1, 2):
            [message] = await messages(db)
            assert (message.status, message.attempts) == (MailStatus.PENDING, attempt)
            delay = base * 2 ** (attempt - 1)  # doubles, give or take a quarter
            assert 0.75 * delay - 1 <= seconds_until(message.next_attempt_at) <= 1.25 * delay
            clock.advance(1.25 * delay + 1)
            await mailer.deliver_due()

        [dead] = await messages(db)
        assert (dead.status, dead.attempts, dead.last_error) == (
            MailStatus.DEAD,
            3,
            "ConnectionRefusedError",
        )
        assert dead.dead_at is not None and dead.sent_at is None
        assert "is dead after 3 attempt(s)" in caplog.text
        assert "new@example.com" not in caplog.text  # neither the address nor the error text

        clock.advance(7 * 24 * 3600)
        assert (await mailer.deliver_due()).failed == 0
        assert failing.calls == 3

        # After the outage: the operator queues the dead ones again, and they go out.
        box = Outbox()
        mailer.backend = box
        assert await mailer.courier.retry_dead() == 1
        assert (await mailer.deliver_due()).sent == 1
        link_token(box.to("new@example.com", "Confirm")[0], "verify-email")

    async def test_a_body_sealed_under_another_key_is_dead_at_once(
        self, app: FastAPI, db: AsyncSession, outbox: Outbox
    ) -> None:
        rotated = Mailer(app.state.settings, app.state.sessionmaker, box=SecretBox("k" * 32, "x"))
        rotated.backend = outbox
        await queue_quietly(app, ALICE)
        report = await rotated.deliver_due()
        assert (report.sent, report.dead) == (0, 1)
        [dead] = await messages(db)
        assert (dead.status, dead.last_error) == (MailStatus.DEAD, "SecretUnreadable")
        assert outbox == []


# --- bodies hold live links: sealed while queued, erased once sent -------------------------------


async def test_a_queued_body_is_unreadable_without_its_key_and_erased_once_sent(
    app: FastAPI, db: AsyncSession, outbox: Outbox, settings: Settings
) -> None:
    token = "live-token-" + uuid.uuid4().hex
    [message_id] = await queue_quietly(app, ALICE, token=token)
    sealed = await stored_body(db, message_id)
    assert sealed is not None
    assert token.encode() not in sealed and b"alice" not in sealed
    with pytest.raises(SecretUnreadable):
        SecretBox("another key of at least thirty-two bytes", "mail-outbox").open(
            sealed, context=message_id.bytes
        )

    assert (await mailer_of(app).deliver_due()).sent == 1
    assert link_token(outbox.to(ALICE)[0], "reset-password") == token
    assert await stored_body(db, message_id) is None
    [row] = await messages(db)
    assert token not in repr(row.model_dump())


async def test_a_reset_link_is_not_kept_once_mailed(
    app: FastAPI, db: AsyncSession, outbox: Outbox, alice: Any
) -> None:
    async with device(app) as http:
        await http.post(f"{API}/auth/password/forgot", json={"email": ALICE})
    await mailer_of(app).wait_idle()
    token = link_token(outbox.to(ALICE, "Reset")[0], "reset-password")
    [row] = await messages(db, ALICE)
    assert row.status == MailStatus.SENT
    assert await stored_body(db, row.id) is None
    assert token not in repr(row.model_dump())


# --- the event and its mail are saved together, or not at all -----------------------------------


@pytest.fixture
def failing_commits_with_mail() -> Iterator[None]:
    """Every commit of a transaction that queued mail fails (the database went away then)."""

    def refuse(session: Session) -> None:
        if any(isinstance(row, OutboxMessage) for row in session.new):
            raise ConnectionResetError("the database went away")

    event.listen(Session, "before_commit", refuse)
    yield
    event.remove(Session, "before_commit", refuse)


async def test_a_registration_whose_commit_fails_leaves_neither_account_nor_mail(
    app: FastAPI, db: AsyncSession, outbox: Outbox, failing_commits_with_mail: None
) -> None:
    await register(app, "new@example.com")
    assert await find_user(db, "new@example.com") is None
    assert await messages(db) == []
    assert outbox == []


async def test_a_rolled_back_transaction_takes_its_mail_with_it(
    app: FastAPI, db: AsyncSession, outbox: Outbox
) -> None:
    mailer = mailer_of(app)
    async with app.state.sessionmaker() as session:
        mailer.enqueue(session, "reset_password", ALICE, link="https://x/?token=T", minutes=1)
        await session.rollback()
        await session.commit()  # a later commit of the same session sends nothing either
    await mailer.wait_idle()
    assert await messages(db) == []
    assert outbox == []


async def test_an_event_and_its_mail_commit_together(
    app: FastAPI, db: AsyncSession, outbox: Outbox, no_delivery_after_commit: None
) -> None:
    await register(app, "new@example.com")
    user = await find_user(db, "new@example.com")
    assert user is not None
    [queued] = await messages(db, "new@example.com")
    assert (queued.template, queued.status) == ("verify_email", MailStatus.PENDING)


# --- the CLI and retention -----------------------------------------------------------------------


async def test_send_mail_sends_what_is_due_and_reports(app: FastAPI, db: AsyncSession) -> None:
    await queue_quietly(app, ALICE, "bob@example.com")
    result = cli("send-mail")
    assert result.returncode == 0, result.stderr
    assert "Mail: 2 sent, 0 failed (tried again later), 0 dead; 0 pending" in result.stdout
    assert {m.status for m in await messages(db)} == {MailStatus.SENT}


async def test_send_mail_fails_while_the_smtp_server_is_down(
    app: FastAPI, db: AsyncSession
) -> None:
    await queue_quietly(app, ALICE)
    down = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port()), "SMTP_TLS": "false"}
    result = cli("send-mail", **down)
    assert result.returncode == 1
    assert "0 sent, 1 failed" in result.stdout and "1 pending" in result.stdout
    assert "alice" not in result.stdout + result.stderr


async def test_the_purge_deletes_sent_and_dead_mail_after_their_time(
    app: FastAPI, db: AsyncSession
) -> None:
    now = service_clock.now()

    def row(name: str, **fields: Any) -> OutboxMessage:
        return OutboxMessage(
            recipient=f"{name}@example.com",
            template="new_device",
            subject="s",
            next_attempt_at=now,
            created_at=now - timedelta(days=60),
            **fields,
        )

    rows = {
        "sent8": (row("sent8", status="sent", sent_at=now - timedelta(days=8)), False),
        "sent6": (row("sent6", status="sent", sent_at=now - timedelta(days=6)), True),
        "dead31": (row("dead31", status="dead", dead_at=now - timedelta(days=31)), False),
        "dead29": (row("dead29", status="dead", dead_at=now - timedelta(days=29)), True),
        "pending": (row("pending", status="pending"), True),
    }
    db.add_all(message for message, _ in rows.values())
    await db.commit()
    report = await Purger(app.state.sessionmaker, app.state.settings).run()
    assert report is not None and report.deleted["mails"] == 2
    kept = {m.recipient.split("@")[0] for m in await messages(db)}
    assert kept == {name for name, (_, stays) in rows.items() if stays}
