from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response


async def crash(app: FastAPI, path: str = "/boom") -> Response:
    """The answer to a request whose route raises an unexpected error."""

    @app.get(path)
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="https://testserver") as client:
        return await client.get(path)


async def test_unhandled_errors_leak_nothing(app: FastAPI) -> None:
    response = await crash(app)
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "code": "internal_error"}
    assert "hunter2" not in response.text
