"""SCRAM credentials and the server side of SASL/SCRAM and SASL/PLAIN (rafka.security.scram),
checked against RFC 7677's SCRAM-SHA-256 example exchange."""

import base64

import pytest

from rafka.security import scram

# RFC 7677 section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_lookup(user, mechanism):
    if user == "user" and mechanism == "SCRAM-SHA-256":
        return scram.credential("pencil", mechanism, 4096, salt=RFC_SALT)
    return None


def test_exchange_matches_rfc7677_example():
    server = scram.ScramServer("SCRAM-SHA-256", rfc_lookup, nonce_suffix=RFC_SERVER_NONCE)
    assert server.first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.complete and server.user == "user"


def test_exchange_refuses_wrong_proof():
    server = scram.ScramServer("SCRAM-SHA-256", rfc_lookup, nonce_suffix=RFC_SERVER_NONCE)
    server.first(RFC_CLIENT_FIRST)
    wrong = RFC_CLIENT_FINAL[:-8] + b"AAAAAAA="
    with pytest.raises(scram.AuthenticationError, match="invalid credentials"):
        server.final(wrong)
    assert not server.complete


def test_exchange_for_unknown_user_fails_at_the_proof_not_before():
    server = scram.ScramServer("SCRAM-SHA-256", rfc_lookup, nonce_suffix=RFC_SERVER_NONCE)
    first = server.first(b"n,,n=nobody,r=abc")
    assert b",s=" in first and b",i=4096" in first  # looks like a known user's answer
    with pytest.raises(scram.AuthenticationError, match="invalid credentials"):
        server.final(b"c=biws,r=abc" + RFC_SERVER_NONCE.encode() + b",p=" + base64.b64encode(b"x" * 32))


def test_exchange_refuses_a_nonce_the_server_did_not_send():
    server = scram.ScramServer("SCRAM-SHA-256", rfc_lookup)
    server.first(RFC_CLIENT_FIRST)
    with pytest.raises(scram.AuthenticationError, match="nonce"):
        server.final(RFC_CLIENT_FINAL)  # carries RFC_SERVER_NONCE, not this server's random one


@pytest.mark.parametrize("message", [b"", b"\xff\xfe", b"n,,", b"p,,n=user,r=x", b"n,,r=only-nonce"])
def test_first_message_malformed_is_refused(message):
    with pytest.raises(scram.AuthenticationError):
        scram.ScramServer("SCRAM-SHA-256", rfc_lookup).first(message)


def test_credential_stores_no_password():
    stored = scram.credential("pencil", "SCRAM-SHA-512")
    assert set(stored) == {"mechanism", "salt", "iterations", "stored_key", "server_key"}
    assert b"pencil" not in b"".join(v for v in stored.values() if isinstance(v, bytes))
    assert len(stored["stored_key"]) == 64


def test_plain_accepts_right_password_and_refuses_wrong_one():
    assert scram.verify_plain(b"\0user\0pencil", rfc_lookup) == "user"
    with pytest.raises(scram.AuthenticationError, match="Invalid username or password"):
        scram.verify_plain(b"\0user\0pencil!", rfc_lookup)
    with pytest.raises(scram.AuthenticationError):
        scram.verify_plain(b"\0nobody\0pencil", rfc_lookup)


@pytest.mark.parametrize("iterations", [0, 4095, 16385, True, "4096"])
def test_credential_refuses_iterations_out_of_range(iterations):
    with pytest.raises(ValueError, match="iterations"):
        scram.credential("pw", "SCRAM-SHA-256", iterations)


def test_credential_refuses_unknown_mechanism():
    with pytest.raises(ValueError, match="SCRAM-SHA-1"):
        scram.credential("pw", "SCRAM-SHA-1")


def client_final(password: str, client_first_bare: str, server_first: bytes, nonce: str) -> bytes:
    """A SCRAM-SHA-256 client-final message (RFC 5802) for ``nonce``, computed as a client does."""
    import hashlib
    import hmac

    attributes = dict(part.split("=", 1) for part in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attributes["s"]), int(attributes["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = f"c=biws,r={nonce}"
    auth_message = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def test_exchange_accepts_the_client_nonce_sent_twice_as_old_librdkafka_does():
    server = scram.ScramServer("SCRAM-SHA-256", rfc_lookup, nonce_suffix="server-part")
    server_first = server.first(b"n,,n=user,r=client-part")
    doubled = "client-part" + "client-partserver-part"  # librdkafka < 2.6.1
    server.final(client_final("pencil", "n=user,r=client-part", server_first, doubled))
    assert server.complete


def test_exchange_refuses_a_nonce_without_the_server_part():
    server = scram.ScramServer("SCRAM-SHA-256", rfc_lookup, nonce_suffix="server-part")
    server_first = server.first(b"n,,n=user,r=client-part")
    with pytest.raises(scram.AuthenticationError, match="nonce"):
        server.final(client_final("pencil", "n=user,r=client-part", server_first, "client-partclient-part"))
