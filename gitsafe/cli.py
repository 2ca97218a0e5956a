"""The ``gitsafe`` command line: parse, call the core, render, exit with the documented code.

Data (``--json``) goes to stdout, messages to stderr, so a hook can pipe the report cleanly.
"""

# No "from __future__ import annotations" here: typer reads every command's annotations on
# each start, and string annotations cost an eval() each (about 10 ms a run).

import sys
from typing import Annotated

import typer

from gitsafe import commands
from gitsafe import settings as S
from gitsafe.hooks_cli import hooks_app

app = typer.Typer(
    name="gitsafe",
    help="Converge a shared deploy checkout to a clean, current REMOTE/BRANCH, losing nothing.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

RemoteArg = Annotated[
    str | None,
    typer.Argument(
        help="Remote name. Default: the current branch's upstream remote, else origin.",
        metavar="REMOTE",
        show_default=False,
    ),
]
BranchArg = Annotated[
    str | None,
    typer.Argument(
        help="Branch. Default: the upstream's branch, else the current branch.",
        metavar="BRANCH",
        show_default=False,
    ),
]
DirOpt = Annotated[
    str | None,
    typer.Option("-C", help="Run as if started in this directory (like git -C).", metavar="PATH"),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-e",
        "--exclude",
        help=f"Keep untracked paths matching this gitignore-style pattern (repeatable). "
        f"Adds to {S.ENV_EXCLUDE} (colon-separated) and git config gitsafe.exclude.",
        metavar="PATTERN",
    ),
]
ReportOpt = Annotated[
    str | None,
    typer.Option(
        "--report",
        help=f"Write the JSON report here. Default: {S.ENV_REPORT}, git config gitsafe.report, "
        "else <gitdir>/gitsafe/last-report.json.",
        metavar="PATH",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout.")]
QuietOpt = Annotated[
    bool,
    typer.Option("-q", "--quiet", help="Print nothing but errors (no fetch progress bar either)."),
]
RetriesOpt = Annotated[
    int | None,
    typer.Option(
        "--retries",
        help=f"Retry a fetch that failed on a network fault this many times, backing off 1s, "
        f"2s, 4s... (default {S.DEFAULT_RETRIES}; {S.ENV_RETRIES}, gitsafe.retries).",
        metavar="N",
        min=0,
    ),
]
DepthOpt = Annotated[
    int | None,
    typer.Option(
        "--depth",
        help=f"Fetch at most N commits of history (git://, ssh, http(s) only). Default: as the "
        f"checkout is; a shallow one stays shallow ({S.ENV_DEPTH}, gitsafe.depth).",
        metavar="N",
        min=1,
    ),
]
AcceptNewHostKeyOpt = Annotated[
    bool,
    typer.Option(
        "--accept-new-host-key",
        help=f"Trust an SSH host key seen for the first time and add it to known_hosts (a "
        f"changed key is still refused; {S.ENV_ACCEPT_NEW_HOST_KEY}, gitsafe.acceptNewHostKey).",
    ),
]

_global_dir: str | None = None


def _version(value: bool) -> None:
    # `gitsafe --version` alone never gets here (gitsafe/__main__.py answers it before typer
    # loads); this serves it after other options, e.g. `gitsafe -C DIR --version`.
    if value:
        from gitsafe.versions import version_line

        typer.echo(version_line())
        raise typer.Exit(0)


@app.callback()
def main_callback(
    directory: DirOpt = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show versions and exit."),
    ] = False,
) -> None:
    """gitsafe: heal a deploy checkout, then pull."""
    global _global_dir
    _global_dir = directory


def _where(directory: str | None) -> str:
    chosen = directory or _global_dir or "."
    return chosen


@app.command()
def pull(
    remote: RemoteArg = None,
    branch: BranchArg = None,
    directory: DirOpt = None,
    exclude: ExcludeOpt = None,
    report: ReportOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    lock_timeout: Annotated[
        float | None,
        typer.Option(
            "--lock-timeout",
            help=f"Seconds to wait for a git lock held by another process (default "
            f"{S.DEFAULT_LOCK_TIMEOUT:g}; {S.ENV_LOCK_TIMEOUT}, gitsafe.lockTimeout).",
            metavar="SECONDS",
        ),
    ] = None,
    stale_lock_age: Annotated[
        float | None,
        typer.Option(
            "--stale-lock-age",
            help=f"A lock older than this that no process holds is stale and removed (default "
            f"{S.DEFAULT_STALE_LOCK_AGE:g}; {S.ENV_STALE_LOCK_AGE}, gitsafe.staleLockAge).",
            metavar="SECONDS",
        ),
    ] = None,
    no_backup: Annotated[
        bool,
        typer.Option(
            "--no-backup",
            help=f"Do not back up what the pull discards (recorded in the report; "
            f"{S.ENV_BACKUP}=0, gitsafe.backup false).",
        ),
    ] = False,
    alert_command: Annotated[
        str | None,
        typer.Option(
            "--alert-command",
            help=f"When the pull heals, refuses or fails, run this with /bin/sh -c, the JSON "
            f"report on stdin ({S.ENV_ALERT_COMMAND}, gitsafe.alertCommand).",
            metavar="CMD",
        ),
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            help=f"When the pull heals, refuses or fails, POST the JSON report here "
            f"({S.ENV_WEBHOOK}, gitsafe.webhook).",
            metavar="URL",
        ),
    ] = None,
    webhook_format: Annotated[
        str | None,
        typer.Option(
            "--webhook-format",
            help=f"json (the report) or slack (a one-line {{'text': ...}}); default json "
            f"({S.ENV_WEBHOOK_FORMAT}, gitsafe.webhookFormat).",
            metavar="FORMAT",
        ),
    ] = None,
    alert_timeout: Annotated[
        float | None,
        typer.Option(
            "--alert-timeout",
            help=f"Seconds each alert may take before it is abandoned (default "
            f"{S.DEFAULT_ALERT_TIMEOUT:g}; {S.ENV_ALERT_TIMEOUT}, gitsafe.alertTimeout).",
            metavar="SECONDS",
        ),
    ] = None,
    metrics_file: Annotated[
        str | None,
        typer.Option(
            "--metrics-file",
            help=f"Write Prometheus metrics here for node_exporter's textfile collector "
            f"({S.ENV_METRICS_FILE}, gitsafe.metricsFile).",
            metavar="PATH",
        ),
    ] = None,
    retries: RetriesOpt = None,
    depth: DepthOpt = None,
    accept_new_host_key: AcceptNewHostKeyOpt = False,
) -> None:
    """Heal the checkout and bring it to REMOTE/BRANCH.

    Exit codes: 0 the checkout now equals REMOTE/BRANCH; 1 the pull failed and a rerun can
    converge; 2 usage or configuration error, refused repository, not a git work tree.
    """
    raise typer.Exit(
        commands.pull(
            _where(directory),
            remote,
            branch,
            exclude=exclude or [],
            report=report,
            as_json=as_json,
            quiet=quiet,
            lock_timeout=lock_timeout,
            stale_lock_age=stale_lock_age,
            no_backup=no_backup,
            alert_command=alert_command,
            webhook=webhook,
            webhook_format=webhook_format,
            alert_timeout=alert_timeout,
            metrics_file=metrics_file,
            retries=retries,
            depth=depth,
            accept_new_host_key=accept_new_host_key,
        )
    )


