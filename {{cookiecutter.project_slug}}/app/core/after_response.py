"""Brackets each HTTP request so that work handed over during it starts after the response.

A plain ASGI middleware: the server has the last byte of the answer when the app returns, and
only then is the held work released (see app/services/deferred.py). Only requests that can
change state hand work over, so reads (the hot path) pass straight through.
"""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from starlette.types import ASGIApp, Receive, Scope, Send

READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AfterResponseMiddleware:
    def __init__(
        self, app: ASGIApp, *, hold: Callable[[], AbstractAsyncContextManager[None]]
    ) -> None:
        self.app = app
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS:
            await self.app(scope, receive, send)
            return
        async with self.hold():
            await self.app(scope, receive, send)
