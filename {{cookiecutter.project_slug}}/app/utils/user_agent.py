"""Readable device labels and stable fingerprints from the User-Agent header."""

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from ua_parser import parse


@dataclass(frozen=True, slots=True)
class Device:
    browser: str
    os: str

    @property
    def label(self) -> str:
        known = [name for name in (self.browser, self.os) if name != "Other"]
        return " on ".join(known) or "Unknown device"

    @property
    def fingerprint(self) -> str:
        """Browser family and OS, not versions: an update must not look like a new device."""
        return hashlib.sha256(f"{self.browser}|{self.os}".encode()).hexdigest()


@lru_cache(maxsize=1024)
def parse_device(user_agent: str) -> Device:
    result = parse(user_agent[:512])
    browser = result.user_agent.family if result.user_agent else "Other"
    os = result.os.family if result.os else "Other"
    return Device(browser=browser, os=os)
