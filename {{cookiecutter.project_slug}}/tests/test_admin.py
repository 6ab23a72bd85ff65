"""The admin API: users, their sessions, roles. Permission refusals are in test_rbac.py."""

import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.permissions import RoleName, granted
from app.models import AuditEvent, DeviceSession, Role, User, UserRole
from tests.helpers import browser, create_user, login

ALL_PERMISSIONS = sorted(granted(RoleName.ADMIN))
USER_PERMISSIONS = sorted(granted(RoleName.USER))
SESSION_FIELDS = {
    "id",
    "device_label",
    "ip_address",
    "last_ip_address",
    "created_at",
    "last_seen_at",
    "expires_at",
}


async def grant_role(app: FastAPI, user: User, role_name: str) -> None:
    async with app.state.sessionmaker() as db:
        role = (await db.exec(select(Role).where(Role.name == role_name))).one()
        db.add(UserRole(user_id=user.id, role_id=role.id))
        await db.commit()


@pytest.fixture
async def root(app: FastAPI) -> User:
    user = await create_user(app, "root@example.com")
    await grant_role(app, user, RoleName.ADMIN)
    return user


@pytest.fixture
async def admin(client: AsyncClient, root: User) -> AsyncClient:
    """The shared `client`, signed in as the admin."""
    response = await login(client, "root@example.com")
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


@pytest.fixture
async def bob(app: FastAPI) -> User:
    return await create_user(app, "bob@example.com")


@pytest.fixture
async def bob_client(app: FastAPI, bob: User) -> AsyncIterator[AsyncClient]:
    async with browser(app, "bob@example.com") as http:
        yield http


async def audit_types(db: AsyncSession) -> list[str]:
    return list((await db.exec(select(AuditEvent.type))).all())


# --- users -------------------------------------------------------------------------------


async def test_view_user_and_404s(admin: AsyncClient, bob: User) -> None:
    response = await admin.get(f"/api/v1/admin/users/{bob.id}")
    assert response.status_code == 200
    assert response.json()["email"] == "bob@example.com"
    assert response.json()["roles"] == ["user"]

    missing = f"/api/v1/admin/users/{uuid.uuid4()}"
    for method in ("GET", "PATCH", "DELETE"):
        body = {"is_verified": True} if method == "PATCH" else None
        response = await admin.request(method, missing, json=body)
        assert response.status_code == 404, method
        assert response.json() == {"detail": "User not found", "code": "not_found"}
    assert (await admin.get("/api/v1/admin/users/not-a-uuid")).status_code == 422
    assert (await admin.get(missing + "/sessions")).status_code == 404
    assert (await admin.delete(missing + "/sessions")).status_code == 404


async def test_patch_roles_takes_effect_on_the_next_request(
    admin: AsyncClient, bob: User, bob_client: AsyncClient, db: AsyncSession
) -> None:
    assert (await bob_client.get("/api/v1/admin/users")).status_code == 403

    response = await admin.patch(f"/api/v1/admin/users/{bob.id}", json={"roles": ["user", "admin"]})
    assert response.status_code == 200
    assert response.json()["roles"] == ["admin", "user"]
    assert response.json()["permissions"] == ALL_PERMISSIONS
    # Bob's existing session sees the new role: permissions are read per request.
    assert (await bob_client.get("/api/v1/admin/users")).status_code == 200

    response = await admin.patch(f"/api/v1/admin/users/{bob.id}", json={"roles": []})
    assert response.json()["roles"] == [] and response.json()["permissions"] == []
    assert (await bob_client.get("/api/v1/admin/users")).status_code == 403
    assert "user_updated" in await audit_types(db)


