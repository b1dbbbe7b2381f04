"""REST bodies, fuzzed (issue 21): seeded random bodies (random JSON, broken JSON,
random bytes, deep nesting) to every endpoint that takes one. Each answer is a 4xx with
a JSON message, never a 500, and the set of connectors is the same afterwards."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request

FUZZ_SEED = 4242
FUZZ_CASES = 150
ATOMS = [None, True, 0, -1, 2**64, 1.5, "", "FileSink", "FileSource", "json.JSONDecoder", "/etc/passwd",
         "x" * 5000, "\u0000", "\U0001F600", "tasks.max", "connector.class"]


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(4 if depth < 4 else 1)
    if kind == 0:
        return rng.choice(ATOMS)
    if kind == 1:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["name", "config", "connector.class", "file", "topics", "tasks.max", str(rng.random())]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randint(1, 200))
    if kind == 1:
        return b"[" * 100_000  # nesting deeper than any parser should follow
    if kind == 2:
        return json.dumps(_random_json(rng)).encode()[: rng.randint(1, 300)]  # cut short
    if kind == 3:
        return json.dumps({"name": rng.choice(["ok-name", "", "../x", "a" * 300, 7]), "config": _random_json(rng)}).encode()
    return json.dumps(_random_json(rng)).encode()


def _send(base: str, token: str, method: str, path: str, body: bytes):
    request = urllib.request.Request(base + path, data=body, method=method,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_fuzzed_rest_bodies_get_a_4xx_and_change_nothing(connect_runtime, connect_token):
    base = connect_runtime.rest_url
    rng = random.Random(FUZZ_SEED)
    before = sorted(connect_runtime.list())
    endpoints = [("POST", "/connectors"), ("PUT", "/connectors/fuzz-target/config"),
                 ("PUT", "/connector-plugins/FileSink/config/validate")]
    for case in range(FUZZ_CASES):
        method, path = rng.choice(endpoints)
        body = _body(rng)
        status, answer = _send(base, connect_token, method, path, body)
        if status in (200, 201):
            # A random body that happens to be a valid config: fine, but clean it up.
            if path != endpoints[2][1]:
                connect_runtime.delete(answer["name"])
            continue
        assert 400 <= status < 500, f"case {case}: {method} {path} {body[:200]!r} -> {status} {answer}"
        assert answer["error_code"] == status and answer["message"], answer
    assert sorted(connect_runtime.list()) == before
