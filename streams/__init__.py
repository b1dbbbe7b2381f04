"""Streams: the dataflow DSL and its task runtime on Ray actors (issue 7)."""
