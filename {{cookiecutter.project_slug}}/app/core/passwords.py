"""Password policy after NIST SP 800-63B: length and a blocklist, no composition rules."""

from functools import lru_cache
from pathlib import Path

MAX_LENGTH = 128
# The 10,000 most common passwords of the zxcvbn frequency list (MIT licence).
BLOCKLIST = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    return frozenset(BLOCKLIST.read_text().split())


def password_problem(password: str, email: str, min_length: int) -> str | None:
    """Why the password is refused, or None. Lengths count Unicode code points."""
    if len(password) < min_length:
        return f"Password must be at least {min_length} characters long"
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters long"
    lowered = password.lower()
    if lowered in common_passwords():
        return "This password is too common; choose a less predictable one"
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 3 and local_part in lowered:
        return "Password must not contain your email address"
    return None
