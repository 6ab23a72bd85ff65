"""The application factory, and `app.main:app`: what uvicorn and gunicorn serve."""

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from app.api.docs import DOCS_PAGES, install_docs
from app.api.metrics import install_metrics
from app.api.openapi import OPENAPI_URL, document_csrf, document_errors, operation_id
from app.api.router import OPENAPI_TAGS, api_routes, flat_routes
from app.core.after_response import AfterResponseMiddleware
from app.core.body_limit import BodyLimitMiddleware
from app.core.config import Settings, settings_or_exit
from app.core.headers import SecurityHeadersMiddleware
from app.core.logging import configure_logging
from app.core.metrics import RequestMetricsMiddleware
from app.core.rate_limit import RateLimitExceeded, memory_counters_warning
from app.core.request_id import HEADER as REQUEST_ID_HEADER
from app.core.request_id import RequestIdMiddleware
from app.db.principals import PrincipalReader
from app.db.session import create_engine, create_sessionmaker
from app.db.session_statements import SessionStatements
from app.services.context import Context
from app.services.errors import ServiceError
from app.services.retention import Purger
from app.utils.cookies import cookie_warnings

logger = logging.getLogger("app")


class Service(FastAPI):
    """FastAPI with flat routes and the security headers outermost."""

    def include_router(self, router: APIRouter, **options: Any) -> None:
        """FastAPI's include, then the included routes laid out flat (app/api/router.py): a
        router mounted the usual way is matched as cheaply as the built-in routes."""
        super().include_router(router, **options)
        self.router.routes = flat_routes(self.router.routes)

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette renders a 500 in ServerErrorMiddleware, which sits outside every user
        middleware; wrapping the built stack is the only place whose headers reach it. So
        a 500 too has its request id (header and log lines) and is timed."""
        settings: Settings = self.state.settings
        stack = super().build_middleware_stack()
        if settings.metrics_enabled:
            stack = RequestMetricsMiddleware(stack)
        return SecurityHeadersMiddleware(
            RequestIdMiddleware(stack, trusted=settings.trusted_networks),
            hsts=settings.cookie_secure,
            docs_paths=DOCS_PAGES if self.openapi_url else (),
        )

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            self.openapi_schema = document_errors(document_csrf(super().openapi()), self.routes)
        return self.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or settings_or_exit()
    configure_logging(settings.log_level, settings.log_renderer)
    for warning in [memory_counters_warning(settings), *cookie_warnings(settings)]:
        if warning:
            logger.warning(warning)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    context = Context.from_settings(settings, sessionmaker)
    principals = PrincipalReader(engine)
    session_statements = SessionStatements(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loops = []
        if settings.purge_interval_seconds:
            loops.append(asyncio.create_task(Purger(sessionmaker, settings).every_interval()))
        if settings.mail_poll_seconds:
            loops.append(asyncio.create_task(context.mailer.courier.every_interval()))
        yield
        for loop in loops:
            loop.cancel()
            with suppress(asyncio.CancelledError):
                await loop
        await context.later.wait_idle()  # and the mail it queued, or that was queued before
        context.hasher.close()
        await principals.close()
        await session_statements.close()
        await engine.dispose()

    # Production keeps its schema (and the docs built from it) private unless asked to publish.
    schema = settings.environment != "production" or settings.openapi_in_production
    app = Service(
        title=settings.project_name,
        lifespan=lifespan,
        openapi_url=OPENAPI_URL if schema else None,
        docs_url=None,  # app/api/docs.py serves the docs pages and their files
        redoc_url=None,
        openapi_tags=OPENAPI_TAGS,
        generate_unique_id_function=operation_id,
        # Passed here, the API comes before the docs routes FastAPI adds: matched first.
        routes=list(api_routes()),
    )
    if schema:
        install_docs(app, OPENAPI_URL)
    if settings.metrics_enabled:
        install_metrics(app)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.context = context
    app.state.principals = principals
    app.state.session_statements = session_statements

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(AfterResponseMiddleware, hold=context.later.hold)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-CSRF-Token"],
            expose_headers=[REQUEST_ID_HEADER],  # a page can quote it in an error report
        )
    app.add_exception_handler(ServiceError, service_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RateLimitExceeded, rate_limit_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unhandled_error_handler)
    return app


def error_response(
    status_code: int, detail: str, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one shape of every error the service answers itself (422 keeps FastAPI's list)."""
    return JSONResponse({"detail": detail, "code": code}, status_code=status_code, headers=headers)


async def service_error_handler(_request: Request, exc: ServiceError) -> JSONResponse:
    return error_response(exc.status_code, exc.detail, exc.code, exc.headers)


async def http_error_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (unknown path, wrong method) get a code like every other error."""
    code = getattr(exc, "code", None) or _slug(HTTPStatus(exc.status_code).phrase)
    return error_response(exc.status_code, str(exc.detail), code, exc.headers)


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's list of problems, without the submitted values: a 422 must not hand back a
    password, and a value that cannot be encoded (a lone surrogate) must not become a 500."""
    problems = [
        {"type": error["type"], "loc": list(error["loc"]), "msg": _printable(error["msg"])}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": problems, "code": "validation_failed"}, status_code=422)


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _slug(phrase: str) -> str:
    return phrase.lower().replace(" ", "_").replace("-", "_")


async def rate_limit_handler(_request: Request, exc: RateLimitExceeded) -> JSONResponse:
    return error_response(
        429,
        "Too many attempts; try again later",
        "rate_limited",
        {"Retry-After": str(exc.retry_after)},
    )


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Log the failure for operators; tell the client nothing about internals."""
    logger.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal Server Error", "internal_error")


def __getattr__(name: str) -> FastAPI:
    """`app`, built on first use from the process's settings (PEP 562): importing this module,
    as tests and tools do, reads no environment and opens no database."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    application = globals()["app"] = create_app(settings_or_exit())
    return application
