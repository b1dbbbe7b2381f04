"""The ``rafka`` command line: a persistent cluster, topics, and data in and out.

Every command prints errors as one line on stderr and exits non-zero (1 for a bad
request, 2 for bad usage), never with a traceback (``RAFKA_DEBUG=1`` shows it).
Connection: ``--address`` (or ``RAY_ADDRESS``, or what ``rafka up`` recorded) and
``--namespace`` (default: the one ``rafka up`` recorded, else ``rafka``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

import rafka
from rafka.cli import connection
from rafka.cli.acls import acls, users
from rafka.cli.bench import bench
from rafka.cli.common import CONTEXT, address_options, fails_cleanly, one_line, parse_configs, table
from rafka.cli.connect import connect
from rafka.errors import ClusterError, RafkaError
from rafka.wire import config as wire_config

__all__ = ["CONTEXT", "address_options", "cli", "fails_cleanly", "main", "parse_configs"]

@click.group(context_settings=CONTEXT)
@click.version_option(rafka.__version__, prog_name="rafka")
def cli() -> None:
    """rafka: an event streaming platform in Python on Ray."""


# -- cluster lifecycle -------------------------------------------------------------

@cli.command()
@click.option("--brokers", type=click.IntRange(min=1), default=None,
              help="How many brokers (default: 1 on a Ray head `up` starts; with --address, one on "
                   "every Ray node, including nodes that join later).")
@click.option("--data-dir", default=None, help="Where brokers keep their logs (default ~/.rafka/data).")
@click.option("--num-cpus", type=int, default=None, help="CPUs of a Ray head that `up` starts.")
@click.option("--wire-port", type=click.IntRange(0, 65535), default=9092, show_default=True,
              help="Kafka listener port of broker 0; broker i takes the next free port from this + i (0: any free port).")
@click.option("--wire-host", default=None,
              help="Address the Kafka listener binds (default 127.0.0.1; it is PLAINTEXT, without "
                   "authentication: bind 0.0.0.0 only where every client on the network is trusted, or use "
                   "--listener SASL_SSL://...).")
@click.option("--advertised-host", default=None, help="Host Kafka clients are told to connect to (default: the bind "
                                                      "address, or the node's IP when binding 0.0.0.0).")
@click.option("--no-wire", is_flag=True, help="Start no Kafka listener.")
@click.option("--listener", "listeners", multiple=True, metavar="PROTOCOL://HOST:PORT",
              help="A Kafka listener instead of --wire-host/--wire-port (repeatable, one per protocol): "
                   "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, e.g. SASL_SSL://0.0.0.0:9093 (docs/security.md).")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False, resolve_path=True), default=None,
              help="PEM certificate (chain) of the SSL and SASL_SSL listeners; the same path on every node.")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False, resolve_path=True), default=None,
              help="PEM private key of --ssl-certfile.")
@click.option("--sasl-mechanism", "sasl_mechanisms", multiple=True,
              type=click.Choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
              help="What SASL listeners offer (repeatable; default: all three).")
@click.option("--super-user", "super_users", multiple=True, metavar="User:NAME",
              help="A principal that bypasses ACLs (repeatable).")
@click.option("--authorizer/--no-authorizer", default=None,
              help="Check requests against ACLs (default: on when a listener is SASL_*).")
@address_options
@fails_cleanly
def up(brokers: int | None, data_dir: str | None, num_cpus: int | None, wire_port: int, wire_host: str | None,
       advertised_host: str | None, no_wire: bool, listeners: tuple[str, ...], ssl_certfile: str | None,
       ssl_keyfile: str | None, sasl_mechanisms: tuple[str, ...], super_users: tuple[str, ...],
       authorizer: bool | None, address: str | None, namespace: str) -> None:
    """Start a persistent rafka cluster (and a local Ray head, unless --address is given)."""
    if no_wire and listeners:
        raise click.UsageError("--no-wire and --listener contradict each other")
    security: dict = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile, "super_users": super_users,
                      "authorizer": authorizer}
    if sasl_mechanisms:
        security["sasl_mechanisms"] = sasl_mechanisms
    security = {key: value for key, value in security.items() if value not in (None, ())}
    # Checked before any Ray head starts: a bad listener or a missing key file fails here.
    wire_config.ListenerConfig(enabled=not no_wire, port=wire_port, host=wire_host or "127.0.0.1",
                               advertised_host=advertised_host, listeners=listeners, **security)
    address = address or os.environ.get("RAY_ADDRESS")
    namespace = namespace or connection.DEFAULT_NAMESPACE
    state = connection.read_state()
    if state is not None and address is None:
        try:
            connection.connect(state["address"], state["namespace"])
            click.echo(f"rafka is already running at {state['address']} (namespace {state['namespace']}); nothing changed")
            return
        except RafkaError:
            # Stale: that cluster is gone. A Ray head of ours may outlive its rafka
            # actors; stop it rather than leave it running unrecorded.
            _disconnect_ray()
            if state.get("started_ray"):
                connection.stop_ray_head(state)
            connection.clear_state()
    elif (state is not None and state.get("started_ray") and address != state["address"]
          and connection.ray_head_processes(state)):
        # Recording the new cluster would lose the only record of a Ray head we started.
        raise ClusterError(f"`rafka up` started a Ray head at {state['address']} that still runs: stop it with "
                           f"`rafka down` first, or give this cluster its own RAFKA_HOME")
    started = {"address": address, "started_ray": False}
    if address is None:
        started = connection.start_ray_head(num_cpus)
    else:
        connection.check_reachable(address)
    if started.get("ray_auth_mode"):
        os.environ["RAY_AUTH_MODE"] = started["ray_auth_mode"]
    import ray  # after RAY_AUTH_MODE is settled: Ray reads it once

    try:
        ray.init(address=started["address"], namespace=namespace, logging_level="ERROR", log_to_driver=False)
        try:
            rafka.Cluster.connect(namespace=namespace)
        except RafkaError:
            pass
        else:
            click.echo(f"rafka is already running at {started['address']} (namespace {namespace}); nothing changed")
            return
        data_dir = os.path.abspath(data_dir or os.path.join(connection.home(), "data"))
        if started["started_ray"]:
            brokers = brokers or 1  # a one-node Ray of our own: a fixed count, no node watch
        cluster = rafka.Cluster.start(data_dir=data_dir, brokers=brokers, address=started["address"], namespace=namespace,
                                      wire_port=None if no_wire else wire_port, wire_host=wire_host,
                                      wire_advertised_host=advertised_host, wire_listeners=list(listeners) or None,
                                      wire_security=security or None)
        connection.write_state({**started, "namespace": namespace, "data_dir": data_dir})
        click.echo(f"rafka is up: {len(cluster.brokers())} broker(s), Ray at {started['address']}, data in {data_dir}")
        click.echo(f"Kafka bootstrap servers: {cluster.bootstrap_servers or '(no listener)'}")
    except BaseException:
        if started.get("started_ray"):
            connection.stop_ray_head(started)
        raise


def _disconnect_ray() -> None:
    # Before killing a Ray head this process is connected to: a driver whose GCS dies
    # waits for it and then exits the process.
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


@cli.command()
@address_options
@fails_cleanly
def down(address: str | None, namespace: str | None) -> None:
    """Stop the rafka cluster, and the Ray head if `rafka up` started it. Data stays.

    The state file `rafka up` wrote is forgotten only when this stops the cluster it
    recorded; the Ray head `up` started is stopped even when its rafka actors are gone."""
    state = connection.read_state()
    target = connection.resolve_address(address)
    if target is None:
        raise ClusterError("no rafka cluster is running (start one with `rafka up`)")
    namespace = connection.resolve_namespace(target, namespace)
    recorded = connection.is_recorded_cluster(state, target, namespace)
    ours = recorded and bool(state.get("started_ray"))
    try:
        cluster = connection.connect(target, namespace)
    except RafkaError as error:
        if not ours:
            raise
        message = f"rafka was already gone: {one_line(error)}"
    else:
        try:
            brokers = f"{len(cluster.brokers())} broker(s)"
        except RafkaError:
            brokers = "its brokers"
        cluster.shutdown(stop_cluster=True)
        message = f"rafka is down ({brokers} stopped)"
    _disconnect_ray()
    if ours:
        connection.stop_ray_head(state)
        message += f"; stopped the Ray head at {state['address']}"
    if recorded:
        connection.clear_state()
    click.echo(message)


@cli.command()
@address_options
@fails_cleanly
def status(address: str | None, namespace: str) -> None:
    """Brokers, the controller quorum (voters, leader, epoch, lag), topics and partitions."""
    from rich.console import Console
    from rich.table import Table

    cluster = connection.connect(address, namespace)
    console = Console()
    brokers = Table(title="brokers")
    for column in ("id", "alive", "node", "data dir"):
        brokers.add_column(column)
    for broker in cluster.brokers():
        brokers.add_row(str(broker["broker_id"]), "yes" if broker["alive"] else "NO", broker["node_id"][:12], broker["data_dir"])
    console.print(brokers)
    quorum = cluster.quorum()
    voters = Table(title=f"controller quorum (leader: voter {quorum['leader']}, epoch {quorum['epoch']})")
    for column in ("voter", "role", "term", "commit index", "lag", "reachable"):
        voters.add_column(column)
    for voter in quorum["voters"]:
        lag = quorum["lag"].get(voter["voter_id"])
        voters.add_row(voter["voter_id"], str(voter.get("role", "?")), str(voter.get("term", "?")),
                       str(voter.get("commit_index", "?")), "?" if lag is None else str(lag),
                       "yes" if voter["reachable"] else f"NO ({voter.get('error', '')[:60]})")
    console.print(voters)
    console.print(f"Kafka bootstrap servers: {cluster.bootstrap_servers or '(no listener)'}")
    admin = cluster.admin()
    partitions = Table(title="partitions")
    for column in ("topic", "partition", "leader", "epoch", "replicas", "isr", "under-replicated"):
        partitions.add_column(column)
    for topic in admin.list_topics():
        for partition in admin.describe_topic(topic)["partitions"]:
            under = len(partition["isr"]) < len(partition["replicas"])
            partitions.add_row(topic, str(partition["partition"]), str(partition["leader"]),
                               str(partition["leader_epoch"]), ",".join(map(str, partition["replicas"])),
                               ",".join(map(str, partition["isr"])), "YES" if under else "")
    console.print(partitions)


# -- topics --------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def topics() -> None:
    """Create, list, describe, alter and delete topics."""


@topics.command("create")
@click.argument("topic")
@click.option("--partitions", type=int, default=1, show_default=True)
@click.option("--replication-factor", type=int, default=1, show_default=True)
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", help="A topic config, e.g. retention.ms=60000.")
@address_options
@fails_cleanly
def topics_create(topic: str, partitions: int, replication_factor: int, configs: tuple[str, ...],
                  address: str | None, namespace: str) -> None:
    config = parse_configs(configs)
    cluster = connection.connect(address, namespace)
    cluster.admin().create_topic(topic, partitions=partitions, replication_factor=replication_factor, config=config)
    click.echo(f"created topic {topic} with {partitions} partition(s), replication factor {replication_factor}")


@topics.command("list")
@address_options
@fails_cleanly
def topics_list(address: str | None, namespace: str) -> None:
    for topic in connection.connect(address, namespace).admin().list_topics():
        click.echo(topic)


@topics.command("describe")
@click.argument("topic")
@address_options
@fails_cleanly
def topics_describe(topic: str, address: str | None, namespace: str) -> None:
    admin = connection.connect(address, namespace).admin()
    description = admin.describe_topic(topic)
    ends = admin.list_offsets(topic, "latest")
    starts = admin.list_offsets(topic, "earliest")
    overrides = description["config"]
    click.echo(f"topic {topic}  partitions {len(description['partitions'])}  "
               f"configs {', '.join(f'{k}={v}' for k, v in sorted(overrides.items())) or '(defaults)'}")
    for partition in description["partitions"]:
        number = partition["partition"]
        click.echo(f"  partition {number}  leader {partition['leader']}  epoch {partition['leader_epoch']}  "
                   f"replicas {partition['replicas']}  isr {partition['isr']}  "
                   f"offsets {starts[number]}..{ends[number]}")


@topics.command("alter")
@click.argument("topic")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", help="Set a config (KEY= resets it).")
@click.option("--partitions", type=int, default=None, help="Grow the topic to this many partitions.")
@address_options
@fails_cleanly
def topics_alter(topic: str, configs: tuple[str, ...], partitions: int | None, address: str | None, namespace: str) -> None:
    """Change configs of TOPIC, or grow it to more partitions."""
    changes = {key: (value if value != "" else None) for key, value in parse_configs(configs).items()}
    admin = connection.connect(address, namespace).admin()
    before = admin.describe_topic(topic)  # an unknown topic fails here, also with nothing to alter
    if not changes and partitions is None:
        raise ValueError(f"nothing to alter on topic {topic}: give --config KEY=VALUE or --partitions N")
    done = []
    if changes:
        admin.alter_configs(topic, changes)
        done += [f"{key}={value}" if value is not None else f"{key} reset" for key, value in changes.items()]
    if partitions is not None:
        admin.create_partitions(topic, partitions)
        done.append(f"partitions {len(before['partitions'])} -> {partitions}")
    click.echo(f"altered topic {topic}: {', '.join(done)}")


@topics.command("delete")
@click.argument("topic")
@address_options
@fails_cleanly
def topics_delete(topic: str, address: str | None, namespace: str) -> None:
    connection.connect(address, namespace).admin().delete_topic(topic)
    click.echo(f"deleted topic {topic}")


# -- consumer groups -----------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def groups() -> None:
    """List, describe (with lag), delete consumer groups and reset their offsets."""


@groups.command("list")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@address_options
@fails_cleanly
def groups_list(output: str, address: str | None, namespace: str) -> None:
    listed = connection.connect(address, namespace).admin().list_groups()
    if output == "json":
        click.echo(json.dumps(listed))
        return
    table("consumer groups", ("group", "state", "members", "assignor"),
           [(g["group_id"], g["state"], g["members"], g["assignor"] or "") for g in listed])


@groups.command("describe")
@click.argument("group")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@address_options
@fails_cleanly
def groups_describe(group: str, output: str, address: str | None, namespace: str) -> None:
    """Members, and per partition: owner, committed offset, log end offset, lag."""
    description = connection.connect(address, namespace).admin().describe_group(group)
    if output == "json":
        click.echo(json.dumps(description))
        return
    click.echo(f"group {group}  state {description['state']}  assignor {description['assignor'] or '-'}  "
               f"epoch {description['epoch']}  total lag {description['total_lag']}")
    clients = {m["member_id"]: m["instance_id"] or m["client_id"] or m["member_id"][:12] for m in description["members"]}
    table("members", ("member", "instance id", "client id", "partitions"),
           [(m["member_id"][:12], m["instance_id"], m["client_id"],
             " ".join(f"{t}-{p}" for t, p in m["assignment"])) for m in description["members"]])
    table("partitions", ("topic", "partition", "owner", "committed", "log end", "lag"),
           [(e["topic"], e["partition"], clients.get(e["member_id"], "-") if e["member_id"] else "-",
             "-" if e["committed_offset"] is None else e["committed_offset"], e["log_end_offset"],
             "-" if e["lag"] is None else e["lag"]) for e in description["partitions"]])


@groups.command("delete")
@click.argument("group")
@address_options
@fails_cleanly
def groups_delete(group: str, address: str | None, namespace: str) -> None:
    """Delete a group with no active members, and its committed offsets."""
    connection.connect(address, namespace).admin().delete_group(group)
    click.echo(f"deleted group {group}")


@groups.command("reset-offsets")
@click.argument("group")
@click.option("--topic", required=True)
@click.option("--partition", "partitions", type=int, multiple=True, help="Only this partition (repeatable).")
@click.option("--to-earliest", is_flag=True)
@click.option("--to-latest", is_flag=True)
@click.option("--to-offset", type=int, default=None)
@click.option("--to-timestamp-ms", type=int, default=None, help="The first offset at or after this time (ms).")
@click.option("--shift-by", type=int, default=None, help="Move the committed offsets by N (may be negative).")
@click.option("--dry-run", is_flag=True, help="Print the new offsets without committing them.")
@address_options
@fails_cleanly
def groups_reset_offsets(group: str, topic: str, partitions: tuple[int, ...], to_earliest: bool, to_latest: bool,
                         to_offset: int | None, to_timestamp_ms: int | None, shift_by: int | None, dry_run: bool,
                         address: str | None, namespace: str) -> None:
    """Set a group's committed offsets on TOPIC (the group must have no active members)."""
    chosen = [flag for flag, value in (("--to-earliest", to_earliest), ("--to-latest", to_latest),
                                       ("--to-offset", to_offset is not None),
                                       ("--to-timestamp-ms", to_timestamp_ms is not None),
                                       ("--shift-by", shift_by is not None)) if value]
    if len(chosen) != 1:
        raise ValueError(f"give exactly one of --to-earliest, --to-latest, --to-offset, --to-timestamp-ms, "
                         f"--shift-by (got {', '.join(chosen) or 'none'})")
    to = "earliest" if to_earliest else "latest" if to_latest else to_offset
    offsets = connection.connect(address, namespace).admin().reset_offsets(
        group, topic, to=to, timestamp_ms=to_timestamp_ms, shift_by=shift_by,
        partitions=list(partitions) or None, dry_run=dry_run)
    for partition, offset in sorted(offsets.items()):
        click.echo(f"{topic} {partition} {offset}")
    click.echo(f"{'would reset' if dry_run else 'reset'} {len(offsets)} partition(s) of group {group}", err=True)


