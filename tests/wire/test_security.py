"""TLS, SASL (PLAIN, SCRAM-SHA-256/512) and ACLs on the Kafka listeners, with real
clients: confluent-kafka (librdkafka), aiokafka, kafka-python and kcat.

One rafka cluster of its own (one broker, its own Ray namespace) serves every test here
on three listeners: SSL, SASL_PLAINTEXT and SASL_SSL, with a test CA's certificate.
``User:admin`` is a super user; ``alice`` gets only what each test grants her.
"""

import asyncio
import json
import subprocess
import time
import uuid

import certs
import pytest
import wire_client
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding as KafkaAclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

import rafka

DEADLINE_S = 60.0
ADMIN_PASSWORD = "admin-secret"
ALICE_PASSWORD = "alice-secret"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict:
    directory = str(tmp_path_factory.mktemp("tls"))
    ca_path, ca_key, ca_certificate = certs.make_ca(directory)
    cert_path, key_path = certs.make_server_cert(directory, ca_key, ca_certificate)
    other_ca_path, _key, _certificate = certs.make_ca(directory, "some-other-ca")
    return {"ca": ca_path, "cert": cert_path, "key": key_path, "other_ca": other_ca_path}


@pytest.fixture(scope="module")
def secure(ray_instance, tmp_path_factory, tls_files):
    cluster = rafka.Cluster.start(
        data_dir=str(tmp_path_factory.mktemp("secure-cluster")), brokers=1, namespace="rafka-test-wiresec",
        wire_listeners=["SSL://127.0.0.1:0", "SASL_PLAINTEXT://127.0.0.1:0", "SASL_SSL://127.0.0.1:0"],
        wire_security={"ssl_certfile": tls_files["cert"], "ssl_keyfile": tls_files["key"],
                       "super_users": ["User:admin"]})
    admin = cluster.admin()
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        admin.set_scram_credential("admin", ADMIN_PASSWORD, mechanism)
        admin.set_scram_credential("alice", ALICE_PASSWORD, mechanism)
    # consume() below names its groups g-...: a consumer with a group id looks up its
    # coordinator even when it only assigns partitions, which needs describe on the group.
    admin.create_acls([rafka.AclBinding("group", "g-", "User:alice", "read", pattern_type="prefixed")])
    yield cluster
    cluster.shutdown()


def servers(cluster, listener: str) -> str:
    found = cluster.bootstrap_servers_of(listener)
    assert found, f"no {listener} listener"
    return found


