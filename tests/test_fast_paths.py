"""The shortcuts that make a no-op pull cheap must see exactly what the long way sees.

gitsafe parses the index file itself (libgit2's C structs are slow to read field by field),
derives HEAD's and the target's files from the index plus libgit2's tree-to-index diff (instead
of flattening each tree), and skips every tracked path whose stat data proves it untouched.  Each
shortcut is checked here against the long way or against git.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pygit2
import pytest
from gitfixtures import (
    Origin,
    copy_checkout,
    diff_snapshots,
    git,
    git_sequence,
    heal_and_compare,
    snapshot,
    write,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygit2.enums import DeltaStatus

import gitsafe
from gitsafe import accel, index_file, index_stat, plan
from gitsafe.index_stat import MODE_GITLINK
from gitsafe.plan import files_near_index, flatten_tree, gitlink_paths, index_files

EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def _both_ways(repo_path: Path) -> tuple[object, object]:
    repo = pygit2.Repository(str(repo_path))
    index_path = os.path.join(repo.path, "index")
    with open(index_path, "rb") as f:
        full = index_stat._parse(f.read())
    parsed = full[:4] if full is not None else None
    repo.index.read(force=True)
    through_libgit2 = index_stat._read_through_libgit2(repo.index._index)
    return parsed, through_libgit2


def _with_root(snap: index_stat.IndexSnapshot, root: bytes | None) -> index_stat.IndexSnapshot:
    """The snapshot with another cache-tree root (a copy: the original stays as read)."""
    other = copy.copy(snap)
    other.tree_root = root
    return other


@pytest.mark.parametrize("version", [2, 3, 4])
def test_index_file_parser_agrees_with_libgit2(tmp_path: Path, version: int) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    for i in range(40):
        write(repo, f"dir{i % 3}/sub/file-{i:03d}.txt", f"{i}\n" * i)
    write(repo, "exec.sh", "#!/bin/sh\n", mode=0o755)
    os.symlink("exec.sh", repo / "link")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    # Entries no work tree could hold: a path longer than the 12-bit name length field (not in
    # version 4, where libgit2 rejects such a path), and a file name that is not UTF-8.
    long_path = "/".join(["d" * 200] * 21) + "/f"
    if version < 4:
        git(repo, "update-index", "--add", "--cacheinfo", f"100644,{EMPTY_BLOB},{long_path}")
    subprocess.run(
        [
            b"git",
            b"update-index",
            b"--add",
            b"--cacheinfo",
            f"100644,{EMPTY_BLOB},".encode() + b"caf\xe9.txt",
        ],
        cwd=repo,
        check=True,
    )
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},vendor/sub")
    if version >= 3:
        git(repo, "update-index", "--skip-worktree", "dir0/sub/file-000.txt")
        write(repo, "new.txt", "intent\n")
        git(repo, "add", "-N", "new.txt")
    git(repo, "update-index", "--index-version", str(version))
    parsed, through_libgit2 = _both_ways(repo)
    assert parsed is not None
    assert parsed == through_libgit2
    raw, staged, skip_worktree, marked = parsed
    assert (long_path in raw) == (version < 4)
    assert "caf\udce9.txt" in raw
    assert raw["vendor/sub"][0] == MODE_GITLINK
    assert (skip_worktree, marked) == (
        (["dir0/sub/file-000.txt"], True) if version >= 3 else ([], False)
    )
    assert staged == []


def test_index_file_parser_keeps_conflict_stages(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    write(repo, "f.txt", "base\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    _conflict(repo, "f.txt")
    parsed, through_libgit2 = _both_ways(repo)
    assert parsed == through_libgit2
    assert parsed is not None
    assert sorted(e.stage for e in parsed[1]) == [1, 2, 3]


def test_a_damaged_index_file_is_left_to_libgit2(tmp_path: Path) -> None:
    assert index_stat._parse(b"") is None
    assert index_stat._parse(b"DIRC\0\0\0\x09\0\0\0\1") is None  # version 9
    assert index_stat._parse(b"DIRC\0\0\0\2\0\0\0\1" + b"\0" * 30) is None  # truncated entry


def test_tree_files_from_the_index_equal_the_flattened_trees(
    origin: Origin, tmp_path: Path
) -> None:
    write(origin.work, "a/b/c.txt", "c\n")
    write(origin.work, "a/d.txt", "d\n")
    write(origin.work, "typechange", "file\n")
    write(origin.work, "gone.txt", "x\n")
    write(origin.work, "run.sh", "#!/bin/sh\n", mode=0o755)
    origin.push("more")
    deploy = origin.clone(tmp_path / "deploy")
    old_head = git(deploy, "rev-parse", "HEAD").strip()
    # upstream: a file becomes a directory, a mode flips, a file goes, a submodule appears
    os.remove(origin.work / "a/d.txt")
    write(origin.work, "a/d.txt/inner", "now a dir\n")
    os.chmod(origin.work / "run.sh", 0o644)
    os.remove(origin.work / "gone.txt")
    origin.push("reshape")
    git(origin.work, "update-index", "--add", "--cacheinfo", f"160000,{'2' * 40},vendor/lib")
    git(origin.work, "commit", "-q", "-m", "submodule")
    git(origin.work, "push", "-q", "origin", "HEAD:main")
    git(deploy, "fetch", "-q", "origin")
    # the index: staged edits, a staged deletion, a staged typechange, a staged gitlink
    write(deploy, "README.md", "staged edit\n")
    os.remove(deploy / "typechange")
    os.symlink("README.md", deploy / "typechange")
    write(deploy, "brand/new.txt", "new\n")
    git(deploy, "add", "-A")
    git(deploy, "rm", "-q", "--cached", "a/b/c.txt")
    git(deploy, "update-index", "--add", "--cacheinfo", f"160000,{'3' * 40},vendor/other")
    repo = pygit2.Repository(str(deploy))
    snap = index_stat.read_index(repo, os.path.join(repo.path, "index"))
    base = index_files(snap)
    gitlinks = gitlink_paths(snap)
    assert gitlinks == [p for p, (mode, _) in base.items() if mode == MODE_GITLINK]
    for rev in (old_head, "origin/main"):
        tree = repo.revparse_single(rev).peel(pygit2.Commit).tree
        files, changed = files_near_index(repo, snap, tree, gitlinks)
        flat = flatten_tree(tree)
        assert files == flat
        # The submodules among them, found without an Oid for every entry.
        assert sorted(plan.gitlinks(files)) == sorted(plan.gitlinks(flat))
        assert plan.gitlinks(flat) == [p for p, (m, _) in flat.items() if m == MODE_GITLINK]
        assert changed == {p for p in set(flat) | set(base) if flat.get(p) != base.get(p)}

    # The index as a reset leaves it: its cache-tree names the old tree, and the old and the
    # new tree are diffed directly; the long way (libgit2's index against the tree) agrees,
    # and so does a cache-tree whose tree is not in the object store.
    git(deploy, "reset", "-q", "--hard", old_head)
    repo = pygit2.Repository(str(deploy))
    snap = index_stat.read_index(repo, os.path.join(repo.path, "index"))
    old_tree = repo.revparse_single(old_head).peel(pygit2.Commit).tree
    assert snap.tree_root == old_tree.id.raw
    base = index_files(snap)
    for rev in (old_head, "origin/main"):
        tree = repo.revparse_single(rev).peel(pygit2.Commit).tree
        flat = flatten_tree(tree)
        expected = {p for p in set(flat) | set(base) if flat.get(p) != base.get(p)}
        for root in (snap.tree_root, None, b"\7" * 20):
            files, changed = files_near_index(
                repo, _with_root(snap, root), tree, gitlink_paths(snap)
            )
            assert files == flat and changed == expected, (rev, root)
        if rev != old_head:
            assert {"a/d.txt", "a/d.txt/inner", "run.sh", "gone.txt", "vendor/lib"} <= expected


def test_the_cache_tree_shortcut_is_taken_only_when_the_index_equals_the_tree(
    origin: Origin, tmp_path: Path
) -> None:
    """A valid cache-tree root (git writes one on clone, reset and commit) stands for "the
    index equals this tree", and replaces the tree-to-index diff; any staged change invalidates
    it, and the diff decides again."""
    write(origin.work, "a/b/c.txt", "c\n")
    origin.push("more")
    deploy = origin.clone(tmp_path / "deploy")
    repo = pygit2.Repository(str(deploy))
    head_tree = repo.revparse_single("HEAD").peel(pygit2.Commit).tree

    def snapshot_now() -> index_stat.IndexSnapshot:
        return index_stat.read_index(repo, os.path.join(repo.path, "index"))

    snap = snapshot_now()
    assert snap.tree_root == head_tree.id.raw
    files, changed = files_near_index(repo, snap, head_tree, [])
    assert (files, changed) == (flatten_tree(head_tree), set())
    # The long way agrees.
    slow = _with_root(snap, None)
    assert files_near_index(repo, slow, head_tree, []) == (files, changed)

    write(deploy, "a/b/c.txt", "staged\n")
    git(deploy, "add", "a/b/c.txt")
    snap = snapshot_now()
    assert snap.tree_root is None  # git invalidated the root
    files, changed = files_near_index(repo, snap, head_tree, [])
    assert changed == {"a/b/c.txt"} and files == flatten_tree(head_tree)

    # A cache-tree for another tree does not count for this one.
    git(deploy, "commit", "-q", "-m", "local")
    snap = snapshot_now()
    assert snap.tree_root is not None and snap.tree_root != head_tree.id.raw
    files, changed = files_near_index(repo, snap, head_tree, [])
    assert changed == {"a/b/c.txt"} and files == flatten_tree(head_tree)


def test_an_index_with_a_bad_checksum_or_a_required_extension_goes_to_libgit2(
    origin: Origin, tmp_path: Path
) -> None:
    deploy = origin.clone(tmp_path / "deploy")
    repo = pygit2.Repository(str(deploy))
    index_path = Path(repo.path, "index")
    data = index_path.read_bytes()
    assert index_file.checksum_ok(data)
    entries = index_stat._parse(data)
    assert entries is not None
    head_tree = repo.revparse_single("HEAD").peel(pygit2.Commit).tree
    assert index_file.extensions(data, entries[4]) == (
        (head_tree.id.raw, len(entries[0])),
        True,
        False,
    )
    # A required extension (lower-case signature, as a split index's "link") or a block that
    # runs past the checksum: the parsed entries are not the whole index.
    link = data[: entries[4]] + b"link" + (4).to_bytes(4, "big") + b"\0" * 4 + b"\0" * 20
    assert index_file.extensions(link, entries[4]) == (None, False, True)
    overlong = data[: entries[4]] + b"TREE" + (999).to_bytes(4, "big") + b"\0" * 20
    assert index_file.extensions(overlong, entries[4]) == (None, False, False)
    # A flipped bit in an entry: the checksum catches it and libgit2 refuses the file.
    damaged = bytearray(data)
    damaged[40] ^= 1
    assert not index_file.checksum_ok(bytes(damaged))
    index_path.write_bytes(bytes(damaged))
    with pytest.raises(pygit2.GitError):
        index_stat.read_index(pygit2.Repository(str(deploy)), str(index_path))
    report = gitsafe.doctor(deploy)
    assert report.outcome == "refused", report.error
    assert "index is unreadable" in (report.error or {}).get("message", "")


def test_a_cache_tree_is_trusted_only_in_the_shape_git_writes_and_only_if_it_covers_all(
    origin: Origin, tmp_path: Path
) -> None:
    oid = b"\x11" * 20
    assert index_file.cache_tree_root(b"\0" + b"3 1\n" + oid) == (oid, 3)
    for counts in (b"-1 0", b"1_0 0", b"3", b"03 1", b" 3 1", b"3 1 ", b"+3 1", b"3 -1"):
        assert index_file.cache_tree_root(b"\0" + counts + b"\n" + oid) is None, counts
    assert index_file.cache_tree_root(b"\0" + b"3 1\n" + oid[:19]) is None  # cut short
    # A root that covers fewer entries than the index holds (a tool that added one without
    # invalidating it): not trusted.
    deploy = origin.clone(tmp_path / "deploy")
    index_path = Path(deploy, ".git", "index")
    data = index_path.read_bytes()
    entries = index_stat._parse(data)
    assert entries is not None
    count = len(entries[0])
    tree_at = data.index(b"TREE", entries[4])
    field = f"\0{count} ".encode()
    assert data[tree_at + 8 : tree_at + 8 + len(field)] == field
    fewer = f"\0{count - 1} ".encode().rjust(len(field), b"\0")
    assert len(str(count - 1)) == len(str(count)), "pick a template with a stable digit count"
    forged = data[: tree_at + 8] + fewer + data[tree_at + 8 + len(field) : -20]
    forged += hashlib.sha1(forged).digest()
    index_path.write_bytes(forged)
    repo = pygit2.Repository(str(deploy))
    assert index_stat.read_index(repo, str(index_path)).tree_root is None
    index_path.write_bytes(data)
    assert index_stat.read_index(repo, str(index_path)).tree_root is not None


def test_unmodified_files_behind_a_symlinked_directory_are_not_trusted(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    """``src`` moved away and replaced by a symlink to it: every file behind it keeps its inode
    and timestamps, so its stat data still matches the index; git sees no such files (they are
    behind a symlink) and its reset puts a real directory back."""
    git(deploy, "update-index", "-q", "--refresh")
    oracle = copy_checkout(deploy, tmp_path / "git")
    for tree in (deploy, oracle):
        moved = tmp_path / f"moved-{tree.name}"
        os.rename(tree / "src", moved)
        os.symlink(moved, tree / "src")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.error
    git_sequence(oracle, "origin", "main")
    assert diff_snapshots(snapshot(deploy), snapshot(oracle)) == []
    assert not (deploy / "src").is_symlink()
    assert (tmp_path / "moved-deploy" / "config.py").read_text() == "DEBUG = False\n"


def test_a_racily_clean_entry_is_hashed_not_trusted(origin: Origin, deploy: Path) -> None:
    """Stat data proves nothing when the index was written in the same instant as the file
    (git's racy-entry rule).  Built directly: an entry whose stat data matches the edited file
    but whose id is the old content's, in an index no newer than the file."""
    target = deploy / "src/config.py"
    repo = pygit2.Repository(str(deploy))
    old_id = repo.index["src/config.py"].id
    target.write_text("DEBUG = Frue\n")  # same size, new content
    lst = os.lstat(target)
    index = repo.index
    index_stat.add_with_stat(
        index, "src/config.py", 0o100644, old_id, index_stat.pack_stat(lst, 0o100644)
    )
    index.write()
    index_path = os.path.join(repo.path, "index")
    os.utime(index_path, ns=(lst.st_mtime_ns, lst.st_mtime_ns))
    # git hashes it (diff-files, unlike status, leaves the index as it is)
    assert git(deploy, "diff-files", "--name-only").strip() == "src/config.py"
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.outcome == "healed", report.plan
    assert target.read_text() == "DEBUG = False\n"


def test_a_tree_with_old_style_file_modes_heals_like_git(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    """Trees written by very old gits hold modes such as 100664; the index canonicalises them,
    and so must the files derived from the tree-to-index diff."""
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=origin.bare,
            input=b"group-writable\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    base = git(origin.bare, "rev-parse", "main^{tree}").strip()
    listing = git(origin.bare, "ls-tree", base)
    listing += f"100664 blob {blob}\told-mode.txt\n100775 blob {blob}\told-exec.sh\n"
    tree = (
        subprocess.run(
            ["git", "mktree"],
            cwd=origin.bare,
            input=listing.encode(),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    parent = git(origin.bare, "rev-parse", "main").strip()
    commit = git(origin.bare, "commit-tree", tree, "-p", parent, "-m", "old modes").strip()
    git(origin.bare, "update-ref", "refs/heads/main", commit)
    write(deploy, "src/config.py", "dirty\n")
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    repo = pygit2.Repository(str(healed))
    snap = index_stat.read_index(repo, os.path.join(repo.path, "index"))
    target = repo.revparse_single("origin/main").peel(pygit2.Commit).tree
    files, _ = files_near_index(repo, snap, target, [])
    assert files == flatten_tree(target)
    assert files["old-exec.sh"][0] == 0o100755 and files["old-mode.txt"][0] == 0o100644
    assert git(healed, "ls-files", "-s", "old-mode.txt", "old-exec.sh") == git(
        tmp_path / "with-git", "ls-files", "-s", "old-mode.txt", "old-exec.sh"
    )


def test_an_assume_unchanged_entry_the_target_deletes_leaves_the_index_equal_to_the_target(
    origin: Origin, tmp_path: Path
) -> None:
    """libgit2's tree-to-index diff passes over assume-unchanged entries; the plan must still
    see that the target deletes one, or the rewritten index keeps it."""
    write(origin.work, "notes.txt", "notes\n")
    origin.push("notes")
    deploy = origin.clone(tmp_path / "deploy")
    os.remove(origin.work / "notes.txt")
    origin.push("drop the notes")
    git(deploy, "update-index", "--assume-unchanged", "--", "notes.txt")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.error
    assert git(deploy, "status", "--porcelain") == ""
    assert "notes.txt" not in git(deploy, "ls-files")
    assert not (deploy / "notes.txt").exists()


def test_touched_files_get_fresh_stat_data_so_the_next_run_trusts_them(
    origin: Origin, deploy: Path
) -> None:
    """After a build or a restore touched every file, one pull refreshes the index's stat data
    (as git's refresh does), so later runs need not hash anything again."""
    tracked = git(deploy, "ls-files").split()
    for name in tracked:
        os.utime(deploy / name, (1_500_000_000, 1_500_000_000))
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.outcome == "up-to-date", report.plan
    repo = pygit2.Repository(str(deploy))
    snap = index_stat.read_index(repo, os.path.join(repo.path, "index"))
    for name in tracked:
        lst = os.lstat(deploy / name)
        entry = snap.entries[name]
        assert snap.stat_clean(entry, lst), name
    assert git(deploy, "diff-files", "--name-only") == ""


# -- two trees compared without libgit2's diff ---------------------------------------------

_NAMES = st.sampled_from(["a", "b", "a.b", "a-b", "c", "é"])
_FILES = st.dictionaries(
    st.lists(_NAMES, min_size=1, max_size=3).map("/".join),
    st.tuples(st.sampled_from([0o100644, 0o100755, 0o120000, 0o160000]), st.sampled_from("xyz")),
    max_size=12,
)


def _tree(repo: pygit2.Repository, files: dict[str, tuple[int, str]]) -> pygit2.Tree:
    index = pygit2.Index()
    for path, (mode, content) in files.items():
        if any(q.startswith(path + "/") for q in files):
            continue  # a path cannot be a file and a directory at once
        oid = (
            pygit2.Oid(hex=hashlib.sha1(content.encode()).hexdigest())
            if mode == 0o160000
            else repo.create_blob(content.encode())
        )
        index.add(pygit2.IndexEntry(path, oid, mode))
    tree = repo.get(index.write_tree(repo))
    assert isinstance(tree, pygit2.Tree)
    return tree


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=_FILES, new=_FILES, keep=st.sets(_NAMES), budget=st.integers(0, 40))
def test_comparing_two_trees_finds_what_libgit2s_diff_finds(
    old: dict[str, tuple[int, str]],
    new: dict[str, tuple[int, str]],
    keep: set[str],
    budget: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    repo = pygit2.init_repository(str(tmp_path_factory.mktemp("trees")), bare=True)
    # Shared subtrees too: the new tree keeps some of the old one's top-level entries.
    new = {**{p: v for p, v in old.items() if p.split("/")[0] in keep}, **new}
    a, b = _tree(repo, old), _tree(repo, new)
    expected_new: dict[str, tuple[int, pygit2.Oid]] = {}
    expected_old: set[str] = set()
    for delta in a.diff_to_tree(b).deltas:
        if delta.status != DeltaStatus.DELETED:
            f = delta.new_file
            expected_new[os.fsdecode(f.raw_path)] = (int(f.mode), f.id)
        if delta.status != DeltaStatus.ADDED:
            expected_old.add(os.fsdecode(delta.old_file.raw_path))
    in_new: dict[str, tuple[int, pygit2.Oid]] = {}
    in_old: set[str] = set()
    assert plan._tree_changes(a, b, in_new, in_old)
    assert (in_new, in_old) == (expected_new, expected_old)
    # With too small a budget it gives up rather than answer in part.
    in_new, in_old = {}, set()
    if plan._tree_changes(a, b, in_new, in_old, budget=[budget]):
        assert (in_new, in_old) == (expected_new, expected_old)


# -- the reads a pull makes while it fetches -----------------------------------------------


def _plan_inputs(deploy: Path) -> tuple[object, object, pygit2.Oid, object]:
    from gitsafe.remote import choose, tracking_tip
    from gitsafe.repository import open_checkout
    from gitsafe.settings import resolve

    co = open_checkout(str(deploy))
    source = choose(co.repo, "origin", "main")
    target = tracking_tip(co.repo, source)
    assert target is not None
    return co, source, target, resolve(co.repo.config, {})


@pytest.mark.skipif(accel.native is None, reason="gitsafe._native is not built here")
def test_a_plan_from_the_early_reads_equals_the_plan_that_reads_for_itself(
    origin: Origin, tmp_path: Path
) -> None:
    from gitsafe.core import build_plan
    from gitsafe.prescan import Prescan
    from gitsafe.repository import filemode

    for i in range(40):
        write(origin.work, f"d{i % 4}/f{i}.txt", f"{i}\n")
    origin.push("files")
    deploy = origin.clone(tmp_path / "deploy")
    write(origin.work, "d1/f1.txt", "upstream\n")
    origin.push("upstream edit")
    git(deploy, "fetch", "-q", "origin")
    # Touched but unchanged (one of them also changed upstream), edited, untracked.
    for path in ("d1/f1.txt", "d2/f2.txt"):
        full = deploy / path
        os.utime(full, ns=(full.stat().st_atime_ns, full.stat().st_mtime_ns + 10**9))
    write(deploy, "d3/f3.txt", "edited\n")
    write(deploy, "d0/scratch.tmp", "untracked\n")
    co, source, target, settings = _plan_inputs(deploy)
    own = build_plan(co, source, target, settings)  # type: ignore[arg-type]
    early = Prescan(str(deploy), os.path.join(co.gitdir, "index"), filemode(co))  # type: ignore[attr-defined]
    scanned = early.result()
    assert scanned is not None and scanned.holding is not None
    assert accel.native is not None
    touched = accel.native.record_pairs(scanned.index.entries.raw, scanned.touched)  # type: ignore[arg-type]
    assert {"d1/f1.txt", "d2/f2.txt"} <= {p for p, _packed in touched}
    with_scan = build_plan(co, source, target, settings, scanned=scanned)  # type: ignore[arg-type]
    assert with_scan.changes == own.changes and with_scan.as_json() == own.as_json()
    assert [item["path"] for item in own.as_json()["restore"]] == ["d3/f3.txt"]
    assert "d1/f1.txt" in own.changes.writes  # changed upstream: the reset writes it


@pytest.mark.skipif(accel.native is None, reason="gitsafe._native is not built here")
def test_early_reads_stand_only_for_the_index_file_they_were_made_from(
    origin: Origin, tmp_path: Path
) -> None:
    from gitsafe.prescan import Prescan

    deploy = origin.clone(tmp_path / "deploy")
    index_path = str(deploy / ".git" / "index")
    early = Prescan(str(deploy), index_path, True)
    early.join()
    write(deploy, "README.md", "staged\n")
    git(deploy, "add", "README.md")  # a new index file
    assert early.result() is None
    assert Prescan(str(deploy), index_path, True).result() is not None
    # A pull whose fetch fails waits for the reads before it reports.
    git(deploy, "remote", "set-url", "origin", str(tmp_path / "missing.git"))
    threads = threading.active_count()
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.outcome == "failed", report.error
    assert threading.active_count() == threads
    # An index the parser leaves to libgit2 (a split index) is not read beside the fetch.
    git(deploy, "update-index", "--split-index")
    assert Prescan(str(deploy), index_path, True).result() is None


# -- the target loaded into libgit2's index in place ----------------------------------------


@pytest.fixture
def read_trees(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every libgit2 read_tree a run makes (the long way of loading the target)."""
    calls: list[str] = []
    original = pygit2.Index.read_tree

    def read_tree(self: pygit2.Index, tree: object) -> None:
        calls.append(str(tree))
        original(self, tree)

    monkeypatch.setattr(pygit2.Index, "read_tree", read_tree)
    return calls


def test_a_heal_changes_only_the_differing_index_entries_and_ends_as_git_does(
    origin: Origin, tmp_path: Path, read_trees: list[str]
) -> None:
    for i in range(30):
        write(origin.work, f"d{i % 3}/f{i}.txt", f"{i}\n")
    write(origin.work, "becomes/dir", "file\n")
    write(origin.work, "gone/only.txt", "x\n")
    origin.push("files")
    deploy = origin.clone(tmp_path / "deploy")
    # Upstream: edits, an addition, a deletion that empties a directory, a file turned
    # directory, a mode change, a submodule.
    write(origin.work, "d1/f1.txt", "upstream\n")
    write(origin.work, "d2/new.txt", "new\n")
    os.remove(origin.work / "gone/only.txt")
    os.remove(origin.work / "becomes/dir")
    write(origin.work, "becomes/dir/inside.txt", "now a directory\n")
    os.chmod(origin.work / "d0/f0.txt", 0o755)
    origin.push("reshape")
    git(origin.work, "update-index", "--add", "--cacheinfo", f"160000,{'4' * 40},vendor/lib")
    git(origin.work, "commit", "-q", "-m", "submodule")
    git(origin.work, "push", "-q", "origin", "HEAD:main")
    git(deploy, "fetch", "-q", "origin")
    write(deploy, "d0/f3.txt", "local edit\n")  # dirt to restore
    write(deploy, "d1/scratch.tmp", "untracked\n")
    _report, healed, _by_git = heal_and_compare(deploy, tmp_path / "work")
    assert read_trees == []  # the in-place way was taken
    assert git(healed, "ls-files", "-s") == git(_by_git, "ls-files", "-s")
    # A cache-tree as valid as git's: the next plan takes its shortcut.
    repo = pygit2.Repository(str(healed))
    snap = index_stat.read_index(repo, os.path.join(repo.path, "index"))
    assert snap.tree_root == repo.revparse_single("HEAD").peel(pygit2.Commit).tree.id.raw
    assert git(healed, "status", "--porcelain") == ""


def test_an_index_with_resolve_undo_data_is_loaded_the_long_way(
    origin: Origin, tmp_path: Path, read_trees: list[str]
) -> None:
    deploy = origin.clone(tmp_path / "deploy")
    # A resolved conflict leaves resolve-undo data (REUC) in the index; read_tree clears it.
    _conflict(deploy, "README.md")
    write(deploy, "README.md", "resolved\n")
    git(deploy, "add", "README.md")
    git(deploy, "commit", "-q", "--no-edit")
    repo = pygit2.Repository(str(deploy))
    snap = index_stat.read_index(repo, os.path.join(repo.path, "index"))
    assert snap.other_extensions
    write(origin.work, "more.txt", "more\n")
    origin.push("more")
    heal_and_compare(deploy, tmp_path / "work")
    assert read_trees != []


def _conflict(repo: Path, path: str) -> None:
    """Merge a branch that changed ``path`` into main, which changed it too: a conflict."""
    git(repo, "checkout", "-q", "-b", "other")
    write(repo, path, "other\n")
    git(repo, "commit", "-q", "-am", "other")
    git(repo, "checkout", "-q", "main")
    write(repo, path, "main\n")
    git(repo, "commit", "-q", "-am", "main")
    git(repo, "merge", "-q", "other", check=False)
