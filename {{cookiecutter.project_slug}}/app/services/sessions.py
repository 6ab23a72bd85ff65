"""Device sessions: creation at login, refresh rotation with reuse detection, revocation."""

import hmac
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import metrics
from app.core.security import sha256_hex
from app.core.tokens import TokenClaims, TokenError
from app.db.principals import PrincipalReader
from app.db.session_statements import SessionStatements
from app.domain import IssuedTokens, Principal, RenderedJson, RevokeReason, SessionView
from app.models import AuditEventType, DeviceSession, User
from app.models.base import utcnow
from app.services import audit
from app.services.context import ClientInfo, Context
from app.services.errors import (
    DeviceMismatch,
    InvalidToken,
    NotFound,
    RefreshTokenReused,
    ServiceError,
    SessionEnded,
    SessionIdle,
)
from app.utils.user_agent import parse_device

# The columns of a `SessionView`, in its order.
SESSION_VIEW_COLUMNS = tuple(
    col(getattr(DeviceSession, name)) for name in SessionView.__dataclass_fields__
)


class Presented(Enum):
    """What a presented refresh token is, to its live session."""

    CURRENT = "current"
    WITHIN_GRACE = "within grace"
    REUSED = "reused"


class SessionService:
    def __init__(
        self, db: AsyncSession, ctx: Context, statements: SessionStatements | None = None
    ) -> None:
        """`statements` rotate the common case and render the session list in one statement
        each; without them (the CLI, other services) every refresh takes the ORM path."""
        self.db = db
        self.ctx = ctx
        self.statements = statements

    async def start(
        self, user: User, client: ClientInfo, method: str = "password"
    ) -> tuple[DeviceSession, IssuedTokens]:
        """Open a session for a user who just proved who they are (`method` says how, for the
        session list and the notices). The caller commits."""
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
            authenticated_at=now,
            auth_method=method,
        )
        refresh = self._refresh_token(session)
        session.refresh_token_hash = sha256_hex(refresh)
        self.db.add(session)
        return session, self._issue(session.user_id, session.id, refresh, now)

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

    async def rotate(
        self, refresh_token: str, claims: TokenClaims, client: ClientInfo
    ) -> IssuedTokens:
        """`_rotate`, counted by result (app/core/metrics.py)."""
        try:
            return await self._rotate(refresh_token, claims, client)
        except RefreshTokenReused:
            metrics.count_refresh("reused")
            raise
        except ServiceError:
            metrics.count_refresh("rejected")
            raise

    async def _rotate(
        self, refresh_token: str, claims: TokenClaims, client: ClientInfo
    ) -> IssuedTokens:
        """Trade a refresh token (decoded by the caller) for its successor.

        The current token rotates with a compare-and-swap on the generation, so two workers
        can never both rotate it. Its predecessor, presented again within the grace window
        (concurrent tabs, a retried request), gets the same successor back. Anything older,
        or the predecessor after the window, means the token leaked: the session dies.
        """
        presented = sha256_hex(refresh_token)
        now = utcnow()
        tokens = await self._rotate_current(claims, presented, client, now)
        if tokens is not None:
            metrics.count_refresh("rotated")
            return tokens
        session = await self._usable_session(claims.session_id, claims.user_id)
        await self._check_device(session, client)
        state = self._classify(session, claims, presented, now)
        if state is Presented.CURRENT:
            tokens = await self._advance(session, claims, presented, client, now)
            if tokens is not None:
                await self.db.commit()
                metrics.count_refresh("rotated")
                return tokens
            # Another request rotated it first: judge the token against the new state.
            await self.db.rollback()
            session = await self._usable_session(claims.session_id, claims.user_id)
            state = self._classify(session, claims, presented, now)
        if state is Presented.WITHIN_GRACE:  # the successor again: nothing to write
            metrics.count_refresh("grace")
            return self._issue(session.user_id, session.id, self._refresh_token(session), now)
        self.revoke(session, RevokeReason.REFRESH_TOKEN_REUSE, client)
        await audit.record_now(
            self.db, AuditEventType.REFRESH_REUSE_DETECTED, client, session.user_id
        )
        raise RefreshTokenReused()

    async def _rotate_current(
        self, claims: TokenClaims, presented: str, client: ClientInfo, now: datetime
    ) -> IssuedTokens | None:
        """The common case in one statement (app/db/session_statements.py): the current token
        of a live session, from its device and address. None leaves it to the ORM path."""
        if self.statements is None or claims.generation is None:
            return None
        settings = self.ctx.settings
        generation = claims.generation + 1
        # What `_refresh_token` makes from the row: the token's expiry is the session's.
        expires_at = datetime.fromtimestamp(claims.expires_at, UTC)
        successor = self.ctx.tokens.refresh_token(
            claims.user_id, claims.session_id, generation, now, expires_at
        )
        rotated = await self.statements.rotate_current(
            session_id=claims.session_id,
            user_id=claims.user_id,
            generation=claims.generation,
            presented=presented,
            successor=sha256_hex(successor),
            now=now,
            idle_since=now - timedelta(seconds=settings.session_idle_timeout_seconds),
            fingerprint=(
                None
                if settings.session_binding == "off"
                else parse_device(client.user_agent).fingerprint
            ),
            ip=client.ip,
        )
        if not rotated:
            return None
        return self._issue(claims.user_id, claims.session_id, successor, now)

    def _classify(
        self, session: DeviceSession, claims: TokenClaims, presented: str, now: datetime
    ) -> Presented:
        """Which refresh token of a live session this is: the current one, its predecessor
        within the grace window, or anything else (a reuse)."""
        if claims.generation == session.refresh_generation and _same(
            presented, session.refresh_token_hash
        ):
            return Presented.CURRENT
        grace = timedelta(seconds=self.ctx.settings.refresh_grace_seconds)
        if (
            claims.generation == session.refresh_generation - 1
            and session.previous_refresh_token_hash is not None
            and _same(presented, session.previous_refresh_token_hash)
            and now - session.refresh_issued_at <= grace
        ):
            return Presented.WITHIN_GRACE
        return Presented.REUSED

    async def _advance(
        self,
        session: DeviceSession,
        claims: TokenClaims,
        presented: str,
        client: ClientInfo,
        now: datetime,
    ) -> IssuedTokens | None:
        """Rotate the current token (compare-and-swap on its generation); None when a
        concurrent request rotated it first."""
        generation = session.refresh_generation + 1
        successor = self._refresh_token(session, generation, now)
        previous_ip = session.last_ip_address
        swapped = await self.db.exec(
            update(DeviceSession)
            .where(
                col(DeviceSession.id) == session.id,
                col(DeviceSession.refresh_generation) == claims.generation,
                col(DeviceSession.revoked_at).is_(None),
            )
            .values(
                refresh_generation=generation,
                refresh_token_hash=sha256_hex(successor),
                previous_refresh_token_hash=presented,
                refresh_issued_at=now,
                last_seen_at=now,
                last_ip_address=client.ip,
            )
        )
        if swapped.rowcount != 1:
            return None
        self._note_ip_change(session.user_id, previous_ip, client)
        return self._issue(session.user_id, session.id, successor, now)

    def revoke(
        self, session: DeviceSession, reason: RevokeReason, client: ClientInfo | None = None
    ) -> None:
        """Revoke one session in the caller's transaction."""
        if session.revoked_at is None:
            self._end(session, reason)
            audit.record(
                self.db, AuditEventType.SESSION_REVOKED, client, session.user_id, detail=reason
            )

    async def _revoke_now(
        self, session: DeviceSession, reason: RevokeReason, client: ClientInfo | None
    ) -> None:
        """Revoke a live session for good, though the request that found out is about to fail."""
        self._end(session, reason)
        await audit.record_now(
            self.db, AuditEventType.SESSION_REVOKED, client, session.user_id, detail=reason
        )

    def _end(self, session: DeviceSession, reason: RevokeReason) -> None:
        session.revoked_at = utcnow()
        session.revoked_reason = reason
        self.db.add(session)

    async def mark_authenticated(self, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """The user just proved who they are again on this session. The caller commits."""
        await self.db.exec(
            update(DeviceSession)
            .where(col(DeviceSession.id) == session_id, col(DeviceSession.user_id) == user_id)
            .values(authenticated_at=utcnow())
        )

    async def list_own(self, principal: Principal) -> RenderedJson:
        """The caller's live sessions, rendered by the database in the shape the API documents,
        most recently used first, the caller's own marked `current`."""
        if self.statements is None:
            raise RuntimeError("listing sessions needs the app's session statements")
        return await self.statements.list_json(principal.id, principal.session_id, utcnow())

    async def list_active(self, user_id: uuid.UUID) -> list[SessionView]:
        """Most recently used first. Only the listed columns are read: a user with hundreds of
        devices must not cost hundreds of full ORM objects."""
        result = await self.db.exec(
            select(*SESSION_VIEW_COLUMNS)
            .where(
                col(DeviceSession.user_id) == user_id,
                col(DeviceSession.revoked_at).is_(None),
                col(DeviceSession.expires_at) > utcnow(),
            )
            .order_by(col(DeviceSession.last_seen_at).desc())
        )
        return [SessionView(*row) for row in result]

    async def revoke_own(
        self, user_id: uuid.UUID, session_id: uuid.UUID, client: ClientInfo
    ) -> None:
        """Another user's session id answers exactly like an unknown one: 404."""
        session = await self.db.get(DeviceSession, session_id)
        if session is None or session.user_id != user_id or session.revoked_at is not None:
            raise NotFound("Session not found")
        self.revoke(session, RevokeReason.REVOKED_BY_USER, client)
        await self.db.commit()

    async def revoke_all(
        self,
        user_id: uuid.UUID,
        reason: RevokeReason,
        client: ClientInfo | None,
        keep: uuid.UUID | None = None,
    ) -> int:
        """Revoke every live session of a user except `keep`, in the caller's transaction."""
        conditions = [
            col(DeviceSession.user_id) == user_id,
            col(DeviceSession.revoked_at).is_(None),
        ]
        if keep is not None:
            conditions.append(col(DeviceSession.id) != keep)
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
        self, user_id: uuid.UUID, session_id: uuid.UUID, refresh: str, now: datetime
    ) -> IssuedTokens:
        return IssuedTokens(
            session_id=session_id,
            access_token=self.ctx.tokens.access_token(user_id, session_id, now),
            refresh_token=refresh,
            csrf_token=self.ctx.csrf.issue(str(session_id)),
        )

    def _refresh_token(
        self,
        session: DeviceSession,
        generation: int | None = None,
        issued_at: datetime | None = None,
    ) -> str:
        return self.ctx.tokens.refresh_token(
            session.user_id,
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
            await self._revoke_now(session, RevokeReason.IDLE_TIMEOUT, None)
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
        detail = f"session {session.id} ({session.device_label})"
        if binding == "warn":
            await audit.record_now(
                self.db,
                AuditEventType.SESSION_FINGERPRINT_MISMATCH,
                client,
                session.user_id,
                detail,
            )
            return
        audit.record(
            self.db, AuditEventType.SESSION_FINGERPRINT_MISMATCH, client, session.user_id, detail
        )
        await self._revoke_now(session, RevokeReason.DEVICE_MISMATCH, client)
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
