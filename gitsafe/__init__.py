"""gitsafe: converge a shared deploy checkout to a clean, current REMOTE/BRANCH.

Python API::

    import gitsafe
    report = gitsafe.pull("/srv/app", "origin", "main", exclude=["deploy-hook.log"])
    if report.exit_code == 0: ...

Both functions return a :class:`Report`; operational failures are reports with outcome
``failed`` or ``refused``, never exceptions.
"""

from __future__ import annotations

from gitsafe._version import __version__

# Not typing's: importing typing here (about 7 ms) would delay the work-tree reads that the
# entry point starts before anything else (gitsafe/prescan.py); mypy reads this name as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gitsafe.core import doctor, pull
    from gitsafe.report import Report

__all__ = ["Report", "__version__", "doctor", "pull"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `gitsafe --version` and the CLI's start do not pay for libgit2.
    if name in ("pull", "doctor"):
        from gitsafe import core

        return getattr(core, name)
    if name == "Report":
        from gitsafe.report import Report

        return Report
    raise AttributeError(f"module 'gitsafe' has no attribute {name!r}")
