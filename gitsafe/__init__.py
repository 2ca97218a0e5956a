"""gitsafe: converge a shared deploy checkout to a clean, current REMOTE/BRANCH.

Python API::

    import gitsafe
    report = gitsafe.pull("/srv/app", "origin", "main", exclude=["deploy-hook.log"])
    if report.exit_code == 0: ...

Both functions return a :class:`Report`; operational failures are reports with outcome
``failed`` or ``refused``, never exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gitsafe._version import __version__

if TYPE_CHECKING:
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
