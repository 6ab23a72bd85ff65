"""Every failure a client can act on, in one module.

`app.main` turns each into `{"detail": ..., "code": ...}`. The `code` is the stable,
machine-readable part: clients (and tests) match it, never the English `detail`.
"""


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"
    detail = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        self.code = code or self.code
        self.headers = headers


# --- 401: who are you? ------------------------------------------------------------------------


class NotAuthenticated(ServiceError):
    status_code = 401
    code = "not_authenticated"
    detail = "Not authenticated"

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, code=code)


class InvalidCredentials(ServiceError):
    status_code = 401
    code = "invalid_credentials"
    detail = "Incorrect email or password"


class InvalidToken(NotAuthenticated):
    code = "invalid_token"
    detail = "Invalid or expired token"


class SessionEnded(NotAuthenticated):
    code = "session_revoked"
    detail = "Session has ended; sign in again"


class SessionIdle(NotAuthenticated):
    code = "session_idle"
    detail = "Session expired after inactivity; sign in again"


class RefreshTokenReused(NotAuthenticated):
    code = "refresh_token_reused"
    detail = "Refresh token was already used; the session has been revoked"


class DeviceMismatch(NotAuthenticated):
    code = "device_mismatch"
    detail = "This session belongs to another device; sign in again"


class InvalidMfaToken(NotAuthenticated):
    code = "invalid_mfa_token"
    detail = "This sign-in step has expired or was already used; sign in again"


class InvalidMfaCode(ServiceError):
    status_code = 401
    code = "invalid_mfa_code"
    detail = "That code is not valid"


class PasskeyRejected(ServiceError):
    status_code = 401
    code = "passkey_rejected"
    detail = "This passkey could not be verified"


# --- 403: known, but not allowed --------------------------------------------------------------


class AccountInactive(ServiceError):
    status_code = 403
    code = "account_inactive"
    detail = "This account is disabled"


class EmailNotVerified(ServiceError):
    status_code = 403
    code = "email_not_verified"
    detail = "Verify your email address before signing in"


class PermissionDenied(ServiceError):
    status_code = 403
    code = "permission_denied"
    detail = "You do not have permission to do this"


class ReauthenticationRequired(ServiceError):
    status_code = 403
    code = "reauthentication_required"
    detail = "Confirm it is you: POST /auth/reauthenticate, then try again"


class MfaEnrollmentRequired(ServiceError):
    status_code = 403
    code = "mfa_enrollment_required"
    detail = "Your role requires a second factor: set one up under /auth/mfa or /auth/passkeys"


class CsrfFailed(ServiceError):
    status_code = 403
    code = "csrf_failed"
    detail = "CSRF check failed: send the csrf_token cookie value in the X-CSRF-Token header"


# --- 400: the request cannot be honoured as sent ------------------------------------------------


class InvalidCursor(ServiceError):
    status_code = 400
    code = "invalid_cursor"
    detail = "This cursor is not one the service gave out; start again without it"


class InvalidOneTimeToken(ServiceError):
    status_code = 400
    code = "invalid_link"
    detail = "This link is invalid or has expired"


class PasswordRejected(ServiceError):
    status_code = 400
    code = "password_rejected"
    detail = "This password is not allowed"


class WrongPassword(ServiceError):
    status_code = 400
    code = "wrong_password"
    detail = "Current password is incorrect"


class WrongCode(ServiceError):
    """A signed-in user's code (a 400: the session itself is fine)."""

    status_code = 400
    code = "wrong_code"
    detail = "That code is not valid"


class InvalidPasskey(ServiceError):
    status_code = 400
    code = "invalid_passkey"
    detail = "This passkey could not be registered"


class UnknownName(ServiceError):
    """A role or permission name in the request does not exist."""

    status_code = 400
    code = "unknown_name"
    detail = "Unknown name"


# --- 404, 409, 415 ------------------------------------------------------------------------------


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"
    detail = "Not found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"
    detail = "Conflict"


class EmailTaken(Conflict):
    code = "email_taken"
    detail = "This email address is already in use"


class AlreadyExists(Conflict):
    code = "already_exists"


class SelfLockout(Conflict):
    """An admin may not lock themselves out of the service."""

    code = "self_lockout"


class LastAdmin(Conflict):
    code = "last_admin"
    detail = "This is the last active admin; make someone else admin first"


class AdminRoleFixed(Conflict):
    code = "admin_role_fixed"
    detail = "The admin role always keeps every permission"


class TotpAlreadyEnabled(Conflict):
    code = "totp_already_enabled"
    detail = "An authenticator app is already set up; turn it off first"


class NoPendingTotp(Conflict):
    code = "totp_setup_required"
    detail = "Start with POST /auth/mfa/totp/setup"


class NoSecondFactor(Conflict):
    code = "mfa_not_enabled"
    detail = "Set up an authenticator app or a passkey first"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "unsupported_media_type"
    detail = "Send a JSON body with Content-Type: application/json"


class PrivilegeEscalation(ServiceError):
    """Granting, or acting on an account or role, beyond the permissions the caller holds."""

    status_code = 403
    code = "privilege_escalation"
    detail = "This needs permissions you do not hold"
