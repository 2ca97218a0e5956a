"""What ``gitsafe pull`` and ``gitsafe doctor`` do once their command line is read: run the
core, print the report, return the exit code.

Both readers of a command line end here: typer's (:mod:`gitsafe.cli`) and the quick one for
plain ``pull`` and ``doctor`` lines (:mod:`gitsafe.quickargs`), so the two cannot disagree on
anything past parsing.  Nothing here imports typer.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitsafe.report import Report


def pull(
    directory: str,
    remote: str | None,
    branch: str | None,
    *,
    exclude: list[str],
    report: str | None,
    as_json: bool,
    quiet: bool,
    lock_timeout: float | None,
    stale_lock_age: float | None,
    no_backup: bool,
    alert_command: str | None,
    webhook: str | None,
    webhook_format: str | None,
    alert_timeout: float | None,
    metrics_file: str | None,
    retries: int | None,
    depth: int | None,
    accept_new_host_key: bool,
) -> int:
    from gitsafe.core import pull as run_pull

    result = run_pull(
        directory,
        remote,
        branch,
        exclude=exclude,
        report_path=report,
        lock_timeout=lock_timeout,
        stale_lock_age=stale_lock_age,
        backup=False if no_backup else None,
        quiet_git=quiet,
        alert_command=alert_command,
        webhook=webhook,
        webhook_format=webhook_format,
        alert_timeout=alert_timeout,
        metrics_file=metrics_file,
        retries=retries,
        depth=depth,
        accept_new_host_key=True if accept_new_host_key else None,
        progress=not quiet,
    )
    return finish(result, as_json, quiet)


def doctor(
    directory: str,
    remote: str | None,
    branch: str | None,
    *,
    exclude: list[str],
    report: str | None,
    fetch: bool,
    as_json: bool,
    quiet: bool,
    retries: int | None,
    depth: int | None,
    accept_new_host_key: bool,
) -> int:
    from gitsafe.core import doctor as run_doctor

    result = run_doctor(
        directory,
        remote,
        branch,
        exclude=exclude,
        fetch_first=fetch,
        report_path=report,
        retries=retries,
        depth=depth,
        accept_new_host_key=True if accept_new_host_key else None,
        progress=not quiet,
    )
    return finish(result, as_json, quiet)


def finish(report: Report, as_json: bool, quiet: bool) -> int:
    """Data (``--json``) on stdout, messages on stderr, so a hook can pipe the report cleanly."""
    if as_json:
        sys.stdout.write(report.to_json_text())
        sys.stdout.flush()
    if not quiet:
        from gitsafe.render import write

        write(report, sys.stderr)
    elif report.error:
        sys.stderr.write(f"gitsafe {report.command}: {report.error['message']}\n")
    return report.exit_code
