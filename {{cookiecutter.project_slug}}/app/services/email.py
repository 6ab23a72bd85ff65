"""Transactional email: Jinja2 templates, an SMTP backend and a console backend.

Messages are queued in the outbox (app/services/outbox.py) within the transaction of the event
that causes them, and delivered from there: right after that commit (after the response, so a
response never waits for, or reveals, a send), and again with backoff while sending fails.
"""

import logging
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.secretbox import SecretBox
from app.services import outbox
from app.services.deferred import Deferred
from app.services.outbox import Courier, DeliveryReport, Email, EmailBackend

__all__ = ["ConsoleBackend", "Email", "EmailBackend", "Mailer", "SmtpBackend"]

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"
SUBJECTS = {
    "verify_email": "Confirm your email address",
    "account_exists": "Someone tried to register with your address",
    "reset_password": "Reset your password",
    "password_changed": "Your password was changed",
    "new_device": "New sign-in to your account",
    "email_changed": "Your email address was changed",
    "email_change_requested": "A change of your email address was requested",
    "confirm_email_change": "Confirm your new email address",
    "security_notice": "Your sign-in methods changed",
    "second_step_failed": "Someone knows your password",
    "account_deleted": "Your account was deleted",
}


class ConsoleBackend:
    """Writes messages to the log. Bodies (which hold links with tokens) only in development."""

    def __init__(self, show_body: bool) -> None:
        self.show_body = show_body

    async def send(self, email: Email) -> None:
        body = email.text if self.show_body else "(body hidden outside development)"
        logger.info("Email to %s: %s\n%s", email.to, email.subject, body)


class SmtpBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, email: Email) -> None:
        message = EmailMessage()
        message["From"] = self.settings.email_from
        message["To"] = email.to
        message["Subject"] = email.subject
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        password = self.settings.smtp_password
        await aiosmtplib.send(
            message,
            hostname=self.settings.smtp_host,
            port=self.settings.smtp_port,
            username=self.settings.smtp_user,
            password=password.get_secret_value() if password else None,
            start_tls=self.settings.smtp_tls,
            timeout=10,
        )


def mail_box(settings: Settings) -> SecretBox:
    """The key that seals queued bodies: of its own purpose, derived from what the
    second-factor secrets' key is (`MFA_ENCRYPTION_KEY`, else `SECRET_KEY`), so that mail
    queued before a rotation of `SECRET_KEY` survives it where that key is set."""
    key = settings.mfa_encryption_key or settings.secret_key
    return SecretBox(key.get_secret_value(), purpose="mail-outbox")


class Mailer:
    """Renders messages and queues them (`enqueue`); its `courier` delivers them."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        *,
        box: SecretBox | None = None,
        backend: EmailBackend | None = None,
        deferred: Deferred | None = None,
    ) -> None:
        self.settings = settings
        self.deferred = deferred or Deferred(sessionmaker)
        self.courier = Courier(
            sessionmaker,
            settings,
            box or mail_box(settings),
            self._default_backend(settings) if backend is None else backend,
        )
        self._delivery_scheduled = False
        self._templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            keep_trailing_newline=True,
        )

    @property
    def backend(self) -> EmailBackend:
        return self.courier.backend

    @backend.setter
    def backend(self, backend: EmailBackend) -> None:
        self.courier.backend = backend

    @staticmethod
    def _default_backend(settings: Settings) -> EmailBackend:
        if settings.smtp_host:
            return SmtpBackend(settings)
        return ConsoleBackend(show_body=settings.environment == "development")

    def page(self, path: str) -> str:
        """Links come from FRONTEND_URL, never from the request's Host header."""
        return f"{self.settings.frontend_url.rstrip('/')}/{path}"

    def link(self, path: str, token: str) -> str:
        return f"{self.page(path)}?token={token}"

    def render(self, template: str, to: str, **context: object) -> Email:
        context = {"project_name": self.settings.project_name, **context}
        return Email(
            to=to,
            subject=SUBJECTS[template],
            text=self._templates.get_template(f"{template}.txt").render(context),
            html=self._templates.get_template(f"{template}.html").render(context),
        )

    def enqueue(self, db: AsyncSession, template: str, to: str, **context: object) -> None:
        """Queue a message in `db`'s transaction: it exists once the caller commits (and not
        if it rolls back), and is sent right after that commit."""
        email = self.render(template, to, **context)
        outbox.enqueue(db, self.courier.box, email, template, wake=self._schedule_delivery)

    async def deliver_due(self) -> DeliveryReport:
        """Send what is due now (`python -m app.cli send-mail`, the service's worker)."""
        return await self.courier.deliver_due()

    async def wait_idle(self) -> None:
        """Wait for the deferred work, which may queue mail, and the delivery of what it and
        earlier commits queued (shutdown, the CLI, tests)."""
        await self.deferred.wait_idle()

    def _schedule_delivery(self) -> None:
        """After a commit that queued mail: a round of delivery after the response (at once
        outside a request), unless one is already waiting to start, which will see it."""
        if self._delivery_scheduled:
            return
        self._delivery_scheduled = True
        self.deferred.run("mail delivery", self._deliver_scheduled)

    async def _deliver_scheduled(self) -> None:
        self._delivery_scheduled = False
        await self.courier.deliver_due()