def client_config(cluster, tls_files, listener: str, user: str | None = None, password: str | None = None,
                  mechanism: str = "SCRAM-SHA-256") -> dict:
    config = {"bootstrap.servers": servers(cluster, listener), "security.protocol": listener}
    if "SSL" in listener:
        config["ssl.ca.location"] = tls_files["ca"]
    if user is not None:
        config.update({"sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password})
    return config


def produce(config: dict, topic: str, values: list[bytes]) -> list:
    """Deliver ``values`` to partition 0; returns the delivery errors (None for success)."""
    producer = Producer({**config, "linger.ms": 5, "message.timeout.ms": 20000})
    reports = []
    for value in values:
        producer.produce(topic, value=value, partition=0, on_delivery=lambda error, _m: reports.append(error))
    assert producer.flush(DEADLINE_S) == 0, "messages left undelivered"
    return reports


def consume(config: dict, topic: str, count: int) -> list[bytes]:
    consumer = Consumer({**config, "group.id": f"g-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values, deadline = [], time.monotonic() + DEADLINE_S
    try:
        while len(values) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {len(values)} of {count} from {topic}")
            for message in consumer.consume(count - len(values), timeout=1.0):
                if message.error():
                    raise KafkaException(message.error())
                values.append(message.value())
    finally:
        consumer.close()
    return values


def authentication_error(config: dict) -> KafkaError:
    """The error librdkafka reports when it cannot log in with ``config``."""
    errors = []
    admin = AdminClient({**config, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=15)
    deadline = time.monotonic() + DEADLINE_S
    while not errors and time.monotonic() < deadline:
        admin.poll(0.5)
    assert errors, "librdkafka reported no error"
    return errors[0]


def grant(cluster, *bindings: rafka.AclBinding) -> None:
    cluster.admin().create_acls(list(bindings))


# -- TLS ----------------------------------------------------------------------------------


def test_confluent_kafka_produces_and_consumes_over_tls(secure, tls_files, topic):
    secure.admin().create_topic(topic)
    grant(secure, rafka.AclBinding("topic", topic, "User:ANONYMOUS", "all"),
          rafka.AclBinding("group", "g-", "User:ANONYMOUS", "read", pattern_type="prefixed"))
    config = client_config(secure, tls_files, "SSL")
    values = [f"tls-{i}".encode() for i in range(20)]
    assert produce(config, topic, values) == [None] * len(values)
    assert consume(config, topic, len(values)) == values


def test_tls_client_that_does_not_trust_the_ca_fails(secure, tls_files):
    config = {**client_config(secure, tls_files, "SSL"), "ssl.ca.location": tls_files["other_ca"]}
    error = authentication_error(config)
    assert "certificate verify failed" in error.str() or "SSL handshake failed" in error.str(), error.str()


def test_kcat_lists_metadata_over_tls(secure, tls_files, topic):
    secure.admin().create_topic(topic)
    grant(secure, rafka.AclBinding("topic", topic, "User:ANONYMOUS", "describe"))
    result = subprocess.run(["kcat", "-b", servers(secure, "SSL"), "-X", "security.protocol=ssl",
                             "-X", f"ssl.ca.location={tls_files['ca']}", "-L", "-J", "-t", topic],
                            capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr
    assert [t["topic"] for t in json.loads(result.stdout)["topics"]] == [topic]


# -- SASL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("listener, mechanism", [("SASL_SSL", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"),
                                                 ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "SCRAM-SHA-512")])
def test_confluent_kafka_authenticates_with_each_mechanism(secure, tls_files, topic, listener, mechanism):
    secure.admin().create_topic(topic)
    config = client_config(secure, tls_files, listener, "admin", ADMIN_PASSWORD, mechanism)
    values = [f"{mechanism}-{i}".encode() for i in range(10)]
    assert produce(config, topic, values) == [None] * len(values)
    assert consume(config, topic, len(values)) == values


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_kafka_wrong_password_fails_to_authenticate(secure, tls_files, mechanism):
    error = authentication_error(client_config(secure, tls_files, "SASL_SSL", "admin", "wrong", mechanism))
    assert error.code() == KafkaError._AUTHENTICATION, error
    assert "Authentication failed" in error.str(), error.str()


def test_unknown_user_fails_like_a_wrong_password(secure, tls_files):
    error = authentication_error(client_config(secure, tls_files, "SASL_SSL", "mallory", "x", "SCRAM-SHA-256"))
    assert error.code() == KafkaError._AUTHENTICATION, error


def test_request_before_authentication_closes_the_connection(secure):
    from kio.schema.metadata.v12.request import MetadataRequest

    connection = wire_client.WireSocket(servers(secure, "SASL_PLAINTEXT"))
    try:
        connection.send(wire_client.request_frame(MetadataRequest(
            topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)))
        assert connection.read_frame() is None  # closed without an answer
    finally:
        connection.close()


def test_password_change_locks_out_the_old_password(secure, tls_files):
    admin = secure.admin()
    admin.set_scram_credential("carol", "first-password", "SCRAM-SHA-512")
    admin.set_scram_credential("carol", "second-password", "SCRAM-SHA-512")
    error = authentication_error(client_config(secure, tls_files, "SASL_SSL", "carol", "first-password",
                                               "SCRAM-SHA-512"))
    assert error.code() == KafkaError._AUTHENTICATION
    admin.delete_scram_credential("carol", "SCRAM-SHA-512")
    assert "carol" not in admin.describe_scram_credentials()


def test_aiokafka_authenticates_with_scram_and_refuses_a_wrong_password(secure, tls_files, topic):
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AioKafkaError

    secure.admin().create_topic(topic)

    async def send(password: str) -> int:
        producer = AIOKafkaProducer(bootstrap_servers=servers(secure, "SASL_PLAINTEXT"),
                                    security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                                    sasl_plain_username="admin", sasl_plain_password=password,
                                    request_timeout_ms=20000)
        await producer.start()
        try:
            return (await producer.send_and_wait(topic, b"from aiokafka", partition=0)).offset
        finally:
            await producer.stop()

    assert asyncio.run(send(ADMIN_PASSWORD)) == 0
    with pytest.raises(AioKafkaError):
        asyncio.run(send("wrong"))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_kafka_python_authenticates_over_sasl_ssl_and_refuses_a_wrong_password(secure, tls_files, topic,
                                                                               mechanism):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as PyKafkaError

    secure.admin().create_topic(topic)

    def producer(password: str) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=servers(secure, "SASL_SSL"), security_protocol="SASL_SSL",
                             ssl_cafile=tls_files["ca"], sasl_mechanism=mechanism, sasl_plain_username="admin",
                             sasl_plain_password=password, request_timeout_ms=20000, max_block_ms=20000)

    good = producer(ADMIN_PASSWORD)
    try:
        assert good.send(topic, b"from kafka-python", partition=0).get(timeout=DEADLINE_S).offset == 0
    finally:
        good.close()
    with pytest.raises(PyKafkaError):
        refused = producer("wrong")  # kafka-python 3 raises here, while it bootstraps
        try:
            refused.send(topic, b"refused", partition=0).get(timeout=DEADLINE_S)
        finally:
            refused.close()


def test_kcat_authenticates_with_scram_over_sasl_ssl(secure, tls_files, topic):
    secure.admin().create_topic(topic)
    base = ["kcat", "-b", servers(secure, "SASL_SSL"), "-X", "security.protocol=sasl_ssl",
            "-X", f"ssl.ca.location={tls_files['ca']}", "-X", "sasl.mechanisms=SCRAM-SHA-256",
            "-X", "sasl.username=admin"]
    produced = subprocess.run(base + ["-X", f"sasl.password={ADMIN_PASSWORD}", "-P", "-t", topic, "-p", "0"],
                              input="one\ntwo\n", capture_output=True, text=True, timeout=DEADLINE_S)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(base + ["-X", f"sasl.password={ADMIN_PASSWORD}", "-C", "-t", topic, "-p", "0",
                                      "-o", "beginning", "-c", "2", "-e"],
                              capture_output=True, text=True, timeout=DEADLINE_S)
    assert consumed.stdout.split() == ["one", "two"], consumed.stderr
    refused = subprocess.run(base + ["-X", "sasl.password=wrong", "-L", "-m", "10"],
                             capture_output=True, text=True, timeout=DEADLINE_S)
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr, refused.stderr


# -- ACLs ---------------------------------------------------------------------------------


def alice(secure, tls_files) -> dict:
    return client_config(secure, tls_files, "SASL_SSL", "alice", ALICE_PASSWORD, "SCRAM-SHA-512")


def admin_client(secure, tls_files) -> AdminClient:
    return AdminClient(client_config(secure, tls_files, "SASL_SSL", "admin", ADMIN_PASSWORD))


def test_confluent_admin_creates_describes_and_deletes_acls(secure, tls_files, topic):
    kafka_admin = admin_client(secure, tls_files)
    binding = KafkaAclBinding(ResourceType.TOPIC, topic, ResourcePatternType.PREFIXED, "User:alice", "*",
                              AclOperation.WRITE, AclPermissionType.ALLOW)
    for future in kafka_admin.create_acls([binding]).values():
        future.result(timeout=DEADLINE_S)
    assert rafka.AclBinding("topic", topic, "User:alice", "write", pattern_type="prefixed") in \
        secure.admin().describe_acls(name=topic)
    selector = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.ANY, None, None,
                                AclOperation.ANY, AclPermissionType.ANY)
    assert kafka_admin.describe_acls(selector).result(timeout=DEADLINE_S) == [binding]
    (deleted,) = kafka_admin.delete_acls([selector]).values()
    assert deleted.result(timeout=DEADLINE_S) == [binding]
    assert secure.admin().describe_acls(name=topic) == []


def test_acl_admin_requests_need_alter_on_the_cluster(secure, tls_files, topic):
    kafka_admin = AdminClient(alice(secure, tls_files))
    binding = KafkaAclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                              AclOperation.ALL, AclPermissionType.ALLOW)
    (future,) = kafka_admin.create_acls([binding]).values()
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=DEADLINE_S)
    assert raised.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert secure.admin().describe_acls(name=topic) == []


