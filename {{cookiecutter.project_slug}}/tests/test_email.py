"""Email through a real SMTP server (aiosmtpd) and the console backend, by way of the outbox."""

import logging
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI

from app.core.config import Settings
from app.services.email import ConsoleBackend, Mailer, SmtpBackend
from tests.helpers import Inbox, free_port, make_settings, smtp_server, smtp_settings, text_parts


async def queue(app: FastAPI, template: str, to: str, **context: object) -> None:
    """Queue a message as a service does (in a transaction, then commit) and wait for its
    delivery round."""
    mailer: Mailer = app.state.context.mailer
    async with app.state.sessionmaker() as db:
        mailer.enqueue(db, template, to, **context)
        await db.commit()
    await mailer.wait_idle()


class TestSmtp:
    @pytest.fixture
    def inbox(self) -> Iterator[tuple[Controller, Inbox]]:
        inbox = Inbox()
        controller = smtp_server(free_port(), inbox)
        yield controller, inbox
        controller.stop()

    @pytest.fixture
    def settings(self, inbox: tuple[Controller, Inbox]) -> Settings:
        return smtp_settings(inbox[0].port, email_from="auth@x.io")

    async def test_verification_email_goes_through_smtp(
        self, app: FastAPI, inbox: tuple[Controller, Inbox]
    ) -> None:
        mailer: Mailer = app.state.context.mailer
        assert isinstance(mailer.backend, SmtpBackend)

        await queue(
            app,
            "verify_email",
            "alice@example.com",
            link=mailer.link("verify-email", "T0K"),
            hours=48,
        )

        [message] = inbox[1].messages
        assert message["To"] == "alice@example.com"
        assert message["From"] == "auth@x.io"
        assert message["Subject"] == "Confirm your email address"
        parts = text_parts(message)
        assert "https://frontend.example/verify-email?token=T0K" in parts["text/plain"]
        assert 'href="https://frontend.example/verify-email?token=T0K"' in parts["text/html"]


class TestSmtpDown:
    @pytest.fixture
    def settings(self) -> Settings:
        return smtp_settings(free_port())  # nothing listens there

    async def test_a_failed_send_is_logged_without_address_or_body(
        self, app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        link = "https://x/verify-email?token=SECRET"
        await queue(app, "verify_email", "alice@example.com", link=link, hours=1)
        assert "not sent" in caplog.text
        assert "SECRET" not in caplog.text
        assert "alice@example.com" not in caplog.text


def test_without_smtp_host_the_console_backend_is_used() -> None:
    assert isinstance(Mailer(make_settings(smtp_host=None)).backend, ConsoleBackend)


class TestConsoleInDevelopment:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(environment="development")

    async def test_the_log_shows_the_link_once_the_message_leaves_the_outbox(
        self, app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        link = "https://frontend.example/verify-email?token=DEV"
        await queue(app, "verify_email", "alice@example.com", link=link, hours=1)
        assert link in caplog.text


class TestConsoleOutsideDevelopment:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(environment="test")

    async def test_console_backend_hides_bodies(
        self, app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        await queue(
            app, "verify_email", "alice@example.com", link="https://x/?token=SECRET", hours=1
        )
        assert "alice@example.com" in caplog.text
        assert "SECRET" not in caplog.text
