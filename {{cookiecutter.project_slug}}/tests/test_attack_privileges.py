"""Privilege boundaries, attacked over HTTP from every partial admin (SPEC §11).

Nobody grants a permission or a role carrying one they do not hold, nobody acts on an account
holding more than they do (admin accounts in particular) or on the `admin` role, and the
last-admin guard holds when admins demote each other at the same moment. The permission sets
come from the seeded database, so a permission added by a later migration is walked too.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import col, select

from app.core.config import Settings
from app.models import DeviceSession, Permission, Role, RolePermission, User, UserRole
from tests.helpers import browser, create_user, make_settings

ADMIN = "/api/v1/admin"
REFUSED = "privilege_escalation"
# The permission each admin route asks for before the service's own rule.
ROUTE_PERMISSION = {"role": "roles:write", "user": "users:write", "sessions": "sessions:write"}


@pytest.fixture
def settings() -> Settings:
    """Many sign-ins from one address: the login limit is another module's subject."""
    return make_settings(rate_limit_enabled=False)


# --- the database as the attacker would like to change it ------------------------------------


async def all_permissions(app: FastAPI) -> frozenset[str]:
    async with app.state.sessionmaker() as db:
        return frozenset((await db.exec(select(Permission.name))).all())


async def add_role(app: FastAPI, name: str, permissions: frozenset[str]) -> None:
    """A role straight in the database: the walk's set-up must not depend on the rule."""
    async with app.state.sessionmaker() as db:
        role = Role(name=name, description=name)
        db.add(role)
        await db.flush()
        ids = (
            await db.exec(select(Permission.id).where(col(Permission.name).in_(permissions)))
        ).all()
        db.add_all(RolePermission(role_id=role.id, permission_id=p) for p in ids)
        await db.commit()


async def give_roles(app: FastAPI, user: User, *names: str) -> None:
    async with app.state.sessionmaker() as db:
        roles = (await db.exec(select(Role.id).where(col(Role.name).in_(names)))).all()
        db.add_all(UserRole(user_id=user.id, role_id=role_id) for role_id in roles)
        await db.commit()


async def snapshot(app: FastAPI) -> dict[str, object]:
    """Everything a refused request must leave as it was."""
    async with app.state.sessionmaker() as db:
        grants = (
            await db.exec(
                select(Role.name, Permission.name)
                .join(RolePermission, col(RolePermission.role_id) == Role.id, isouter=True)
                .join(Permission, col(Permission.id) == RolePermission.permission_id, isouter=True)
            )
        ).all()
        users = (await db.exec(select(User.email, User.is_active, User.is_verified))).all()
        members = (
            await db.exec(
                select(User.email, Role.name)
                .join(UserRole, col(UserRole.user_id) == User.id)
                .join(Role, col(Role.id) == UserRole.role_id)
            )
        ).all()
        revoked = (
            await db.exec(
                select(DeviceSession.id).where(col(DeviceSession.revoked_at).is_not(None))
            )
        ).all()
        descriptions = (await db.exec(select(Role.name, Role.description))).all()
    return {
        "grants": sorted(grants, key=str),
        "users": sorted(users),
        "members": sorted(members),
        "revoked": sorted(revoked),
        "descriptions": sorted(descriptions),
    }


async def roles_by_name(app: FastAPI) -> dict[str, tuple[uuid.UUID, frozenset[str]]]:
    async with app.state.sessionmaker() as db:
        rows = (
            await db.exec(
                select(Role.name, Role.id, Permission.name)
                .join(RolePermission, col(RolePermission.role_id) == Role.id, isouter=True)
                .join(Permission, col(Permission.id) == RolePermission.permission_id, isouter=True)
            )
        ).all()
    found: dict[str, tuple[uuid.UUID, set[str]]] = {}
    for role, role_id, permission in rows:
        found.setdefault(role, (role_id, set()))[1].update({permission} if permission else ())
    return {name: (role_id, frozenset(perms)) for name, (role_id, perms) in found.items()}