def test_user_with_only_read_can_consume_but_not_produce(secure, tls_files, topic):
    secure.admin().create_topic(topic)
    assert produce(client_config(secure, tls_files, "SASL_SSL", "admin", ADMIN_PASSWORD), topic, [b"a", b"b"]) \
        == [None, None]
    grant(secure, rafka.AclBinding("topic", topic, "User:alice", "read"))
    reports = produce(alice(secure, tls_files), topic, [b"refused"])
    assert [error.code() for error in reports] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert consume(alice(secure, tls_files), topic, 2) == [b"a", b"b"]


def test_deny_beats_allow_on_the_wire(secure, tls_files, topic):
    secure.admin().create_topic(topic)
    grant(secure, rafka.AclBinding("topic", topic, "User:alice", "all"),
          rafka.AclBinding("topic", topic, "User:alice", "write", permission="deny"))
    reports = produce(alice(secure, tls_files), topic, [b"refused"])
    assert [error.code() for error in reports] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_prefixed_acl_grants_every_topic_under_the_prefix(secure, tls_files, topic):
    inside, outside = f"{topic}.in", f"x{topic}"
    for name in (inside, outside):
        secure.admin().create_topic(name)
    grant(secure, rafka.AclBinding("topic", f"{topic}.", "User:alice", "write", pattern_type="prefixed"))
    assert produce(alice(secure, tls_files), inside, [b"ok"]) == [None]
    reports = produce(alice(secure, tls_files), outside, [b"refused"])
    assert [error.code() for error in reports] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    secure.admin().delete_topic(outside)


