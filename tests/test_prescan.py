"""The reads a run starts before it needs them (gitsafe/prescan.py) are used only when they
stand for the repository as the run finds it: the same work tree and index file, and, for reads
started before the pull took its run lock, no other gitsafe run in between."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitfixtures import Origin, git, write

import gitsafe
from gitsafe import accel, prescan, runlock

pytestmark = pytest.mark.skipif(accel.native is None, reason="gitsafe._native is not built here")


@pytest.fixture
def used(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each run's plan got reads made ahead of it."""
    seen: list[bool] = []
    original = prescan.Prescan.result

    def result(self: prescan.Prescan, lock_now: runlock.Seen = runlock.UNSEEN) -> object:
        found = original(self, lock_now)
        seen.append(found is not None)
        return found

    monkeypatch.setattr(prescan.Prescan, "result", result)
    monkeypatch.setattr(prescan, "_early", None)
    yield seen
    if prescan._early is not None:
        prescan._early.join()


def _dirty(deploy: Path) -> None:
    write(deploy, "README.md", "edited\n")
    write(deploy, "scratch/new.txt", "untracked\n")


def test_reads_started_with_the_command_line_are_used_by_pull_and_doctor(
    origin: Origin, deploy: Path, used: list[bool]
) -> None:
    _dirty(deploy)
    prescan.start_early(str(deploy / "scratch"), "doctor")  # from a subdirectory too
    assert prescan._early is not None and prescan._early.lock == runlock.UNSEEN
    report = gitsafe.doctor(deploy)
    assert report.outcome == "would-heal" and used == [True]
    prescan.start_early(str(deploy), "pull")
    assert prescan._early is not None and prescan._early.lock == runlock.ABSENT  # no run yet
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.outcome == "healed" and used == [True, True]
    assert git(deploy, "status", "--porcelain") == ""
    # The Python API alone starts them beside the fetch, under the run lock.
    _dirty(deploy)
    assert gitsafe.pull(deploy, "origin", "main").outcome == "healed"
    assert used == [True, True, True] and git(deploy, "status", "--porcelain") == ""


def test_reads_made_before_another_gitsafe_ran_are_dropped(
    origin: Origin, deploy: Path, used: list[bool]
) -> None:
    gitdir = str(deploy / ".git")
    for before in (None, b"99999\n"):  # no run.lock yet, and one an old run left
        if before is not None:
            (deploy / ".git" / "gitsafe" / "run.lock").write_bytes(before)
        prescan.start_early(str(deploy), "pull")
        with runlock.exclusive(gitdir, 1.0):  # another run takes the lock in between
            pass
        _dirty(deploy)
        report = gitsafe.pull(deploy, "origin", "main")
        assert report.outcome == "healed" and used[-1] is False
        assert git(deploy, "status", "--porcelain") == ""
    # Nobody in between: the lock file is found as the look saw it.
    prescan.start_early(str(deploy), "pull")
    _dirty(deploy)
    assert gitsafe.pull(deploy, "origin", "main").outcome == "healed" and used[-1] is True


