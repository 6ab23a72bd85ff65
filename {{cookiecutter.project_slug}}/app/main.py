"""The application factory. `app = create_app()` is what uvicorn and gunicorn serve."""

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.router import OPENAPI_TAGS, all_routes
from app.core.body_limit import BodySizeLimitMiddleware
from app.core.config import Settings, get_settings
from app.core.headers import SecurityHeadersMiddleware
from app.core.logging import configure_logging
from app.core.rate_limit import RateLimitExceeded
from app.db.principals import PrincipalReader
from app.db.session import create_engine, create_sessionmaker
from app.services.context import Context
from app.services.errors import ServiceError

logger = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = create_engine(settings)
    context = Context.from_settings(settings)
    principals = PrincipalReader(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await context.mailer.wait_idle()
        context.passwords.close()
        await principals.close()
        await engine.dispose()

    app = FastAPI(
        title=settings.project_name,
        lifespan=lifespan,
        docs_url=None if settings.environment == "production" else "/docs",
        redoc_url=None,
        openapi_tags=OPENAPI_TAGS,
        routes=all_routes(),
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.context = context
    app.state.principals = principals

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.cookie_secure)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-CSRF-Token"],
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
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    return error_response(exc.status_code, str(exc.detail), code, exc.headers)


# Constraint values worth telling a client; everything else in `ctx` may quote the input.
SAFE_CONTEXT = {"min_length", "max_length", "ge", "gt", "le", "lt", "pattern", "expected"}


def _clean(text: object) -> str:
    """Loc parts and messages, as text any encoder takes (a key may be a lone surrogate)."""
    return str(text).encode("utf-8", "replace").decode("utf-8")[:200]


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 list without `input`: what was submitted (a password too) never comes back."""
    errors = []
    for error in exc.errors():
        item: dict[str, object] = {
            "type": error["type"],
            "loc": [part if isinstance(part, int) else _clean(part) for part in error["loc"]],
            "msg": _clean(error["msg"]),
        }
        context = {
            key: value
            for key, value in (error.get("ctx") or {}).items()
            if key in SAFE_CONTEXT and isinstance(value, int | float | str)
        }
        if context:
            item["ctx"] = context
        errors.append(item)
    return JSONResponse({"detail": errors, "code": "validation_failed"}, status_code=422)


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


app = create_app()
