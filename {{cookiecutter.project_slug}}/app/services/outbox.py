"""Durable mail: every message goes through the outbox table, and a worker empties it.

`enqueue` adds a message to the caller's transaction, so the mail exists exactly when the event
that causes it does: a rollback takes both away, a commit keeps both, and a crash after the
commit loses nothing. Right after that commit the process that queued it delivers it (after the
response, through `Deferred`); each service process also looks for due mail every
`MAIL_POLL_SECONDS`, which picks up retries and whatever a process that died had queued;
`python -m app.cli send-mail` does one such round.

Two workers never send the same message: a worker claims each message with one conditional
UPDATE before sending it (PostgreSQL and SQLite alike) and only the claimer may mark it. A
claim runs out after `CLAIM_TIME`, so a message whose worker died goes out later; one that died
after sending but before marking sends it twice (at least once: never lost).

A failed send is tried again after `MAIL_RETRY_BASE_SECONDS`, doubling each time, with jitter;
after `MAIL_MAX_ATTEMPTS` attempts the message is `dead`, logged without address or body
(`send-mail --retry-dead` queues the dead ones again). Bodies carry live links, so they are
sealed with AES-GCM under a key of their own and erased once sent; the rows themselves go with
the retention purge (`app/services/retention.py`).
"""

import asyncio
import json
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import event, func, or_, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock, metrics
from app.core.config import Settings
from app.core.secretbox import SecretBox, SecretUnreadable
from app.models.outbox import MailStatus, OutboxMessage

logger = logging.getLogger(__name__)

# A claimed message belongs to its worker this long: one send (SMTP gives up after 10 s).
CLAIM_TIME = timedelta(minutes=2)
# However many attempts are allowed, two of them are never further apart than this.
MAX_RETRY_DELAY = timedelta(hours=6)
# Messages looked up per query of a round; a round goes on until nothing is due.
BATCH = 100
_random = secrets.SystemRandom()


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


class EmailBackend(Protocol):
    async def send(self, email: Email) -> None: ...


@dataclass(slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0  # attempts that failed; the message is tried again later
    dead: int = 0  # messages given up in this round

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.failed} failed (tried again later), {self.dead} dead"


# --- queueing, in the caller's transaction ------------------------------------------------------

_QUEUED = "outbox.queued"  # Session.info key: what this transaction queued, and whom to wake


@dataclass(slots=True)
class _Queued:
    count: int
    wake: Callable[[], None] | None


def enqueue(
    db: AsyncSession,
    box: SecretBox,
    email: Email,
    template: str,
    wake: Callable[[], None] | None = None,
) -> None:
    """Add `email` to `db`'s transaction; `wake` is called once that transaction commits."""
    message_id = uuid.uuid4()
    body = json.dumps({"text": email.text, "html": email.html}).encode()
    db.add(
        OutboxMessage(
            id=message_id,
            recipient=email.to,
            template=template,
            subject=email.subject,
            body=box.seal(body, context=message_id.bytes),
            next_attempt_at=clock.now(),
        )
    )
    queued = db.info.setdefault(_QUEUED, _Queued(0, wake))
    queued.count += 1


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    queued: _Queued | None = session.info.pop(_QUEUED, None)
    if queued is None:
        return
    metrics.EMAILS_QUEUED.inc(queued.count)
    if queued.wake is not None:
        queued.wake()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    """Whatever the transaction queued went with it."""
    session.info.pop(_QUEUED, None)


def _open(box: SecretBox, message: OutboxMessage) -> Email:
    if message.body is None:
        raise SecretUnreadable("no body")
    body = json.loads(box.open(message.body, context=message.id.bytes))
    return Email(
        to=message.recipient, subject=message.subject, text=body["text"], html=body["html"]
    )


# --- delivery ------------------------------------------------------------------------------------


