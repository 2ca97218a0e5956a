"""``gitsafe report``: show the last pull's report, rendered as ``pull`` rendered it.

The rendering is this command's output, so it goes to stdout (``gitsafe report | mail ...``);
messages about a missing or unreadable report go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from gitsafe.errors import GitsafeError
from gitsafe.report import SCHEMA, Report

EXIT_UNREADABLE = 2  # no report, not JSON, another schema, or no repository to find it in


class Unreadable(Exception):
    pass


def default_path(directory: str) -> str:
    """The report path ``gitsafe pull`` in ``directory`` would use (GITSAFE_REPORT, then
    gitsafe.report, then the sentinel in the git directory); only that setting is resolved, so
    a bad unrelated setting cannot hide the report that describes it."""
    from gitsafe.repository import open_checkout
    from gitsafe.settings import report_setting

    co = open_checkout(directory)
    chosen = report_setting(co.repo.config).value
    return chosen or os.path.join(co.gitdir, "gitsafe", "last-report.json")


def load(path: str) -> tuple[str, Report]:
    """The report's text as stored and the report it holds."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise Unreadable(f"no report at {path} (no pull has written one yet)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Unreadable(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise Unreadable(f"{path} is not a gitsafe report (invalid JSON: {e})") from None
    except RecursionError:  # nested deeper than the parser goes: no report is
        raise Unreadable(f"{path} is not a gitsafe report (JSON nested too deep)") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise Unreadable(f"{path} is not a {SCHEMA} report (schema: {found!r})")
    if not isinstance(data.get("command"), str) or not isinstance(data.get("outcome"), str):
        raise Unreadable(f"{path} is not a complete {SCHEMA} report")
    return text, Report.from_json(data)


def _age(started_at: str) -> str:
    try:
        then = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f" ({seconds // size} {unit} ago)"
    return f" ({max(seconds, 0)} s ago)"


def report_command(path: str | None, directory: str, as_json: bool, mirror_exit: bool) -> int:
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        chosen = path if path is not None else default_path(directory)
        text, report = load(chosen)
    except GitsafeError as e:
        errors.print(f"gitsafe report: {e.message}", markup=False)
        return EXIT_UNREADABLE
    except Unreadable as e:
        errors.print(f"gitsafe report: {e}", markup=False)
        return EXIT_UNREADABLE
    if as_json:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out = Console(highlight=False, soft_wrap=True)
        try:
            with out.capture() as captured:  # all or nothing: no half report, then an error
                _show(report, os.path.abspath(chosen), out)
        except (KeyError, TypeError, AttributeError, ValueError):
            errors.print(f"gitsafe report: {chosen} is a malformed {SCHEMA} report", markup=False)
            return EXIT_UNREADABLE
        sys.stdout.write(captured.get())
    if mirror_exit:
        code = report.exit_code
        # Only what a run can exit with: 300 would become 44, and true 1.
        if isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 255:
            return code
        errors.print(f"gitsafe report: {chosen} holds no exit code (got {code!r})", markup=False)
        return EXIT_UNREADABLE
    return 0


def _show(report: Report, path: str, console: Console) -> None:
    from gitsafe.render import render

    where = f" in {report.repo}" if report.repo else ""
    header = (
        f"gitsafe {report.command}{where} at {report.started_at}{_age(report.started_at)}, "
        f"exit {report.exit_code}, {report.duration_ms} ms"
    )
    console.print(f"[dim]{escape(header)}[/dim]")
    report.report_path = report.report_path or path
    render(report, console)
