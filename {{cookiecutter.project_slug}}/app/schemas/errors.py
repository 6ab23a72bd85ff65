from pydantic import BaseModel, Field


class ErrorMessage(BaseModel):
    """The body of every error the API raises itself (validation errors are FastAPI's 422)."""

    detail: str = Field(description="What went wrong, in English, for people")
    code: str = Field(description="Stable machine-readable reason: match this, not `detail`")


# What each error status means, in the schema; app/api/openapi.py adds the codes each route
# can answer with it (derived from the code by app/api/raises.py).
ERROR_STATUSES: dict[int, str] = {
    400: "The request was understood but refused",
    401: "Missing, invalid or revoked credentials",
    403: "Authenticated but not allowed, or a failed CSRF check",
    404: "No such resource (or not yours)",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    415: "Send JSON",
    429: "Rate limited; see the Retry-After header",
}
