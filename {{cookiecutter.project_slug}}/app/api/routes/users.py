from fastapi import APIRouter, Response, status

from app.api.deps import Auth, Client, Ctx, EnrollingUser, RecentlyAuthenticatedEnrolling
from app.api.routes import API_PREFIX
from app.schemas.user import DeleteAccount, UserRead, UserUpdate
from app.utils.cookies import clear_auth_cookies

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


@router.get("/me")
async def read_me(principal: EnrollingUser) -> UserRead:
    """Answered from the request's principal, with no further database read."""
    return UserRead.of(principal)


@router.patch("/me")
async def update_me(
    body: UserUpdate, principal: RecentlyAuthenticatedEnrolling, auth: Auth, client: Client
) -> UserRead:
    """Ask to change the account's email (needs the current password).

    Answers 200 with the account as it is, old address included, whether the new address is
    free or taken: the answer does not reveal which. A free address gets a confirmation link
    (`POST /auth/verify-email` makes the change); the old address is told and keeps working
    until then. Roles, activity and verification state are not writable here."""
    view = await auth.change_email(principal, body.email, body.current_password, client)
    return UserRead.of(view)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_me(
    body: DeleteAccount,
    principal: RecentlyAuthenticatedEnrolling,
    auth: Auth,
    ctx: Ctx,
    response: Response,
) -> None:
    """Delete the account for good (needs the current password and a recent sign-in).

    Its sessions, emailed links, second factors and passkeys go with it; its audit events stay
    without the email, IP addresses and user agents; the address gets a notice. Clears the
    cookies, as logout does. The last active admin cannot leave (409 `last_admin`)."""
    await auth.delete_account(principal, body.password)
    clear_auth_cookies(response, ctx.settings)
