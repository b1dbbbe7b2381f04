"""``rafka acls add|list|remove`` and ``rafka users set|delete|list``: the Kafka
listeners' ACLs and SCRAM users (docs/security.md), through the Admin client.

A resource is one of ``--topic NAME``, ``--group NAME``, ``--transactional-id NAME`` or
``--cluster``; ``--prefixed`` makes the name a prefix. ``add`` takes one or more
``--operation`` (read, write, create, delete, alter, describe, describe_configs,
alter_configs, idempotent_write, all) and ``--deny`` for a deny rule. ``list`` and
``remove`` take the same options as filters, each left out matching everything;
``remove`` with no filter at all is refused (it would remove every ACL) unless
``--all`` is given. A password is read from ``--password-file`` or asked for without
echo; it never appears on the command line.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from rafka.cli import connection
from rafka.cli.common import CONTEXT, address_options, fails_cleanly, table
from rafka.security.acl import CLUSTER_NAME, OPERATIONS, AclBinding


def _resource_options(command: Callable) -> Callable:
    for option in reversed([
        click.option("--topic", default=None, help="A topic (name or, with --prefixed, prefix; * for all)."),
        click.option("--group", default=None, help="A consumer group."),
        click.option("--transactional-id", default=None, help="A transactional id."),
        click.option("--cluster", is_flag=True, help="The cluster resource (kafka-cluster)."),
        click.option("--prefixed", is_flag=True, help="The name is a prefix (pattern type prefixed)."),
        click.option("--principal", default=None, help="User:<name>, or User:* for everyone."),
        click.option("--host", default=None, help="Client address the rule applies to (default *)."),
    ]):
        command = option(command)
    return command


def _resource(topic: str | None, group: str | None, transactional_id: str | None, cluster: bool) -> tuple:
    chosen = [(kind, name) for kind, name in (("topic", topic), ("group", group),
                                              ("transactional_id", transactional_id)) if name is not None]
    if cluster:
        chosen.append(("cluster", CLUSTER_NAME))
    if len(chosen) > 1:
        raise click.UsageError("give at most one of --topic, --group, --transactional-id, --cluster")
    return chosen[0] if chosen else (None, None)


@click.group(context_settings=CONTEXT)
def acls() -> None:
    """Add, list and remove ACLs of the Kafka listeners."""


@acls.command("add")
@_resource_options
@click.option("--operation", "operations", multiple=True, required=True,
              type=click.Choice([name for name in OPERATIONS if name != "any"]), help="Repeat for several.")
@click.option("--deny", is_flag=True, help="A deny rule (deny beats allow).")
@address_options
@fails_cleanly
def acls_add(topic, group, transactional_id, cluster, prefixed, principal, host, operations, deny,
             address, namespace) -> None:
    """Allow (or with --deny, refuse) a principal operations on a resource."""
    kind, name = _resource(topic, group, transactional_id, cluster)
    if kind is None or principal is None:
        raise click.UsageError("add needs --principal and one of --topic, --group, --transactional-id, --cluster")
    bindings = [AclBinding(kind, name, principal, operation, permission="deny" if deny else "allow",
                           pattern_type="prefixed" if prefixed else "literal", host=host or "*")
                for operation in operations]
    connection.connect(address, namespace).admin().create_acls(bindings)
    for binding in bindings:
        click.echo(f"added {_describe(binding)}")


def _filter(topic, group, transactional_id, cluster, prefixed, principal, host) -> dict[str, Any]:
    kind, name = _resource(topic, group, transactional_id, cluster)
    selected: dict[str, Any] = {"principal": principal, "host": host}
    if kind is not None:
        selected.update(resource_type=kind, name=name, pattern_type="prefixed" if prefixed else "literal")
    return selected


def _describe(binding: AclBinding) -> str:
    return (f"{binding.permission} {binding.principal} {binding.operation} on {binding.resource_type} "
            f"{binding.name!r} ({binding.pattern_type}) from {binding.host}")


@acls.command("list")
@_resource_options
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@address_options
@fails_cleanly
def acls_list(topic, group, transactional_id, cluster, prefixed, principal, host, output, address,
              namespace) -> None:
    """List the ACLs that match the options (all without any)."""
    found = connection.connect(address, namespace).admin().describe_acls(
        **_filter(topic, group, transactional_id, cluster, prefixed, principal, host))
    if output == "json":
        click.echo(json.dumps([binding.to_dict() for binding in found]))
        return
    table("ACLs", ("principal", "permission", "operation", "resource", "name", "pattern", "host"),
           [(b.principal, b.permission, b.operation, b.resource_type, b.name, b.pattern_type, b.host) for b in found])


@acls.command("remove")
@_resource_options
@click.option("--operation", default=None, type=click.Choice(list(OPERATIONS)), help="Only this operation.")
@click.option("--all", "everything", is_flag=True, help="Allow a remove with no filter (every ACL).")
@address_options
@fails_cleanly
def acls_remove(topic, group, transactional_id, cluster, prefixed, principal, host, operation, everything,
                address, namespace) -> None:
    """Remove the ACLs that match the options."""
    selected = _filter(topic, group, transactional_id, cluster, prefixed, principal, host)
    if operation is not None:
        selected["operation"] = operation
    if not everything and all(value is None for value in selected.values()):
        raise click.UsageError("remove with no filter would remove every ACL; add a filter or --all")
    removed = connection.connect(address, namespace).admin().delete_acls(**selected)
    for binding in removed:
        click.echo(f"removed {_describe(binding)}")
    if not removed:
        click.echo("no ACL matched")


@click.group(context_settings=CONTEXT)
def users() -> None:
    """Set, delete and list the SCRAM users of the Kafka listeners (SASL/SCRAM and PLAIN)."""


def _read_password(password_file: str | None) -> str:
    if password_file is not None:
        with open(password_file) as handle:
            return handle.read().rstrip("\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("set")
@click.argument("user")
@click.option("--mechanism", type=click.Choice(["SCRAM-SHA-256", "SCRAM-SHA-512"]), multiple=True,
              help="Default: both.")
@click.option("--iterations", type=int, default=4096, show_default=True)
@click.option("--password-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Read the password from this file (else it is asked for).")
@address_options
@fails_cleanly
def users_set(user, mechanism, iterations, password_file, address, namespace) -> None:
    """Create a user or change its password (salted here; the password is never stored)."""
    password = _read_password(password_file)
    admin = connection.connect(address, namespace).admin()
    for chosen in mechanism or ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        admin.set_scram_credential(user, password, chosen, iterations)
        click.echo(f"set {chosen} credential of {user}")


@users.command("delete")
@click.argument("user")
@click.option("--mechanism", type=click.Choice(["SCRAM-SHA-256", "SCRAM-SHA-512"]), multiple=True,
              help="Default: every one the user has.")
@address_options
@fails_cleanly
def users_delete(user, mechanism, address, namespace) -> None:
    """Delete a user's credentials: it can no longer log in."""
    admin = connection.connect(address, namespace).admin()
    chosen = mechanism or [m for m, _i in admin.describe_scram_credentials([user]).get(user, [])]
    if not chosen:
        raise ValueError(f"user {user!r} has no SCRAM credential")
    for one in chosen:
        admin.delete_scram_credential(user, one)
        click.echo(f"deleted {one} credential of {user}")


@users.command("list")
@address_options
@fails_cleanly
def users_list(address, namespace) -> None:
    """List users, their mechanisms and iteration counts."""
    described = connection.connect(address, namespace).admin().describe_scram_credentials()
    table("SCRAM users", ("user", "mechanism", "iterations"),
           [(user, mechanism, iterations) for user, entries in sorted(described.items())
            for mechanism, iterations in entries])
