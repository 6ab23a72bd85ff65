"""Secrets the service must read back (TOTP seeds, queued mail), encrypted at rest with
AES-256-GCM.

A copy of the database alone yields nothing usable: the key lives in the settings, never in a
table. It is derived by HKDF from `MFA_ENCRYPTION_KEY`, or from `SECRET_KEY` when that is not
set; set `MFA_ENCRYPTION_KEY` before you ever rotate `SECRET_KEY`, or enrolled authenticator
apps stop working (their users fall back to recovery codes or passkeys).
"""

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class SecretUnreadable(ValueError):
    """Ciphertext that this key did not write, or that was altered."""


class SecretBox:
    def __init__(self, key_material: str, purpose: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            key_material.encode()
        )
        self._aead = AESGCM(key)
        self._digest_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"{purpose}:digest".encode()
        ).derive(key_material.encode())

    def digest(self, value: str) -> str:
        """A keyed hash, for codes checked but never read back (recovery codes): a copy of
        the table cannot be brute-forced without the key."""
        return hmac.new(self._digest_key, value.encode(), hashlib.sha256).hexdigest()

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """`context` (the owner's id) is authenticated too: a row copied onto another
        account does not decrypt."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
        except InvalidTag:
            raise SecretUnreadable("sealed with another key or altered") from None