async def test_patch_rejects_unknown_roles_and_other_fields(admin: AsyncClient, bob: User) -> None:
    url = f"/api/v1/admin/users/{bob.id}"
    unknown = await admin.patch(url, json={"roles": ["user", "wizard", "ghost"]})
    assert unknown.status_code == 400
    assert unknown.json() == {"detail": "Unknown role: ghost, wizard", "code": "unknown_name"}
    assert (await admin.get(url)).json()["roles"] == ["user"]

    for body in ({"email": "x@example.com"}, {"is_active": "maybe"}, {"roles": "admin"}):
        response = await admin.patch(url, json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"]


async def test_patch_is_verified(admin: AsyncClient, app: FastAPI) -> None:
    carol = await create_user(app, "carol@example.com", is_verified=False)
    response = await admin.patch(f"/api/v1/admin/users/{carol.id}", json={"is_verified": True})
    assert response.status_code == 200
    assert response.json()["is_verified"] is True


async def test_deactivation_revokes_every_session_at_once(
    app: FastAPI, admin: AsyncClient, bob: User, bob_client: AsyncClient, db: AsyncSession
) -> None:
    async with browser(app, "bob@example.com") as other_device:
        assert (await bob_client.get("/api/v1/users/me")).status_code == 200

        response = await admin.patch(f"/api/v1/admin/users/{bob.id}", json={"is_active": False})
        assert response.status_code == 200
        assert response.json()["is_active"] is False

        assert (await bob_client.get("/api/v1/users/me")).status_code == 401
        assert (await other_device.get("/api/v1/users/me")).status_code == 401

    sessions = (await db.exec(select(DeviceSession).where(DeviceSession.user_id == bob.id))).all()
    assert len(sessions) == 2
    assert all(s.revoked_at is not None and s.revoked_reason == "deactivated" for s in sessions)
    assert {"user_updated", "session_revoked"} <= set(await audit_types(db))

    # Reactivation does not bring the old sessions back; a fresh login does work.
    response = await admin.patch(f"/api/v1/admin/users/{bob.id}", json={"is_active": True})
    assert response.json()["is_active"] is True
    assert (await bob_client.get("/api/v1/users/me")).status_code == 401
    await login(bob_client, "bob@example.com")


async def test_delete_user(
    admin: AsyncClient, bob: User, bob_client: AsyncClient, db: AsyncSession
) -> None:
    response = await admin.delete(f"/api/v1/admin/users/{bob.id}")
    assert response.status_code == 204
    assert (await admin.get(f"/api/v1/admin/users/{bob.id}")).status_code == 404
    assert (await admin.delete(f"/api/v1/admin/users/{bob.id}")).status_code == 404
    assert (await bob_client.get("/api/v1/users/me")).status_code == 401
    remaining = (await db.exec(select(DeviceSession).where(DeviceSession.user_id == bob.id))).all()
    assert remaining == []
    assert "user_deleted" in await audit_types(db)


async def test_admin_cannot_lock_themselves_out(admin: AsyncClient, root: User) -> None:
    url = f"/api/v1/admin/users/{root.id}"
    for body, detail in (
        ({"is_active": False}, "You cannot deactivate your own account"),
        ({"roles": ["user"]}, "You cannot remove your own admin role"),
    ):
        response = await admin.patch(url, json=body)
        assert response.status_code == 409
        assert response.json() == {"detail": detail, "code": "self_lockout"}
    response = await admin.delete(url)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Delete your own account with DELETE /users/me",
        "code": "self_lockout",
    }

    me = (await admin.get(url)).json()
    assert me["is_active"] is True and "admin" in me["roles"]
    # Changes that keep the admin role are fine.
    assert (await admin.patch(url, json={"roles": ["admin"]})).status_code == 200


async def test_the_last_active_admin_cannot_be_removed_by_someone_else(
    app: FastAPI, admin: AsyncClient, root: User
) -> None:
    """Even a holder of every permission without the admin role cannot take away the only
    admin (anyone holding less is refused earlier: test_attack_privileges.py)."""
    created = await admin.post(
        "/api/v1/admin/roles", json={"name": "operator", "permissions": ALL_PERMISSIONS}
    )
    assert created.status_code == 201
    manager = await create_user(app, "manager@example.com")
    await grant_role(app, manager, "operator")
    async with browser(app, "manager@example.com") as http:
        url = f"/api/v1/admin/users/{root.id}"
        attempts = [
            ("PATCH", {"roles": ["user"]}),
            ("PATCH", {"is_active": False}),
            ("DELETE", None),
        ]
        for method, body in attempts:
            response = await http.request(method, url, json=body)
            assert response.status_code == 409
            assert "last active admin" in response.json()["detail"]

        # With a second admin in place it is allowed.
        second = await create_user(app, "second@example.com")
        await grant_role(app, second, RoleName.ADMIN)
        assert (await http.patch(url, json={"roles": ["user"]})).status_code == 200


# --- sessions of another user -------------------------------------------------------------


