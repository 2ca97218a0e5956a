"""The quick reading of plain ``gitsafe [-C DIR] pull|doctor ...`` command lines.

Deploy hooks run ``gitsafe pull origin main -e deploy-hook.log`` many times a day.  Importing
typer and building its command from :mod:`gitsafe.cli` costs about 30 ms of every such run,
which on a 50,000-file checkout is a quarter of the whole pull.  So the entry point reads those
lines itself, with the tables below, and hands them straight to :mod:`gitsafe.commands`.

It reads only what it is sure typer reads the same way: the options in the tables, each as
``--opt VALUE``, ``--opt=VALUE`` or a bare flag, and at most two arguments, in any order.
Anything else (``--help``, an unknown option, ``-qe PAT``, ``--``, a number typer would have
to judge, a missing value, a completion request) returns None, and typer reads the line and
says what it says about it.  ``tests/test_quickargs.py`` holds these tables to the options
typer builds from :mod:`gitsafe.cli` and compares the two readings on generated lines.

Like :mod:`gitsafe.prescan`, this loads before the work-tree reads start: no typing or
dataclasses here.
"""

from __future__ import annotations

import os
import sys

# mypy reads this name as typing's (see gitsafe/__init__.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What an option takes: nothing (a flag), a string, a repeatable string, or a number.
FLAG, TEXT, MULTI, INT, FLOAT = "flag", "text", "multi", "int", "float"

_COMMON: dict[str, tuple[str, str]] = {
    "-C": ("directory", TEXT),
    "-e": ("exclude", MULTI),
    "--exclude": ("exclude", MULTI),
    "--report": ("report", TEXT),
    "--json": ("as_json", FLAG),
    "-q": ("quiet", FLAG),
    "--quiet": ("quiet", FLAG),
    "--retries": ("retries", INT),
    "--depth": ("depth", INT),
    "--accept-new-host-key": ("accept_new_host_key", FLAG),
}

OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "pull": {
        **_COMMON,
        "--lock-timeout": ("lock_timeout", FLOAT),
        "--stale-lock-age": ("stale_lock_age", FLOAT),
        "--no-backup": ("no_backup", FLAG),
        "--alert-command": ("alert_command", TEXT),
        "--webhook": ("webhook", TEXT),
        "--webhook-format": ("webhook_format", TEXT),
        "--alert-timeout": ("alert_timeout", FLOAT),
        "--metrics-file": ("metrics_file", TEXT),
    },
    "doctor": {**_COMMON, "--fetch": ("fetch", FLAG)},
}

# The smallest number each integer option accepts (typer's IntRange).
MINIMUM = {"retries": 0, "depth": 1}

ARGUMENTS = ("remote", "branch")

# The options before the command: typer's group takes -C there, and others this does not read.
GLOBAL = {"-C": ("directory", TEXT)}


class Quick:
    """A command line read the quick way: the command, the directory it runs in (the
    command's ``-C`` over the global one, else "."), and the command's parameters by name,
    each present, with typer's defaults where not given."""

    def __init__(self, command: str, directory: str, params: dict[str, Any]) -> None:
        self.command, self.directory, self.params = command, directory, params


def parse(args: list[str], environ: dict[str, str] | None = None) -> Quick | None:
    """``args`` (``sys.argv[1:]``) read the quick way, or None: typer reads it."""
    env = os.environ if environ is None else environ
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in env):
        return None  # shell completion asks typer, not a run
    global_dir: str | None = None
    i = 0
    while i < len(args) and args[i] in GLOBAL:
        if i + 1 >= len(args):
            return None
        global_dir, i = args[i + 1], i + 2
    if i >= len(args) or args[i] not in OPTIONS:
        return None
    command, table = args[i], OPTIONS[args[i]]
    params: dict[str, Any] = {}
    for name, kind in table.values():
        params[name] = False if kind == FLAG else [] if kind == MULTI else None
    given: list[str] = []
    i += 1
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            if arg == "-" or len(given) == len(ARGUMENTS):
                return None
            given.append(arg)
            continue
        name, eq, attached = arg.partition("=")
        if name not in table or (eq and not name.startswith("--")):
            return None
        dest, kind = table[name]
        if kind == FLAG:
            if eq:
                return None
            params[dest] = True
            continue
        if eq:
            value = attached
        elif i < len(args):
            value, i = args[i], i + 1
        else:
            return None
        converted = _convert(kind, dest, value)
        if converted is None:
            return None
        if kind == MULTI:
            params[dest].append(value)
        else:
            params[dest] = converted
    for k, name in enumerate(ARGUMENTS):
        params[name] = given[k] if k < len(given) else None
    directory = params["directory"] or global_dir or "."
    return Quick(command, directory, params)


def _convert(kind: str, dest: str, value: str) -> object | None:
    """The value typer would pass, for the plain spellings only; None leaves it to typer."""
    if kind in (TEXT, MULTI):
        return value
    whole, dot, fraction = value.partition(".")
    if not _digits(whole + fraction) or (kind == INT and dot) or not (whole or fraction):
        return None  # signs, exponents, "inf", spaces, other scripts' digits: typer judges
    try:
        number = int(value) if kind == INT else float(value)
    except ValueError:  # more digits than int() takes (4300): typer says what is wrong
        return None
    return number if kind == FLOAT or number >= MINIMUM[dest] else None


def _digits(text: str) -> bool:
    return all("0" <= c <= "9" for c in text)


def run(quick: Quick) -> int:
    """Run the command as typer would have, and return its exit code."""
    from gitsafe import commands

    params = dict(quick.params)
    del params["directory"]
    try:
        if quick.command == "pull":
            return commands.pull(quick.directory, **params)
        return commands.doctor(quick.directory, **params)
    # As typer ends a command that raised these:
    except KeyboardInterrupt:
        return 130
    except EOFError:
        sys.stderr.write("\nAborted!\n")
        return 1
    except BrokenPipeError:
        # whoever read the output has gone: say nothing more, exit 1
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        return 1
