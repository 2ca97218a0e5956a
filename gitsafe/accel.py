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


def describe() -> str:
    """Which scan this process uses, in words (for diagnostics and the tests)."""
    return "native scan" if native is not None else "pure-Python scan"