# -- data ----------------------------------------------------------------------------

@cli.command()
@click.argument("topic")
@click.option("--file", "source", type=click.File("rb"), default="-", help="Read lines from this file (default stdin).")
@click.option("--key-separator", default=None, help="Split each line into KEY<sep>VALUE.")
@click.option("--json", "json_lines", is_flag=True,
              help="Lines are JSON objects: {\"key\", \"value\", \"partition\", \"headers\"}.")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True)
@click.option("--partition", type=int, default=None, help="Send every record to this partition.")
@address_options
@fails_cleanly
def produce(topic: str, source, key_separator: str | None, json_lines: bool, acks: str, partition: int | None,
            address: str | None, namespace: str) -> None:
    """Send each line of stdin (or --file) as a record."""
    cluster = connection.connect(address, namespace)
    separator = key_separator.encode() if key_separator else None
    count = 0
    with cluster.producer(acks=acks if acks == "all" else int(acks)) as producer:
        producer.partitions_for(topic)  # an unknown topic fails before any input is read
        for number, line in enumerate(source, start=1):
            line = line.rstrip(b"\r\n")
            key, target, headers = None, partition, None
            if json_lines:
                try:
                    record = json.loads(line)
                except ValueError as error:
                    raise ValueError(f"line {number} is not JSON: {error}") from None
                if not isinstance(record, dict) or "value" not in record:
                    raise ValueError(f"line {number}: a JSON record needs a \"value\" field")
                value = _encode(record["value"])
                key = _encode(record.get("key"))
                target = record.get("partition", partition)
                headers = [(str(k), _encode(v)) for k, v in (record.get("headers") or {}).items()] or None
            elif separator is not None:
                if separator not in line:
                    raise ValueError(f"line {number} has no key separator {key_separator!r}")
                key, value = line.split(separator, 1)
            else:
                value = line
            producer.send(topic, value, key=key, partition=target, headers=headers)
            count += 1
        producer.flush()
    click.echo(f"produced {count} record(s) to {topic}", err=True)


