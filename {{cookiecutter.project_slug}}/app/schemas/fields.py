"""The input types of every request: bounded, well-formed Unicode, checked before any work.

A lone surrogate or a NUL cannot be stored, hashed or logged safely, and an unbounded string
costs memory and hashing time: each is refused here as a 422, so nothing behind the API ever
sees one. Lengths are checked before anything else looks at the value.
"""

import re
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, StringConstraints

from app.core.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from app.core.passwords import normalize_password

EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit; the local part has its own limit of 64
LOCAL_PART_MAX_LENGTH = 64
TOKEN_MAX_LENGTH = 256  # emailed one-time tokens
JWT_MAX_LENGTH = 4096  # refresh tokens in a body: far above what the service issues
# Lone surrogates cannot be encoded as UTF-8; NUL truncates C strings and is refused by
# PostgreSQL; other C0 controls have no business in names, emails or tokens.
MALFORMED = re.compile(r"[\x00\ud800-\udfff]")
CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _well_formed(value: str) -> str:
    if MALFORMED.search(value):
        raise ValueError("must be valid Unicode text without NUL characters")
    return value


def _plain_text(value: str) -> str:
    if CONTROL.search(value):
        raise ValueError("must not contain control characters or invalid Unicode")
    return value


def _email(value: str) -> str:
    # email-validator lets a longer local part through; SPEC and RFC 5321 stop at 64
    if len(value.rpartition("@")[0]) > LOCAL_PART_MAX_LENGTH:
        raise ValueError(f"the part before @ has at most {LOCAL_PART_MAX_LENGTH} characters")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        # email-validator's message quotes the input: say what is wrong without echoing it
        raise ValueError("must be a valid email address") from None


# Constraints run before the validators that follow them in `Annotated`.
EmailAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=EMAIL_MAX_LENGTH),
    AfterValidator(_plain_text),
    AfterValidator(_email),
]
Password = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(_well_formed),
    AfterValidator(normalize_password),
]
Token = Annotated[
    str,
    StringConstraints(min_length=1, max_length=TOKEN_MAX_LENGTH),
    AfterValidator(_plain_text),
]
Jwt = Annotated[
    str,
    StringConstraints(min_length=1, max_length=JWT_MAX_LENGTH),
    AfterValidator(_plain_text),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_plain_text)]
Description = Annotated[str, StringConstraints(max_length=255), AfterValidator(_plain_text)]
