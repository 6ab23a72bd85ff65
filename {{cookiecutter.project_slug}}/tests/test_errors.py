from httpx import ASGITransport, AsyncClient


async def test_unhandled_errors_leak_nothing(app):
    @app.get("/boom")
    async def boom():
        raise RuntimeError("database password is hunter2")

    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "code": "internal_error"}
    assert "hunter2" not in response.text
