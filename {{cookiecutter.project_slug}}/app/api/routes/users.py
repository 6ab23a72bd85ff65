from fastapi import APIRouter

from app.api.deps import CurrentUser, Db
from app.schemas.user import UserRead
from app.services import users

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def read_me(user: CurrentUser, db: Db) -> UserRead:
    return await users.to_read_model(db, user)
