"""The ``rafka`` command line. Later issues add the cluster, topic and bench commands."""

from __future__ import annotations

import click

import rafka


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(rafka.__version__, prog_name="rafka")
def cli() -> None:
    """rafka: an event streaming platform in Python on Ray."""


def main() -> None:
    cli()