async def active_admins(app: FastAPI) -> list[str]:
    async with app.state.sessionmaker() as db:
        return list(
            (
                await db.exec(
                    select(User.email)
                    .join(UserRole, col(UserRole.user_id) == User.id)
                    .join(Role, col(Role.id) == UserRole.role_id)
                    .where(Role.name == "admin", col(User.is_active).is_(True))
                )
            ).all()
        )


# --- the partial admins ------------------------------------------------------------------------


@dataclass
class Walk:
    app: FastAPI
    http: AsyncClient
    me: User
    own_role: str
    held: frozenset[str]
    root: User
    bob: User
    n: int
    refusals: int = 0

    async def refused(self, kind: str, method: str, url: str, body: object = None) -> None:
        """The attempt is refused and changes nothing."""
        before = await snapshot(self.app)
        response = await self.http.request(method, url, json=body)
        route_permission = ROUTE_PERMISSION[kind]
        code = REFUSED if route_permission in self.held else "permission_denied"
        why = (sorted(self.held), method, url, body, response.text)
        assert response.status_code == 403, why
        assert response.json()["code"] == code, why
        assert await snapshot(self.app) == before, why
        self.refusals += 1

    async def allowed(self, kind: str, method: str, url: str, body: object = None) -> Response:
        """Within what the actor holds, the same request works (when the route lets it in)."""
        response = await self.http.request(method, url, json=body)
        if ROUTE_PERMISSION[kind] in self.held:
            assert response.status_code < 300, (sorted(self.held), method, url, response.text)
        else:
            assert response.json()["code"] == "permission_denied", response.text
        return response

    async def user_roles(self, user: User) -> list[str]:
        async with self.app.state.sessionmaker() as db:
            return list(
                (
                    await db.exec(
                        select(Role.name)
                        .join(UserRole, col(UserRole.role_id) == Role.id)
                        .where(UserRole.user_id == user.id)
                    )
                ).all()
            )


def partial_sets(permissions: frozenset[str]) -> list[frozenset[str]]:
    """Each permission alone, and every permission but one."""
    ordered = sorted(permissions)
    return [frozenset({p}) for p in ordered] + [permissions - {p} for p in ordered]


@pytest.fixture
async def cast(app: FastAPI) -> AsyncIterator[tuple[User, User]]:
    """The admin everyone would like to be, and a plain user to grant things to."""
    root = await create_user(app, "root@example.com")
    await give_roles(app, root, "admin")
    bob = await create_user(app, "bob@example.com")
    await give_roles(app, bob)
    # One role per permission: every grantable role, not only the seeded ones.
    for permission in sorted(await all_permissions(app)):
        await add_role(app, f"only-{permission.replace(':', '-')}", frozenset({permission}))
    yield root, bob


async def test_a_partial_admin_cannot_grant_or_touch_beyond_what_it_holds(
    app: FastAPI, cast: tuple[User, User]
) -> None:
    root, _bob = cast
    everything = await all_permissions(app)
    async with browser(app, "root@example.com"):
        pass  # root has a live session the attacker might revoke
    for n, held in enumerate(partial_sets(everything)):
        bob = await create_user(app, f"bob{n}@example.com")
        await give_roles(app, bob)
        await add_role(app, f"partial-{n}", held)
        me = await create_user(app, f"partial{n}@example.com")
        await give_roles(app, me, f"partial-{n}")
        async with browser(app, f"bob{n}@example.com"):
            pass
        async with browser(app, f"partial{n}@example.com") as http:
            walk = Walk(app, http, me, f"partial-{n}", held, root, bob, n)
            await walk_roles(walk, everything)
            await walk_assignments(walk)
            await walk_admin_account(walk)
            await walk_what_it_holds(walk)
        assert walk.refusals, sorted(held)


