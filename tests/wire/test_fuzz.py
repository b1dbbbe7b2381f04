"""Seeded fuzzing of the Kafka listener: malformed frames get an error code or a closed
connection, never a crashed or stuck broker, and other connections keep being served."""

import datetime
import random
import socket
import struct

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader
from wire_client import WireSocket, address, api_versions_request, request_frame

from rafka.wire import protocol

SEED = 20
CASES = 120
DEADLINE_S = 30.0


def metadata_request():
    return load_request_schema(3, 12)(topics=None, allow_auto_topic_creation=False,
                                      include_topic_authorized_operations=False)


def produce_request(topic: str, records: bytes, version: int = 9):
    schema = load_request_schema(0, version)
    hints = schema.__dataclass_fields__
    topic_type = hints["topic_data"].type.__args__[0]
    partition_type = topic_type.__dataclass_fields__["partition_data"].type.__args__[0]
    return schema(transactional_id=None, acks=1, timeout=datetime.timedelta(seconds=30),
                  topic_data=(topic_type(name=topic, partition_data=(partition_type(index=0, records=records),)),))


def kafka_batch() -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    builder.append(0, 1_700_000_000_000, b"k", b"fuzz", [])
    return bytes(builder.build())


def leader_address(bootstrap: str, topic: str) -> str:
    """host:port of the listener of the leader of ``topic``'s partition 0 (a produce
    elsewhere is answered NOT_LEADER_OR_FOLLOWER before its records are read)."""
    connection = WireSocket(bootstrap)
    try:
        _, metadata = connection.call(metadata_request())
    finally:
        connection.close()
    [described] = [t for t in metadata.topics if t.name == topic]
    leader = described.partitions[0].leader_id
    [broker] = [b for b in metadata.brokers if b.node_id == leader]
    return f"{broker.host}:{broker.port}"


def send_and_close(bootstrap: str, data: bytes) -> bytes | None:
    """Send ``data`` then end our side; return the first response frame or None if the
    listener closed the connection. Raises socket.timeout if it neither answers nor
    closes within the deadline (a stuck connection)."""
    sock = socket.create_connection(address(bootstrap), timeout=DEADLINE_S)
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return None  # closed while we were still sending: an over-limit length
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return received[4:] if len(received) >= 4 else None
            received += chunk
    finally:
        sock.close()


def malformed_frames(rng: random.Random, topic: str):
    """(description, bytes) of each case, drawn from ``rng``."""
    valid = [request_frame(api_versions_request(3), 1), request_frame(metadata_request(), 2),
             request_frame(produce_request(topic, kafka_batch()), 3)]
    for index in range(CASES):
        kind = index % 6
        if kind == 0:
            yield "random bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif kind == 1:
            frame = rng.choice(valid)
            cut = rng.randrange(4, len(frame))
            yield "truncated request", struct.pack(">i", cut - 4) + frame[4:cut]
        elif kind == 2:
            size = rng.choice([2**31 - 1, 100 * 1024 * 1024 + 1, -1, -(2**31), 0, 3])
            yield f"length {size}", struct.pack(">i", size) + bytes(rng.randrange(256) for _ in range(16))
        elif kind == 3:
            key = rng.choice([rng.randrange(19, 32767), -1, 8, 9, 10, 11])
            if key in protocol.SUPPORTED:
                key = 9999
            body = struct.pack(">hhih", key, rng.randrange(0, 20), 7, -1) + bytes(rng.randrange(256) for _ in range(8))
            yield f"unknown api key {key}", struct.pack(">i", len(body)) + body
        elif kind == 4:
            key = rng.choice([0, 1, 2, 3])
            version = rng.choice([protocol.SUPPORTED[key][1] + 1, 200, -3])
            body = struct.pack(">hhih", key, version, 7, -1) + bytes(16)
            yield f"api {key} unknown version {version}", struct.pack(">i", len(body)) + body
        else:
            frame = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                position = rng.randrange(12, len(frame))
                frame[position] = rng.randrange(256)
            yield "valid request with flipped bytes", bytes(frame)


def test_malformed_frames_are_answered_or_closed_while_other_connections_are_served(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    healthy = WireSocket(bootstrap, timeout_s=DEADLINE_S)
    # A connection that stops halfway through a frame and stays open for the whole test.
    stalled = socket.create_connection(address(bootstrap), timeout=DEADLINE_S)
    stalled.sendall(struct.pack(">i", 1000) + b"\x00\x12\x00\x03")
    try:
        rng = random.Random(SEED)
        outcomes = {"answered": 0, "closed": 0}
        for number, (description, data) in enumerate(malformed_frames(rng, topic)):
            try:
                answer = send_and_close(bootstrap, data)
            except socket.timeout:
                raise AssertionError(f"case {number} ({description}) neither answered nor closed in "
                                     f"{DEADLINE_S} s: {data[:40].hex()}") from None
            outcomes["answered" if answer else "closed"] += 1
            if number % 10 == 0:
                correlation_id, response = healthy.call(metadata_request(), correlation_id=number)
                assert correlation_id == number and any(t.name == topic for t in response.topics)
        assert outcomes["closed"] > 0 and outcomes["answered"] > 0, outcomes
        # The broker still serves new connections, and the Kafka clients' view of it.
        fresh = WireSocket(bootstrap)
        try:
            _, versions = fresh.call(api_versions_request(3))
            assert versions.error_code.value == 0
        finally:
            fresh.close()
    finally:
        stalled.close()
        healthy.close()


def test_produce_with_a_bad_crc_gets_corrupt_message_and_stores_nothing(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    batch = bytearray(kafka_batch())
    batch[-2] ^= 0x40
    connection = WireSocket(leader_address(bootstrap, topic))
    try:
        _, response = connection.call(produce_request(topic, bytes(batch)))
    finally:
        connection.close()
    [partition] = response.responses[0].partition_responses
    assert partition.error_code.name == "corrupt_message"
    assert "CRC" in partition.error_message
    assert cluster.admin().list_offsets(topic, "latest") == {0: 0}


def test_api_versions_with_an_unknown_version_is_answered_not_closed(bootstrap):
    body = struct.pack(">hhih", 18, 99, 41, -1)
    answer = send_and_close(bootstrap, struct.pack(">i", len(body)) + body)
    assert answer is not None and struct.unpack_from(">i", answer, 0)[0] == 41
    response, _ = entity_reader(load_response_schema(18, 0))(answer, 4)
    assert response.error_code.name == "unsupported_version"
