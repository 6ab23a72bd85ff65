"""Device sessions: creation at login, refresh rotation with reuse detection, revocation."""

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.security import sha256_hex
from app.core.tokens import TokenError
from app.db.principals import Principal, PrincipalReader
from app.models import AuditEventType, DeviceSession, User
from app.models.base import utcnow
from app.services import audit
from app.services.context import ClientInfo, Context
from app.services.errors import (
    DeviceMismatch,
    InvalidToken,
    NotFound,
    RefreshTokenReused,
    SessionEnded,
    SessionIdle,
)
from app.utils.user_agent import parse_device


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    session_id: uuid.UUID
    access_token: str
    refresh_token: str
    csrf_token: str


class SessionService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx

    async def start(self, user: User, client: ClientInfo) -> tuple[DeviceSession, IssuedTokens]:
        """Open a session for a user who just proved who they are. The caller commits."""
        now = utcnow()
        device = parse_device(client.user_agent)
        session = DeviceSession(
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=self.ctx.settings.refresh_token_ttl_seconds),
            ip_address=client.ip,
            last_ip_address=client.ip,
            user_agent=client.user_agent[:512],
            device_label=device.label,
            fingerprint=device.fingerprint,
            refresh_token_hash="",
            refresh_issued_at=now,
        )
        refresh = self._refresh_token(session, user.id)
        session.refresh_token_hash = sha256_hex(refresh)
        self.db.add(session)
        return session, self._issue(session, user.id, refresh, now)

    async def is_known_device(self, user_id: uuid.UUID, fingerprint: str) -> bool:
        result = await self.db.exec(
            select(DeviceSession.id)
            .where(DeviceSession.user_id == user_id, DeviceSession.fingerprint == fingerprint)
            .limit(1)
        )
        return result.first() is not None

    async def ensure_live(self, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Raise unless the session can still be used (not revoked, expired or idle)."""
        await self._usable_session(session_id, user_id)

    async def rotate(self, refresh_token: str, client: ClientInfo) -> IssuedTokens:
        """Trade a refresh token for its successor.

        The current token rotates with a compare-and-swap on the generation, so two workers
        can never both rotate it. Its predecessor, presented again within the grace window
        (concurrent tabs, a retried request), gets the same successor back. Anything older,
        or the predecessor after the window, means the token leaked: the session dies.
        """
        try:
            claims = self.ctx.tokens.decode(refresh_token, "refresh")
        except TokenError as exc:
            raise InvalidToken("Invalid refresh token") from exc
        session = await self._usable_session(claims.session_id, claims.user_id)
        await self._check_device(session, client)

        now = utcnow()
        presented = sha256_hex(refresh_token)
        previous_ip = session.last_ip_address
        if claims.generation == session.refresh_generation and _same(
            presented, session.refresh_token_hash
        ):
            successor = self._refresh_token(session, session.user_id, claims.generation + 1, now)
            swapped = await self.db.exec(
                update(DeviceSession)
                .where(
                    col(DeviceSession.id) == session.id,
                    col(DeviceSession.refresh_generation) == claims.generation,
                    col(DeviceSession.revoked_at).is_(None),
                )
                .values(
                    refresh_generation=claims.generation + 1,
                    refresh_token_hash=sha256_hex(successor),
                    previous_refresh_token_hash=presented,
                    refresh_issued_at=now,
                    last_seen_at=now,
                    last_ip_address=client.ip,
                )
            )
            if swapped.rowcount == 1:
                self._note_ip_change(session.user_id, previous_ip, client)
                await self.db.commit()
                return self._issue(session, session.user_id, successor, now)
            # Another request rotated it first: judge the token against the new state.
            await self.db.rollback()
            session = await self._usable_session(claims.session_id, claims.user_id)

        in_grace = now - session.refresh_issued_at <= timedelta(
            seconds=self.ctx.settings.refresh_grace_seconds
        )
        if (
            claims.generation == session.refresh_generation - 1
            and session.previous_refresh_token_hash is not None
            and _same(presented, session.previous_refresh_token_hash)
            and in_grace
        ):
            successor = self._refresh_token(session, session.user_id)
            return self._issue(session, session.user_id, successor, now)

        self.revoke(session, "refresh_token_reuse", client)
        audit.record(self.db, AuditEventType.REFRESH_REUSE_DETECTED, client, session.user_id)
        await self.db.commit()
        raise RefreshTokenReused()

    def revoke(self, session: DeviceSession, reason: str, client: ClientInfo | None = None) -> None:
        """Revoke one session. The caller commits."""
        if session.revoked_at is None:
            session.revoked_at = utcnow()
            session.revoked_reason = reason
            self.db.add(session)
            audit.record(
                self.db, AuditEventType.SESSION_REVOKED, client, session.user_id, detail=reason
            )

    async def list_active(self, user_id: uuid.UUID) -> list[DeviceSession]:
        result = await self.db.exec(
            select(DeviceSession)
            .where(
                DeviceSession.user_id == user_id,
                col(DeviceSession.revoked_at).is_(None),
                DeviceSession.expires_at > utcnow(),
            )
            .order_by(col(DeviceSession.last_seen_at).desc())
        )
        return list(result.all())

    async def revoke_own(
        self, user_id: uuid.UUID, session_id: uuid.UUID, client: ClientInfo
    ) -> None:
        """Another user's session id answers exactly like an unknown one: 404."""
        session = await self.db.get(DeviceSession, session_id)
        if session is None or session.user_id != user_id or session.revoked_at is not None:
            raise NotFound("Session not found")
        self.revoke(session, "revoked_by_user", client)
        await self.db.commit()

    async def revoke_all(
        self,
        user_id: uuid.UUID,
        reason: str,
        client: ClientInfo | None,
        keep: uuid.UUID | None = None,
    ) -> int:
        """Revoke every live session of a user except `keep`. The caller commits."""
        conditions = [DeviceSession.user_id == user_id, col(DeviceSession.revoked_at).is_(None)]
        if keep is not None:
            conditions.append(DeviceSession.id != keep)
        result = await self.db.exec(
            update(DeviceSession)
            .where(*conditions)
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        if result.rowcount:
            audit.record(
                self.db,
                AuditEventType.SESSION_REVOKED,
                client,
                user_id,
                detail=f"{result.rowcount} session(s): {reason}",
            )
        return result.rowcount

    def _issue(
        self, session: DeviceSession, user_id: uuid.UUID, refresh: str, now: datetime
    ) -> IssuedTokens:
        return IssuedTokens(
            session_id=session.id,
            access_token=self.ctx.tokens.access_token(user_id, session.id, now),
            refresh_token=refresh,
            csrf_token=self.ctx.csrf.issue(str(session.id)),
        )

    def _refresh_token(
        self,
        session: DeviceSession,
        user_id: uuid.UUID,
        generation: int | None = None,
        issued_at: datetime | None = None,
    ) -> str:
        return self.ctx.tokens.refresh_token(
            user_id,
            session.id,
            session.refresh_generation if generation is None else generation,
            session.refresh_issued_at if issued_at is None else issued_at,
            session.expires_at,
        )

    async def _usable_session(self, session_id: uuid.UUID, user_id: uuid.UUID) -> DeviceSession:
        session = (
            await self.db.exec(
                select(DeviceSession)
                .where(DeviceSession.id == session_id, DeviceSession.user_id == user_id)
                .execution_options(populate_existing=True)
            )
        ).first()
        now = utcnow()
        if session is None or session.revoked_at is not None or session.expires_at <= now:
            raise SessionEnded()
        idle = timedelta(seconds=self.ctx.settings.session_idle_timeout_seconds)
        if now - session.last_seen_at > idle:
            self.revoke(session, "idle_timeout")
            await self.db.commit()
            raise SessionIdle()
        user = await self.db.get(User, user_id)
        if user is None or not user.is_active:
            raise SessionEnded()
        return session

    async def _check_device(self, session: DeviceSession, client: ClientInfo) -> None:
        binding = self.ctx.settings.session_binding
        fingerprint = parse_device(client.user_agent).fingerprint
        if binding == "off" or _same(fingerprint, session.fingerprint):
            return
        audit.record(
            self.db,
            AuditEventType.SESSION_FINGERPRINT_MISMATCH,
            client,
            session.user_id,
            detail=f"session {session.id} ({session.device_label})",
        )
        if binding == "warn":
            await self.db.commit()
            return
        self.revoke(session, "device_mismatch", client)
        await self.db.commit()
        raise DeviceMismatch()

    def _note_ip_change(
        self, user_id: uuid.UUID, previous_ip: str | None, client: ClientInfo
    ) -> None:
        """IP changes are normal on mobile networks: recorded and audited, never refused."""
        if client.ip and previous_ip and client.ip != previous_ip:
            audit.record(
                self.db,
                AuditEventType.SESSION_IP_CHANGED,
                client,
                user_id,
                detail=f"{previous_ip} -> {client.ip}",
            )


async def authenticate(ctx: Context, principals: PrincipalReader, access_token: str) -> Principal:
    """The caller behind an access token, if its session is still live right now."""
    try:
        claims = ctx.tokens.decode(access_token, "access")
    except TokenError as exc:
        raise InvalidToken("Invalid or expired access token") from exc
    principal = await principals.read(claims.session_id, claims.user_id, utcnow())
    if principal is None:
        raise SessionEnded()
    return principal


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