async def walk_roles(walk: Walk, everything: frozenset[str]) -> None:
    roles = await roles_by_name(walk.app)
    for permission in sorted(everything - walk.held):
        for name in (walk.own_role, "user"):
            role_id, current = roles[name]
            body: dict[str, object] = {"permissions": sorted(current | {permission})}
            await walk.refused("role", "PATCH", f"{ADMIN}/roles/{role_id}", body)
        body = {"name": "escalated", "permissions": [permission]}
        await walk.refused("role", "POST", f"{ADMIN}/roles", body)
        # Mixed with what it holds, still refused: the whole set must be held.
        body = {"name": "escalated", "permissions": sorted(walk.held | {permission})}
        await walk.refused("role", "POST", f"{ADMIN}/roles", body)
    # The admin role and roles it does not fully hold: not even their description.
    for name, (role_id, permissions) in roles.items():
        if not permissions <= walk.held or name == "admin":
            await walk.refused("role", "PATCH", f"{ADMIN}/roles/{role_id}", {"description": "x"})
            body = {"permissions": sorted(permissions & walk.held)}
            await walk.refused("role", "PATCH", f"{ADMIN}/roles/{role_id}", body)


async def walk_assignments(walk: Walk) -> None:
    roles = await roles_by_name(walk.app)
    for name, (_role_id, permissions) in sorted(roles.items()):
        if permissions <= walk.held:
            continue
        for target in (walk.me, walk.bob):
            body = {"roles": sorted({*await walk.user_roles(target), name})}
            await walk.refused("user", "PATCH", f"{ADMIN}/users/{target.id}", body)


async def walk_admin_account(walk: Walk) -> None:
    url = f"{ADMIN}/users/{walk.root.id}"
    bodies: list[dict[str, object]] = [
        {"is_active": False},
        {"roles": ["user"]},
        {"is_verified": False},
        {"roles": []},
    ]
    for body in bodies:
        await walk.refused("user", "PATCH", url, body)
    await walk.refused("user", "DELETE", url)
    await walk.refused("sessions", "DELETE", f"{url}/sessions")


async def walk_what_it_holds(walk: Walk) -> None:
    """The boundary is exact: granting and acting within the held set works."""
    roles = await roles_by_name(walk.app)
    created = await walk.allowed(
        "role",
        "POST",
        f"{ADMIN}/roles",
        {"name": f"within-{walk.n}", "permissions": sorted(walk.held)},
    )
    if created.status_code == 201:
        assert set(created.json()["permissions"]) == walk.held
    user_role_id, _ = roles["user"]
    await walk.allowed("role", "PATCH", f"{ADMIN}/roles/{user_role_id}", {"description": "plain"})
    for permission in sorted(walk.held):
        role_id, _ = roles[f"only-{permission.replace(':', '-')}"]
        await walk.allowed("role", "PATCH", f"{ADMIN}/roles/{role_id}", {"description": "mine"})
        bob_url = f"{ADMIN}/users/{walk.bob.id}"
        await walk.allowed(
            "user", "PATCH", bob_url, {"roles": ["user", f"only-{permission.replace(':', '-')}"]}
        )
        await walk.allowed("user", "PATCH", bob_url, {"roles": ["user"]})
    await walk.allowed("sessions", "DELETE", f"{ADMIN}/users/{walk.bob.id}/sessions")
    await walk.allowed("user", "PATCH", f"{ADMIN}/users/{walk.bob.id}", {"is_active": False})
    await walk.allowed("user", "DELETE", f"{ADMIN}/users/{walk.bob.id}")


async def test_a_user_manager_cannot_make_itself_admin_and_remove_the_admin(
    app: FastAPI, cast: tuple[User, User]
) -> None:
    """The reported chain: users:write set its own roles to admin, granted admin to another
    account, then deactivated and deleted the original admin."""
    root, bob = cast
    await add_role(app, "user-manager", frozenset({"users:read", "users:write"}))
    manager = await create_user(app, "manager@example.com")
    await give_roles(app, manager, "user-manager")
    before = await snapshot(app)
    async with browser(app, "manager@example.com") as http:
        steps = [
            (f"{ADMIN}/users/{manager.id}", {"roles": ["user-manager", "user", "admin"]}),
            (f"{ADMIN}/users/{bob.id}", {"roles": ["user", "admin"]}),
            (f"{ADMIN}/users/{root.id}", {"is_active": False}),
        ]
        for url, body in steps:
            response = await http.patch(url, json=body)
            assert response.status_code == 403, response.text
            assert response.json()["code"] == REFUSED
        response = await http.delete(f"{ADMIN}/users/{root.id}")
        assert response.status_code == 403 and response.json()["code"] == REFUSED
    assert await snapshot(app) == before


