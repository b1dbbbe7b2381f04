"""Process-wide settings of the processes rafka's actors run in.

Every actor class (controller, broker, partition replica, group coordinator, stream
and Connect workers, consumer pool workers) calls ``tune_actor_process()`` first in its
constructor. It is idempotent and changes only the calling process; a user's own
process (a producer, a consumer, a driver) is left as it is.

**Transparent huge pages off** (``prctl(PR_SET_THP_DISABLE)``, Linux only). Arrow's
default allocator (mimalloc, bundled in pyarrow) asks the kernel for huge pages, so the
first touch of each 2 MiB region zeroes all of it. An actor's memory turns over fast
(each fetch answer, record batch and aggregation step is a fresh buffer), and with huge
pages the kernel spent more CPU zeroing pages than rafka spent on its own work: in
``benchmarks/streams_bench.py`` (preloaded, 1M events) ``clear_page_erms`` was 37% of
every CPU sample of the machine (``perf record -a``), and turning huge pages off for the
actors cut the machine's CPU seconds for the job by about 40%. Huge pages help
programs whose large heaps stay put (their TLB misses drop); a broker's page cache is
the kernel's and is not affected. Setting ``MIMALLOC_ALLOW_THP=0`` in a process's
environment before pyarrow loads has the same effect (mimalloc then makes this call
itself), which is how to do it for your own processes.

Not promised: anything on other systems (the call is skipped there), or on Linux
kernels older than 3.15 (no such prctl: the call fails and is ignored).
"""

from __future__ import annotations

import ctypes
import logging
import sys

PR_SET_THP_DISABLE = 41  # linux/prctl.h
logger = logging.getLogger(__name__)
_tuned = False


def tune_actor_process() -> None:
    """Apply the settings of the module docstring to this process (once)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
            logger.debug("prctl(PR_SET_THP_DISABLE) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as error:  # no libc symbol: nothing to tune
        logger.debug("prctl unavailable: %s", error)
