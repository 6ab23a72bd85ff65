"""Email through a real SMTP server (aiosmtpd) and the console backend."""

import logging
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.services.email import ConsoleBackend, Mailer, SmtpBackend
from tests.helpers import free_port, make_settings


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def decoded_body(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


async def test_verification_email_goes_through_smtp(smtp_server: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp_server
    settings = make_settings(
        smtp_host="127.0.0.1", smtp_port=controller.port, smtp_tls=False, email_from="auth@x.io"
    )
    mailer = Mailer(settings)
    assert isinstance(mailer.backend, SmtpBackend)

    mailer.send_later(
        "verify_email", "alice@example.com", link=mailer.link("verify-email", "T0K"), hours=48
    )
    await mailer.wait_idle()

    [message] = inbox.messages
    assert message["To"] == "alice@example.com"
    assert message["From"] == "auth@x.io"
    assert message["Subject"] == "Confirm your email address"
    parts = {
        part.get_content_type(): decoded_body(part)
        for part in message.walk()
        if not part.is_multipart()
    }
    assert "https://frontend.example/verify-email?token=T0K" in parts["text/plain"]
    assert 'href="https://frontend.example/verify-email?token=T0K"' in parts["text/html"]


async def test_smtp_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_tls=False)
    mailer = Mailer(settings)
    mailer.send_later(
        "verify_email", "alice@example.com", link="https://x/verify-email?token=SECRET", hours=1
    )
    await mailer.wait_idle()
    assert "Could not send" in caplog.text
    assert "SECRET" not in caplog.text


def test_without_smtp_host_the_console_backend_is_used() -> None:
    assert isinstance(Mailer(make_settings(smtp_host=None)).backend, ConsoleBackend)


async def test_console_backend_hides_bodies_outside_development(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    mailer = Mailer(make_settings(environment="test"))
    mailer.send_later("verify_email", "alice@example.com", link="https://x/?token=SECRET", hours=1)
    await mailer.wait_idle()
    assert "alice@example.com" in caplog.text
    assert "SECRET" not in caplog.text
