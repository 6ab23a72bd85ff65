"""Retention: the purge deletes what is past its time and keeps the rest, in batches, one
worker at a time; the service runs it on its own schedule."""

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import event, func, insert, update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock
from app.db import leases
from app.main import create_app
from app.models import AuditEvent, DeviceSession, MfaChallenge, OneTimeToken, User
from app.models.lease import JobLease
from app.services import retention
from app.services.retention import Purger
from tests.conftest import clean_database
from tests.helpers import make_settings
from tests.test_cli import cli

Row = Callable[[uuid.UUID], SQLModel]


def ago(**delta: float) -> datetime:
    return clock.now() - timedelta(**delta)


def hence(**delta: float) -> datetime:
    return clock.now() + timedelta(**delta)


def device_session(*, revoked: datetime | None = None, expires: datetime | None = None) -> Row:
    return lambda user_id: DeviceSession(
        user_id=user_id,
        expires_at=expires or hence(days=30),
        revoked_at=revoked,
        revoked_reason="logout" if revoked else None,
        fingerprint="f" * 64,
        refresh_token_hash=uuid.uuid4().hex,
    )


def link(*, used: datetime | None = None, expires: datetime | None = None) -> Row:
    return lambda user_id: OneTimeToken(
        user_id=user_id,
        purpose="reset_password",
        token_hash=uuid.uuid4().hex,
        expires_at=expires or hence(hours=1),
        used_at=used,
    )


def challenge(*, used: datetime | None = None, expires: datetime | None = None) -> Row:
    return lambda user_id: MfaChallenge(
        user_id=user_id,
        token_hash=uuid.uuid4().hex,
        purpose="second_factor",
        expires_at=expires or hence(minutes=5),
        used_at=used,
    )


def audit_event(*, age: timedelta) -> Row:
    return lambda user_id: AuditEvent(
        user_id=user_id, type="login_succeeded", created_at=clock.now() - age
    )


# name: (row, whether the purge deletes it) under the default retention
ROWS: dict[str, tuple[Row, bool]] = {
    "session revoked 31 days ago": (device_session(revoked=ago(days=31)), True),
    "session revoked 29 days ago": (device_session(revoked=ago(days=29)), False),
    "session expired 31 days ago": (device_session(expires=ago(days=31)), True),
    "session expired 29 days ago": (device_session(expires=ago(days=29)), False),
    "live session": (device_session(), False),
    "link used 2 days ago": (link(used=ago(days=2)), True),
    "link used an hour ago": (link(used=ago(hours=1)), False),
    "link expired 25 hours ago": (link(expires=ago(hours=25)), True),
    "link expired an hour ago": (link(expires=ago(hours=1)), False),
    "live link": (link(), False),
    "challenge used 2 days ago": (challenge(used=ago(days=2)), True),
    "challenge expired 2 days ago": (challenge(expires=ago(days=2)), True),
    "challenge expired a minute ago": (challenge(expires=ago(minutes=1)), False),
    "pending challenge": (challenge(), False),
    "audit event 366 days old": (audit_event(age=timedelta(days=366)), True),
    "audit event 364 days old": (audit_event(age=timedelta(days=364)), False),
}


@pytest.fixture(autouse=True)
async def purge_due(app: FastAPI) -> None:
    """The purge lease free and due, whatever an earlier test left."""
    async with app.state.sessionmaker() as db:
        await db.exec(update(JobLease).values(holder=None, held_until=None, due_at=ago(days=1)))
        await db.commit()


async def add(db: AsyncSession, user: User, rows: dict[str, Row]) -> dict[str, SQLModel]:
    """Insert the rows, by name."""
    made = {name: row(user.id) for name, row in rows.items()}
    db.add_all(made.values())
    await db.commit()
    return made


async def still_there(db: AsyncSession, rows: dict[str, SQLModel]) -> set[str]:
    db.expunge_all()
    return {
        name
        for name, row in rows.items()
        if await db.get(type(row), row.id) is not None  # type: ignore[attr-defined]
    }


async def test_the_purge_deletes_rows_past_retention_and_keeps_the_rest(
    app: FastAPI, alice: User, db: AsyncSession
) -> None:
    rows = await add(db, alice, {name: row for name, (row, _) in ROWS.items()})
    report = await Purger(app.state.sessionmaker, app.state.settings).run()
    assert report is not None
    kept = {name for name, (_, goes) in ROWS.items() if not goes}
    assert await still_there(db, rows) == kept
    assert sum(report.deleted.values()) == len(ROWS) - len(kept)
    assert report.deleted["sessions"] == 2


async def test_retention_follows_the_settings(app: FastAPI, alice: User, db: AsyncSession) -> None:
    rows = {
        "session revoked 8 days ago": device_session(revoked=ago(days=8)),
        "audit event 91 days old": audit_event(age=timedelta(days=91)),
    }
    await add(db, alice, rows)
    settings = make_settings(session_retention_days=7, audit_retention_days=90)
    report = await Purger(app.state.sessionmaker, settings).run()
    assert report is not None
    assert (report.deleted["sessions"], report.deleted["audit events"]) == (1, 1)


