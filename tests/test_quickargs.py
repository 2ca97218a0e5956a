"""The quick reading of pull and doctor command lines equals typer's, wherever it reads one.

gitsafe/quickargs.py reads plain ``pull``/``doctor`` lines without typer and leaves every other
line to typer. These tests hold its tables to the command typer builds from gitsafe/cli.py,
compare the two readings on generated lines (the quick one may decline; it may never differ),
and run both readings of one line end to end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as hs

from gitsafe import cli, quickargs
from gitsafe.quickargs import FLAG, FLOAT, INT, MULTI, TEXT

GROUP = typer.main.get_command(cli.app)


def typer_reading(args: list[str]) -> tuple[str, str, dict[str, Any]] | None:
    """(command, directory, parameters) as typer reads ``args``, or None where typer would not
    run a pull or doctor (an error, help, version)."""
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            ctx = GROUP.make_context("gitsafe", list(args))
            rest = [*ctx._protected_args, *ctx.args]
            if not rest:
                return None
            name, sub, rest = GROUP.resolve_command(ctx, rest)
            assert sub is not None and name is not None
            subctx = sub.make_context(name, rest, parent=ctx)
    except Exception:  # click's UsageError, Exit (help, version), BadParameter...
        return None
    if name not in ("pull", "doctor"):
        return None
    params = dict(subctx.params)
    params["exclude"] = list(params["exclude"] or [])
    directory = params["directory"] or ctx.params["directory"] or "."
    return name, directory, params


def quick_reading(args: list[str]) -> tuple[str, str, dict[str, Any]] | None:
    quick = quickargs.parse(args, environ={})
    return None if quick is None else (quick.command, quick.directory, quick.params)


def _kind(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return FLAG
    if getattr(param, "multiple", False):
        return MULTI
    type_name = type(param.type).__name__
    return {"StringParamType": TEXT, "FloatParamType": FLOAT, "IntRange": INT}[type_name]


@pytest.mark.parametrize("command", ["pull", "doctor"])
def test_the_tables_hold_every_option_typer_builds_and_no_other(command: str) -> None:
    sub = GROUP.commands[command]  # type: ignore[attr-defined]
    options: dict[str, tuple[str, str]] = {}
    arguments = []
    for param in sub.params:
        if param.param_type_name == "argument":
            arguments.append(param.name)
            continue
        assert not param.secondary_opts, param.name  # no --no-x forms to read
        for opt in param.opts:
            options[opt] = (param.name, _kind(param))
        if _kind(param) == INT:
            assert param.type.min == quickargs.MINIMUM[param.name]
            assert param.type.max is None and not param.type.min_open
    assert options == quickargs.OPTIONS[command]
    assert tuple(arguments) == quickargs.ARGUMENTS
    group_options = {opt: p.name for p in GROUP.params for opt in p.opts}
    assert group_options["-C"] == quickargs.GLOBAL["-C"][0]


TOKENS = [
    "pull", "doctor", "report", "origin", "main", "", " x y ", "-", "--", "--help", "--version",
    "--bogus", "--no-json", "-C", "-Cdir", "/srv/a", "-e", "-e=x", "-qe", "-eq", "--exclude",
    "--exclude=x.log", "--exclude=", "--exclude=a=b", "deploy-hook.log", "--json", "--json=1",
    "-q", "--quiet", "--retries", "--retries=2", "3", "0", "007", "-1", "1.5", ".5", "1.", ".",
    "1e3", "inf", " 2", "1_0", "\u0663", "--depth", "--depth=0", "--lock-timeout",
    "--lock-timeout=2.5", "--stale-lock-age", "--no-backup", "--alert-command", "--webhook",
    "--webhook-format", "--alert-timeout", "--metrics-file", "--report", "--report=r.json",
    "--fetch", "--accept-new-host-key",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    hs.lists(hs.sampled_from(["-C", "/srv/g", "pull", "doctor"]), max_size=3),
    hs.lists(hs.sampled_from(TOKENS), max_size=9),
)
def test_where_the_quick_reading_reads_a_line_typer_reads_it_the_same(
    head: list[str], tail: list[str]
) -> None:
    args = head + tail
    quick = quick_reading(args)
    if quick is not None:
        assert quick == typer_reading(args), args


def _option_value(kind: str, name: str) -> hs.SearchStrategy[str]:
    if kind == INT:
        return hs.integers(quickargs.MINIMUM[name], 99).map(str)
    if kind == FLOAT:
        return hs.sampled_from(["0", "2", "2.5", ".5", "30.", "120"])
    return hs.sampled_from(["deploy-hook.log", ".deploy-prev-image-*", "", " x ", "-q", "a=b", "é"])


@hs.composite
def plain_lines(draw: hs.DrawFn) -> list[str]:
    """Lines as hooks write them: every one of them must be read the quick way."""
    command = draw(hs.sampled_from(["pull", "doctor"]))
    table = quickargs.OPTIONS[command]
    arguments = draw(hs.sampled_from([[], ["origin"], ["up", "b"]]))
    parts: list[list[str]] = []
    for opt in draw(hs.lists(hs.sampled_from(sorted(table)), max_size=6)):
        name, kind = table[opt]
        if kind == FLAG:
            parts.append([opt])
        elif opt.startswith("--") and draw(hs.booleans()):
            parts.append([f"{opt}={draw(_option_value(kind, name))}"])
        else:
            parts.append([opt, draw(_option_value(kind, name))])
    ordered = list(draw(hs.permutations(parts)))
    lowest = 0  # the arguments keep their order; options go anywhere around them
    for argument in arguments:
        at = draw(hs.integers(lowest, len(ordered)))
        ordered.insert(at, [argument])
        lowest = at + 1
    head = draw(hs.sampled_from([[], ["-C", "/srv/g"]]))
    return head + [command] + [token for part in ordered for token in part]


@settings(max_examples=300, deadline=None)
@given(plain_lines())
def test_plain_pull_and_doctor_lines_are_read_the_quick_way(args: list[str]) -> None:
    quick = quick_reading(args)
    assert quick is not None, args
    assert quick == typer_reading(args), args


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "origin", "main", "-e", "deploy-hook.log"],
        ["pull", "-q", "--json", "origin", "main"],
        ["-C", "/srv/app", "pull", "--no-backup", "--retries", "3", "--lock-timeout=2.5"],
        ["doctor", "--fetch", "-e", ".deploy-prev-image-*", "--exclude=deploy-hook.log"],
        ["doctor", "-C", "/srv/a", "--report", "/tmp/r.json", "upstream"],
    ],
)
def test_hook_lines_are_read_the_quick_way(args: list[str]) -> None:
    quick = quick_reading(args)
    assert quick is not None and quick == typer_reading(args)


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "--help"],
        ["pull", "-qe", "x"],
        ["pull", "--retries", "-1"],
        ["pull", "--depth", "0"],
        ["pull", "--lock-timeout", "soon"],
        ["pull", "--retries", "1" * 5000],  # more digits than int() takes
        ["pull", "--retries", "1" * 5000, "--help"],
        ["pull", "a", "b", "c"],
        ["pull", "-e"],
        ["pull", "--", "origin"],
        ["--version", "pull"],
        ["report"],
        [],
    ],
)
def test_lines_it_is_not_sure_of_are_left_to_typer(args: list[str]) -> None:
    assert quick_reading(args) is None


def test_a_completion_request_is_left_to_typer() -> None:
    line = ["pull", "origin"]
    assert quickargs.parse(line, environ={"_GITSAFE_COMPLETE": "bash_complete"}) is None
    assert quickargs.parse(line, environ={"GITSAFE_EXCLUDE": "x"}) is not None


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from gitsafe.__main__ import main\n"
        "try:\n    main()\nfinally:\n"
        "    sys.stderr.write('typer loaded: %s\\n' % ('typer' in sys.modules))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def _steady(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("started_at", "duration_ms", "timings")}


def test_both_readings_of_a_doctor_line_run_the_same_doctor(deploy: Path) -> None:
    (deploy / "scratch.txt").write_text("x\n")
    (deploy / "README.md").write_text("edited\n")
    line = ["doctor", "-C", str(deploy), "--json", "-e", "deploy-hook.log"]
    quick = _run(line, deploy.parent)
    slow = _run([*line, "--"], deploy.parent)  # "--" is typer's to read
    assert quick.stderr.endswith("typer loaded: False\n"), quick.stderr
    assert slow.stderr.endswith("typer loaded: True\n"), slow.stderr
    assert (quick.returncode, slow.returncode) == (1, 1)
    assert _steady(json.loads(quick.stdout)) == _steady(json.loads(slow.stdout))
    assert quick.stderr == slow.stderr.replace("True\n", "False\n")


def test_a_bad_value_gets_typers_message_and_exit_code(deploy: Path) -> None:
    proc = _run(["pull", "-C", str(deploy), "--retries", "-1"], deploy.parent)
    assert proc.returncode == 2
    assert "--retries" in proc.stderr and "typer loaded: True" in proc.stderr