async def test_list_and_revoke_another_users_sessions(
    app: FastAPI, admin: AsyncClient, bob: User, bob_client: AsyncClient, db: AsyncSession
) -> None:
    async with browser(app, "bob@example.com"):
        url = f"/api/v1/admin/users/{bob.id}/sessions"
        response = await admin.get(url)
        assert response.status_code == 200
        listed = response.json()
        assert len(listed) == 2
        assert set(listed[0]) == SESSION_FIELDS
        assert listed[0]["device_label"] == "Firefox on Linux"

        assert (await admin.delete(url)).status_code == 204
        assert (await admin.get(url)).json() == []
        assert (await bob_client.get("/api/v1/users/me")).status_code == 401
        # The admin's own session is untouched.
        assert (await admin.get("/api/v1/users/me")).status_code == 200

    reasons = (
        await db.exec(select(DeviceSession.revoked_reason).where(DeviceSession.user_id == bob.id))
    ).all()
    assert reasons == ["revoked_by_admin", "revoked_by_admin"]
    assert "session_revoked" in await audit_types(db)


# --- roles ---------------------------------------------------------------------------------


async def test_list_roles(admin: AsyncClient) -> None:
    response = await admin.get("/api/v1/admin/roles")
    assert response.status_code == 200
    roles = {r["name"]: r for r in response.json()}
    assert roles["admin"]["permissions"] == ALL_PERMISSIONS
    assert roles["user"]["permissions"] == USER_PERMISSIONS
    assert roles["user"]["description"]


async def test_create_and_patch_a_role(
    admin: AsyncClient, bob: User, bob_client: AsyncClient, db: AsyncSession
) -> None:
    response = await admin.post(
        "/api/v1/admin/roles",
        json={
            "name": "auditor",
            "description": "Reads users",
            "permissions": ["users:read", "users:read"],
        },
    )
    assert response.status_code == 201
    role = response.json()
    assert role["name"] == "auditor" and role["permissions"] == ["users:read"]

    await admin.patch(f"/api/v1/admin/users/{bob.id}", json={"roles": ["auditor"]})
    assert (await bob_client.get("/api/v1/admin/users")).status_code == 200
    assert (await bob_client.get(f"/api/v1/admin/users/{bob.id}/sessions")).status_code == 403

    response = await admin.patch(
        f"/api/v1/admin/roles/{role['id']}",
        json={"description": "Reads users and sessions", "permissions": ["sessions:read"]},
    )
    assert response.status_code == 200
    assert response.json()["description"] == "Reads users and sessions"
    assert response.json()["permissions"] == ["sessions:read"]
    assert (await bob_client.get(f"/api/v1/admin/users/{bob.id}/sessions")).status_code == 200
    assert (await bob_client.get("/api/v1/admin/users")).status_code == 403

    # Leaving a field out keeps it.
    response = await admin.patch(f"/api/v1/admin/roles/{role['id']}", json={"description": "x"})
    assert response.json()["permissions"] == ["sessions:read"]
    types = await audit_types(db)
    assert "role_created" in types and "role_updated" in types


async def test_role_errors(admin: AsyncClient) -> None:
    url = "/api/v1/admin/roles"
    assert (await admin.post(url, json={"name": "ops"})).status_code == 201

    duplicate = await admin.post(url, json={"name": "ops"})
    assert duplicate.status_code == 409
    assert duplicate.json() == {
        "detail": "A role named 'ops' already exists",
        "code": "already_exists",
    }

    unknown = await admin.post(url, json={"name": "ops2", "permissions": ["users:read", "fly"]})
    assert unknown.status_code == 400
    assert unknown.json() == {"detail": "Unknown permission: fly", "code": "unknown_name"}

    for body in ({"name": ""}, {"name": "Has Spaces"}, {"name": "x" * 65}, {}):
        response = await admin.post(url, json=body)
        assert response.status_code == 422, body

    missing = await admin.patch(f"{url}/{uuid.uuid4()}", json={"description": "x"})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Role not found", "code": "not_found"}
    assert (await admin.patch(f"{url}/nope", json={})).status_code == 422

    roles = {r["name"]: r["id"] for r in (await admin.get(url)).json()}
    unknown = await admin.patch(f"{url}/{roles['ops']}", json={"permissions": ["fly"]})
    assert unknown.status_code == 400


async def test_the_admin_role_keeps_every_permission(admin: AsyncClient) -> None:
    roles = {r["name"]: r["id"] for r in (await admin.get("/api/v1/admin/roles")).json()}
    response = await admin.patch(
        f"/api/v1/admin/roles/{roles['admin']}", json={"permissions": ["users:read"]}
    )
    assert response.status_code == 409
    assert "every permission" in response.json()["detail"]
    listed = {r["name"]: r for r in (await admin.get("/api/v1/admin/roles")).json()}
    assert listed["admin"]["permissions"] == ALL_PERMISSIONS
