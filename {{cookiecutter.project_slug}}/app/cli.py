"""Operator commands: `python -m app.cli --help`."""

import asyncio
import getpass
import json
import os
from collections.abc import Awaitable, Callable

import typer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import settings_or_exit
from app.core.logging import configure_logging
from app.core.passwords import normalize_password, password_problem
from app.core.permissions import RoleName
from app.db.session import create_engine, create_sessionmaker
from app.domain import RevokeReason
from app.models import Role, User, UserRole
from app.services import mfa, users
from app.services.context import Context
from app.services.retention import Purger, PurgeReport
from app.services.sessions import SessionService

cli = typer.Typer(help="Administration commands.", no_args_is_help=True)


def run(work: Callable[[AsyncSession, Context], Awaitable[None]]) -> None:
    """Run `work` with a database session and the same services the API uses."""

    settings = settings_or_exit()  # one line per problem, not a traceback
    # What the service logs shows on stderr too: an email sent to the console, a failed send.
    configure_logging(settings.log_level, settings.log_renderer)

    async def main() -> None:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        ctx = Context.from_settings(settings, sessionmaker)
        try:
            async with sessionmaker() as db:
                await work(db, ctx)
            await ctx.mailer.wait_idle()  # the mail the work queued goes out from here too
        finally:
            ctx.hasher.close()
            await engine.dispose()

    asyncio.run(main())


def read_password(email: str) -> str:
    """ADMIN_PASSWORD when set (automation); otherwise ask twice without echo."""
    password = os.environ.get("ADMIN_PASSWORD")
    if password is None:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise typer.BadParameter("the passwords do not match")
    password = normalize_password(password)
    problem = password_problem(password, email, settings_or_exit().password_min_length)
    if problem:
        raise typer.BadParameter(problem)
    return password


@cli.command("create-admin")
def create_admin(email: str) -> None:
    """Create an active, verified user with the admin role (or promote an existing one).

    An existing account gets the new password and is signed out everywhere: whoever knew the
    old password must not keep a session that is now an admin's.
    """
    email = users.normalize_email(email)
    password = read_password(email)

    async def work(db: AsyncSession, ctx: Context) -> None:
        password_hash = await ctx.hasher.hash(password)
        user = await users.get_by_email(db, email)
        if user is None:
            user = await users.create_user(db, email, password_hash, is_verified=True)
        else:
            await users.set_password(db, user, password_hash)
            user.is_active = user.is_verified = True
            reason = RevokeReason.PASSWORD_RESET_BY_OPERATOR
            await SessionService(db, ctx).revoke_all(user.id, reason, None)
        if user is None:
            raise typer.BadParameter(f"{email} was registered meanwhile; run the command again")
        admin = (await db.exec(select(Role).where(Role.name == RoleName.ADMIN))).one()
        if await db.get(UserRole, (user.id, admin.id)) is None:
            db.add(UserRole(user_id=user.id, role_id=admin.id))
        db.add(user)
        await db.commit()
        typer.echo(f"Admin ready: {email}")

    run(work)


@cli.command("list-users")
def list_users() -> None:
    """Print every user with their state."""

    async def work(db: AsyncSession, _ctx: Context) -> None:
        accounts = (await db.exec(select(User).order_by(col(User.created_at)))).all()
        for user in await users.views(db, accounts):
            state = "active" if user.is_active else "disabled"
            verified = "verified" if user.is_verified else "unverified"
            typer.echo(f"{user.email}\t{state}\t{verified}\t{','.join(user.roles)}")

    run(work)


@cli.command("revoke-sessions")
def revoke_sessions(email: str) -> None:
    """Sign a user out everywhere."""

    async def work(db: AsyncSession, ctx: Context) -> None:
        user = await users.get_by_email(db, email)
        if user is None:
            raise typer.BadParameter(f"no user with email {email}")
        reason = RevokeReason.REVOKED_BY_OPERATOR
        count = await SessionService(db, ctx).revoke_all(user.id, reason, None)
        await db.commit()
        typer.echo(f"Revoked {count} session(s) of {user.email}")

    run(work)


@cli.command("purge")
def purge() -> None:
    """Delete what is past its retention now: ended sessions, used or expired links and
    sign-in challenges, old audit events (the service also does this on its own)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_renderer)

    async def main() -> PurgeReport | None:
        engine = create_engine(settings)
        try:
            return await Purger(create_sessionmaker(engine), settings).run()
        finally:
            await engine.dispose()

    report = asyncio.run(main())
    if report is None:
        typer.echo("Another worker is purging right now; nothing was done.", err=True)
        raise typer.Exit(1)
    typer.echo(f"Purged: {report}")


@cli.command("send-mail")
def send_mail(
    retry_dead: bool = typer.Option(
        False, "--retry-dead", help="First queue the dead messages again (after a long outage)."
    ),
) -> None:
    """Send the queued mail that is due now, once, and print what happened (the service does
    this on its own every MAIL_POLL_SECONDS). Exit status 1 when a send failed."""
    failed = False

    async def work(_db: AsyncSession, ctx: Context) -> None:
        nonlocal failed
        if retry_dead:
            typer.echo(f"Queued again: {await ctx.mailer.courier.retry_dead()} dead message(s)")
        report = await ctx.mailer.deliver_due()
        failed = report.failed > 0
        typer.echo(f"Mail: {report}; {await ctx.mailer.courier.pending()} pending")

    run(work)
    if failed:
        raise typer.Exit(1)


@cli.command("openapi")
def openapi() -> None:
    """Print the OpenAPI schema (JSON), as /openapi.json serves it: `make client` reads it."""
    from app.main import create_app  # the app only for this command

    typer.echo(json.dumps(create_app(settings_or_exit()).openapi(), indent=2))


@cli.command("reset-mfa")
def reset_mfa(email: str) -> None:
    """Remove a user's second factors and passkeys (they lost them); they are told by email."""

    async def work(db: AsyncSession, ctx: Context) -> None:
        user = await users.get_by_email(db, email)
        if user is None:
            raise typer.BadParameter(f"no user with email {email}")
        await mfa.reset_factors(db, user.id, None, by="operator")
        mfa.notify(ctx, db, user.email, mfa.RESET_NOTICE)
        await db.commit()
        typer.echo(f"Removed the second factors of {user.email}")

    run(work)


if __name__ == "__main__":
    cli()
