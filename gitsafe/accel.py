"""The optional C extension (``gitsafe._native``), or None.

Two loops touch every tracked path on every run: parsing the index and lstat-ing each entry
against its cached stat data.  ``gitsafe/_native.c`` does both in C, the lstats in several
threads as git's ``core.preloadIndex`` does; the Python in :mod:`gitsafe.index_stat` and
:mod:`gitsafe.plan` is the reference it must equal, and is used whenever the extension is not
built (no C compiler at install time) or ``GITSAFE_NATIVE=0`` is set.
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("GITSAFE_NATIVE", "").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from gitsafe import _native
    except ImportError:
        return None
    return _native


native: ModuleType | None = _load()


def threads() -> int:
    """How many threads the stat pass may use: the CPUs this process may run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


# Above this many index entries the early reads outlast the imports beside them (about 2 us of
# CPU an entry against some 55 ms of imports on the machine of docs/performance.md).
READS_OUTLAST_IMPORTS = 20_000


def early_threads(entries: int) -> int:
    """Threads for the early reads (gitsafe/prescan.py) of an index of ``entries`` entries.

    They run beside the main thread's imports, and the scheduler shares the CPUs among runnable
    threads, not among tasks: twice :func:`threads` gives the reads the larger share where they,
    not the imports, are what the run waits for (at 50,000 files on two CPUs, four threads
    ended a doctor about 4 ms sooner than two, and took less CPU in all; at 10,000 files, where
    the imports end last, two threads stay best).  git's preload-index also runs more threads
    than CPUs: one per 500 entries, up to 20.
    """
    n = threads()
    return 2 * n if entries > READS_OUTLAST_IMPORTS else n


def describe() -> str:
    """Which scan this process uses, in words (for diagnostics and the tests)."""
    return "native scan" if native is not None else "pure-Python scan"
