"""Password policy after NIST SP 800-63B: length and a blocklist, no composition rules.

The blocklist is a list of common passwords plus rules for what no list can hold at the
allowed lengths: one character or a short unit repeated, runs along the alphabet, the digits
or a keyboard row, and a common password padded with such a run or with itself.
"""

import unicodedata
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

MAX_LENGTH = 128
# The 10,000 most common passwords of the zxcvbn frequency list (MIT licence).
BLOCKLIST = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"
# Strings along which a step to the neighbouring character is predictable.
WALKS = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "1234567890-=",
    "qwertyuiop[]",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "qazwsxedcrfvtgbyhnujmikolp",
)
MIN_DISTINCT = 4  # fewer different characters than this is a pattern, whatever the length
PADDING = "0123456789!@#$%^&*()-_=+.,;:?~ "
MIN_COMMON_WORD = 4  # a common password shorter than this is an ordinary word part


def normalize_password(password: str) -> str:
    """NFKC, so that the same password typed on another keyboard or OS is the same string."""
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    return frozenset(BLOCKLIST.read_text().split())


@lru_cache(maxsize=1)
def _neighbours() -> frozenset[tuple[str, str]]:
    pairs = set()
    for walk in WALKS:
        for a, b in pairwise(walk):
            pairs.update({(a, b), (b, a)})
    return frozenset(pairs)


def _is_walk(text: str) -> bool:
    """Every step repeats the character or moves to a neighbour on a walk."""
    neighbours = _neighbours()
    return all(a == b or (a, b) in neighbours for a, b in pairwise(text))


def _is_repeated_unit(text: str) -> bool:
    """`passwordpassword`, `abcabcabc...`: a unit of at most half the length, repeated."""
    return any(
        text == (text[:size] * (len(text) // size + 1))[: len(text)]
        for size in range(1, len(text) // 2 + 1)
    )


def _is_padded_common_password(text: str) -> bool:
    """A common password with a walk or a repeat of itself before or after it, or wrapped in
    digits and symbols (`iloveyou20242024`, `!!!!sunshine!!!!`)."""
    common = common_passwords()
    core = text.strip(PADDING)
    if core != text and len(core) >= MIN_COMMON_WORD and core in common:
        return True
    for cut in range(MIN_COMMON_WORD, len(text) - 1):
        head, tail = text[:cut], text[cut:]
        if head in common and (_is_walk(tail) or _is_repeated_unit(head + tail)):
            return True
        head, tail = text[: len(text) - cut], text[len(text) - cut :]
        if tail in common and _is_walk(head):
            return True
    return False


def predictable(password: str) -> bool:
    lowered = password.lower()
    return (
        lowered in common_passwords()
        or len(set(lowered)) < MIN_DISTINCT
        or _is_walk(lowered)
        or _is_repeated_unit(lowered)
        or _is_padded_common_password(lowered)
    )


def password_problem(password: str, email: str, min_length: int) -> str | None:
    """Why the password is refused, or None. Lengths count Unicode code points (after NFKC)."""
    password = normalize_password(password)
    if len(password) < min_length:
        return f"Password must be at least {min_length} characters long"
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters long"
    if predictable(password):
        return "This password is too common or predictable; choose a less predictable one"
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 3 and local_part in password.lower():
        return "Password must not contain your email address"
    return None