def test_a_busy_run_lock_or_a_git_file_starts_nothing_early(
    origin: Origin, deploy: Path, tmp_path: Path, used: list[bool]
) -> None:
    gitdir = str(deploy / ".git")
    with runlock.exclusive(gitdir, 1.0):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(30)\n",
            os.path.join(gitdir, "gitsafe", "run.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert runlock.peek(gitdir) == runlock.BUSY
        prescan.start_early(str(deploy), "pull")
        assert prescan._early is None  # the pull will wait for the holder, then read afresh
        prescan.start_early(str(deploy), "doctor")  # doctor takes no lock
        assert prescan._early is not None
        prescan._early.join()
        prescan._early = None
    finally:
        holder.kill()
        holder.wait()
    # A linked work tree has a .git file: left to the run, which discovers it properly.
    linked = tmp_path / "linked"
    git(deploy, "worktree", "add", "-q", "-b", "other", str(linked))
    prescan.start_early(str(linked), "doctor")
    assert prescan._early is None
    # Reads for one work tree are not claimed for another.
    prescan.start_early(str(deploy), "doctor")
    assert prescan.claim(str(linked), str(linked / ".git")) is None
    assert prescan._early is None


def test_the_run_lock_is_released_by_its_with_block_and_not_entered_twice(deploy: Path) -> None:
    gitdir = str(deploy / ".git")
    lock = runlock.exclusive(gitdir, 0.2)
    with pytest.raises(ValueError), lock:
        assert runlock.peek(gitdir) == runlock.BUSY
        with pytest.raises(RuntimeError), lock:
            pass
        assert runlock.peek(gitdir) == runlock.BUSY  # the refused entry left it held
        raise ValueError("the body fails")
    assert runlock.peek(gitdir) != runlock.BUSY  # released on the way out
    with lock:  # and usable again
        assert runlock.peek(gitdir) == runlock.BUSY


def test_peek_sees_what_exclusive_then_finds(deploy: Path) -> None:
    gitdir = str(deploy / ".git")
    assert runlock.peek(gitdir) == runlock.ABSENT
    with runlock.exclusive(gitdir, 1.0) as found:
        assert found == runlock.ABSENT  # this run created the file
    seen = runlock.peek(gitdir)
    assert isinstance(seen, tuple) and seen[2] == f"{os.getpid()}\n".encode()
    with runlock.exclusive(gitdir, 1.0) as found:
        assert found == seen
        # Held: a look from another open file sees it busy.
        fd = os.open(os.path.join(gitdir, "gitsafe", "run.lock"), os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    # Another process's run rewrites it (its pid), so a look before and after differ.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom gitsafe import runlock\n"
            "with runlock.exclusive(sys.argv[1], 5.0):\n    pass\n",
            gitdir,
        ],
        check=True,
    )
    after = runlock.peek(gitdir)
    assert isinstance(after, tuple) and after != seen and after[0] == seen[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pull", "origin", "main", "-e", "deploy-hook.log"], (".", "pull")),
        (["-C", "/srv/a", "doctor", "--fetch"], ("/srv/a", "doctor")),
        (["-C", "/srv/a", "pull", "-C", "/srv/b"], ("/srv/b", "pull")),
        (["pull", "-C/srv/c", "origin"], ("/srv/c", "pull")),
        (["--help"], None),
        (["report"], None),
        (["hooks", "install", "post-receive"], None),
        ([], None),
    ],
)
def test_the_entry_point_reads_which_repository_a_pull_or_doctor_is_for(
    argv: list[str], expected: tuple[str, str] | None
) -> None:
    from gitsafe.__main__ import _pull_or_doctor

    assert _pull_or_doctor(argv) == expected


def test_what_loads_before_the_reads_start_stays_light() -> None:
    """The entry point starts the reads after importing only gitsafe/__init__, __main__,
    quickargs, prescan and what they import: typing and dataclasses there (about 15 ms), or
    collections and contextlib (1.5 ms), would delay the reads, which are what a large checkout
    waits for."""
    heavy = ("typing", "dataclasses", "pygit2", "typer", "collections", "contextlib")
    code = (
        "import sys, gitsafe.__main__, gitsafe.quickargs, gitsafe.prescan; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert proc.stdout.strip() == "[]"


def test_the_early_reads_take_twice_the_threads_where_they_outlast_the_imports() -> None:
    n = accel.threads()
    assert accel.early_threads(accel.READS_OUTLAST_IMPORTS) == n
    assert accel.early_threads(accel.READS_OUTLAST_IMPORTS + 1) == 2 * n
    assert accel.early_threads(0) == n


def test_the_early_reads_ask_for_threads_by_the_index_entry_count(
    deploy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    monkeypatch.setattr(accel, "early_threads", lambda entries: asked.append(entries) or 1)
    entries = len(git(deploy, "ls-files", "-z").split("\0")) - 1
    reads = prescan.Prescan(str(deploy), str(deploy / ".git" / "index"), True)
    assert reads.result() is not None  # one thread reads it all the same
    assert asked == [entries] and entries > 1