async def test_a_backlog_goes_in_batches_each_in_a_transaction_of_its_own(
    app: FastAPI, db: AsyncSession
) -> None:
    old = ago(days=400)
    await db.exec(
        insert(AuditEvent),
        params=[{"id": uuid.uuid4(), "type": "login_failed", "created_at": old} for _ in range(25)],
    )
    await db.commit()
    steps: list[str] = []
    engine = app.state.engine.sync_engine

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM AUDIT_EVENT"):
            steps.append("delete")

    def on_commit(_conn: Any) -> None:
        steps.append("commit")

    event.listen(engine, "after_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        settings = make_settings(purge_batch_size=10)
        report = await Purger(app.state.sessionmaker, settings).run()
    finally:
        event.remove(engine, "after_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
    assert report is not None and report.deleted["audit events"] == 25
    deletes = [i for i, step in enumerate(steps) if step == "delete"]
    assert len(deletes) == 3  # 10, 10, 5
    # every batch is committed before the next one starts: no long-held write lock
    for this, following in itertools.pairwise(deletes):
        assert "commit" in steps[this + 1 : following]
    count = await db.exec(select(func.count()).select_from(AuditEvent))
    assert count.one() == 0


async def test_the_report_counts_only_the_batches_that_deleted_rows(
    app: FastAPI, db: AsyncSession
) -> None:
    """What the operator reads in the log: nothing to delete is 0 batches, not one per rule;
    a backlog of exactly two batches is 2, not 2 and the empty look that found the end."""
    nothing = await Purger(app.state.sessionmaker, app.state.settings).run()
    assert nothing is not None and nothing.batches == 0
    zeros = "0 sessions, 0 one-time tokens, 0 MFA challenges, 0 audit events, 0 mails"
    assert str(nothing) == f"{zeros} deleted in 0 batch(es)"
    old = ago(days=400)
    await db.exec(
        insert(AuditEvent),
        params=[{"id": uuid.uuid4(), "type": "login_failed", "created_at": old} for _ in range(20)],
    )
    await db.commit()
    report = await Purger(app.state.sessionmaker, make_settings(purge_batch_size=10)).run()
    assert report is not None and report.batches == 2
    assert str(report).endswith("20 audit events, 0 mails deleted in 2 batch(es)")


async def test_a_concurrent_burst_of_scheduled_purges_runs_one(app: FastAPI) -> None:
    purgers = [Purger(app.state.sessionmaker, app.state.settings) for _ in range(8)]
    reports = await asyncio.gather(*(p.run(on_schedule=True) for p in purgers))
    assert sum(report is not None for report in reports) == 1


async def test_no_purge_while_another_worker_holds_the_lease(
    app: FastAPI, alice: User, db: AsyncSession
) -> None:
    rows = await add(db, alice, {"audit": audit_event(age=timedelta(days=400))})
    await hold_lease(db, until=hence(minutes=1))
    assert await Purger(app.state.sessionmaker, app.state.settings).run() is None
    assert await still_there(db, rows) == {"audit"}


async def test_a_lease_whose_holder_died_is_taken_over(app: FastAPI, db: AsyncSession) -> None:
    await hold_lease(db, until=ago(seconds=1))
    assert await Purger(app.state.sessionmaker, app.state.settings).run() is not None


async def test_a_scheduled_purge_waits_until_it_is_due(app: FastAPI, db: AsyncSession) -> None:
    first = await Purger(app.state.sessionmaker, make_settings(purge_interval_seconds=3600)).run()
    assert first is not None
    again = Purger(app.state.sessionmaker, app.state.settings)
    assert await again.run(on_schedule=True) is None  # next one due in an hour
    assert await again.run() is not None  # the operator's command does not wait


async def test_a_purge_that_lost_its_lease_stops(
    app: FastAPI, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stalled past its lease while another took over deletes no more."""
    await db.exec(
        insert(AuditEvent),
        params=[
            {"id": uuid.uuid4(), "type": "login_failed", "created_at": ago(days=400)}
            for _ in range(5)
        ],
    )
    await db.commit()
    purger = Purger(app.state.sessionmaker, make_settings(purge_batch_size=2))
    original = leases.renew

    async def taken_over(session: AsyncSession, *args: Any) -> bool:
        await session.exec(update(JobLease).values(holder="another-worker"))
        renewed: bool = await original(session, *args)
        return renewed

    monkeypatch.setattr(leases, "renew", taken_over)
    with pytest.raises(retention.PurgeInterrupted):
        await purger.run()
    count = await db.exec(select(func.count()).select_from(AuditEvent))
    assert count.one() == 5  # the stalled batch was rolled back


async def hold_lease(db: AsyncSession, until: datetime) -> None:
    await db.exec(update(JobLease).values(holder="another-worker", held_until=until))
    await db.commit()


async def test_the_cli_purges_and_reports(app: FastAPI, alice: User, db: AsyncSession) -> None:
    await add(db, alice, {"old": audit_event(age=timedelta(days=400))})
    result = cli("purge")
    assert result.returncode == 0, result.stderr
    assert "1 audit events" in result.stdout
    count = await db.exec(select(func.count()).select_from(AuditEvent))
    assert count.one() == 0


async def test_the_cli_refuses_while_another_worker_purges(app: FastAPI, db: AsyncSession) -> None:
    await hold_lease(db, until=hence(minutes=1))
    result = cli("purge")
    assert result.returncode == 1
    assert "Another worker is purging" in result.stderr


@pytest.fixture
async def purging_app() -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(purge_interval_seconds=1))
    async with LifespanManager(application):
        yield application
    await clean_database(application)


async def test_the_service_purges_on_its_own(purging_app: FastAPI, app: FastAPI) -> None:
    async with purging_app.state.sessionmaker() as db:
        db.add(AuditEvent(type="login_failed", created_at=ago(days=400)))
        await db.commit()
        for _ in range(100):
            await asyncio.sleep(0.1)
            left = await db.exec(
                select(func.count())
                .select_from(AuditEvent)
                .where(col(AuditEvent.created_at) < ago(days=365))
            )
            if left.one() == 0:
                break
        else:
            pytest.fail("the service did not purge within 10 seconds")
