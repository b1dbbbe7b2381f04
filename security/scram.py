"""SCRAM credentials (RFC 5802, RFC 7677) and the server side of SASL/SCRAM and SASL/PLAIN.

What is stored per user and mechanism is Kafka's ``ScramCredential``: the salt, the
iteration count, ``StoredKey = H(HMAC(SaltedPassword, "Client Key"))`` and
``ServerKey = HMAC(SaltedPassword, "Server Key")``. Neither the password nor the salted
password is ever stored: they let whoever reads them log in, the keys do not.

``credential(password, mechanism)`` derives a credential (run where the password is,
the admin client, so the password never travels). ``ScramServer`` runs one exchange:
``first(client_first) -> server_first`` then ``final(client_final) -> server_final``;
a wrong proof, an unknown user, a nonce that does not continue the server's or bytes
that do not parse raise ``AuthenticationError`` with the message sent to the client.
An unknown user gets a made-up salt and fails at the proof, as a known user with a
wrong password does, so the exchange does not tell which users exist.

``verify_plain(auth_bytes, lookup)`` checks a SASL/PLAIN message (RFC 4616:
``authzid NUL authcid NUL password``) against the same stored credentials, by deriving
the stored key from the password with the stored salt and iterations.

Not thread-safe per exchange (one connection runs one exchange at a time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from typing import Callable

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
ITERATIONS_MIN = 4096  # Kafka's minimum
ITERATIONS_MAX = 16384  # Kafka's maximum
SALT_BYTES = 32
NAME_BYTES_MAX = 256
PASSWORD_BYTES_MAX = 1024


class AuthenticationError(Exception):
    """The client failed to authenticate; the message is what the client is told."""


def _hash_name(mechanism: str) -> str:
    try:
        return MECHANISMS[mechanism]
    except KeyError:
        raise ValueError(f"SCRAM mechanism must be one of {sorted(MECHANISMS)}, got {mechanism!r}") from None


def validate_user(user: object) -> str:
    if not isinstance(user, str) or not user or len(user.encode()) > NAME_BYTES_MAX or "\0" in user:
        raise ValueError(f"user name must be a non-empty str of at most {NAME_BYTES_MAX} bytes without NUL, "
                         f"got {user!r}")
    return user


def validate_iterations(iterations: object) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int) \
            or not ITERATIONS_MIN <= iterations <= ITERATIONS_MAX:
        raise ValueError(f"SCRAM iterations must be an int in {ITERATIONS_MIN}..{ITERATIONS_MAX}, got {iterations!r}")
    return iterations


def salted_password(password: str, salt: bytes, iterations: int, mechanism: str) -> bytes:
    return hashlib.pbkdf2_hmac(_hash_name(mechanism), password.encode(), salt, iterations)


def keys_from_salted_password(salted: bytes, mechanism: str) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of a salted password."""
    name = _hash_name(mechanism)
    client_key = hmac.new(salted, b"Client Key", name).digest()
    return hashlib.new(name, client_key).digest(), hmac.new(salted, b"Server Key", name).digest()


def credential(password: str, mechanism: str, iterations: int = ITERATIONS_MIN, salt: bytes | None = None) -> dict:
    """The stored form of ``password``: {mechanism, salt, iterations, stored_key, server_key}."""
    if not isinstance(password, str) or not password or len(password.encode()) > PASSWORD_BYTES_MAX:
        raise ValueError(f"password must be a non-empty str of at most {PASSWORD_BYTES_MAX} bytes")
    validate_iterations(iterations)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored_key, server_key = keys_from_salted_password(salted_password(password, salt, iterations, mechanism),
                                                       mechanism)
    return {"mechanism": mechanism, "salt": salt, "iterations": iterations, "stored_key": stored_key,
            "server_key": server_key}


def validate_credential(stored: object) -> dict:
    """``stored`` checked as a credential (as the controller takes it); raises ValueError naming the bad field."""
    if not isinstance(stored, dict):
        raise ValueError(f"a SCRAM credential is a dict, got {type(stored).__name__}")
    mechanism = stored.get("mechanism")
    size = hashlib.new(_hash_name(mechanism)).digest_size
    validate_iterations(stored.get("iterations"))
    for field, length in (("salt", None), ("stored_key", size), ("server_key", size)):
        value = stored.get(field)
        if not isinstance(value, bytes) or not value or (length is not None and len(value) != length):
            raise ValueError(f"SCRAM credential field {field!r} must be {length or 'non-empty'} bytes, got {value!r}")
    return {key: stored[key] for key in ("mechanism", "salt", "iterations", "stored_key", "server_key")}


def _attributes(message: str) -> dict[str, str]:
    found = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise AuthenticationError(f"malformed SCRAM attribute {part[:40]!r}")
        found.setdefault(part[0], part[2:])
    return found


