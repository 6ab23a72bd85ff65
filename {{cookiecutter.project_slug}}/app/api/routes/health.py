from fastapi import APIRouter, Response, status
from sqlalchemy import literal
from sqlmodel import select

from app.api.deps import Ctx, Db

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/ready",
    responses={503: {"description": "The database does not answer: take this instance out"}},
)
async def ready(db: Db, ctx: Ctx, response: Response) -> dict[str, str]:
    """The database answers. Redis is reported, but the service stays ready without it:
    rate limits fall back to process memory."""
    checks = {"status": "ok", "database": "ok"}
    try:
        await db.exec(select(literal(1)))
    except Exception:
        checks["status"] = checks["database"] = "unavailable"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    redis = await ctx.limiter.redis_available()
    if redis is not None:
        checks["redis"] = "ok" if redis else "unavailable (rate limits counted in memory)"
    return checks
