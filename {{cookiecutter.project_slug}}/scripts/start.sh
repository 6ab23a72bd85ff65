#!/bin/sh
# Production start command (also the container's CMD): migrate, then serve with
# Gunicorn managing Uvicorn workers.
set -e

cd "$(dirname "$0")/.."

# The app reads it too: its workers share the cores that hash passwords.
export WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"

alembic upgrade head

# app.worker.Worker is uvicorn's worker with proxy headers and `Server` off: the app alone
# reads X-Forwarded-For, from the proxies in TRUSTED_PROXIES.
exec gunicorn app.main:app \
    --worker-class app.worker.Worker \
    --workers "$WEB_CONCURRENCY" \
    --bind "0.0.0.0:${PORT:-8000}" \
    --access-logfile -
