"""Streams: Python stream jobs whose tasks run as Ray actors.

    from rafka.streams import StreamsApp, TimeWindows

    app = StreamsApp("wordcount")
    words = app.source("words", key_format="utf8")
    words.group_by_key().window(TimeWindows.tumbling(60_000)).count(emit="final").to_stream().to("counts")
    job = app.start(cluster, workers=2)

See dsl.py (the steps), topology.py (sub-topologies and internal topics),
processors.py (what steps do, state, emission) and runtime.py (tasks, restore, the
commit order and the at-least-once guarantee).
"""

from rafka.streams.dsl import GroupedStream, Stream, StreamsApp, Table, WindowedStream
from rafka.streams.windows import SessionWindows, SlidingWindows, TimeWindows

__all__ = ["GroupedStream", "SessionWindows", "SlidingWindows", "Stream", "StreamsApp", "Table", "TimeWindows",
           "WindowedStream"]
