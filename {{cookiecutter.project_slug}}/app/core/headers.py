"""Security headers on every response, as a plain ASGI middleware (cheap on the hot path).

`app.main.Service` puts it outside Starlette's ServerErrorMiddleware, so the 500s that one
renders carry the headers too (user middleware sits inside it).
"""

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# The API answers JSON: nothing in a response may load, run or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc: their files (served by the service itself), the inline script that
# starts them, inline styles they set, images, ReDoc's web worker, and fetching the schema.
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "worker-src blob:; "
    "connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HSTS = "max-age=63072000; includeSubDomains"
# Responses that carry tokens or personal data must never be cached.
NO_STORE_PREFIXES = ("/api/",)

RawHeaders = list[tuple[bytes, bytes]]


def _raw(headers: dict[str, str]) -> RawHeaders:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool, docs_paths: Iterable[str] = ()) -> None:
        self.app = app
        headers = {**BASE_HEADERS, **({"Strict-Transport-Security": HSTS} if hsts else {})}
        self.raw_headers = _raw({**headers, "Content-Security-Policy": API_CSP})
        self.docs_headers = _raw({**headers, "Content-Security-Policy": DOCS_CSP})
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        no_store = path.startswith(NO_STORE_PREFIXES)
        extra = self.docs_headers if path in self.docs_paths else self.raw_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [header for header in extra if header[0] not in present]
                if no_store:
                    headers = [h for h in headers if h[0].lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
