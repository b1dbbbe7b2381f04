"""The `rafka` command."""
