"""The ``gitsafe`` command's entry point (also ``python -m gitsafe``).

``gitsafe --version`` is answered here, before typer, rich and pygit2 are imported: the full
CLI costs about 140 ms to start, the answer alone about 30 ms (docs/performance.md, "Startup").
``pull`` and ``doctor`` start reading the work tree here too, before those imports
(gitsafe/prescan.py), import pygit2 without loading the system's CA bundle, which only an
https fetch needs (gitsafe/tls.py), and their plain command lines run without typer at all
(gitsafe/quickargs.py).

The command line runs with the cyclic garbage collector off, and frozen at exit (see
:func:`_collector_off`), and the console script ends without the interpreter's teardown (see
:func:`run`).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

# Not typing's (mypy reads it as typing's): typing would load before the early reads start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from gitsafe.versions import version_line

        sys.stdout.write(version_line() + "\n")
        return
    _collector_off()
    from gitsafe import quickargs

    quick = quickargs.parse(sys.argv[1:])
    if quick is not None:
        _start_run(quick.directory, quick.command)
        sys.exit(quickargs.run(quick))
    guess = _pull_or_doctor(sys.argv[1:])
    if guess is not None:
        _start_run(*guess)
    from gitsafe.cli import main as cli_main

    cli_main()


def _start_run(where: str, command: str) -> None:
    """What a ``pull`` or ``doctor`` does before anything else: start its work-tree reads
    (gitsafe/prescan.py; the run uses them only if they were for its repository), then import
    pygit2 beside them, without the system's CA bundle (gitsafe/tls.py)."""
    from gitsafe import prescan

    prescan.start_early(where, command)
    from gitsafe import tls

    tls.import_pygit2()


def run() -> None:
    """The ``gitsafe`` console script: :func:`main`, then a quick exit (:func:`_finish`).

    :func:`main` itself ends in ``SystemExit``, for callers that run it in-process and catch it.
    """
    try:
        main()
    except SystemExit as e:
        if e.code is None or (isinstance(e.code, int) and not isinstance(e.code, bool)):
            _finish(e.code or 0)
        raise  # a message to print: the interpreter's exit does that
    _finish(0)


def _finish(code: int) -> NoReturn:
    """Exit with ``code`` once the output is out and every exit handler has run, skipping the
    interpreter's teardown.

    The teardown frees every module and object one by one: 2.6 ms of a 100 ms doctor at 50,000
    files (docs/performance.md, "... a quicker exit"), for memory the kernel takes
    back at once.  Nothing a run leaves needs it: its files are closed and renamed into place
    before the report is printed, its run lock is an flock that closing the descriptor
    releases, and the early reads are joined by an exit handler.  Where the output cannot be
    flushed (a closed pipe), the interpreter's own exit reports it, as before.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # what the interpreter would run first, then forget
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        sys.exit(code)
    os._exit(code)


def _collector_off() -> None:
    """Spare a run the cyclic collector's passes, which find nothing to free in it.

    A run's objects are the imported modules and the plan, and they live until it ends; none
    of them hold a cycle that outlives its step.  Yet the collector walks them: during the imports,
    and once more when the interpreter exits, whether or not it is enabled.  That cost 18 ms of
    a 150 ms no-op pull at 50,000 files.  With the collector off, the peak memory of a run at
    200,000 files is unchanged (docs/performance.md).  ``gc.freeze`` at exit moves
    every object out of the collector's sight, so the final collection has nothing to walk,
    where a caller of :func:`main` gets the interpreter's teardown (the console script skips
    it: :func:`run`).  The Python API leaves the collector alone: its caller owns the process.
    """
    gc.disable()
    atexit.register(gc.freeze)  # registered first, so it runs after every other exit handler


def _pull_or_doctor(args: list[str]) -> tuple[str, str] | None:
    """(directory, command) for ``gitsafe [-C DIR] pull|doctor [... -C DIR ...]``, read the
    quick way: the last ``-C`` wins, as the subcommand's ``-C`` overrides the global one.  A
    wrong guess (``-C`` given as another option's value) costs only wasted reads."""
    command, directory, i = None, ".", 0
    while i < len(args):
        arg = args[i]
        if arg == "-C" and i + 1 < len(args):
            directory, i = args[i + 1], i + 2
            continue
        if arg.startswith("-C") and len(arg) > 2:
            directory = arg[2:]
        elif command is None:
            if arg.startswith("-"):
                return None  # --help, --install-completion, ...: no run to read for
            command = arg
        i += 1
    return (directory, command) if command in ("pull", "doctor") else None


if __name__ == "__main__":
    run()