def _encode(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


@cli.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset (default: the end).")
@click.option("--partition", "partitions", type=int, multiple=True, help="Read only this partition (repeatable).")
@click.option("--offset", type=int, default=None, help="Start at this offset (with --partition).")
@click.option("--max-messages", type=int, default=None, help="Stop after this many records.")
@click.option("--timeout-s", type=float, default=None, help="Stop after this long without a record.")
@click.option("--format", "output", type=click.Choice(["raw", "json"]), default="raw", show_default=True)
@click.option("--group", default=None, help="Consume as a member of this consumer group (commits what it printed).")
@address_options
@fails_cleanly
def consume(topic: str, from_beginning: bool, partitions: tuple[int, ...], offset: int | None,
            max_messages: int | None, timeout_s: float | None, output: str, group: str | None,
            address: str | None, namespace: str) -> None:
    """Print records of TOPIC: raw values one per line, or JSON with key, partition, offset, timestamp.

    With --group, partitions come from the group (unless --partition is given) and
    start at the group's committed offsets (--from-beginning applies where there are
    none); what was printed is committed on exit."""
    if offset is not None and len(partitions) != 1:
        raise ValueError("--offset needs exactly one --partition")
    cluster = connection.connect(address, namespace)
    consumer = cluster.consumer(auto_offset_reset="earliest" if from_beginning else "latest", group_id=group)
    chosen = list(partitions) or consumer.partitions_for_topic(topic)  # an unknown topic fails here
    assigned = [rafka.TopicPartition(topic, p) for p in chosen]
    if group is not None and not partitions:
        consumer.subscribe([topic])
    else:
        consumer.assign(assigned)
    if offset is not None:
        consumer.seek(assigned[0], offset)
    count, last_record_s = 0, time.monotonic()
    stdout = click.get_binary_stream("stdout")
    try:
        while max_messages is None or count < max_messages:
            records = consumer.poll(timeout_s=0.5, max_records=(max_messages - count) if max_messages else 10_000)
            for record in records:
                if output == "json":
                    line = json.dumps({"topic": record.topic, "partition": record.partition, "offset": record.offset,
                                       "timestamp": record.timestamp, "key": _decode(record.key),
                                       "value": _decode(record.value),
                                       "headers": {k: _decode(v) for k, v in record.headers} if record.headers else None})
                    stdout.write(line.encode() + b"\n")
                else:
                    stdout.write((record.value or b"") + b"\n")
            stdout.flush()
            count += len(records)
            if records:
                last_record_s = time.monotonic()
            elif timeout_s is not None and time.monotonic() - last_record_s >= timeout_s:
                break
    finally:
        consumer.close()  # with --group: commits what was printed


def _decode(data: bytes | None) -> str | None:
    if data is None:
        return None
    return data.decode("utf-8", errors="backslashreplace")


cli.add_command(acls)
cli.add_command(bench)
cli.add_command(connect)
cli.add_command(users)


def main() -> None:
    """The ``rafka`` entry point: the command line, under the error policy of
    ``rafka.cli.common`` once more, for what a command's own ``fails_cleanly`` does not
    cover."""
    fails_cleanly(cli)()
