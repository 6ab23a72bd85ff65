"""Log lines: one JSON object per line in production, readable lines in development, each with
the id of the request it belongs to.

The code logs through the standard library (`logging.getLogger(__name__)`, `structlog.get_logger()`
works too); structlog's `ProcessorFormatter` renders every record the same way: the app's, and
the servers' (uvicorn's access and error lines, in a gunicorn worker too) once the app is
loaded. `request_id` is the id of the request being served (app/core/request_id.py); work
handed over to run after the response (app/services/deferred.py) runs in a copy of the
request's context, so its lines carry the same id. Lines outside any request (start-up, the
purge loop) have none.

A JSON line: {"level": "warning", "logger": "app.core.rate_limit", "timestamp":
"2026-12-01T10:00:00.000000Z", "request_id": "4f0c...", "message": "Redis unavailable ..."}.
An access line adds method, path, status and client; its path never has the query string.
"""

import logging
from typing import Literal

import structlog
from asgi_correlation_id import correlation_id
from structlog.typing import EventDict, Processor, WrappedLogger

Renderer = Literal["json", "console"]

# The loggers the app writes to (and the request-id middleware's warnings): a handler of ours.
OWN_LOGGERS = ("app", "asgi_correlation_id")
# The servers' loggers: their handlers (uvicorn's or gunicorn's, where the lines go) keep their
# streams and get our formatter. A logger without handlers is left alone: `--no-access-log`
# stays off.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")
# The control characters of a request line, shown escaped so that a path cannot fake a line.
CONTROL = {code: f"\\x{code:02x}" for code in [*range(32), 127]}


def add_request_id(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    request_id = correlation_id.get()
    if request_id is not None:
        event["request_id"] = request_id
    return event


def access_fields(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Uvicorn's access record as fields, without the query string (where a careless client
    puts a token) and with control characters escaped."""
    args = event.pop("positional_args", None)  # the record's arguments, passed for this only
    record = event.get("_record")
    if record is None or record.name != "uvicorn.access":
        return event
    if not isinstance(args, tuple) or len(args) != 5:
        return event
    client, method, full_path, http_version, status = args
    path = str(full_path).partition("?")[0].translate(CONTROL)
    event.update(
        event=f"{method} {path} HTTP/{http_version} {status}",
        method=method,
        path=path,
        status=status,
        client=client,
    )
    return event


def pre_chain() -> list[Processor]:
    """Fields every record gets before it is rendered."""
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_id,
        access_fields,
    ]


def formatter(renderer: Renderer) -> structlog.stdlib.ProcessorFormatter:
    """A `logging.Formatter` for `renderer`. Tracebacks are text without local variables
    (structlog's rich tracebacks would print them, and a local can be a password)."""
    final: list[Processor]
    if renderer == "json":
        final = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        final = [
            structlog.dev.ConsoleRenderer(
                exception_formatter=structlog.dev.plain_traceback,
                colors=False,
                sort_keys=False,
            )
        ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain(),
        pass_foreign_args=True,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )


class OwnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler this module adds, told apart from anyone else's."""


def configure_logging(level: str, renderer: Renderer = "console") -> None:
    """Render the app's records and the servers' with `renderer`; safe to call again (tests
    build many apps): the handlers are reused, their formatter replaced."""
    shared = formatter(renderer)
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        own = [handler for handler in logger.handlers if isinstance(handler, OwnHandler)]
        if not own:
            own = [OwnHandler()]
            logger.addHandler(own[0])
        own[0].setFormatter(shared)
    logging.getLogger("app").setLevel(level.upper())
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(shared)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *pre_chain(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
