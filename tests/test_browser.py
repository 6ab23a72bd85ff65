"""The reference web client (web/) in a real Chromium against a real service, as a user meets it.

One walk per database variant: sign-up, the emailed verification link (read from a real SMTP
server), sign-in, an authenticator app with its QR code and recovery codes, a passkey made and
used through Chromium's virtual authenticator, a reload (the CSRF token comes back), the
session list seen and revoked from a second browser, a refresh after the access token expired,
the reauthentication prompt, password reset through the emailed link, and logout after the
access token expired. Every page is photographed into tests/artifacts/browser/ (git-ignored).

The browser is the system's Chromium (`executable_path`): Playwright never downloads one here.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest

from benchmarks.infra import TEMPLATE_DIR, Variant, clean_env
from benchmarks.procs import free_port
from support import alembic_on, serving, stop_group, variant_params, wait_until_ready

ARTIFACTS = TEMPLATE_DIR / "tests" / "artifacts" / "browser"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")

ACCESS_TTL = 5  # seconds: the walk waits past it to see the client refresh
REAUTH_MAX_AGE = 30  # seconds: enrolment happens well inside it, a password change after it

EMAIL = "reader@example.com"
# Fresh for each run: long, random, never on the common-password list.
PASSWORD, CHANGED_PASSWORD, RESET_PASSWORD = (secrets.token_urlsafe(18) for _ in range(3))

VARIANTS = variant_params(database="sqlite", rate_limiter="memory", use_docker="yes")
VARIANTS += variant_params(database="postgresql", rate_limiter="redis", use_docker="yes")


def chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        if found := shutil.which(name):
            return found
    print("test_browser: no chromium on PATH (apt-get install chromium); .ci/run installs it")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")


# --------------------------------------------------------------------------- mail
@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd, in this process) received."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"

    def mark(self) -> int:
        with self.lock:
            return len(self.messages)

    def link(self, since: int, to: str, url: str, token: bool = True, timeout: float = 20) -> str:
        """The first link to `url` (with its `?token=...`) in a message to `to` received
        after `since`."""
        pattern = re.compile(re.escape(url) + (r"\?token=[A-Za-z0-9_~.%-]+" if token else r"\b"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                fresh = self.messages[since:]
            for message in fresh:
                if to not in str(message["To"]):
                    continue
                body = message.get_body(preferencelist=("plain",))
                if body is not None and (found := pattern.search(body.get_content())):
                    return found[0]
            time.sleep(0.2)
        subjects = [str(message["Subject"]) for message in fresh]
        pytest.fail(f"no message to {to} with a link to {url} after {timeout}s: {subjects}")


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


# --------------------------------------------------------------------------- servers
@contextmanager
def make_web(project: Path, port: int, log: Path) -> Iterator[str]:
    """`make web` of the generated Makefile, on a port of our own (xdist runs variants side
    by side); the page's URL."""
    with log.open("w") as output:
        process = subprocess.Popen(
            ["make", "web", f"WEB_PORT={port}", f"PYTHON={sys.executable}"],
            cwd=project,
            env=clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/", process, log, timeout=30)
        yield f"http://localhost:{port}"
    finally:
        stop_group(process)


class Totp:
    """Codes from the secret the page showed, never one of a time step already used (the
    service refuses a replayed step)."""

    def __init__(self, secret: str) -> None:
        self.otp = pyotp.TOTP(secret)
        self.last_step = -1

    def code(self) -> str:
        while True:
            step = int(time.time()) // 30
            for candidate in (step, step + 1):  # the service accepts one step of drift
                if candidate > self.last_step:
                    self.last_step = candidate
                    return self.otp.generate_otp(candidate)
            time.sleep(0.5)


class Camera:
    """Numbered full-page screenshots, one folder per variant."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self.count = 0

    def shot(self, page: Any, name: str, full_page: bool = True) -> None:
        self.count += 1
        page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=full_page)


def api_calls(page: Any) -> list[tuple[str, str, int]]:
    """(method, path, status) of every API response the page gets, from now on."""
    calls: list[tuple[str, str, int]] = []

    def record(response: Any) -> None:
        path = re.sub(r"^https?://[^/]+", "", response.url)
        if path.startswith("/api/"):
            calls.append((response.request.method, path.removeprefix("/api/v1"), response.status))

    page.on("response", record)
    # The browser's own words (CORS, CSP, a script error) are in the output of a failed run.
    page.on("console", lambda message: print(f"console {message.type}: {message.text}"))
    page.on("pageerror", lambda error: print(f"page error: {error}"))
    return calls


def add_authenticator(context: Any, page: Any) -> None:
    """Chromium's virtual authenticator: a platform passkey with user verification."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def auth_cookies(context: Any) -> list[str]:
    return [cookie["name"] for cookie in context.cookies() if cookie["name"].endswith("_token")]


def point_the_client_at(project: Path, api: str) -> None:
    """Edit web/config.js, the client's one setting, as a user would for another API."""
    config = project / "web" / "config.js"
    default = 'export const API_URL = "http://localhost:8000";'
    assert default in config.read_text(), "web/config.js no longer names the default API URL"
    port = api.rsplit(":", 1)[1]
    config.write_text(config.read_text().replace(default, default.replace("8000", port)))


# --------------------------------------------------------------------------- the walk
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_reference_client_in_chromium(
    project: Path, variant: Variant, fresh_database, redis_url: str | None, tmp_path: Path
) -> None:
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    web_port = free_port()
    database_url = fresh_database("browser")
    alembic_on(copy, database_url)("upgrade", "head")

    camera = Camera(ARTIFACTS / variant.stack)
    expect.set_options(timeout=20_000)
    with (
        smtp_server() as (mailbox, smtp_port),
        make_web(copy, web_port, tmp_path / "web.log") as web,
    ):
        env = clean_env(
            SECRET_KEY=secrets.token_urlsafe(48),
            DATABASE_URL=database_url,
            ENVIRONMENT="development",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(smtp_port),
            SMTP_TLS="false",
            FRONTEND_URL=web,
            CORS_ORIGINS=web,
            COOKIE_SECURE="true",  # Chromium treats http://localhost as a secure origin
            ACCESS_TOKEN_TTL_SECONDS=str(ACCESS_TTL),
            REAUTH_MAX_AGE_SECONDS=str(REAUTH_MAX_AGE),
            ARGON2_TIME_COST="1",
            ARGON2_MEMORY_COST="1024",
            ARGON2_PARALLELISM="1",
            **({"REDIS_URL": redis_url} if redis_url else {}),
        )
        server_log = tmp_path / "api.log"
        # uvicorn listens on 127.0.0.1; the page calls http://localhost:<port>: the same site
        with serving(copy, env, server_log) as api, sync_playwright() as playwright:
            point_the_client_at(copy, api)
            browser = playwright.chromium.launch(executable_path=executable)
            try:
                walk(browser, web, mailbox, camera, expect)
            except BaseException:
                print(f"--- the service's log ({server_log}):\n{server_log.read_text()[-6000:]}")
                raise
            finally:
                browser.close()


def walk(browser: Any, web: str, mailbox: Mailbox, camera: Camera, expect: Any) -> None:
    account = f"{web}/account/"
    laptop = browser.new_context()
    laptop.set_default_timeout(20_000)
    a = laptop.new_page()
    add_authenticator(laptop, a)
    a_calls = api_calls(a)

    def sign_in(page: Any, password: str) -> None:
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Sign in", exact=True).click()

    def sessions(page: Any) -> Any:
        return page.locator("#sessions li")

    # Sign-up and the emailed link.
    a.goto(f"{web}/sign-up/")
    camera.shot(a, "sign-up")
    a.get_by_label("Email").fill(EMAIL)
    a.get_by_label("Password").fill("tenletters")  # the browser's minlength is 8, ours 15
    a.get_by_role("button", name="Create account").click()
    expect(a.locator("#sign-up-form .message")).to_contain_text("at least 15 characters")
    expect(a.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    expect(a.get_by_label("Password")).to_be_focused()
    camera.shot(a, "sign-up-error")
    mark = mailbox.mark()
    a.get_by_label("Password").fill(PASSWORD)
    a.get_by_role("button", name="Create account").click()
    expect(a.get_by_role("heading", name="Check your inbox")).to_be_visible()
    camera.shot(a, "sign-up-sent")
    verify_link = mailbox.link(mark, EMAIL, f"{web}/verify-email")
    a.goto(verify_link)
    expect(a.locator("#outcome")).to_have_text(
        "Your email address is confirmed. You can sign in now."
    )
    assert "token=" not in a.url, "the token stays in the address bar and the history"
    camera.shot(a, "verify-email")
    a.goto(verify_link)  # a second time: single use
    expect(a.locator("#outcome")).to_have_text("This link has expired or was already used.")
    expect(a.get_by_role("button", name="Send a new link")).to_be_visible()
    camera.shot(a, "verify-email-used")

    # Sign-in, then an authenticator app.
    a.goto(web)
    camera.shot(a, "sign-in")
    sign_in(a, PASSWORD)
    expect(a).to_have_url(account)
    expect(a.locator("#email")).to_have_text(EMAIL)
    expect(sessions(a)).to_have_count(1)
    expect(sessions(a)).to_contain_text("This device")
    camera.shot(a, "account")

    a.get_by_role("button", name="Set up an authenticator app").click()
    qr = a.get_by_role("img", name="QR code for your authenticator app")
    expect(qr).to_be_visible()
    a.wait_for_function("() => document.querySelector('#totp-qr').naturalWidth > 0")
    totp = Totp(a.locator("#totp-secret").inner_text())
    camera.shot(a, "totp-setup")
    a.get_by_label("Code from the app").fill(totp.code())
    a.get_by_role("button", name="Turn on").click()
    expect(a.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    recovery_codes = a.locator("#recovery-codes code").all_inner_texts()
    assert len(recovery_codes) == 10
    camera.shot(a, "recovery-codes")
    a.get_by_role("button", name="I have saved them").click()
    expect(a.locator("#totp-state")).to_contain_text("On:")

    # A passkey, made by the virtual authenticator, then renamed.
    a.get_by_label("Name of the new passkey").fill("Laptop")
    a.get_by_role("button", name="Add a passkey").click()
    expect(a.locator("#passkey-form .message")).to_have_text(
        "Added Laptop. You can sign in with it now."
    )
    a.get_by_role("button", name="Rename Laptop").click()
    a.get_by_label("New name for Laptop").fill("Work laptop")
    a.get_by_role("button", name="Save").click()
    expect(a.locator("#passkeys li")).to_have_count(1)
    expect(a.locator("#passkeys li")).to_contain_text("Work laptop")

    # A reload loses the CSRF token kept in memory; GET /auth/csrf brings it back.
    a.reload()
    expect(a.locator("#email")).to_have_text(EMAIL)
    a_calls.clear()
    a.get_by_role("button", name="Rename Work laptop").click()
    a.get_by_label("New name for Work laptop").fill("Laptop (work)")
    a.get_by_role("button", name="Save").click()
    expect(a.locator("#passkeys li")).to_contain_text("Laptop (work)")
    methods = [(method, status) for method, _, status in a_calls]
    assert ("GET", "/auth/csrf", 200) in a_calls, a_calls
    assert methods.index(("PATCH", 200)) > a_calls.index(("GET", "/auth/csrf", 200)), a_calls
    camera.shot(a, "account-factors")

    # Sign out, and back in: now with the second step.
    a.get_by_role("button", name="Sign out", exact=True).click()
    expect(a).to_have_url(f"{web}/?notice=signed-out")
    expect(a.locator("#page-message")).to_have_text("You are signed out.")
    assert auth_cookies(laptop) == []
    sign_in(a, PASSWORD)
    expect(a.get_by_role("heading", name="Two-step verification")).to_be_visible()
    expect(a.get_by_label("Code", exact=True)).to_be_focused()
    expect(a.get_by_role("button", name="Use a passkey instead")).to_be_visible()
    camera.shot(a, "second-step")
    a.get_by_label("Code", exact=True).fill("000000")
    a.get_by_role("button", name="Verify").click()
    expect(a.locator("#code-form .message")).not_to_be_empty()
    a.get_by_label("Code", exact=True).fill(totp.code())
    a.get_by_role("button", name="Verify").click()
    expect(a).to_have_url(account)

    # A second browser signs in with a recovery code and sees both sessions.
    phone = browser.new_context()
    phone.set_default_timeout(20_000)
    b = phone.new_page()
    b_calls = api_calls(b)
    b.goto(web)
    sign_in(b, PASSWORD)
    b.get_by_label("Code", exact=True).fill(recovery_codes[0])
    b.get_by_role("button", name="Verify").click()
    expect(b).to_have_url(account)
    b_signed_in = time.monotonic()
    expect(sessions(b)).to_have_count(2)
    camera.shot(b, "sessions-two-browsers")

    # The laptop's access token expires; its next request refreshes and goes through.
    time.sleep(ACCESS_TTL + 1)
    a_calls.clear()
    a.get_by_role("button", name="Reload").click()
    expect(sessions(a)).to_have_count(2)
    # (after a GET /auth/csrf: the token of the sign-in page did not survive the navigation)
    assert [call for call in a_calls if call[1] != "/auth/csrf"][:3] == [
        ("GET", "/auth/sessions", 401),
        ("POST", "/auth/refresh", 200),
        ("GET", "/auth/sessions", 200),
    ], a_calls

    # The phone signs the laptop out; the laptop's next request lands on the sign-in page.
    b.locator("#sessions li:not([data-current])").get_by_role("button").click()
    expect(sessions(b)).to_have_count(1)
    expect(b.locator("#sessions-section .message")).to_contain_text("Signed out")
    camera.shot(b, "session-revoked")
    a.get_by_role("button", name="Reload").click()
    expect(a).to_have_url(f"{web}/?notice=session-ended")
    expect(a.locator("#page-message")).to_have_text(
        "Your session has ended. Sign in again to continue."
    )
    camera.shot(a, "session-ended")

    # A usernameless passkey sign-in.
    a.get_by_role("button", name="Sign in with a passkey").click()
    expect(a).to_have_url(account)
    expect(a.locator("#passkeys li")).not_to_contain_text("last used never")

    # The phone's sign-in is older than REAUTH_MAX_AGE: a password change asks for it again.
    time.sleep(max(0.0, b_signed_in + REAUTH_MAX_AGE + 1 - time.monotonic()))
    mark = mailbox.mark()
    b.get_by_label("Current password").fill(PASSWORD)
    b.get_by_label("New password").fill(CHANGED_PASSWORD)
    b.get_by_role("button", name="Change password").click()
    dialog = b.get_by_role("dialog", name="Confirm it's you")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Password", exact=True)).to_be_focused()
    camera.shot(b, "reauthenticate", full_page=False)  # the backdrop covers the viewport
    dialog.get_by_label("Password", exact=True).fill("not the password at all")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.locator(".message")).not_to_be_empty()
    dialog.get_by_label("Password", exact=True).fill(PASSWORD)
    dialog.get_by_role("button", name="Confirm").click()
    expect(b.locator("#password-form .message")).to_have_text(
        "Password changed. Your other devices were signed out."
    )
    expect(dialog).to_be_hidden()
    assert ("POST", "/auth/reauthenticate", 204) in b_calls
    expect(sessions(b)).to_have_count(1)
    b.get_by_role("button", name="Sign out everywhere").click()
    expect(b).to_have_url(f"{web}/?notice=signed-out")
    assert auth_cookies(phone) == []

    # The "your password was changed" notice links to /forgot-password: the laptop's owner
    # (signed out by the change) follows it and resets the password.
    a.goto(mailbox.link(mark, EMAIL, f"{web}/forgot-password", token=False))
    expect(a.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    camera.shot(a, "forgot-password")
    mark = mailbox.mark()
    a.get_by_label("Email").fill(EMAIL)
    a.get_by_role("button", name="Email me a link").click()
    expect(a.locator("#forgot-form .message")).to_contain_text("a reset link is on its way")
    camera.shot(a, "forgot-password-sent")
    a.goto(mailbox.link(mark, EMAIL, f"{web}/reset-password"))
    assert "token=" not in a.url
    camera.shot(a, "reset-password")
    a.get_by_label("New password").fill(RESET_PASSWORD)
    a.get_by_role("button", name="Set new password").click()
    expect(a.locator("#outcome")).to_have_text(
        "Your password is changed. Sign in with the new one."
    )
    camera.shot(a, "reset-password-done")
    a.get_by_role("link", name="Sign in").click()
    sign_in(a, RESET_PASSWORD)
    expect(a.get_by_role("button", name="Use a passkey instead")).to_be_visible()
    # This time without the browser's JSON helpers: the fallback in web/webauthn.js.
    a.evaluate(
        "delete PublicKeyCredential.parseRequestOptionsFromJSON;"
        "delete PublicKeyCredential.prototype.toJSON"
    )
    a.get_by_role("button", name="Use a passkey instead").click()
    expect(a).to_have_url(account)
    expect(a.locator("main")).not_to_have_attribute("aria-busy", "true")  # everything shown
    expect(sessions(a)).to_have_count(1)
    camera.shot(a, "account-after-reset")

    # Logout once the access token has expired: the refresh cookie names the session.
    time.sleep(ACCESS_TTL + 1)
    a_calls.clear()
    a.get_by_role("button", name="Sign out", exact=True).click()
    expect(a).to_have_url(f"{web}/?notice=signed-out")
    assert ("POST", "/auth/logout", 204) in a_calls, a_calls
    assert ("POST", "/auth/refresh", 200) not in a_calls, a_calls
    assert auth_cookies(laptop) == []
    camera.shot(a, "signed-out")
    a.goto(account)  # signed out for good: the account page sends the visitor to sign in
    expect(a).to_have_url(f"{web}/")
