"""What a command-line run loads and how it treats the interpreter (docs/performance.md,
"Startup"): each path imports what it uses, the system's CA store waits for an https fetch,
and the cyclic collector is off for the command line only, never for a program that calls
the Python API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gitfixtures import run_cli


def _probe(args: list[str], cwd: Path) -> tuple[int, list[str], bool]:
    run = run_cli(args, cwd)
    return run.returncode, run.loaded, run.collector


def test_a_doctor_that_does_not_fetch_never_loads_the_transport(deploy: Path) -> None:
    # Nor what only a pull uses: the backup, the execution, the journal's and the report
    # file's json and tempfile.
    assert _probe(["doctor", "-e", "deploy-hook.log"], deploy) == (0, [], False)
    code, loaded, _ = _probe(["doctor", "--fetch"], deploy)
    assert code == 0 and {"gitsafe.credentials", "gitsafe.transport"} <= set(loaded)
    assert not {"gitsafe.backup", "gitsafe.execute"} & set(loaded)


def test_a_pull_loads_the_transport_and_runs_without_the_collector(deploy: Path) -> None:
    code, loaded, enabled = _probe(["pull", "origin", "main"], deploy)
    assert code == 0 and "gitsafe.transport" in loaded and not enabled
    assert {"gitsafe.backup", "gitsafe.execute", "json"} <= set(loaded)
    assert "ssl" not in loaded  # a local remote: no CA store, no ssl (gitsafe/tls.py)
    assert "ctypes" not in loaded  # only an SSH fetch reads its host key through ctypes
    # typer's reading of a line goes through the same entry point
    code, loaded, enabled = _probe(["pull", "origin", "main", "--"], deploy)
    assert code == 0 and "gitsafe.transport" in loaded and not enabled


def test_the_python_api_leaves_the_collector_alone(deploy: Path) -> None:
    code = (
        "import gc, json, sys, gitsafe\n"
        "report = gitsafe.pull(sys.argv[1], 'origin', 'main')\n"
        "print(json.dumps([report.exit_code, gc.isenabled()]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(deploy)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout) == [0, True]


def test_the_ca_store_waits_for_https_on_the_command_line_only(deploy: Path) -> None:
    """A command-line run over a local remote never hands libgit2 the system's CA store
    (gitsafe/tls.py); a program that imports gitsafe gets pygit2 as pygit2 sets itself up,
    with the store Python's ssl names."""
    for args in (["pull", "origin", "main"], ["doctor"]):
        run = run_cli(args, deploy)
        assert run.returncode == 0, run.stderr
        assert [run.ca[0], "ssl" in run.loaded] == [None, False]
    api = (
        "import json, ssl, sys, gitsafe, pygit2\n"
        "report = gitsafe.pull(sys.argv[1], 'origin', 'main')\n"
        "paths = ssl.get_default_verify_paths()\n"
        "print(json.dumps([report.exit_code, pygit2.settings.ssl_cert_file, paths.cafile,\n"
        "                  pygit2.settings.ssl_cert_dir, paths.capath]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", api, str(deploy)], capture_output=True, text=True, check=True
    )
    code, cafile, expected_file, capath, expected_dir = json.loads(proc.stdout)
    assert code == 0 and (cafile, capath) == (expected_file, expected_dir)


_CONSOLE = (
    "import atexit, sys\n"
    "from gitsafe.__main__ import {entry}\n"
    "atexit.register(lambda: sys.stderr.write('EXIT HANDLER RAN\\n'))\n"
    "{entry}()\n"
)


def _console(
    entry: str, args: list[str], cwd: Path, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CONSOLE.format(entry=entry), *args],
        cwd=cwd,
        text=True,
        check=False,
        **kw,  # type: ignore[arg-type]
    )


def test_the_console_script_ends_as_main_does_without_the_teardown(deploy: Path) -> None:
    """The console script (``run``) skips the interpreter's teardown: the exit code, all of
    the output and every exit handler are those of :func:`main`, which ends in SystemExit."""
    (deploy / "scratch.txt").write_text("x\n")
    for args in (["doctor", "--json"], ["doctor", "--json", "--"], ["--version"]):
        quick = _console("run", args, deploy, capture_output=True)
        plain = _console("main", args, deploy, capture_output=True)
        assert quick.returncode == plain.returncode == (0 if args == ["--version"] else 1)
        assert quick.stderr.endswith("EXIT HANDLER RAN\n"), quick.stderr
        if args != ["--version"]:
            steady = ("started_at", "duration_ms", "timings")
            q, p = json.loads(quick.stdout), json.loads(plain.stdout)
            assert {k: v for k, v in q.items() if k not in steady} == {
                k: v for k, v in p.items() if k not in steady
            }
        else:
            assert quick.stdout == plain.stdout != ""


def test_output_that_cannot_be_written_fails_the_console_script_as_it_fails_main(
    deploy: Path,
) -> None:
    """Where the output cannot be written (a full disk here), the console script fails with
    the message and exit code that :func:`main` gets from the interpreter."""
    codes = []
    for entry in ("run", "main"):
        with open("/dev/full", "w") as full:
            proc = _console(entry, ["--version"], deploy, stdout=full, stderr=subprocess.PIPE)
        assert "EXIT HANDLER RAN" in proc.stderr
        assert "No space left on device" in proc.stderr
        codes.append(proc.returncode)
    assert codes[0] == codes[1] != 0