def _decode_name(name: str) -> str:
    # RFC 5802 saslname: "," and "=" are sent as "=2C" and "=3D".
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """One SCRAM exchange. ``lookup(user, mechanism)`` returns the stored credential or None."""

    def __init__(self, mechanism: str, lookup: Callable[[str, str], dict | None],
                 nonce_suffix: str | None = None) -> None:
        # ``nonce_suffix``: the server's part of the nonce; random unless a test fixes it.
        self._nonce_suffix = nonce_suffix
        self.mechanism = mechanism
        self._hash = _hash_name(mechanism)
        self._lookup = lookup
        self.user: str | None = None
        self._credential: dict | None = None
        self._nonce = ""
        self._nonce_suffix_sent = ""
        self._client_first_bare = ""
        self._server_first = ""
        self.complete = False

    def first(self, client_first: bytes) -> bytes:
        try:
            text = client_first.decode()
            gs2_flag, authzid, bare = text.split(",", 2)
        except (UnicodeDecodeError, ValueError):
            raise AuthenticationError("malformed SCRAM client-first message") from None
        if gs2_flag not in ("n", "y"):
            raise AuthenticationError("SCRAM channel binding is not supported")
        attributes = _attributes(bare)
        if "n" not in attributes or "r" not in attributes or not attributes["r"]:
            raise AuthenticationError("SCRAM client-first message lacks a user name or nonce")
        user = _decode_name(attributes["n"])
        if authzid and _decode_name(authzid.removeprefix("a=")) != user:
            raise AuthenticationError("SCRAM authorization id differs from the user name")
        self.user = user
        self._credential = self._lookup(user, self.mechanism)
        if self._credential is None:
            # A made-up salt, stable per user, so a probe cannot tell unknown users apart.
            salt = hmac.new(b"rafka-unknown-user", user.encode(), "sha256").digest()
            self._credential = {"salt": salt, "iterations": ITERATIONS_MIN, "stored_key": b"", "server_key": b""}
        self._client_first_bare = bare
        self._nonce_suffix_sent = self._nonce_suffix or secrets.token_urlsafe(18)
        self._nonce = attributes["r"] + self._nonce_suffix_sent
        self._server_first = (f"r={self._nonce},s={base64.b64encode(self._credential['salt']).decode()},"
                              f"i={self._credential['iterations']}")
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        if self.user is None or self.complete:
            raise AuthenticationError("SCRAM client-final message out of order")
        try:
            text = client_final.decode()
        except UnicodeDecodeError:
            raise AuthenticationError("malformed SCRAM client-final message") from None
        without_proof, _, proof_part = text.rpartition(",p=")
        attributes = _attributes(without_proof)
        client_nonce = self._nonce[:len(self._nonce) - len(self._nonce_suffix_sent)]
        # librdkafka before 2.6.1 (Debian's kcat among it) sends the client nonce twice,
        # client + client + server (confluentinc/librdkafka#4895); Kafka 3.8.1-3.9 accept
        # that form, and so does rafka: it still ends with this exchange's fresh server
        # nonce, which is what defeats replay.
        if attributes.get("r") not in (self._nonce, client_nonce + self._nonce):
            raise AuthenticationError("SCRAM nonce does not match")
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise AuthenticationError("malformed SCRAM proof") from None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        stored_key = self._credential["stored_key"]
        signature = hmac.new(stored_key or b"\0", auth_message, self._hash).digest()
        if len(proof) != len(signature) or not stored_key:
            raise AuthenticationError(self._failure())
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(self._hash, client_key).digest(), stored_key):
            raise AuthenticationError(self._failure())
        self.complete = True
        server_signature = hmac.new(self._credential["server_key"], auth_message, self._hash).digest()
        return b"v=" + base64.b64encode(server_signature)

    def _failure(self) -> str:
        return f"Authentication failed during authentication due to invalid credentials with SASL mechanism " \
               f"{self.mechanism}"


def verify_plain(auth_bytes: bytes, lookup: Callable[[str, str], dict | None]) -> str:
    """The user a SASL/PLAIN message authenticates, or AuthenticationError."""
    try:
        authzid, user, password = auth_bytes.decode().split("\0")
    except (UnicodeDecodeError, ValueError):
        raise AuthenticationError("malformed SASL/PLAIN message") from None
    if authzid and authzid != user:
        raise AuthenticationError("SASL/PLAIN authorization id differs from the user name")
    failure = "Authentication failed: Invalid username or password"
    if not user or not password or len(password.encode()) > PASSWORD_BYTES_MAX:
        raise AuthenticationError(failure)
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        stored = lookup(user, mechanism)
        if stored is None:
            continue
        derived, _ = keys_from_salted_password(
            salted_password(password, stored["salt"], stored["iterations"], mechanism), mechanism)
        if hmac.compare_digest(derived, stored["stored_key"]):
            return user
        raise AuthenticationError(failure)
    # No such user: spend the same PBKDF2 time, so response times do not tell users apart.
    salted_password(password, b"rafka-unknown-user", ITERATIONS_MIN, "SCRAM-SHA-256")
    raise AuthenticationError(failure)
