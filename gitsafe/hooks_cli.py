"""``gitsafe hooks``: the typer sub-app; the work is in gitsafe/hooks_install.py."""

# No "from __future__ import annotations" here: typer reads every command's annotations on
# each start, and string annotations cost an eval() each (about 10 ms a run).

from enum import StrEnum
from typing import Annotated

import typer

hooks_app = typer.Typer(
    name="hooks",
    help="Install gitsafe's git hooks (push-to-deploy with post-receive).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class HookName(StrEnum):
    post_receive = "post-receive"


HookArg = Annotated[HookName, typer.Argument(help="The hook.", metavar="HOOK")]
RepoOpt = Annotated[
    str | None,
    typer.Option(
        "--repo",
        help="The repository pushes go to (usually bare). Default: -C, else the current directory.",
        metavar="PATH",
    ),
]


def _repo(ctx: typer.Context, repo: str | None) -> str:
    # The global `gitsafe -C PATH` lives on the root command's parameters.
    directory = ctx.find_root().params.get("directory")
    return repo or (directory if isinstance(directory, str) else None) or "."


def _say(message: str) -> None:
    typer.echo(message, err=True)


@hooks_app.command()
def install(
    ctx: typer.Context,
    hook: HookArg,
    work_tree: Annotated[
        str,
        typer.Option(
            "--work-tree",
            help="The deploy work tree: a clone of the repository whose remote points at it.",
            metavar="PATH",
        ),
    ],
    repo: RepoOpt = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch",
            help="Deploy pushes to this branch. Default: git config gitsafe.deployBranch, "
            "else the repository's HEAD branch, when the hook runs.",
            metavar="BRANCH",
        ),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            help="The work tree's name for the repository. Default: git config "
            "gitsafe.deployRemote, else origin.",
            metavar="NAME",
        ),
    ] = None,
    chain: Annotated[
        bool | None,
        typer.Option(
            "--chain/--no-chain",
            help="Move a hook that is not gitsafe's to HOOK.legacy and run it first, with the "
            "same input. Default: keep what an earlier install chose.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Move a hook that is not gitsafe's to HOOK.legacy without running it "
            "(never deleted).",
        ),
    ] = False,
) -> None:
    """Install gitsafe's hook, or update the one installed before.

    A hook that gitsafe did not write is left alone unless --chain or --force says what to do
    with it. Exit codes: 0 installed, updated or already current; 2 refused or usage error.
    """
    from gitsafe import hooks_install
    from gitsafe.errors import GitsafeError

    try:
        done = hooks_install.install(
            _repo(ctx, repo),
            work_tree,
            branch=branch or "",
            remote=remote or "",
            force=force,
            chain=chain,
            name=hook.value,
        )
    except GitsafeError as e:
        _say(f"gitsafe hooks install: {e.message}")
        raise typer.Exit(2) from None
    except OSError as e:
        _say(f"gitsafe hooks install: {e}")
        raise typer.Exit(2) from None
    for note in done.notes:
        _say(f"warning: {note}")
    _say(f"gitsafe hooks install: {done.action} {done.hook}")
    if done.legacy:
        _say(f"the previous hook is kept as {done.legacy}")
    raise typer.Exit(0)


@hooks_app.command()
def uninstall(ctx: typer.Context, hook: HookArg, repo: RepoOpt = None) -> None:
    """Remove gitsafe's hook and put back the hook it moved aside, if any.

    Exit codes: 0 removed (or there was none); 2 the hook is not gitsafe's, usage error.
    """
    from gitsafe import hooks_install
    from gitsafe.errors import GitsafeError

    try:
        done = hooks_install.uninstall(_repo(ctx, repo), name=hook.value)
    except GitsafeError as e:
        _say(f"gitsafe hooks uninstall: {e.message}")
        raise typer.Exit(2) from None
    except OSError as e:
        _say(f"gitsafe hooks uninstall: {e}")
        raise typer.Exit(2) from None
    messages = {
        "absent": f"no {done.hook}; nothing to do",
        "uninstalled": f"removed {done.hook}",
        "restored": f"removed gitsafe's hook; {done.legacy} is {done.hook} again",
    }
    _say(f"gitsafe hooks uninstall: {messages[done.action]}")
    raise typer.Exit(0)
