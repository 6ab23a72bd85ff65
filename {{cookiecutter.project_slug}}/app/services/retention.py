"""Retention: rows that have served their purpose are deleted, so that no table grows for ever.

A busy service adds a session per sign-in, a token per emailed link, a challenge per second
step, audit events per request that matters and a row per email. `Purger.run` deletes what is
past its retention (`RULES`); `python -m app.cli purge` runs it once, the service every
`PURGE_INTERVAL_SECONDS`. One worker at a time: the `purge` lease (`app/db/leases.py`) says
who, and when the next run is due, for the whole fleet. Rows go in batches, a transaction
each, so a purge of a large backlog never holds a table's write lock for long.
"""

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock, metrics
from app.core.config import Settings
from app.db import leases
from app.models import AuditEvent, DeviceSession, MfaChallenge, OneTimeToken
from app.models.outbox import OutboxMessage

logger = logging.getLogger(__name__)

LEASE = "purge"
# A holder renews its lease after every batch; one that died frees the purge this much later.
LEASE_TIME = timedelta(minutes=5)
# How often a worker asks whether the purge is due (one conditional UPDATE).
CHECK_SECONDS = 60
DAY = timedelta(days=1)
# A sent message (its body is gone already) is kept a week, to answer "did my mail go out?";
# a dead one a month, for `send-mail --retry-dead` after a long outage.
SENT_MAIL_KEPT = timedelta(days=7)
DEAD_MAIL_KEPT = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Rule:
    """Rows of `model` whose `ended` moment is older than `keep` are deleted."""

    what: str
    model: type[SQLModel]
    ended: Any  # the column
    keep: Callable[[Settings], timedelta]


def _days(name: str) -> Callable[[Settings], timedelta]:
    return lambda settings: timedelta(days=getattr(settings, name))


RULES = (
    Rule("sessions", DeviceSession, DeviceSession.revoked_at, _days("session_retention_days")),
    Rule("sessions", DeviceSession, DeviceSession.expires_at, _days("session_retention_days")),
    # Links and second steps are worthless once used or expired; a day keeps them for support.
    Rule("one-time tokens", OneTimeToken, OneTimeToken.used_at, lambda _: DAY),
    Rule("one-time tokens", OneTimeToken, OneTimeToken.expires_at, lambda _: DAY),
    Rule("MFA challenges", MfaChallenge, MfaChallenge.used_at, lambda _: DAY),
    Rule("MFA challenges", MfaChallenge, MfaChallenge.expires_at, lambda _: DAY),
    Rule("audit events", AuditEvent, AuditEvent.created_at, _days("audit_retention_days")),
    Rule("mails", OutboxMessage, OutboxMessage.sent_at, lambda _: SENT_MAIL_KEPT),
    Rule("mails", OutboxMessage, OutboxMessage.dead_at, lambda _: DEAD_MAIL_KEPT),
)


@dataclass(slots=True)
class PurgeReport:
    deleted: Counter[str] = field(default_factory=Counter)
    batches: int = 0  # the transactions that deleted rows (not the look that found no more)

    def __str__(self) -> str:
        counts = ", ".join(f"{self.deleted[rule.what]} {rule.what}" for rule in _distinct())
        return f"{counts} deleted in {self.batches} batch(es)"


def _distinct() -> list[Rule]:
    return list({rule.what: rule for rule in RULES}.values())


class Purger:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:128]

    async def run(self, *, on_schedule: bool = False) -> PurgeReport | None:
        """Purge now, or return None when another worker is purging (`on_schedule`: also
        when the next run is not due yet). Commits each batch."""
        started = clock.now()
        async with self.sessionmaker() as db:
            taken = await leases.acquire(
                db, LEASE, self.holder, started, started + LEASE_TIME, due_only=on_schedule
            )
            await db.commit()
        if not taken:
            return None
        report = PurgeReport()
        try:
            for rule in RULES:
                await self._apply(rule, started - rule.keep(self.settings), report)
        except Exception:
            metrics.PURGE_RUNS.labels("failed").inc()
            raise
        finally:
            next_due = clock.now() + timedelta(seconds=self.settings.purge_interval_seconds)
            async with self.sessionmaker() as db:
                await leases.release(db, LEASE, self.holder, next_due)
                await db.commit()
        metrics.PURGE_RUNS.labels("completed").inc()
        logger.info("Purge: %s", report)
        return report

    async def _apply(self, rule: Rule, cutoff: datetime, report: PurgeReport) -> None:
        size = self.settings.purge_batch_size
        primary_key = col(rule.model.id)  # type: ignore[attr-defined]
        batch = select(primary_key).where(col(rule.ended) < cutoff).limit(size)
        while True:
            async with self.sessionmaker() as db:
                deleted = await db.exec(delete(rule.model).where(primary_key.in_(batch)))
                renewed = await leases.renew(db, LEASE, self.holder, clock.now() + LEASE_TIME)
                if not renewed:  # this worker stalled past its lease; another one took over
                    await db.rollback()
                    raise PurgeInterrupted()
                await db.commit()
            if deleted.rowcount:
                report.batches += 1
                report.deleted[rule.what] += deleted.rowcount
            if deleted.rowcount < size:
                return

    async def every_interval(self) -> None:
        """The service's loop: ask whether the purge is due, now and then, until cancelled."""
        while True:
            await asyncio.sleep(min(CHECK_SECONDS, self.settings.purge_interval_seconds))
            try:
                await self.run(on_schedule=True)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database is down: try again next round
                logger.warning("Purge failed (%s); trying again later", type(error).__name__)


class PurgeInterrupted(Exception):
    """The lease lapsed while this worker purged, and another worker holds it now."""
