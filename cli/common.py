"""What every ``rafka`` command group shares: the error policy, the connection options,
``--config KEY=VALUE`` parsing and click's context settings.

Error policy (every command, ``rafka connect`` and ``rafka bench`` included): a failure
is one line on stderr, ``rafka: error: <first line of the message> (<error class>)``, and
exit status 1; never a traceback (``RAFKA_DEBUG=1`` re-raises, to see one). Click's own
usage errors keep click's form and exit status 2; Ctrl-C passes through. ``fails_cleanly``
applies it to one command; ``main`` (cli/main.py) applies it once more around the whole
command line, so an error raised outside a command (a group's setup) is no exception.

This module imports only click: ``rafka`` imports it for every command, and Ray must not
be imported before ``connection.connect`` has set its authentication mode.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import click

CONTEXT = {"help_option_names": ["-h", "--help"]}


def fails_cleanly(command: Callable) -> Callable:
    """Turn any exception into one readable line on stderr and exit 1.

    rafka's errors and bad input say what was wrong; Ray's (an actor that died
    mid-command, a lost node) and anything unexpected get their first line, since their
    full text runs to many lines of process details. ``RAFKA_DEBUG=1`` re-raises, for
    the traceback. Click's own usage errors (exit 2) and Ctrl-C pass through."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:  # noqa: BLE001 - the one place errors become messages
            if os.environ.get("RAFKA_DEBUG"):
                raise
            click.echo(f"rafka: error: {one_line(error)} ({type(error).__name__})", err=True)
            sys.exit(1)

    return wrapper


def one_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message (its class name when it has none)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def address_options(command: Callable) -> Callable:
    command = click.option("--namespace", default=None,
                           help="Ray namespace of the rafka cluster (default: `rafka up`'s, else rafka).")(command)
    return click.option("--address", default=None, help="Ray address (default: RAY_ADDRESS or `rafka up`'s).")(command)


def parse_configs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("key=value", ...)`` as a dict; a pair without ``=`` or a key is a ValueError
    naming it."""
    configs = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--config takes key=value, got {pair!r}")
        configs[key.strip()] = value.strip()
    return configs


def table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Print ``rows`` as a table on stdout (None shows as an empty cell)."""
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title)
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*("" if value is None else str(value) for value in row))
    Console().print(shown)
