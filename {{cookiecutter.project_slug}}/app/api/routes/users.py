from fastapi import APIRouter

from app.api.deps import Auth, Client, EnrollingUser, RecentlyAuthenticatedEnrolling
from app.api.routes import API_PREFIX
from app.schemas.errors import ERROR_RESPONSES
from app.schemas.user import UserRead, UserUpdate

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"], responses=ERROR_RESPONSES)


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
