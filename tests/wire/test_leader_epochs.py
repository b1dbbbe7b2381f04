"""OffsetForLeaderEpoch through the listener (raw requests built with kio): the leader
answers where each of its leader epochs ended, as consumers ask after a leader change
(KIP-320); other brokers answer NOT_LEADER_OR_FOLLOWER."""

from kio.index import load_request_schema
from wire_client import WireSocket


def offset_for_leader_epoch(server: str, topic: str, leader_epoch: int, current_leader_epoch: int = -1):
    schema = load_request_schema(23, 4)
    module = __import__(schema.__module__, fromlist=["OffsetForLeaderTopic", "OffsetForLeaderPartition"])
    request = schema(replica_id=-1, topics=(module.OffsetForLeaderTopic(topic=topic, partitions=(
        module.OffsetForLeaderPartition(partition=0, current_leader_epoch=current_leader_epoch,
                                        leader_epoch=leader_epoch),)),))
    connection = WireSocket(server)
    try:
        _, response = connection.call(request)
    finally:
        connection.close()
    [answer] = response.topics[0].partitions
    return answer.error_code.name, answer.leader_epoch, answer.end_offset


def leader_and_others(cluster, bootstrap: str, topic: str) -> tuple[str, list[str]]:
    answers = {server: offset_for_leader_epoch(server, topic, 0) for server in bootstrap.split(",")}
    leaders = [server for server, answer in answers.items() if answer[0] == "none"]
    assert len(leaders) == 1, answers
    others = [server for server in answers if server not in leaders]
    assert all(answers[server][0] == "not_leader_or_follower" for server in others), answers
    return leaders[0], others


def test_offset_for_leader_epoch_answers_the_end_of_the_latest_epoch_from_the_leader(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1, replication_factor=2)
    producer = cluster.producer()
    for index in range(5):
        producer.send(topic, value=f"{index}".encode(), partition=0)
    producer.flush()
    producer.close()
    leader, _others = leader_and_others(cluster, bootstrap, topic)
    # The records were written at epoch 0 (the topic's first leader): it ends at the log end.
    assert offset_for_leader_epoch(leader, topic, 0) == ("none", 0, 5)
    # An epoch this log never had answers the latest epoch before it, and where it ends.
    assert offset_for_leader_epoch(leader, topic, 9) == ("none", 0, 5)


def test_offset_for_leader_epoch_with_a_newer_current_epoch_is_unknown_leader_epoch(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    leader, _others = leader_and_others(cluster, bootstrap, topic)
    assert offset_for_leader_epoch(leader, topic, 0, current_leader_epoch=7)[0] == "unknown_leader_epoch"