def test_metadata_hides_topics_the_user_may_not_describe(secure, tls_files, topic):
    visible, hidden = f"{topic}-visible", f"{topic}-hidden"
    for name in (visible, hidden):
        secure.admin().create_topic(name)
    grant(secure, rafka.AclBinding("topic", visible, "User:alice", "describe"))
    listed = AdminClient(alice(secure, tls_files)).list_topics(timeout=DEADLINE_S).topics
    assert visible in listed and hidden not in listed
    named = AdminClient(alice(secure, tls_files)).list_topics(topic=hidden, timeout=DEADLINE_S).topics[hidden]
    assert named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_consumer_group_needs_read_on_the_group(secure, tls_files, topic):
    secure.admin().create_topic(topic)
    grant(secure, rafka.AclBinding("topic", topic, "User:alice", "read"))
    consumer = Consumer({**alice(secure, tls_files), "group.id": f"{topic}-group", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_S
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the consumer got no group authorization error")
            message = consumer.poll(1.0)
            if message is not None and message.error():
                assert message.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED, message.error()
                break
    finally:
        consumer.close()


def test_create_topic_needs_create_on_the_cluster_or_topic(secure, tls_files, topic):
    from confluent_kafka.admin import NewTopic

    kafka_admin = AdminClient(alice(secure, tls_files))  # kept referenced: a destroyed client fails its futures
    (future,) = kafka_admin.create_topics([NewTopic(topic, 1)]).values()
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=DEADLINE_S)
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert topic not in secure.admin().list_topics()


def test_acls_survive_a_controller_restart(secure, topic):
    import ray

    from rafka.actors import names

    grant(secure, rafka.AclBinding("group", topic, "User:alice", "read"))
    controller = ray.get_actor(names.CONTROLLER, namespace="rafka-test-wiresec")
    ray.kill(controller, no_restart=False)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            found = secure.admin().describe_acls(name=topic)
            break
        except Exception as error:  # noqa: BLE001 - the controller is coming back
            if time.monotonic() > deadline:
                raise TimeoutError("the controller did not come back") from error
            time.sleep(0.5)
    assert found == [rafka.AclBinding("group", topic, "User:alice", "read")]
    assert "alice" in secure.admin().describe_scram_credentials()


def test_describe_acls_on_a_cluster_without_authorizer_is_security_disabled(bootstrap):
    from kio.schema.describe_acls.v3.request import DescribeAclsRequest

    connection = wire_client.WireSocket(bootstrap)
    try:
        _correlation_id, response = connection.call(DescribeAclsRequest(
            resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1, principal_filter=None,
            host_filter=None, operation=1, permission_type=1))
        assert response.error_code.name == "security_disabled"
    finally:
        connection.close()


def test_confluent_admin_alters_and_describes_scram_users(secure, tls_files):
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    kafka_admin = admin_client(secure, tls_files)
    upsertion = UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                             b"dave-password")
    assert [f.result(timeout=DEADLINE_S) for f in kafka_admin.alter_user_scram_credentials([upsertion]).values()] \
        == [None]
    (described,) = kafka_admin.describe_user_scram_credentials(["dave"]).values()
    infos = described.result(timeout=DEADLINE_S).scram_credential_infos
    assert [(info.mechanism, info.iterations) for info in infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]
    dave = client_config(secure, tls_files, "SASL_SSL", "dave", "dave-password", "SCRAM-SHA-512")
    AdminClient(dave).list_topics(timeout=DEADLINE_S)  # logs in with the password set over the wire


def test_sasl_handshake_v0_then_bare_plain_token_authenticates(secure):
    import struct

    from kio.schema.metadata.v12.request import MetadataRequest
    from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest

    connection = wire_client.WireSocket(servers(secure, "SASL_PLAINTEXT"))
    try:
        _id, handshake = connection.call(SaslHandshakeRequest(mechanism="PLAIN"))
        assert handshake.error_code.value == 0 and "PLAIN" in handshake.mechanisms
        token = b"\0admin\0" + ADMIN_PASSWORD.encode()
        connection.send(struct.pack(">i", len(token)) + token)  # v0: the token without a Kafka header
        assert connection.read_frame() == b""  # an empty server token: authenticated
        _id, metadata = connection.call(MetadataRequest(
            topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False), 2)
        assert metadata.brokers
    finally:
        connection.close()
