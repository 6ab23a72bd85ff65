from httpx import AsyncClient


async def test_live_answers(client: AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_the_database(client: AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


async def test_security_headers_on_every_response(client: AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "max-age" in response.headers["strict-transport-security"]


async def test_auth_responses_are_never_cached(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "a@b.co", "password": "x"})
    assert response.headers["cache-control"] == "no-store"


async def test_unknown_route_gives_json_404(client: AsyncClient) -> None:
    response = await client.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
