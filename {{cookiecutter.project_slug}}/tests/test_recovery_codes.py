"""Recovery codes: the way back in when the phone is lost (SPEC §8).

Ten of them, shown once, each good for one sign-in, stored only as hashes.
"""

import asyncio
import math
import re

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.models import AuditEvent, RecoveryCode, User
from app.services.mfa import RECOVERY_ALPHABET
from tests.authenticator import SoftAuthenticator
from tests.helpers import (
    ALICE,
    PASSWORD,
    Clock,
    Outbox,
    TotpEnrolment,
    enable_totp,
    make_settings,
    second_step,
    start_login,
)

CODE_FORMAT = re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$")


@pytest.fixture
def settings() -> Settings:
    """Room for the sign-ins a test makes from one address: the IP limit is not the subject."""
    return make_settings(rate_limit_login_ip="1000/minute")


@pytest.fixture
async def enrolled(signed_in: AsyncClient, clock: Clock) -> TotpEnrolment:
    return await enable_totp(signed_in, clock)


@pytest.fixture
def codes(enrolled: TotpEnrolment) -> list[str]:
    return enrolled["recovery_codes"]


async def codes_left(client: AsyncClient) -> int:
    status = await client.get("/api/v1/auth/mfa")
    assert status.status_code == 200, status.text
    left: int = status.json()["recovery_codes_left"]
    return left


async def sign_in_with(client: AsyncClient, code: str) -> int:
    return (await second_step(client, await start_login(client), code)).status_code


def test_ten_distinct_codes_of_at_least_50_bits(codes: list[str]) -> None:
    assert len(codes) == 10
    assert len(set(codes)) == 10
    alphabet = set(RECOVERY_ALPHABET)
    for code in codes:
        assert CODE_FORMAT.match(code), code
        letters = code.replace("-", "")
        assert set(letters) <= alphabet
        assert len(letters) * math.log2(len(alphabet)) >= 50


async def test_a_recovery_code_completes_a_sign_in(client: AsyncClient, codes: list[str]) -> None:
    client.cookies.clear()
    assert await sign_in_with(client, codes[0]) == 200
    assert (await client.get("/api/v1/users/me")).status_code == 200


async def test_dashes_spaces_and_case_do_not_matter(client: AsyncClient, codes: list[str]) -> None:
    typed = codes[0].upper().replace("-", " ")
    assert await sign_in_with(client, typed) == 200


async def test_a_recovery_code_is_good_once(client: AsyncClient, codes: list[str]) -> None:
    assert await sign_in_with(client, codes[0]) == 200
    response = await second_step(client, await start_login(client), codes[0])
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa_code"


async def test_the_same_code_sent_twice_at_once_signs_in_once(
    client: AsyncClient, codes: list[str]
) -> None:
    tokens = [await start_login(client) for _ in range(2)]
    answers = await asyncio.gather(*(second_step(client, token, codes[0]) for token in tokens))
    assert sorted(a.status_code for a in answers) == [200, 401]


async def test_recovery_codes_left_counts_down(client: AsyncClient, codes: list[str]) -> None:
    assert await codes_left(client) == 10
    await sign_in_with(client, codes[3])
    assert await codes_left(client) == 9
    await sign_in_with(client, codes[7])
    assert await codes_left(client) == 8


async def test_a_made_up_code_is_refused(client: AsyncClient, codes: list[str]) -> None:
    response = await second_step(client, await start_login(client), "abcd-efgh-jkmn")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa_code"


async def test_regenerating_kills_the_old_set(
    client: AsyncClient, signed_in: AsyncClient, codes: list[str]
) -> None:
    response = await signed_in.post("/api/v1/auth/mfa/recovery-codes")
    assert response.status_code == 200, response.text
    fresh = response.json()["recovery_codes"]
    assert len(fresh) == 10
    assert not set(fresh) & set(codes)
    assert await codes_left(signed_in) == 10
    assert await sign_in_with(client, codes[0]) == 401
    assert await sign_in_with(client, fresh[0]) == 200


async def test_codes_cannot_be_made_without_a_factor(signed_in: AsyncClient) -> None:
    response = await signed_in.post("/api/v1/auth/mfa/recovery-codes")
    assert response.status_code == 409
    assert response.json()["code"] == "mfa_not_enabled"
    assert await codes_left(signed_in) == 0


async def test_turning_totp_off_without_a_passkey_removes_the_codes(
    signed_in: AsyncClient, codes: list[str], alice: User, db: AsyncSession
) -> None:
    assert (await signed_in.delete("/api/v1/auth/mfa/totp")).status_code == 204
    assert await codes_left(signed_in) == 0
    rows = (await db.exec(select(RecoveryCode).where(RecoveryCode.user_id == alice.id))).all()
    assert rows == []


async def test_turning_totp_off_keeps_the_codes_while_a_passkey_remains(
    signed_in: AsyncClient, codes: list[str]
) -> None:
    authenticator = SoftAuthenticator("https://frontend.example")
    options = await signed_in.post("/api/v1/auth/passkeys/register/options")
    credential = authenticator.create(options.json())
    body = {"credential": credential, "name": "Laptop"}
    assert (await signed_in.post("/api/v1/auth/passkeys/register", json=body)).status_code == 201
    assert (await signed_in.delete("/api/v1/auth/mfa/totp")).status_code == 204
    assert await codes_left(signed_in) == 10


async def test_using_a_code_at_sign_in_is_audited_and_told_to_the_owner(
    app: FastAPI,
    client: AsyncClient,
    codes: list[str],
    alice: User,
    db: AsyncSession,
    outbox: Outbox,
) -> None:
    await sign_in_with(client, codes[0])
    await app.state.context.mailer.wait_idle()
    [notice] = [
        m for m in outbox.to(ALICE, "Your sign-in methods changed") if "recovery code" in m.text
    ]
    assert "9 remain" in notice.text
    types = (await db.exec(select(AuditEvent.type).where(AuditEvent.user_id == alice.id))).all()
    assert "recovery_code_used" in types
    detail = await db.exec(select(AuditEvent.detail).where(AuditEvent.type == "login_succeeded"))
    assert "password+recovery_code" in detail.all()


async def test_the_methods_stop_offering_recovery_codes_when_all_are_used(
    client: AsyncClient, codes: list[str]
) -> None:
    for code in codes:
        assert await sign_in_with(client, code) == 200
    response = await client.post("/api/v1/auth/login", json={"email": ALICE, "password": PASSWORD})
    assert response.json()["methods"] == ["totp"]


async def test_codes_are_stored_only_as_hashes(
    codes: list[str], alice: User, db: AsyncSession
) -> None:
    rows = (await db.exec(select(RecoveryCode).where(RecoveryCode.user_id == alice.id))).all()
    assert len(rows) == 10
    stored = " ".join(str(value) for row in rows for value in row.model_dump().values()).lower()
    for code in codes:
        assert code not in stored
        assert code.replace("-", "") not in stored
    assert len({row.code_hash for row in rows}) == 10
