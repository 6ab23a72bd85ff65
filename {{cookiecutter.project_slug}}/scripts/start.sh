#!/bin/sh
# Production start command (also the container's CMD): migrate, then serve with
# Gunicorn managing Uvicorn workers.
set -e

cd "$(dirname "$0")/.."

# The app reads it too: its workers share the cores that hash passwords.
export WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"

# Prometheus metrics (METRICS_ENABLED) from every worker: each process writes its counters
# into this folder and /metrics adds them up. It must start empty, so a fresh one each start
# (or the one you name, emptied); /tmp is a tmpfs in docker-compose.prod.yml.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -type f -delete
else
    PROMETHEUS_MULTIPROC_DIR="$(mktemp -d "${TMPDIR:-/tmp}/metrics.XXXXXX")"
fi
export PROMETHEUS_MULTIPROC_DIR

alembic upgrade head

# app.worker.Worker is uvicorn's worker with proxy headers and `Server` off: the app alone
# reads X-Forwarded-For, from the proxies in TRUSTED_PROXIES.
exec gunicorn app.main:app \
    --worker-class app.worker.Worker \
    --workers "$WEB_CONCURRENCY" \
    --bind "0.0.0.0:${PORT:-8000}" \
    --access-logfile -
