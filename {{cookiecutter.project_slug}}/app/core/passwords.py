"""Password policy after NIST SP 800-63B: length and a blocklist, no composition rules."""

import unicodedata
from functools import lru_cache
from pathlib import Path

MAX_LENGTH = 128
# The 10,000 most common passwords of the zxcvbn frequency list (MIT licence).
BLOCKLIST = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    return frozenset(BLOCKLIST.read_text().split())


def normalize_password(password: str) -> str:
    """NFKC: a password typed composed, decomposed or in compatibility forms is one password."""
    return unicodedata.normalize("NFKC", password)


# Lines a guesser walks: cyclic digits and letters, keyboard rows and columns.
LINES = (
    "01234567890",
    "abcdefghijklmnopqrstuvwxyza",
    "`1234567890-=",
    "qwertyuiop[]\\",
    "asdfghjkl;'",
    "zxcvbnm,./",
    *("1qaz", "2wsx", "3edc", "4rfv", "5tgb", "6yhn", "7ujm", "8ik,", "9ol.", "0p;/"),
)
SEPARATORS = "0123456789!@#$%^&*()-_=+.,;:?~ "


def _run_length(text: str, start: int) -> int:
    """Longest run from `start` that repeats one character or walks one line in one direction."""
    best = 1
    for step in (0, 1, -1):
        end = start + 1
        while end < len(text) and _follows(text[end - 1], text[end], step):
            end += 1
        best = max(best, end - start)
    return best


def _follows(previous: str, current: str, step: int) -> bool:
    if step == 0:
        return previous == current
    for line in LINES:
        index = line.find(previous)
        while index != -1:
            neighbour = index + step
            if 0 <= neighbour < len(line) and line[neighbour] == current:
                return True
            index = line.find(previous, index + 1)
    return False


def _is_walk(text: str) -> bool:
    """Made only of a few runs of 3+ along a line (sequences, keyboard walks, repeats)."""
    runs, start = 0, 0
    while start < len(text):
        length = _run_length(text, start)
        if length < 3:
            return False
        runs, start = runs + 1, start + length
    return runs <= max(3, len(text) // 4)


def _period(text: str) -> int:
    """Length of the shortest unit whose repetition (last copy possibly cut) is `text`."""
    for size in range(1, len(text) // 2 + 1):
        if all(text[i] == text[i - size] for i in range(size, len(text))):
            return size
    return len(text)


def _predictable(lowered: str, min_length: int) -> str | None:
    unit = lowered[: _period(lowered)]
    if unit != lowered and (len(unit) < min_length or unit in common_passwords()):
        return "Password must not be a short part repeated; choose a less predictable one"
    if _is_walk(lowered):
        return "Password must not be a sequence or keyboard pattern; choose a less predictable one"
    core = lowered.strip(SEPARATORS)
    if (
        core != lowered
        and core
        and (core in common_passwords() or core[: _period(core)] in common_passwords())
    ):
        return "This password is a common one with additions; choose a less predictable one"
    return None


def password_problem(password: str, email: str, min_length: int) -> str | None:
    """Why the password is refused, or None. Lengths count Unicode code points."""
    if len(password) < min_length:
        return f"Password must be at least {min_length} characters long"
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters long"
    lowered = password.lower()
    if lowered in common_passwords():
        return "This password is too common; choose a less predictable one"
    predictable = _predictable(lowered, min_length)
    if predictable:
        return predictable
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 3 and local_part in lowered:
        return "Password must not contain your email address"
    return None
