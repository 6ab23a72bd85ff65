"""Transactional email: Jinja2 templates, an SMTP backend and a console backend.

Messages go out after the response (app/services/deferred.py), so a response never waits
for (or reveals) a send.
"""

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.core import metrics
from app.core.config import Settings
from app.services.deferred import Deferred

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
}


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


class EmailBackend(Protocol):
    async def send(self, email: Email) -> None: ...


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


class Mailer:
    def __init__(
        self,
        settings: Settings,
        backend: EmailBackend | None = None,
        deferred: Deferred | None = None,
    ) -> None:
        self.settings = settings
        self.deferred = deferred or Deferred()
        self.backend = backend or self._default_backend(settings)
        self._templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            keep_trailing_newline=True,
        )

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

    def send_later(self, template: str, to: str, **context: object) -> None:
        email = self.render(template, to, **context)
        self.deferred.run(f"{template} email", lambda: self._deliver(email))
        metrics.EMAILS_QUEUED.inc()

    async def wait_idle(self) -> None:
        """Wait for messages in flight and the deferred work that may still send some
        (shutdown, tests)."""
        await self.deferred.wait_idle()

    async def _deliver(self, email: Email) -> None:
        try:
            await self.backend.send(email)
        except Exception:
            metrics.EMAILS_FAILED.inc()
            logger.exception("Could not send %r email to %s", email.subject, email.to)
        else:
            metrics.EMAILS_SENT.inc()
