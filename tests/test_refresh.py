"""After a build, a copy or a restore touched every tracked file: one pull hashes each file once
and saves the refreshed stat data in the index, as git's refresh does, byte for byte."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest
from gitfixtures import Origin, git, write

import gitsafe
from gitsafe import accel, execute, index_file

STRACE = shutil.which("strace")


def _checkout(origin: Origin, tmp_path: Path, n: int = 30) -> Path:
    """A deploy checkout of ``n`` files with names unique to their last component (so that an
    ``openat`` of a file relative to its directory names it), an executable and a symlink."""
    for i in range(n):
        write(origin.work, f"d{i % 3}/sub{i % 2}/file{i}.txt", f"content {i}\n" * (i % 5))
    write(origin.work, "tools/run.sh", "#!/bin/sh\necho run\n", mode=0o755)
    (origin.work / "latest").symlink_to("d0/sub0/file0.txt")
    origin.push("files")
    return origin.clone(tmp_path / "deploy")


def _touch_all(deploy: Path) -> list[str]:
    """A new mtime (and so ctime) for every tracked file, as a build gives them after the
    index was written: newer than the index file, which is made 20 seconds old, and ten
    seconds back, older than any index written from here on (so that none is racily clean)."""
    tracked = git(deploy, "ls-files", "-z").split("\0")[:-1]
    now = time.time_ns()
    os.utime(deploy / ".git" / "index", ns=(now - 20 * 10**9, now - 20 * 10**9))
    stamp = now - 10 * 10**9
    for name in tracked:
        os.utime(deploy / name, ns=(stamp, stamp), follow_symlinks=False)
    return tracked


@pytest.mark.parametrize("version", [2, 4])
def test_the_index_a_pull_writes_after_a_touch_is_the_one_git_refresh_writes(
    origin: Origin, tmp_path: Path, version: int
) -> None:
    deploy = _checkout(origin, tmp_path)
    git(deploy, "update-index", "--index-version", str(version))
    git(deploy, "status", "--porcelain")  # a cache-tree and current stat data
    index = deploy / ".git" / "index"
    _touch_all(deploy)
    before = index.read_bytes()
    git(deploy, "update-index", "-q", "--refresh")  # git's own refresh, as status would write it
    by_git = index.read_bytes()
    assert by_git != before
    index.write_bytes(before)
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.outcome == "up-to-date", report.error
    assert index.read_bytes() == by_git  # the same stat data, extensions and checksum
    assert git(deploy, "status", "--porcelain") == ""


def _reads_of_each_file(deploy: Path, names: list[str], tmp_path: Path) -> dict[str, int]:
    """Run a pull under strace and count, for each file name, the opens that read it."""
    log = tmp_path / "strace.log"
    proc = subprocess.run(
        [
            *("strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(log)),
            *(sys.executable, "-m", "gitsafe", "pull", "origin", "main", "-C", str(deploy)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    counts = dict.fromkeys(names, 0)
    opened = re.compile(r'open(?:at)?\((?:[^,]+, )?"(?:[^"]*/)?([^"/]+)", ([A-Z_|]+)')
    for line in log.read_text().splitlines():
        m = opened.search(line)
        if m and m.group(1) in counts and "O_RDONLY" in m.group(2) and "O_PATH" not in line:
            counts[m.group(1)] += 1
    return counts


@pytest.mark.skipif(STRACE is None, reason="needs strace to count the reads")
@pytest.mark.parametrize("upstream_moved", [False, True], ids=["noop", "heal"])
def test_after_a_touch_a_pull_reads_each_file_once(
    origin: Origin, tmp_path: Path, upstream_moved: bool
) -> None:
    """Hashing is the whole cost of that run.  Was twice: libgit2's index write took every
    entry newer than the index it read for racily clean and hashed it again (6 s of a 9 s
    run at 200,000 files)."""
    deploy = _checkout(origin, tmp_path)
    if upstream_moved:  # the index is then written through libgit2, with the new entry
        write(origin.work, "d1/sub1/file1.txt", "upstream\n")
        origin.push("upstream")
    tracked = _touch_all(deploy)
    names = [os.path.basename(p) for p in tracked if p.startswith("d")]
    counts = _reads_of_each_file(deploy, names, tmp_path)
    if upstream_moved:
        del counts["file1.txt"]  # rewritten from the target, never hashed
    assert set(counts.values()) == {1}, counts
    assert git(deploy, "status", "--porcelain") == ""
    assert git(deploy, "diff-files", "--name-only") == ""  # the stat data was saved


# -- the in-place write gives way ----------------------------------------------------------


def _touched_plan(deploy: Path) -> tuple[pygit2.Repository, object, object]:
    from gitsafe.core import build_plan
    from gitsafe.remote import choose, tracking_tip
    from gitsafe.repository import open_checkout
    from gitsafe.settings import resolve

    co = open_checkout(str(deploy))
    source = choose(co.repo, "origin", "main")
    target = tracking_tip(co.repo, source)
    assert target is not None
    plan = build_plan(co, source, target, resolve(co.repo.config, {}))  # type: ignore[arg-type]
    return co.repo, plan.changes, plan.index


needs_native = pytest.mark.skipif(accel.native is None, reason="gitsafe._native is not built")


@needs_native
def test_the_in_place_write_refreshes_what_the_plan_verified(
    origin: Origin, tmp_path: Path
) -> None:
    deploy = _checkout(origin, tmp_path)
    tracked = _touch_all(deploy)
    repo, changes, planned = _touched_plan(deploy)
    assert len(changes.verified_records) == 44 * (len(tracked) - 1)  # type: ignore[attr-defined]
    assert list(changes.verified) == ["latest"]  # type: ignore[attr-defined]  # the symlink
    assert execute.refresh_in_place(repo, changes, planned)  # type: ignore[arg-type]
    assert git(deploy, "diff-files", "--name-only") == ""
    assert not (deploy / ".git" / "index.lock").exists()


@needs_native
def test_the_in_place_write_leaves_an_index_changed_since_the_plan(
    origin: Origin, tmp_path: Path
) -> None:
    deploy = _checkout(origin, tmp_path)
    _touch_all(deploy)
    repo, changes, planned = _touched_plan(deploy)
    write(deploy, "d0/sub0/file0.txt", "staged meanwhile\n")
    git(deploy, "add", "d0/sub0/file0.txt")
    index = deploy / ".git" / "index"
    after_add = index.read_bytes()
    assert not execute.refresh_in_place(repo, changes, planned)  # type: ignore[arg-type]
    assert index.read_bytes() == after_add
    assert not (deploy / ".git" / "index.lock").exists()


@needs_native
def test_the_in_place_write_never_takes_a_held_lock(origin: Origin, tmp_path: Path) -> None:
    deploy = _checkout(origin, tmp_path)
    _touch_all(deploy)
    repo, changes, planned = _touched_plan(deploy)
    lock = deploy / ".git" / "index.lock"
    lock.write_bytes(b"someone else's\n")
    before = (deploy / ".git" / "index").read_bytes()
    assert not execute.refresh_in_place(repo, changes, planned)  # type: ignore[arg-type]
    assert lock.read_bytes() == b"someone else's\n"
    assert (deploy / ".git" / "index").read_bytes() == before


@needs_native
def test_the_in_place_write_is_for_the_stat_data_alone(origin: Origin, tmp_path: Path) -> None:
    """Anything else the index needs (an entry to change, a conflict, an extension it does
    not rewrite) goes through libgit2."""
    deploy = _checkout(origin, tmp_path)
    write(origin.work, "d1/sub1/file1.txt", "upstream\n")
    origin.push("upstream")
    git(deploy, "fetch", "-q", "origin")
    _touch_all(deploy)
    repo, changes, planned = _touched_plan(deploy)
    assert changes.writes == ["d1/sub1/file1.txt"]  # type: ignore[attr-defined]
    assert not execute.refresh_in_place(repo, changes, planned)  # type: ignore[arg-type]

    (tmp_path / "o2").mkdir()
    other = _checkout(Origin(tmp_path / "o2"), tmp_path / "o2")
    git(other, "config", "core.untrackedCache", "true")
    git(other, "update-index", "--untracked-cache")
    git(other, "status", "--porcelain")  # writes the UNTR extension
    _touch_all(other)
    repo, changes, planned = _touched_plan(other)
    assert planned.other_extensions  # type: ignore[attr-defined]
    assert not execute.refresh_in_place(repo, changes, planned)  # type: ignore[arg-type]
    report = gitsafe.pull(other, "origin", "main")  # the long way still refreshes them
    assert report.outcome == "up-to-date", report.error
    assert git(other, "diff-files", "--name-only") == ""


def test_write_refreshed_renews_the_checksum(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    write(repo, "a.txt", "a\n")
    git(repo, "add", "a.txt")
    path = str(repo / ".git" / "index")
    lock = Path(path + ".lock")
    found = index_file.read(path)
    assert found is not None
    identity, checksum = index_file.file_identity(found[1]), found[0][-20:]

    def flip_size(data: bytearray) -> None:
        data[12 + 36 : 12 + 40] = (99).to_bytes(4, "big")  # the first entry's cached size

    # Another checksum than planned (a file rewritten with the same inode, size and times):
    # nothing written.
    assert not index_file.write_refreshed(path, identity, bytes(20), flip_size)
    assert Path(path).read_bytes() == found[0] and not lock.exists()

    def interrupted(data: bytearray) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_file.write_refreshed(path, identity, checksum, interrupted)
    assert Path(path).read_bytes() == found[0] and not lock.exists()

    assert index_file.write_refreshed(path, identity, checksum, flip_size)
    data = Path(path).read_bytes()
    assert index_file.checksum_ok(data) and data[48:52] == (99).to_bytes(4, "big")
    assert "size: 99" in git(repo, "ls-files", "--debug")
    assert not lock.exists()
    # A stale identity: nothing written.
    assert not index_file.write_refreshed(path, identity, data[-20:], flip_size)
    assert Path(path).read_bytes() == data


@needs_native
def test_records_reach_libgit2_a_few_thousand_at_a_time(tmp_path: Path) -> None:
    """A heal after a touch hands libgit2 the refreshed stat data in chunks of records, not
    as one list of 200,000 pairs; the chunks must add up to exactly the records."""
    assert accel.native is not None
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    for i in range(4096 + 9):
        write(repo, f"d{i % 7}/f{i}", f"{i}\n")
    git(repo, "add", "-A")
    _touch_all(repo)
    found = index_file.read(str(repo / ".git" / "index"))
    assert found is not None
    parsed = accel.native.parse_index(found[0])
    assert parsed is not None
    table = parsed[0]
    _rest, records = accel.native.stat_pass(table, None, str(repo), found[1].st_mtime_ns, True, 2)
    assert len(records) == 44 * (4096 + 9)
    assert list(execute._record_pairs(table, records)) == accel.native.record_pairs(table, records)
