"""A software WebAuthn authenticator, so passkey tests exercise the real ceremony.

The service verifies passkeys with py_webauthn; a test that fed it hand-made or mocked
responses would prove nothing about what a browser sends. This authenticator plays browser and
platform authenticator at once: it takes the options JSON the service hands out, makes a real
P-256 key pair per credential, and answers with the bytes a browser's
`PublicKeyCredential.toJSON()` produces (`none` attestation, ES256 assertions). Everything an
attacker controls on the client side can be forged per call (origin, RP ID, user verification,
sign count), so a test can show the service refuses each of them.

A note on sign counts, as py_webauthn 3 checks them: `verify_authentication_response` raises
`InvalidAuthenticationResponse` when the response's count is not greater than the stored one,
unless both are 0 (an authenticator that does not count). A regression therefore never reaches
`new_sign_count`; the service must store the count each verification returns.
"""

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# The AAGUID of an authenticator that does not say what it is; with `none` attestation a real
# platform authenticator reports zeros too, so the service cannot rely on it.
AAGUID = bytes(16)
ES256 = -7  # COSE algorithm number: ECDSA with SHA-256 on P-256

FLAG_UP = 0x01  # user present
FLAG_UV = 0x04  # user verified
FLAG_AT = 0x40  # attested credential data follows (registration only)


def b64url(data: bytes) -> str:
    """Base64url without padding: the encoding WebAuthn's JSON forms use for every byte field."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The inverse of `b64url`, tolerant of missing padding as browsers send none."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class StoredCredential:
    """What an authenticator remembers about one passkey.

    Tests may read `id` (to rename or delete the passkey through the API) and set `sign_count`
    directly, for instance to play a cloned authenticator whose counter lags behind.
    """

    id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0
    # Discoverable credentials answer a usernameless request and return their user handle.
    resident: bool = True

    @property
    def id_b64(self) -> str:
        """The credential id as the service's API and JSON responses spell it."""
        return b64url(self.id)

    def cose_public_key(self) -> bytes:
        """The public key as COSE_Key (EC2, P-256, ES256), the form the attestation carries."""
        numbers = self.private_key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: ES256,  # alg
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            },
            canonical=True,
        )


def _public_key_options(options: dict[str, Any]) -> dict[str, Any]:
    """Accept the bare options and the `{"publicKey": ...}` form navigator.credentials takes."""
    inner = options.get("publicKey", options)
    if not isinstance(inner, dict):
        raise TypeError("options must be a dict (or hold one under 'publicKey')")
    return inner


def _listed_ids(descriptors: list[dict[str, Any]] | None) -> list[bytes]:
    """The credential ids of an excludeCredentials or allowCredentials list, in order."""
    return [b64url_decode(item["id"]) for item in descriptors or []]


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    """clientDataJSON as a browser serialises it: compact, in the order the spec gives."""
    return json.dumps(
        {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False},
        separators=(",", ":"),
    ).encode()


def _flags(user_verified: bool, *, attested: bool = False) -> int:
    """UP always (a test never plays an absent user), UV on request, BE/BS never (not synced)."""
    return FLAG_UP | (FLAG_UV if user_verified else 0) | (FLAG_AT if attested else 0)


