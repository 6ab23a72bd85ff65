"""The lists an admin UI pages through: users, the audit log, the permission catalogue.

Lists that grow are keyset-paginated: `cursor` in, `next_cursor` out.
"""

from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.clock import now
from app.core.permissions import PermissionName, RoleName
from app.models import AuditEvent, AuditEventType, User
from app.schemas.user import UserRead
from tests.helpers import browser, create_user, give_role, login, walk_pages

USERS = "/api/v1/admin/users"
AUDIT = "/api/v1/admin/audit-events"
ROOT = "root@example.com"


@pytest.fixture
async def root(app: FastAPI) -> User:
    user = await create_user(app, ROOT)
    await give_role(app, user, RoleName.ADMIN)
    return user


@pytest.fixture
async def admin(client: AsyncClient, root: User) -> AsyncClient:
    """The shared `client`, signed in as the admin."""
    response = await login(client, ROOT)
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def emails(items: list[dict[str, object]]) -> list[str]:
    return [str(item["email"]) for item in items]


# --- users ---------------------------------------------------------------------------------


async def test_users_come_in_sign_up_order_one_page_at_a_time(
    app: FastAPI, admin: AsyncClient
) -> None:
    for n in range(4):
        await create_user(app, f"user{n}@example.com")

    first = (await admin.get(USERS, params={"limit": 2})).json()
    assert emails(first["items"]) == [ROOT, "user0@example.com"]
    assert set(first["items"][0]) == set(UserRead.model_fields)
    assert first["items"][0]["roles"] == ["admin", "user"]
    second = (await admin.get(USERS, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert emails(second["items"]) == ["user1@example.com", "user2@example.com"]
    last = (await admin.get(USERS, params={"limit": 2, "cursor": second["next_cursor"]})).json()
    assert emails(last["items"]) == ["user3@example.com"]
    assert last["next_cursor"] is None


async def test_a_full_last_page_says_there_is_nothing_after_it(admin: AsyncClient) -> None:
    page = (await admin.get(USERS, params={"limit": 1})).json()
    assert emails(page["items"]) == [ROOT]
    assert page["next_cursor"] is None


async def test_users_signing_up_during_a_walk_neither_repeat_nor_shift_a_page(
    app: FastAPI, admin: AsyncClient
) -> None:
    for n in range(5):
        await create_user(app, f"early{n}@example.com")
    seen: list[str] = []
    cursor: str | None = None
    for joined in range(10):
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await admin.get(USERS, params=params)).json()
        seen += emails(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        await create_user(app, f"late{joined}@example.com")
    assert len(seen) == len(set(seen))
    assert {ROOT, *(f"early{n}@example.com" for n in range(5))} <= set(seen)


async def test_users_created_in_the_same_instant_are_each_listed_once(
    app: FastAPI, admin: AsyncClient, root: User
) -> None:
    instant = root.created_at + timedelta(seconds=1)
    for n in range(5):
        await create_user(app, f"twin{n}@example.com", created_at=instant)
    listed = emails(await walk_pages(admin, USERS, limit=2))
    assert sorted(listed) == sorted([ROOT, *(f"twin{n}@example.com" for n in range(5))])
    assert len(listed) == 6


async def test_users_filter_by_email_prefix_case_insensitively(
    app: FastAPI, admin: AsyncClient
) -> None:
    for email in ("ann@example.com", "anna@example.com", "bob@example.com", "an_x@example.com"):
        await create_user(app, email)
    found = emails(await walk_pages(admin, USERS, email="ANN"))
    assert found == ["ann@example.com", "anna@example.com"]
    # LIKE wildcards are plain characters here
    assert emails(await walk_pages(admin, USERS, email="an_")) == ["an_x@example.com"]
    assert emails(await walk_pages(admin, USERS, email="a%")) == []


async def test_users_filter_by_active_verified_and_role(app: FastAPI, admin: AsyncClient) -> None:
    await create_user(app, "off@example.com", is_active=False)
    await create_user(app, "new@example.com", is_verified=False)
    assert emails(await walk_pages(admin, USERS, is_active=False)) == ["off@example.com"]
    assert emails(await walk_pages(admin, USERS, is_verified=False)) == ["new@example.com"]
    assert emails(await walk_pages(admin, USERS, role=RoleName.ADMIN)) == [ROOT]
    assert len(await walk_pages(admin, USERS, role=RoleName.USER)) == 3
    assert await walk_pages(admin, USERS, role="nobody") == []


async def test_filters_and_cursor_combine(app: FastAPI, admin: AsyncClient) -> None:
    for n in range(5):
        await create_user(app, f"team{n}@example.com", is_active=n % 2 == 0)
    found = emails(await walk_pages(admin, USERS, email="team", is_active=True, limit=1))
    assert found == ["team0@example.com", "team2@example.com", "team4@example.com"]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",  # outside the alphabet
        "bm90IGEgY3Vyc29y",  # base64 of text without a position
        "MjAyNi0wMS0wMVQwMDowMDowMHx4",  # a date, then no uuid
        "MjAyNi0wMS0wMVQwMDowMDowMHwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA",  # naive
        "_w",  # bytes that are not UTF-8
        "A" * 129,
    ],
)
async def test_a_forged_cursor_is_a_400_or_422_that_names_the_problem(
    admin: AsyncClient, cursor: str
) -> None:
    for path in (USERS, AUDIT):
        response = await admin.get(path, params={"cursor": cursor})
        assert response.status_code in (400, 422), (path, cursor, response.text)
        code = response.json()["code"]
        assert code == ("invalid_cursor" if response.status_code == 400 else "validation_failed")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "9" * 40},
        {"email": ""},
        {"email": "a\x00b"},
        {"email": "a" * 321},
        {"is_active": "maybe"},
        {"role": "Not A Role!"},
    ],
)
async def test_bad_user_list_parameters_are_refused(
    admin: AsyncClient, params: dict[str, str | int]
) -> None:
    response = await admin.get(USERS, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"


# --- the audit log ---------------------------------------------------------------------------


async def add_events(db: AsyncSession, *events: AuditEvent) -> None:
    db.add_all(events)
    await db.commit()


async def test_the_audit_log_is_newest_first_and_pages_to_the_end(
    admin: AsyncClient, db: AsyncSession, root: User
) -> None:
    start = now()
    await add_events(
        db,
        *(
            AuditEvent(
                type=AuditEventType.USER_UPDATED,
                detail=f"#{n}",
                created_at=start + timedelta(minutes=n),
            )
            for n in range(5)
        ),
    )
    events = await walk_pages(admin, AUDIT, type=AuditEventType.USER_UPDATED, limit=2)
    assert [event["detail"] for event in events] == ["#4", "#3", "#2", "#1", "#0"]
    assert set(events[0]) == {
        "id",
        "user_id",
        "type",
        "ip_address",
        "user_agent",
        "detail",
        "created_at",
    }


async def test_the_audit_log_filters_by_user_type_and_time_range(
    app: FastAPI, admin: AsyncClient, db: AsyncSession, root: User
) -> None:
    other = await create_user(app, "other@example.com")
    start = now() + timedelta(days=1)
    at = [start + timedelta(hours=n) for n in range(4)]
    await add_events(
        db,
        AuditEvent(user_id=other.id, type=AuditEventType.PASSWORD_CHANGED, created_at=at[0]),
        AuditEvent(user_id=other.id, type=AuditEventType.EMAIL_CHANGED, created_at=at[1]),
        AuditEvent(user_id=root.id, type=AuditEventType.PASSWORD_CHANGED, created_at=at[2]),
        AuditEvent(user_id=other.id, type=AuditEventType.PASSWORD_CHANGED, created_at=at[3]),
    )

    def moments(events: list[dict[str, object]]) -> list[object]:
        return [event["created_at"] for event in events]

    mine = await walk_pages(admin, AUDIT, user_id=str(other.id), type="password_changed")
    assert len(mine) == 2 and all(e["user_id"] == str(other.id) for e in mine)
    # since inclusive, until exclusive: adjacent ranges never show an event twice
    early = await walk_pages(admin, AUDIT, since=at[0].isoformat(), until=at[2].isoformat())
    late = await walk_pages(admin, AUDIT, since=at[2].isoformat())
    assert len(early) == 2 and len(late) == 2
    assert not set(moments(early)) & set(moments(late))


@pytest.mark.parametrize(
    "params",
    [
        {"type": "no_such_event"},
        {"user_id": "not-a-uuid"},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no time zone: ambiguous
        {"until": "9" * 40},
    ],
)
async def test_bad_audit_log_parameters_are_refused(
    admin: AsyncClient, params: dict[str, str]
) -> None:
    response = await admin.get(AUDIT, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"


async def test_the_audit_log_needs_audit_read_and_nothing_less(
    app: FastAPI, admin: AsyncClient
) -> None:
    everything_else = [p for p in PermissionName if p is not PermissionName.AUDIT_READ]
    created = await admin.post(
        "/api/v1/admin/roles",
        json={"name": "almost", "permissions": everything_else},
    )
    assert created.status_code == 201, created.text
    almost = await create_user(app, "almost@example.com")
    await give_role(app, almost, "almost")
    async with browser(app, "almost@example.com") as almost_client:
        response = await almost_client.get(AUDIT)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


# --- the catalogue ---------------------------------------------------------------------------


async def test_the_permission_catalogue_lists_every_declared_permission(
    admin: AsyncClient,
) -> None:
    response = await admin.get("/api/v1/admin/permissions")
    assert response.status_code == 200
    assert response.json() == [
        {"name": p.value, "description": p.description} for p in sorted(PermissionName, key=str)
    ]


async def test_a_cursor_from_one_list_does_not_break_another(
    admin: AsyncClient, db: AsyncSession
) -> None:
    await add_events(db, *(AuditEvent(type=AuditEventType.ROLE_CREATED) for _ in range(3)))
    audit_cursor = (await admin.get(AUDIT, params={"limit": 1})).json()["next_cursor"]
    response = await admin.get(USERS, params={"cursor": audit_cursor})
    assert response.status_code == 200
    assert isinstance(response.json()["items"], list)