async def test_a_role_writer_cannot_give_the_default_role_user_management(
    app: FastAPI, cast: tuple[User, User]
) -> None:
    """The reported chain: roles:write added users:write to its own role and to `user`."""
    await add_role(app, "role-manager", frozenset({"roles:read", "roles:write"}))
    manager = await create_user(app, "roles@example.com")
    await give_roles(app, manager, "role-manager")
    roles = await roles_by_name(app)
    before = await snapshot(app)
    async with browser(app, "roles@example.com") as http:
        for name in ("role-manager", "user"):
            role_id, current = roles[name]
            body: dict[str, object] = {
                "permissions": sorted(current | {"users:read", "users:write"})
            }
            response = await http.patch(f"{ADMIN}/roles/{role_id}", json=body)
            assert response.status_code == 403 and response.json()["code"] == REFUSED
        body = {"name": "backdoor", "permissions": ["users:write"]}
        response = await http.post(f"{ADMIN}/roles", json=body)
        assert response.status_code == 403 and response.json()["code"] == REFUSED
    assert await snapshot(app) == before


async def test_the_admin_acting_on_the_admin_role_and_admins_still_works(
    app: FastAPI, cast: tuple[User, User]
) -> None:
    """Holding every permission is enough: the rule refuses nobody who holds it all."""
    second = await create_user(app, "second@example.com")
    await give_roles(app, second, "admin")
    roles = await roles_by_name(app)
    admin_id, _ = roles["admin"]
    async with browser(app, "root@example.com") as http:
        response = await http.patch(f"{ADMIN}/roles/{admin_id}", json={"description": "All"})
        assert response.status_code == 200, response.text
        response = await http.patch(f"{ADMIN}/users/{second.id}", json={"is_active": False})
        assert response.status_code == 200, response.text
        assert (await http.delete(f"{ADMIN}/users/{second.id}/sessions")).status_code == 204
        assert (await http.delete(f"{ADMIN}/users/{second.id}")).status_code == 204


# --- the last-admin guard under concurrency ----------------------------------------------------


async def make_admins(app: FastAPI, count: int) -> list[User]:
    admins = []
    for n in range(count):
        user = await create_user(app, f"admin{n}@example.com")
        await give_roles(app, user, "admin")
        admins.append(user)
    return admins


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(app: FastAPI) -> None:
    for action in ("demote", "deactivate", "delete"):
        first, second = await make_admins(app, 2)
        async with (
            browser(app, "admin0@example.com") as one,
            browser(app, "admin1@example.com") as two,
        ):
            responses = await asyncio.gather(
                act(one, action, second), act(two, action, first), return_exceptions=False
            )
        assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
        assert sorted(r.status_code for r in responses)[0] < 300  # one of them did it
        assert len(await active_admins(app)) == 1, action
        async with app.state.sessionmaker() as db:
            for user in (first, second):
                found = await db.get(User, user.id)
                if found is not None:
                    await db.delete(found)
            await db.commit()


@pytest.mark.parametrize("count", [10])
async def test_a_burst_of_admins_removing_each_other_always_leaves_an_active_admin(
    app: FastAPI, count: int
) -> None:
    admins = await make_admins(app, count)
    actions = ("demote", "deactivate", "delete")
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(browser(app, f"admin{n}@example.com"))
            for n in range(count)
        ]
        # Each admin removes the next one, and a second wave removes the one after that.
        burst = [
            act(clients[n], actions[(n + wave) % 3], admins[(n + 1 + wave) % count])
            for wave in range(2)
            for n in range(count)
        ]
        responses = await asyncio.gather(*burst)
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    codes = {r.json()["code"] for r in responses if r.status_code >= 400}
    assert codes <= {"last_admin", REFUSED, "not_found", "session_revoked", "not_authenticated"}
    assert len(await active_admins(app)) >= 1


async def act(http: AsyncClient, action: str, target: User) -> Response:
    url = f"{ADMIN}/users/{target.id}"
    if action == "demote":
        return await http.patch(url, json={"roles": ["user"]})
    if action == "deactivate":
        return await http.patch(url, json={"is_active": False})
    return await http.delete(url)
