"""gitsafe: converge a shared deploy checkout to a clean, current REMOTE/BRANCH.

Python API::

    import gitsafe
    report = gitsafe.pull("/srv/app", "origin", "main", exclude=["deploy-hook.log"])
    if report.exit_code == 0: ...

Both functions return a :class:`Report`; operational failures are reports with outcome
``failed`` or ``refused``, never exceptions.
"""

from gitsafe._version import __version__
from gitsafe.core import doctor, pull
from gitsafe.report import Report

__all__ = ["Report", "__version__", "doctor", "pull"]
