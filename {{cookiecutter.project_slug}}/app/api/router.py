from fastapi import APIRouter

from app.api.routes import admin, auth, health, users

health_router = health.router

api_router = APIRouter()
api_router.include_router(auth.router)
api_router.include_router(users.router)
api_router.include_router(admin.router)
