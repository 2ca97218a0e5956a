"""The human report on stderr: a one-line verdict, then what was restored, removed and kept."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from gitsafe.report import Report

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


def _section(console: Console, title: str, rows: list[str], style: str) -> None:
    if not rows:
        return
    console.print(f"[bold]{escape(title)}[/bold] ({len(rows)})")
    for row in rows[:_LIMIT]:
        console.print(f"  [{style}]{escape(row)}[/{style}]")
    if len(rows) > _LIMIT:
        console.print(f"  … and {len(rows) - _LIMIT} more (see the JSON report)")


def _paths(items: list[dict[str, Any]]) -> list[str]:
    return [f"{i['path']}  ({i['reason']})" for i in items]


def render(report: Report, console: Console, verbose_keep: bool = True) -> None:
    style = _VERDICT_STYLE.get(report.outcome, "white")
    console.print(f"[bold {style}]gitsafe {report.command}: {escape(_verdict(report))}[/]")
    plan = report.plan
    if plan:
        would = report.command == "doctor"
        _section(console, "restore" if would else "restored", _paths(plan["restore"]), "yellow")
        _section(console, "remove" if would else "removed", _paths(plan["remove"]), "red")
        _section(
            console,
            "overwrite (untracked content the target now tracks)",
            _paths(plan["overwrite_ignored"]),
            "red",
        )
        drops = [f"{c['sha'][:12]} {c['subject']}" for c in plan["drop_commits"]]
        _section(console, "local commits dropped" if not would else "drop commits", drops, "red")
        state_title = "clear state" if would else "state cleared"
        _section(console, state_title, plan["clear_state"], "yellow")
        _section(
            console,
            "stale locks removed" if not would else "stale locks to remove",
            [lock["path"] for lock in plan["stale_locks"]],
            "yellow",
        )
        _section(
            console,
            "busy locks (a pull would wait)",
            [f"{x['path']} held by {x['held_by'] or 'nobody yet'}" for x in plan["busy_locks"]],
            "yellow",
        )
        if plan["switch_branch"]:
            was = plan["on_branch"] or "a detached HEAD"
            console.print(f"[bold]branch[/bold]: {escape(was)} → {escape(plan['branch'])}")
        if verbose_keep:
            _section(console, "kept", _paths(plan["keep"]), "green")
        _section(console, "refused", plan["refusals"], "red")
    saved = report.backup
    if saved and saved.get("skipped"):
        console.print(f"[yellow]no backup[/yellow]: {escape(saved['reason'])}")
    elif saved:
        console.print(
            f"[bold]backup[/bold] {escape(saved['id'])}: {saved['entries']} path(s), "
            f"{len(saved['commits'])} commit(s) saved; restore with "
            f"[bold]gitsafe restore {escape(saved['id'])} --into DIR[/bold]"
        )
        if saved["pruned"]:
            console.print(f"[dim]pruned old backups: {escape(', '.join(saved['pruned']))}[/dim]")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for alert in report.alerts:  # failed ones are among the warnings already
        if alert.get("ok"):
            how = f"HTTP {alert['http_status']}" if alert.get("http_status") else "exit 0"
            console.print(f"[dim]alert {alert['kind']} {escape(alert['target'])}: sent ({how})[/]")
    if report.report_path and report.command == "pull":
        console.print(f"[dim]report: {escape(report.report_path)}[/dim]")
