from typing import Any

from pydantic import BaseModel, Field


class ErrorMessage(BaseModel):
    """The body of every error the API raises itself (validation errors are FastAPI's 422)."""

    detail: str = Field(description="What went wrong, in English, for people")
    code: str = Field(description="Stable machine-readable reason: match this, not `detail`")


# Documented on every API route, so clients and schema checkers know the shape of failures.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorMessage, "description": description}
    for code, description in (
        (400, "The request was understood but refused (reason in `detail`)"),
        (401, "Missing, invalid or revoked credentials"),
        (403, "Authenticated but not allowed, or a failed CSRF check"),
        (404, "No such resource (or not yours)"),
        (409, "Conflicts with the current state"),
        (415, "Login accepts JSON only"),
        (429, "Rate limited; see the Retry-After header"),
    )
}
