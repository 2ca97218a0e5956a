"""The human report on stderr: a one-line verdict, then what was restored, removed and kept.

The report is built as lines of styled segments (:func:`lines`).  A terminal gets them through
rich, in color; anything else (a deploy log, a pipe) gets the same text written plainly by
:func:`write`, without importing rich, which costs about 50 ms of every run otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from gitsafe.report import Report

if TYPE_CHECKING:
    from rich.console import Console

Segment = tuple[str, str]  # (text, rich style; "" for none)
Line = list[Segment]

_VERDICT_STYLE = {
    "up-to-date": "green",
    "fast-forwarded": "green",
    "healed": "yellow",
    "would-fast-forward": "green",
    "would-heal": "yellow",
    "disabled": "cyan",
    "refused": "red",
    "failed": "red",
}

_LIMIT = 20  # lines per section before "... and N more"

# Control characters in a path, a commit subject or a message are shown as git's quoting shows
# them (C escapes, else octal UTF-8 bytes), never written raw: a file name must not move the
# cursor or recolor a terminal, a tab must not turn into spaces, and rich, which drops some
# control characters and expands tabs, then prints exactly what the plain writer prints.
_NAMED = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}
_SHOWN = {
    c: _NAMED.get(c) or "".join(f"\\{b:03o}" for b in chr(c).encode())
    for c in (*range(0x20), *range(0x7F, 0xA0))
}


def _verdict(report: Report) -> str:
    plan = report.plan or {}
    target = (report.target or "")[:12]
    where = f"{report.remote.get('name')}/{report.branch}" if report.branch else ""
    match report.outcome:
        case "up-to-date":
            return f"up to date with {where} ({target}){_stale(plan)}"
        case "fast-forwarded":
            return f"fast-forwarded to {where} ({target}), {len(plan.get('incoming', []))} path(s)"
        case "healed":
            incoming = len(plan.get("incoming", []))
            return f"healed and now at {where} ({target}), {incoming} path(s) from upstream"
        case "would-fast-forward":
            return f"clean; a pull would fast-forward to {where} ({target}){_stale(plan)}"
        case "would-heal":
            return f"dirty; a pull would heal it and bring it to {where} ({target}){_stale(plan)}"
        case "disabled":
            return "gitsafe is disabled: ran plain 'git pull'"
    error = report.error or {}
    return f"{report.outcome}: {error.get('message', '')}"


def _stale(plan: dict[str, Any]) -> str:
    return "" if plan.get("fetched", True) else " as last fetched; --fetch to ask the remote"


def _section(out: list[Line], title: str, rows: list[str], style: str) -> None:
    if not rows:
        return
    out.append([(title, "bold"), (f" ({len(rows)})", "")])
    out.extend([("  ", ""), (row, style)] for row in rows[:_LIMIT])
    if len(rows) > _LIMIT:
        out.append([(f"  … and {len(rows) - _LIMIT} more (see the JSON report)", "")])


def _paths(items: list[dict[str, Any]]) -> list[str]:
    return [f"{i['path']}  ({i['reason']})" for i in items]


def lines(report: Report, verbose_keep: bool = True) -> list[Line]:
    """The report for people, as lines of (text, style) segments."""
    style = _VERDICT_STYLE.get(report.outcome, "white")
    out: list[Line] = [[(f"gitsafe {report.command}: {_verdict(report)}", f"bold {style}")]]
    plan = report.plan
    if plan:
        # A pull that stopped before changing anything shows what it would have done; only its
        # stale locks, removed before it planned, are gone (a report without "applied" is from
        # before the field, when only doctor's plan was unapplied).
        would = report.command == "doctor" or plan.get("applied") is False
        _section(out, "restore" if would else "restored", _paths(plan["restore"]), "yellow")
        _section(out, "remove" if would else "removed", _paths(plan["remove"]), "red")
        _section(
            out,
            "overwrite (untracked content the target now tracks)",
            _paths(plan["overwrite_ignored"]),
            "red",
        )
        drops = [f"{c['sha'][:12]} {c['subject']}" for c in plan["drop_commits"]]
        _section(out, "local commits dropped" if not would else "drop commits", drops, "red")
        state_title = "clear state" if would else "state cleared"
        _section(out, state_title, plan["clear_state"], "yellow")
        _section(
            out,
            "stale locks removed" if report.command == "pull" else "stale locks to remove",
            [lock["path"] for lock in plan["stale_locks"]],
            "yellow",
        )
        _section(
            out,
            "busy locks (a pull would wait)",
            [f"{x['path']} held by {x['held_by'] or 'nobody yet'}" for x in plan["busy_locks"]],
            "yellow",
        )
        if plan["switch_branch"]:
            was = plan["on_branch"] or "a detached HEAD"
            out.append([("branch", "bold"), (f": {was} → {plan['branch']}", "")])
        if verbose_keep:
            _section(out, "kept", _paths(plan["keep"]), "green")
        _section(out, "refused", plan["refusals"], "red")
    saved = report.backup
    if saved and saved.get("skipped"):
        out.append([("no backup", "yellow"), (f": {saved['reason']}", "")])
    elif saved:
        out.append(
            [
                ("backup", "bold"),
                (
                    f" {saved['id']}: {saved['entries']} path(s), "
                    f"{len(saved['commits'])} commit(s) saved; restore with ",
                    "",
                ),
                (f"gitsafe restore {saved['id']} --into DIR", "bold"),
            ]
        )
        if saved["pruned"]:
            out.append([(f"pruned old backups: {', '.join(saved['pruned'])}", "dim")])
    for warning in report.warnings:
        out.append([("warning:", "yellow"), (f" {warning}", "")])
    for alert in report.alerts:  # failed ones are among the warnings already
        if alert.get("ok"):
            how = f"HTTP {alert['http_status']}" if alert.get("http_status") else "exit 0"
            out.append([(f"alert {alert['kind']} {alert['target']}: sent ({how})", "dim")])
    if report.report_path and report.command == "pull":
        out.append([(f"report: {report.report_path}", "dim")])
    return [[(text.translate(_SHOWN), style) for text, style in line] for line in out]


def render(report: Report, console: Console, verbose_keep: bool = True) -> None:
    """Print the report through a rich console (color where the console has it)."""
    from rich.text import Text

    for line in lines(report, verbose_keep):
        console.print(Text.assemble(*line))


def colored(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Would rich color this stream?  rich's own test, minus its notebook and IDLE cases:
    ``TTY_COMPATIBLE=0/1`` decides, then a set ``FORCE_COLOR`` (non-empty: yes), then isatty."""
    env = os.environ if environ is None else environ
    tty_compatible = env.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "1"
    force = env.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def write(report: Report, stream: IO[str], verbose_keep: bool = True) -> None:
    """Print the report to ``stream``: through rich on a terminal, as plain text otherwise."""
    if colored(stream):
        from rich.console import Console

        render(report, Console(file=stream, highlight=False, soft_wrap=True), verbose_keep)
        return
    text = "".join(
        "".join(seg for seg, _style in line) + "\n" for line in lines(report, verbose_keep)
    )
    stream.write(text)
    stream.flush()