@app.command()
def doctor(
    remote: RemoteArg = None,
    branch: BranchArg = None,
    directory: DirOpt = None,
    exclude: ExcludeOpt = None,
    report: Annotated[
        str | None,
        typer.Option("--report", help="Also write the JSON report here.", metavar="PATH"),
    ] = None,
    fetch: Annotated[
        bool,
        typer.Option("--fetch", help="Fetch first (updates only the remote-tracking ref)."),
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    retries: RetriesOpt = None,
    depth: DepthOpt = None,
    accept_new_host_key: AcceptNewHostKeyOpt = False,
) -> None:
    """Show what a pull would do, changing nothing.

    Exit codes: 0 nothing to heal; 1 a pull would heal; 2 no plan could be made (usage,
    configuration, refused repository, not a git work tree, fetch failure).
    """
    raise typer.Exit(
        commands.doctor(
            _where(directory),
            remote,
            branch,
            exclude=exclude or [],
            report=report,
            fetch=fetch,
            as_json=as_json,
            quiet=quiet,
            retries=retries,
            depth=depth,
            accept_new_host_key=accept_new_host_key,
        )
    )


@app.command()
def backups(
    directory: DirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the backups gitsafe made in this repository, newest first."""
    from gitsafe.restore_cli import list_command

    raise typer.Exit(list_command(_where(directory), as_json))


@app.command()
def restore(
    backup_id: Annotated[
        str | None,
        typer.Argument(help="Backup id (or a unique prefix). Default: the newest.", metavar="ID"),
    ] = None,
    into: Annotated[
        str | None,
        typer.Option("--into", help="Directory to write the saved files into.", metavar="DIR"),
    ] = None,
    in_place: Annotated[
        bool,
        typer.Option(
            "--in-place", help="Restore into the live work tree, only where paths do not exist."
        ),
    ] = False,
    directory: DirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Give back what a pull discarded: files into DIR, dropped commits as a branch.

    Exit codes: 0 restored; 1 some paths existed already and were skipped, or the backup lost
    some content; 2 usage error, no such backup, or a destination that cannot be written.
    """
    from gitsafe.restore_cli import restore_command

    raise typer.Exit(restore_command(_where(directory), backup_id, into, in_place, as_json))


@app.command()
def report(
    path: Annotated[
        str | None,
        typer.Argument(
            help="Report file. Default: where pull writes it (GITSAFE_REPORT, gitsafe.report, "
            "else <gitdir>/gitsafe/last-report.json).",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    directory: DirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored JSON report.")] = False,
    exit_code: Annotated[
        bool,
        typer.Option("--exit-code", help="Exit with the exit code the reported run had."),
    ] = False,
) -> None:
    """Show the last report, rendered as pull rendered it (on stdout).

    Exit codes: 0 shown (with --exit-code: the reported run's exit code); 2 no report, not a
    gitsafe report (or one with no valid exit code for --exit-code), or not a git work tree.
    """
    from gitsafe.report_cli import report_command

    raise typer.Exit(report_command(path, _where(directory), as_json, exit_code))


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the demo directory and print its path.")
    ] = False,
) -> None:
    """Build a throw-away origin and a dirty deploy base, then doctor and heal it."""
    from gitsafe.demo import run_demo

    raise typer.Exit(run_demo(keep=keep))


app.add_typer(hooks_app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("gitsafe: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
