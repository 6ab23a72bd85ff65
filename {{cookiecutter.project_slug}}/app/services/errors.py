"""Failures a client can act on. `app.main` turns each into `{"detail": ...}`."""


class ServiceError(Exception):
    status_code = 400
    detail = "Bad request"

    def __init__(self, detail: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        self.headers = headers


class InvalidCredentials(ServiceError):
    status_code = 401
    detail = "Incorrect email or password"


class NotAuthenticated(ServiceError):
    status_code = 401
    detail = "Not authenticated"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class AccountInactive(ServiceError):
    status_code = 403
    detail = "This account is disabled"


class EmailNotVerified(ServiceError):
    status_code = 403
    detail = "Verify your email address before signing in"


class PermissionDenied(ServiceError):
    status_code = 403
    detail = "You do not have permission to do this"


class CsrfFailed(ServiceError):
    status_code = 403
    detail = "CSRF check failed: send the csrf_token cookie value in the X-CSRF-Token header"


class InvalidOneTimeToken(ServiceError):
    status_code = 400
    detail = "This link is invalid or has expired"


class PasswordRejected(ServiceError):
    status_code = 400


class NotFound(ServiceError):
    status_code = 404
    detail = "Not found"


class Conflict(ServiceError):
    status_code = 409
    detail = "Conflict"


class EmailTaken(Conflict):
    detail = "This email address is already in use"


class WrongPassword(ServiceError):
    status_code = 400
    detail = "Current password is incorrect"
