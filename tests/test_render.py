"""The human report: the plain writer prints what rich prints, and a pipe never imports rich."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gitsafe.render import colored, render, write
from gitsafe.report import Report

# Any text a path, a subject, a warning or a branch can hold, markup and emoji codes included.
TEXT = st.lists(
    st.characters(codec="utf-8")
    | st.sampled_from(["[", "]", "[bold]", "[/]", ":smile:", "\t", "\n", "\r", "\x1b", "\\"]),
    max_size=8,
).map("".join)
ITEMS = st.lists(st.fixed_dictionaries({"path": TEXT, "reason": TEXT}), max_size=23)


@st.composite
def reports(draw: st.DrawFn) -> Report:
    command = draw(st.sampled_from(["pull", "doctor"]))
    plan = draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "restore": ITEMS,
                "remove": ITEMS,
                "overwrite_ignored": ITEMS,
                "keep": ITEMS,
                "drop_commits": st.lists(
                    st.fixed_dictionaries({"sha": st.text("0123456789abcdef"), "subject": TEXT}),
                    max_size=3,
                ),
                "clear_state": st.lists(TEXT, max_size=3),
                "stale_locks": st.lists(st.fixed_dictionaries({"path": TEXT}), max_size=2),
                "busy_locks": st.lists(
                    st.fixed_dictionaries({"path": TEXT, "held_by": st.none() | TEXT}), max_size=2
                ),
                "switch_branch": st.booleans(),
                "on_branch": st.none() | TEXT,
                "branch": TEXT,
                "refusals": st.lists(TEXT, max_size=3),
                "incoming": st.lists(TEXT, max_size=3),
                "fetched": st.booleans(),
            },
            optional={"applied": st.booleans()},  # absent from reports written before it
        )
    )
    backup = draw(
        st.none()
        | st.fixed_dictionaries({"skipped": st.just(True), "reason": TEXT})
        | st.fixed_dictionaries(
            {
                "id": TEXT,
                "entries": st.integers(0, 9),
                "commits": st.lists(TEXT, max_size=2),
                "pruned": st.lists(TEXT, max_size=2),
            }
        )
    )
    return Report(
        command=command,
        outcome=draw(st.sampled_from(["up-to-date", "healed", "would-heal", "failed", "odd"])),
        remote={"name": draw(TEXT), "url": None},
        branch=draw(st.none() | TEXT),
        target=draw(st.none() | TEXT),
        plan=plan,
        error=draw(st.none() | st.fixed_dictionaries({"message": TEXT})),
        warnings=draw(st.lists(TEXT, max_size=2)),
        backup=backup,
        alerts=draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "ok": st.booleans(),
                        "kind": TEXT,
                        "target": TEXT,
                        "http_status": st.none() | st.integers(100, 599),
                    }
                ),
                max_size=2,
            )
        ),
        report_path=draw(st.none() | TEXT),
    )


def _through_rich(report: Report, *, terminal: bool, keep: bool) -> str:
    out = io.StringIO()
    # An explicit color system colors even a non-terminal: only the terminal case names one.
    system = "standard" if terminal else "auto"
    console = Console(
        file=out, force_terminal=terminal, highlight=False, soft_wrap=True, color_system=system
    )
    render(report, console, keep)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(report=reports(), keep=st.booleans())
def test_plain_text_is_what_rich_prints_without_a_terminal(report: Report, keep: bool) -> None:
    plain = io.StringIO()
    write(report, plain, keep)  # a StringIO is no terminal
    assert plain.getvalue() == _through_rich(report, terminal=False, keep=keep)


@settings(max_examples=100, deadline=None)
@given(report=reports())
def test_a_terminal_gets_the_same_text_in_color(report: Report) -> None:
    colored_text = _through_rich(report, terminal=True, keep=True)
    plain = io.StringIO()
    write(report, plain)
    assert "\x1b[" in colored_text
    # Paths may hold escape characters of their own: strip only the styles rich added.
    styles = re.compile(r"\x1b\[[0-9;]*m")
    assert styles.sub("", colored_text) == styles.sub("", plain.getvalue())


def test_markup_and_emoji_codes_in_paths_print_literally() -> None:
    report = Report(
        command="doctor",
        outcome="would-heal",
        remote={"name": "origin", "url": None},
        branch="main",
        target="ab" * 20,
        plan={
            "restore": [],
            "remove": [{"path": "a:smile:b [bold]x[/bold]", "reason": "untracked"}],
            "overwrite_ignored": [],
            "keep": [],
            "drop_commits": [],
            "clear_state": [],
            "stale_locks": [],
            "busy_locks": [],
            "switch_branch": False,
            "refusals": [],
        },
    )
    assert report.plan is not None
    report.plan["remove"].append(
        {"path": "tab\there\x1b[2Jesc\u009bcsi\x7f", "reason": "untracked"}
    )
    for terminal in (False, True):
        text = re.sub(r"\x1b\[[0-9;]*m", "", _through_rich(report, terminal=terminal, keep=True))
        assert "a:smile:b [bold]x[/bold]  (untracked)" in text
        # Control characters are shown as git quotes them, never written raw.
        assert "tab\\there\\033[2Jesc\\302\\233csi\\177  (untracked)" in text
        assert "\x1b[2J" not in text and "\t" not in text


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_color_follows_rich_rules() -> None:
    tty, pipe = _Stream(True), _Stream(False)
    assert colored(tty, {}) and not colored(pipe, {})
    assert colored(pipe, {"FORCE_COLOR": "1"}) and not colored(tty, {"FORCE_COLOR": ""})
    assert not colored(tty, {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"})
    assert colored(pipe, {"TTY_COMPATIBLE": "1"})
    assert colored(tty, {"TTY_COMPATIBLE": "2"})  # other values: auto-detect
    for env in ({}, {"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}, {"TTY_COMPATIBLE": "0"}):
        for stream in (tty, pipe):
            console = Console(file=stream, _environ=env)
            assert colored(stream, env) == console.is_terminal, (env, stream.tty)


def test_a_piped_pull_never_imports_rich(deploy: Path) -> None:
    probe = (
        "import sys\n"
        "from gitsafe.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('rich' in sys.modules, file=sys.stdout)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    for argv, wants in ((["pull", "origin", "main"], "False"), (["doctor"], "False")):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv],
            cwd=deploy,
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.stdout.strip() == wants, proc.stderr
        assert proc.stderr.startswith(f"gitsafe {argv[0]}: "), proc.stderr
    colored_env = {**env, "FORCE_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", probe, "doctor"],
        cwd=deploy,
        capture_output=True,
        text=True,
        env=colored_env,
    )
    assert proc.stdout.strip() == "True" and "\x1b[" in proc.stderr
