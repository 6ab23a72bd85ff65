"""The input types of every request model: bounded, well-formed Unicode, normalised once.

Lone surrogates and NUL are refused here, before any service, hash or log can trip on them.
"""

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, EmailStr, Field

from app.core.passwords import MAX_LENGTH, normalize_password

MAX_EMAIL = 254
MAX_LOCAL_PART = 64


def well_formed(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def normalize_email(email: str) -> str:
    """The one form an address is stored, compared and rate limited under."""
    return email.strip().lower()


def bounded_email(value: object) -> object:
    """Cheap bounds first, so a huge or malformed value never reaches the email parser."""
    if not isinstance(value, str):
        return value
    value = normalize_email(well_formed(value))
    if len(value) > MAX_EMAIL:
        raise ValueError(f"an email address has at most {MAX_EMAIL} characters")
    if len(value.rsplit("@", 1)[0]) > MAX_LOCAL_PART:
        raise ValueError(f"the part before @ has at most {MAX_LOCAL_PART} characters")
    return value


def bounded_password(value: object) -> object:
    """Length in code points before any work; NFKC so every way of typing it matches."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_LENGTH:
        raise ValueError(f"a password has at most {MAX_LENGTH} characters")
    return normalize_password(well_formed(value))


Email = Annotated[EmailStr, BeforeValidator(bounded_email), AfterValidator(normalize_email)]
Password = Annotated[str, BeforeValidator(bounded_password), Field(min_length=1)]


def Text(max_length: int, min_length: int = 0) -> object:
    """Any other string field: a maximum length and well-formed Unicode."""
    return Annotated[
        str, Field(min_length=min_length, max_length=max_length), AfterValidator(well_formed)
    ]


Token = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(well_formed)]
