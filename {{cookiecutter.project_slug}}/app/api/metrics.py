"""GET /metrics: the Prometheus text format (app/core/metrics.py), with `METRICS_ENABLED` only,
for a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`.

Outside /api/v1 and the OpenAPI schema: it is the operators' page, not the API. Without the
setting the route does not exist (404); without the right token it answers 401 like every
other unauthenticated request, so nothing about the service leaks to a passer-by.
"""

import hmac

from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from app.core import metrics
from app.core.config import Settings
from app.services.errors import NotAuthenticated

METRICS_URL = "/metrics"


async def require_metrics_token(request: Request) -> None:
    """The bearer token, compared in constant time."""
    settings: Settings = request.app.state.settings
    expected = settings.metrics_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"),
            expected.get_secret_value().encode(),
        )
    ):
        raise NotAuthenticated("A valid metrics token is required")


def install_metrics(app: FastAPI) -> None:
    @app.get(METRICS_URL, include_in_schema=False, dependencies=[Depends(require_metrics_token)])
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
