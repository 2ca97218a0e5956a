"""``gitsafe backups`` and ``gitsafe restore``: reading back what pulls saved."""

from __future__ import annotations

import json
import os
import sys

from rich.console import Console
from rich.table import Table

from gitsafe import backup
from gitsafe.errors import GitsafeError
from gitsafe.repository import open_checkout


def _console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def list_command(path: str, as_json: bool) -> int:
    try:
        co = open_checkout(path)
    except GitsafeError as e:
        _console().print(f"gitsafe backups: {e.message}", markup=False)
        return e.exit_code
    rows = [b.summary() for b in backup.list_backups(co.repo)]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=True) + "\n")
        return 0
    console = _console()
    if not console.is_terminal:
        console = Console(stderr=True, highlight=False, width=160)
    if not rows:
        console.print("no backups")
        return 0
    table = Table()
    for column in ("id", "created (UTC)", "branch", "files", "commits", "bytes", "aside"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            r["id"],
            r["created_at"],
            r["branch"] or "-",
            str(r["entries"]),
            str(r["commits"]),
            f"{r['bytes']:,}",
            str(r["aside"]),
        )
    console.print(table)
    return 0


def restore_command(
    path: str, backup_id: str | None, into: str | None, in_place: bool, as_json: bool
) -> int:
    console = _console()
    if (into is None) == (not in_place):
        console.print("gitsafe restore: give exactly one of --into DIR or --in-place")
        return 2
    if into == "":
        console.print("gitsafe restore: --into needs a directory (an empty one, or a new path)")
        return 2
    try:
        co = open_checkout(path)
    except GitsafeError as e:
        console.print(f"gitsafe restore: {e.message}", markup=False)
        return e.exit_code
    found = backup.find(co.repo, backup_id)
    if found is None:
        what = f"no backup {backup_id!r}" if backup_id else "no backups in this repository"
        console.print(f"gitsafe restore: {what} (see 'gitsafe backups')", markup=False)
        return 2
    target = co.workdir if in_place else os.path.abspath(str(into))
    try:
        result = backup.restore(co.repo, co.gitdir, found, target, in_place)
    except OSError as e:
        # The destination (the backup's own reads are caught per entry, as damaged): a file
        # where the directory goes, a read-only or full file system.  What was written so far
        # stays; a rerun skips it.
        where = e.filename if isinstance(e.filename, str) else target
        console.print(
            f"gitsafe restore: cannot write {where}: {e.strerror or e}; nothing is lost, the "
            f"backup {found.id} is unchanged",
            markup=False,
        )
        return 2
    if as_json:
        data = {
            "id": found.id,
            "into": target,
            "written": result.written,
            "skipped": result.skipped,
            "branches": result.branches,
            "damaged": result.damaged,
        }
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=True) + "\n")
    console.print(
        f"restored backup {found.id} into {target}: {len(result.written)} path(s) written, "
        f"{len(result.skipped)} skipped (already there)",
        markup=False,
    )
    for name in result.branches:
        console.print(f"dropped commits are on branch {name}", markup=False)
    for rel in result.skipped[:20]:
        console.print(f"  skipped {rel}", markup=False)
    if result.damaged:
        console.print(
            f"{len(result.damaged)} path(s) not restored: the backup no longer holds their "
            "content (a removed aside file or object)",
            markup=False,
        )
        for rel in result.damaged[:20]:
            console.print(f"  damaged {rel}", markup=False)
    return 1 if result.skipped or result.damaged else 0
