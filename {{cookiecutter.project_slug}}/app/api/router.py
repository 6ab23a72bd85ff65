from fastapi import APIRouter

from app.api.routes import admin, auth, health, users
from app.schemas.errors import ERROR_RESPONSES

health_router = health.router

api_router = APIRouter(responses=ERROR_RESPONSES)
api_router.include_router(auth.router)
api_router.include_router(users.router)
api_router.include_router(admin.router)
