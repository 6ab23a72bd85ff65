"""The exact files a generated project holds: common ones plus those each answer adds.

Written out by hand on purpose: a file that appears or disappears unexpectedly in a variant
(a post-gen table gone stale, a Jinja guard in the wrong place) must fail a test.
"""

from __future__ import annotations

from benchmarks.infra import Variant

COMMON = {
    # project tooling and docs
    ".env",  # written by the post-gen hook, git-ignored
    ".github/workflows/ci.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".python-version",
    "Makefile",
    "README.md",
    "alembic.ini",
    "env.example",
    "pyproject.toml",
    "scripts/start.sh",
    "uv.lock",  # the variant's lock, put in place by the post-gen hook
    # migrations
    "alembic/env.py",
    "alembic/script.py.mako",
    "alembic/versions/0001_initial.py",
    # the service
    "app/__init__.py",
    "app/api/__init__.py",
    "app/api/deps.py",
    "app/api/router.py",
    "app/api/routes/__init__.py",
    "app/api/routes/admin.py",
    "app/api/routes/auth.py",
    "app/api/routes/health.py",
    "app/api/routes/users.py",
    "app/cli.py",
    "app/core/__init__.py",
    "app/core/after_response.py",
    "app/core/body_limit.py",
    "app/core/clock.py",
    "app/core/config.py",
    "app/core/headers.py",
    "app/core/logging.py",
    "app/core/passwords.py",
    "app/core/permissions.py",
    "app/core/rate_limit.py",
    "app/core/security.py",
    "app/core/tokens.py",
    "app/data/common-passwords.txt",
    "app/db/__init__.py",
    "app/db/catalogue.py",
    "app/db/principals.py",
    "app/db/session.py",
    "app/domain.py",
    "app/main.py",
    "app/models/__init__.py",
    "app/models/audit.py",
    "app/models/base.py",
    "app/models/one_time_token.py",
    "app/models/rbac.py",
    "app/models/session.py",
    "app/models/user.py",
    "app/schemas/__init__.py",
    "app/schemas/admin.py",
    "app/schemas/auth.py",
    "app/schemas/errors.py",
    "app/schemas/fields.py",
    "app/schemas/user.py",
    "app/services/__init__.py",
    "app/services/admin.py",
    "app/services/audit.py",
    "app/services/auth.py",
    "app/services/context.py",
    "app/services/deferred.py",
    "app/services/email.py",
    "app/services/errors.py",
    "app/services/one_time_tokens.py",
    "app/services/sessions.py",
    "app/services/users.py",
    "app/templates/email/account_exists.html",
    "app/templates/email/account_exists.txt",
    "app/templates/email/base.html",
    "app/templates/email/confirm_email_change.html",
    "app/templates/email/confirm_email_change.txt",
    "app/templates/email/email_change_requested.html",
    "app/templates/email/email_change_requested.txt",
    "app/templates/email/email_changed.html",
    "app/templates/email/email_changed.txt",
    "app/templates/email/new_device.html",
    "app/templates/email/new_device.txt",
    "app/templates/email/password_changed.html",
    "app/templates/email/password_changed.txt",
    "app/templates/email/reset_password.html",
    "app/templates/email/reset_password.txt",
    "app/templates/email/verify_email.html",
    "app/templates/email/verify_email.txt",
    "app/utils/__init__.py",
    "app/utils/client_ip.py",
    "app/utils/cookies.py",
    "app/utils/user_agent.py",
    "app/worker.py",
    # the project's own tests
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/helpers.py",
    "tests/test_admin.py",
    "tests/test_attack_bruteforce.py",
    "tests/test_attack_input.py",
    "tests/test_attack_privileges.py",
    "tests/test_attack_proxy.py",
    "tests/test_attack_timing.py",
    "tests/test_attack_transport.py",
    "tests/test_cli.py",
    "tests/test_config.py",
    "tests/test_credentials.py",
    "tests/test_device_binding.py",
    "tests/test_email.py",
    "tests/test_enumeration.py",
    "tests/test_errors.py",
    "tests/test_hardening.py",
    "tests/test_health.py",
    "tests/test_login.py",
    "tests/test_logout.py",
    "tests/test_migrations.py",
    "tests/test_passwords.py",
    "tests/test_principals.py",
    "tests/test_rate_limit.py",
    "tests/test_rbac.py",
    "tests/test_refresh.py",
    "tests/test_register.py",
    "tests/test_sessions.py",
    "tests/test_tokens.py",
    "tests/test_users.py",
}

# (option, value) -> files present only with that answer.
ONLY_WITH = {
    ("use_docker", "yes"): {
        ".dockerignore",
        "Caddyfile",
        "Dockerfile",
        "docker-compose.prod.yml",
        "docker-compose.yml",
    },
    ("database", "sqlite"): {
        "tests/test_sqlite_file.py",
    },
    ("rate_limiter", "redis"): {
        "tests/test_redis_limiter.py",
    },
}


def expected_files(variant: Variant) -> set[str]:
    files = set(COMMON)
    for (option, value), paths in ONLY_WITH.items():
        if getattr(variant, option) == value:
            files |= paths
    return files
