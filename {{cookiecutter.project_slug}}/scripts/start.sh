#!/bin/sh
# Production start command (also the container's CMD): migrate, then serve with
# Gunicorn managing Uvicorn workers.
set -e

cd "$(dirname "$0")/.."

# The app reads it too: its workers share the cores that hash passwords.
export WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"

alembic upgrade head

exec gunicorn app.main:app \
    --worker-class uvicorn_worker.UvicornWorker \
    --workers "$WEB_CONCURRENCY" \
    --bind "0.0.0.0:${PORT:-8000}" \
    --access-logfile - \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
