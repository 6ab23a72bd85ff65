"""Work that must not delay (or shape) the answer: it runs after the response is sent.

Whether an address has an account decides how much work a request does (a token to save,
a mail to send). Done before the response, that difference is a timing oracle; handed over
to this runner, it happens once the client already has its answer. Services hand work over
without knowing about requests: inside a request (see `hold`) the work waits until the
response is complete; anywhere else (the CLI, a test calling a service) it starts at once.
"""

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
DbJob = Callable[[AsyncSession], Awaitable[None]]


class Deferred:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession] | None = None) -> None:
        self._sessionmaker = sessionmaker
        self._pending: set[asyncio.Task[None]] = set()
        self._held: ContextVar[list[tuple[str, Job]] | None] = ContextVar(
            f"deferred-{id(self)}", default=None
        )

    def run(self, what: str, job: Job) -> None:
        """Run `job` after the current response (now, outside a request). `what` names it
        in the log should it fail."""
        held = self._held.get()
        if held is None:
            self._start(what, job)
        else:
            held.append((what, job))

    def run_with_db(self, what: str, job: DbJob) -> None:
        """Like `run`, with a database session of its own: the request's closes with it."""
        sessionmaker = self._sessionmaker
        if sessionmaker is None:
            raise RuntimeError("deferred database work needs a sessionmaker")

        async def in_session() -> None:
            async with sessionmaker() as db:
                await job(db)

        self.run(what, in_session)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Keep work handed over inside the block until the block ends (the response is sent)."""
        held: list[tuple[str, Job]] = []
        token = self._held.set(held)
        try:
            yield
        finally:
            self._held.reset(token)
            for what, job in held:
                self._start(what, job)

    async def wait_idle(self) -> None:
        """Wait for everything handed over, including what that work hands over (shutdown,
        tests).

        A finished task leaves `_pending` only when its done callback runs, later; and on
        Python 3.12+ `gather` over finished tasks returns without yielding to the loop, so
        waiting while `_pending` is non-empty could spin for ever. Wait for unfinished ones.
        """
        while unfinished := [task for task in self._pending if not task.done()]:
            await asyncio.wait(unfinished)

    def _start(self, what: str, job: Job) -> None:
        task = asyncio.create_task(self._guarded(what, job))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @staticmethod
    async def _guarded(what: str, job: Job) -> None:
        """A failure is logged and goes no further: the client has had its answer already.

        The log names the exception type and where it was raised (file, line, function),
        never the message or source text: database errors quote the statement's parameters
        (addresses, hashes).
        """
        try:
            await job()
        except Exception as exc:
            frames = "\n".join(
                f"  {frame.filename}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(exc.__traceback__)
            )
            logger.error("Deferred %s failed: %s\n%s", what, type(exc).__name__, frames)