class SoftAuthenticator:
    """A platform authenticator with its browser, holding any number of passkeys in memory.

    `origin` is the page the browser would be on (the service's frontend); `user_verification`
    is whether the user passes the fingerprint or PIN prompt unless a call says otherwise.
    """

    def __init__(self, origin: str, *, user_verification: bool = True) -> None:
        self.origin = origin
        self.user_verification = user_verification
        self.credentials: list[StoredCredential] = []

    def _rp_id_from_origin(self) -> str:
        """A browser's default RP ID when the options name none: the origin's host."""
        host = urlsplit(self.origin).hostname
        if not host:
            raise ValueError(f"origin {self.origin!r} has no host")
        return host

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        user_verified: bool | None = None,
    ) -> dict[str, Any]:
        """Register a new passkey: `navigator.credentials.create()` then `toJSON()`.

        `origin` and `rp_id` forge what is signed (clientDataJSON's origin, the rpIdHash); the
        credential itself is still scoped to the RP the options name. Raises ValueError, like a
        real authenticator's InvalidStateError, when excludeCredentials names one of its own
        credentials, and when the RP does not accept ES256.
        """
        public_key = _public_key_options(options)
        scope = public_key.get("rp", {}).get("id") or self._rp_id_from_origin()
        signed_rp_id = rp_id if rp_id is not None else scope
        verified = self.user_verification if user_verified is None else user_verified

        if not any(p.get("alg") == ES256 for p in public_key.get("pubKeyCredParams", [])):
            raise ValueError("the relying party does not accept ES256")
        excluded = set(_listed_ids(public_key.get("excludeCredentials")))
        if any(c.id in excluded and c.rp_id == scope for c in self.credentials):
            raise ValueError("InvalidStateError: a credential in excludeCredentials is here")

        selection = public_key.get("authenticatorSelection") or {}
        resident = bool(selection.get("requireResidentKey")) or selection.get("residentKey") in (
            "required",
            "preferred",
        )
        credential = StoredCredential(
            id=secrets.token_bytes(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=scope,
            user_handle=b64url_decode(public_key["user"]["id"]),
            resident=resident,
        )

        cose_key = credential.cose_public_key()
        authenticator_data = (
            hashlib.sha256(signed_rp_id.encode()).digest()
            + bytes([_flags(verified, attested=True)])
            + struct.pack(">I", credential.sign_count)
            + AAGUID
            + struct.pack(">H", len(credential.id))
            + credential.id
            + cose_key
        )
        attestation_object = cbor2.dumps(
            {"fmt": "none", "attStmt": {}, "authData": authenticator_data}
        )
        client_data = _client_data(
            "webauthn.create", public_key["challenge"], origin or self.origin
        )
        spki = credential.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.credentials.append(credential)
        return {
            "id": credential.id_b64,
            "rawId": credential.id_b64,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["internal"],
                # Convenience fields toJSON() adds; py_webauthn ignores them.
                "authenticatorData": b64url(authenticator_data),
                "publicKey": b64url(spki),
                "publicKeyAlgorithm": ES256,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def _pick(self, public_key: dict[str, Any], scope: str) -> StoredCredential:
        """The credential a real authenticator would offer: the first allowed one it holds, or
        (usernameless request, empty allowCredentials) the first discoverable one for the RP."""
        allowed = _listed_ids(public_key.get("allowCredentials"))
        if allowed:
            for wanted in allowed:
                for credential in self.credentials:
                    if credential.id == wanted and credential.rp_id == scope:
                        return credential
            raise LookupError("none of the allowed credentials is on this authenticator")
        for credential in self.credentials:
            if credential.resident and credential.rp_id == scope:
                return credential
        raise LookupError(f"no discoverable credential for {scope!r} on this authenticator")

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        user_verified: bool | None = None,
        credential: StoredCredential | None = None,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """Sign in with a passkey: `navigator.credentials.get()` then `toJSON()`.

        Without `credential` it picks one as `_pick` describes (LookupError if none fits).
        The credential's counter goes up by one per assertion, so the first one carries 1;
        `sign_count` instead signs that exact value once and leaves the counter alone, so a
        regression test can replay an old count and then carry on normally. `origin`, `rp_id`
        and `user_verified` forge what is signed, as in `create`.
        """
        public_key = _public_key_options(options)
        scope = public_key.get("rpId") or self._rp_id_from_origin()
        signed_rp_id = rp_id if rp_id is not None else scope
        verified = self.user_verification if user_verified is None else user_verified
        chosen = credential if credential is not None else self._pick(public_key, scope)

        if sign_count is None:
            chosen.sign_count += 1
            count = chosen.sign_count
        else:
            count = sign_count
        authenticator_data = (
            hashlib.sha256(signed_rp_id.encode()).digest()
            + bytes([_flags(verified)])
            + struct.pack(">I", count)
        )
        client_data = _client_data("webauthn.get", public_key["challenge"], origin or self.origin)
        signature = chosen.private_key.sign(
            authenticator_data + hashlib.sha256(client_data).digest(),
            ec.ECDSA(hashes.SHA256()),
        )
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(authenticator_data),
            "signature": b64url(signature),
        }
        if chosen.resident:
            # toJSON() leaves userHandle out when the authenticator returns none.
            response["userHandle"] = b64url(chosen.user_handle)
        return {
            "id": chosen.id_b64,
            "rawId": chosen.id_b64,
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
