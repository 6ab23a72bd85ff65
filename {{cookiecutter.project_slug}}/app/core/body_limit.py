"""A request body size guard, as plain ASGI middleware, that refuses before reading the body.

A Content-Length over the limit is refused without reading a byte. Otherwise (a smaller
Content-Length, or chunked transfer with none) the body is read ahead chunk by chunk and
refused once it passes the limit, so no more than the limit plus one chunk is ever held, and
a header that lies about the length changes nothing.
"""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.services.errors import RequestTooLarge


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await refuse(send)
            return
        buffered: list[Message] = []
        size = 0
        more = True
        while more:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await refuse(send)
                return
            more = message.get("more_body", False)

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


async def refuse(send: Send) -> None:
    body = json.dumps({"detail": RequestTooLarge.detail, "code": RequestTooLarge.code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": RequestTooLarge.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