class Courier:
    """Delivers what is due through `backend`: a round at a time, one round at a time in this
    process (`deliver_due`), any number of processes side by side."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        settings: Settings,
        box: SecretBox,
        backend: EmailBackend,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.settings = settings
        self.box = box
        self.backend = backend
        self._round = asyncio.Lock()

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError("mail delivery needs a sessionmaker")
        return self._sessionmaker

    async def deliver_due(self) -> DeliveryReport:
        """Try every message that is due now, once each."""
        report = DeliveryReport()
        async with self._round:
            tried: set[uuid.UUID] = set()
            while due := [id_ for id_ in await self._due() if id_ not in tried]:
                for message_id in due:
                    tried.add(message_id)
                    message = await self._claim(message_id)
                    if message is not None:  # else another worker has it
                        await self._deliver(message, report)
        return report

    async def every_interval(self) -> None:
        """The service's loop: a round now, then one every `MAIL_POLL_SECONDS`, until
        cancelled. A failing round (the database is down) is tried again next time; the log
        hears of it once when the failure starts or changes, and once when a round works
        again, not every MAIL_POLL_SECONDS."""
        failing: str | None = None  # what the failing rounds raise
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if type(error).__name__ != failing:
                    failing = type(error).__name__
                    logger.warning(
                        "Mail delivery failed (%s); trying again every %g s, quietly until "
                        "it works or fails differently",
                        failing,
                        self.settings.mail_poll_seconds,
                    )
            else:
                if failing is not None:
                    failing = None
                    logger.info("Mail delivery works again")
            await asyncio.sleep(self.settings.mail_poll_seconds)

    async def retry_dead(self) -> int:
        """Queue the dead messages again, with a fresh allowance of attempts; how many."""
        async with self.sessionmaker() as db:
            result = await db.exec(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.status) == MailStatus.DEAD,
                    col(OutboxMessage.body).is_not(None),
                )
                .values(status=MailStatus.PENDING, attempts=0, next_attempt_at=clock.now())
                .values(dead_at=None, claim=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )
            await db.commit()
            return int(result.rowcount)

    async def pending(self) -> int:
        """Messages not delivered yet, due or waiting for their next attempt."""
        async with self.sessionmaker() as db:
            query = (
                select(func.count())
                .select_from(OutboxMessage)
                .where(col(OutboxMessage.status) == MailStatus.PENDING)
            )
            return (await db.exec(query)).one()

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failure: the base, doubled for each earlier one,
        give or take a quarter, so that a queue that failed at once does not retry at once."""
        seconds = self.settings.mail_retry_base_seconds * 2.0 ** (attempts - 1)
        jittered = seconds * _random.uniform(0.75, 1.25)
        return min(timedelta(seconds=jittered), MAX_RETRY_DELAY)

    async def _due(self) -> list[uuid.UUID]:
        now = clock.now()
        query = (
            select(OutboxMessage.id)
            .where(*_claimable(now))
            .order_by(col(OutboxMessage.next_attempt_at))
            .limit(BATCH)
        )
        async with self.sessionmaker() as db:
            return list((await db.exec(query)).all())

    async def _claim(self, message_id: uuid.UUID) -> OutboxMessage | None:
        """Make the message this worker's for `CLAIM_TIME`, or None when it is not due or
        another worker has it. One conditional UPDATE: of two workers, one wins."""
        now = clock.now()
        async with self.sessionmaker() as db:
            claimed = await db.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == message_id, *_claimable(now))
                .values(claim=secrets.token_hex(16), claimed_until=now + CLAIM_TIME)
                .execution_options(synchronize_session=False)
            )
            await db.commit()
            if claimed.rowcount != 1:
                return None
            return await db.get(OutboxMessage, message_id)

    async def _deliver(self, message: OutboxMessage, report: DeliveryReport) -> None:
        try:
            email = _open(self.box, message)
        except SecretUnreadable as error:  # sealed under another key: no retry can help
            await self._failed(message, error, report, give_up=True)
            return
        try:
            await self.backend.send(email)
        except Exception as error:
            await self._failed(message, error, report)
            return
        # The links it carried are no longer kept anywhere.
        now = clock.now()
        await self._mark(
            message,
            status=MailStatus.SENT,
            sent_at=now,
            body=None,
            attempts=message.attempts + 1,
            last_error=None,
        )
        report.sent += 1
        metrics.EMAILS_SENT.inc()

    async def _failed(
        self,
        message: OutboxMessage,
        error: Exception,
        report: DeliveryReport,
        *,
        give_up: bool = False,
    ) -> None:
        attempts = message.attempts + 1
        reason = type(error).__name__[:64]
        report.failed += 1
        metrics.EMAILS_FAILED.inc()  # the message is retried or, below, dead
        if give_up or attempts >= self.settings.mail_max_attempts:
            await self._mark(
                message,
                status=MailStatus.DEAD,
                dead_at=clock.now(),
                attempts=attempts,
                last_error=reason,
            )
            report.dead += 1
            metrics.EMAILS_DEAD.inc()
            logger.error(
                "Mail %s (%s) is dead after %d attempt(s), the last one failing with %s",
                message.id,
                message.template,
                attempts,
                reason,
            )
            return
        delay = self.retry_delay(attempts)
        await self._mark(
            message,
            attempts=attempts,
            next_attempt_at=clock.now() + delay,
            last_error=reason,
        )
        logger.warning(
            "Mail %s (%s) not sent (%s), attempt %d of %d; next in %d s",
            message.id,
            message.template,
            reason,
            attempts,
            self.settings.mail_max_attempts,
            delay.total_seconds(),
        )

    async def _mark(self, message: OutboxMessage, **values: Any) -> None:
        """Record the outcome and free the claim, unless the claim ran out and another worker
        took the message over: then that worker's outcome counts."""
        async with self.sessionmaker() as db:
            marked = await db.exec(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.id) == message.id,
                    col(OutboxMessage.claim) == message.claim,
                )
                .values(claim=None, claimed_until=None, **values)
                .execution_options(synchronize_session=False)
            )
            await db.commit()
        if marked.rowcount != 1:
            logger.warning("Mail %s: its claim ran out before the outcome was recorded", message.id)


def _claimable(now: Any) -> list[Any]:
    """Pending, due, and claimed by no live worker."""
    return [
        col(OutboxMessage.status) == MailStatus.PENDING,
        col(OutboxMessage.next_attempt_at) <= now,
        or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) < now),
    ]
