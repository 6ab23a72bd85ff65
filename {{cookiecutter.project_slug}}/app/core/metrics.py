"""Prometheus metrics: the counters the services bump, the request-latency histogram, and the
text `GET /metrics` serves (app/api/metrics.py, only with `METRICS_ENABLED`).

Counting is a few nanoseconds' work and happens whether or not /metrics is served; timing
requests is a middleware installed only with `METRICS_ENABLED`. Every label has a fixed set
of values: a route is labelled by its template (`/api/v1/auth/sessions/{session_id}`), an
unknown path by `unmatched`, an unknown method by `other`, a status by its class (`2xx`), so
no request can make a new time series.

Several worker processes (gunicorn, scripts/start.sh) each count on their own; with
`PROMETHEUS_MULTIPROC_DIR` set (start.sh sets it to a fresh, empty folder) every process
writes its values to files there and /metrics adds them up, whichever worker answers.
The folder must be empty when the server starts, and set before this module is imported.
"""

import os
import time
from typing import Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The classic text format, which every Prometheus version reads.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

LOGINS = Counter(
    "auth_logins",
    "Sign-ins: success (a session was opened, by any method), mfa_required (right password, "
    "second step pending), failure (wrong email or password), limited, inactive, unverified",
    ["result"],
)
LOGIN_RESULTS = ("success", "mfa_required", "failure", "limited", "inactive", "unverified")
REFRESHES = Counter(
    "auth_refreshes",
    "Refresh-token presentations: rotated, grace (the predecessor again, within the window), "
    "reused (a reuse was detected), rejected (ended, idle or another device's session)",
    ["result"],
)
REFRESH_RESULTS = ("rotated", "grace", "reused", "rejected")
REFRESH_REUSE = Counter(
    "auth_refresh_reuse_detected", "Refresh tokens used twice: each revoked a session"
)
RATE_LIMITED = Counter(
    "rate_limit_hits", "Requests refused by a rate limit, by the limit's name", ["limit"]
)
EMAILS_QUEUED = Counter("emails_queued", "Emails written to the outbox")
EMAILS_SENT = Counter("emails_sent", "Emails the backend accepted")
EMAILS_FAILED = Counter("emails_failed", "Attempts the backend refused or could not take")
EMAILS_DEAD = Counter("emails_dead", "Emails given up after their last attempt failed")
PURGE_RUNS = Counter(
    "purge_runs", "Purges of expired data this service ran, by outcome", ["result"]
)
PURGE_RESULTS = ("completed", "failed")
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to answer a request, by route template, method and status class",
    ["route", "method", "status"],
)

UNMATCHED = "unmatched"  # a path no route has
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Known label values start at 0, so a rate over them is defined from the first scrape.
for _result in LOGIN_RESULTS:
    LOGINS.labels(_result)
for _result in REFRESH_RESULTS:
    REFRESHES.labels(_result)
for _result in PURGE_RESULTS:
    PURGE_RUNS.labels(_result)


def count_login(result: str) -> None:
    LOGINS.labels(result).inc()


def count_refresh(result: str) -> None:
    REFRESHES.labels(result).inc()
    if result == "reused":
        REFRESH_REUSE.inc()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """Every metric in the Prometheus text format: this process's, or with
    PROMETHEUS_MULTIPROC_DIR the sum over all the processes that wrote there."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class RequestMetricsMiddleware:
    """Times each HTTP request into REQUEST_SECONDS; the only work it adds to a request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The histogram's child per label set: `labels()` checks and locks on every call.
        self._children: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app fails before it starts one

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # Routing put the matched route into the scope; its path is the template.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "other"
            key = (route, method, status // 100)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = REQUEST_SECONDS.labels(route, method, f"{key[2]}xx")
            child.observe(time.perf_counter() - started)
