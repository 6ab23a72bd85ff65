"""The long-lived collaborators every service needs besides a database session."""

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.rate_limit import AuthLimits, RateLimiter
from app.core.secretbox import SecretBox
from app.core.security import CsrfTokens, PasswordHasher
from app.core.tokens import TokenCodec
from app.services.deferred import Deferred
from app.services.email import Mailer


@dataclass(frozen=True, slots=True)
class Context:
    """`hasher` hashes and verifies passwords; what a password must be is `core/passwords.py`.
    `vault` encrypts second-factor secrets with `MFA_ENCRYPTION_KEY`, else `SECRET_KEY`."""

    settings: Settings
    hasher: PasswordHasher
    tokens: TokenCodec
    csrf: CsrfTokens
    limiter: RateLimiter
    limits: AuthLimits
    mailer: Mailer
    later: Deferred
    vault: SecretBox  # second-factor secrets at rest

    @classmethod
    def from_settings(
        cls, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession] | None = None
    ) -> "Context":
        """`sessionmaker` gives the work deferred past the response its own sessions."""
        secret = settings.secret_key.get_secret_value()
        later = Deferred(sessionmaker)
        return cls(
            settings=settings,
            hasher=PasswordHasher(settings),
            tokens=TokenCodec(settings),
            csrf=CsrfTokens(secret),
            limiter=RateLimiter(
                settings.redis_url, secret=secret, enabled=settings.rate_limit_enabled
            ),
            limits=AuthLimits.from_settings(settings),
            mailer=Mailer(settings, sessionmaker, deferred=later),
            later=later,
            vault=SecretBox(
                settings.mfa_encryption_key.get_secret_value()
                if settings.mfa_encryption_key
                else secret,
                purpose="mfa-secrets",
            ),
        )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who is on the other end of the request, as far as we can tell."""

    ip: str | None
    user_agent: str

    @property
    def ip_key(self) -> str:
        """Rate-limit key for the address: an IPv4 address, or an IPv6 address's /64.

        An IPv6 customer is handed a whole /64 and can pick any address in it, so counting per
        address would give them 2**64 fresh counters. Addresses that are missing or do not
        parse share one bucket.
        """
        try:
            address = ip_address(self.ip or "")
        except ValueError:
            return "unknown"
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if isinstance(address, IPv4Address):
            return str(address)
        return str(IPv6Network((int(address) >> 64 << 64, 64)))
