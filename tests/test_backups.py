"""Backups and restore: after any pull, ``gitsafe restore`` gives back every byte it discarded.

Every test dirties a deploy checkout, records what is there (sha256 of every file, its exec bit,
symlink targets, empty directories, staged versions, operation state, local commits), pulls, runs
the real ``gitsafe restore`` command and compares the restored tree entry by entry.

The core check (:func:`assert_gives_back_everything`) is generic: every work-tree entry that the
pull changed or removed and that is not committed at the old HEAD must come back at its path
(byte for byte, exec bit, link target), every staged version that differs from HEAD under
``.gitsafe-index/``, every operation state file under ``.gitsafe-state/``, and every commit the
branch moved away from must be reachable from a ``gitsafe/restore/<id>`` branch.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pygit2
import pytest
from gitfixtures import Origin, Snapshot, git, snapshot, write
from typer.testing import CliRunner

import gitsafe
from gitsafe.cli import app

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())

# git's own operation state in the git directory (independent of gitsafe's list).
GIT_STATE = (
    "MERGE_HEAD",
    "MERGE_MSG",
    "MERGE_MODE",
    "MERGE_RR",
    "AUTO_MERGE",
    "SQUASH_MSG",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "BISECT_LOG",
    "BISECT_START",
    "rebase-merge",
    "rebase-apply",
    "sequencer",
)

FILES: dict[str, str | bytes] = {
    "README.md": "hello\n",
    "src/config.py": "DEBUG = False\n",
    "bin/run.sh": "#!/bin/sh\necho run\n",
    "assets/logo.bin": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "web/index.html": "<h1>shop</h1>\n",
    "docs/guide.md": "# guide\n",
    "lib/util.py": "def util():\n    return 1\n",
    "static/app.js": "run();\n",
    ".gitignore": ".env\n*.log\nbuild/\n",
}

BINARY = bytes(range(256)) * 4 + b"\x00\x00tail\x00"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(data: bytes, executable: bool = False) -> tuple[object, ...]:
    """What :func:`snapshot` records for a regular file."""
    return ("file", executable, sha(data))


@pytest.fixture(autouse=True)
def _no_backup_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GITSAFE_BACKUP",
        "GITSAFE_BACKUP_MAX_FILE_SIZE",
        "GITSAFE_BACKUP_KEEP",
        "GITSAFE_BACKUP_KEEP_DAYS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    """Overrides conftest's origin (``deploy`` clones this one): more kinds of tracked files."""
    o = Origin(tmp_path, FILES)
    (o.work / "bin/run.sh").chmod(0o755)
    o.push("run.sh is executable")
    return o


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the work tree that symlinks point into; nothing may ever change it."""
    d = tmp_path / "outside"
    write(d, "target.txt", "outside, never to be touched\n")
    write(d, "sub/keep.txt", "also outside\n")
    return d


# -- recording and restoring -------------------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli_process(*args: str) -> Ran:
    """``python -m gitsafe ARGS`` in a child process: the real entry point."""
    proc = subprocess.run(
        [sys.executable, "-m", "gitsafe", *args], capture_output=True, text=True, check=False
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def cli(*args: str) -> Ran:
    """The same command line (typer parsing, exit codes, stdout/stderr) run in this process,
    which saves the interpreter start-up; a few tests use :func:`cli_process` instead."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def committed(deploy: Path) -> Snapshot:
    """The HEAD commit's tree in :func:`snapshot` form: what history still holds after a pull."""
    repo = pygit2.Repository(str(deploy))
    out: Snapshot = {}

    def walk(tree: pygit2.Tree, prefix: str) -> None:
        for entry in tree:
            assert entry.raw_name is not None
            path = prefix + os.fsdecode(entry.raw_name)
            obj = repo[entry.id]
            if isinstance(obj, pygit2.Tree):
                out[path] = ("dir",)
                walk(obj, path + "/")
            elif not isinstance(obj, pygit2.Blob):
                continue  # a submodule commit
            elif entry.filemode == pygit2.enums.FileMode.LINK:
                out[path] = ("link", os.fsdecode(obj.data))
            else:
                executable = entry.filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE
                out[path] = file_entry(obj.data, executable)

    walk(repo.head.peel(pygit2.Commit).tree, "")
    return out


def staged_versions(deploy: Path) -> Snapshot:
    """Index entries that differ from HEAD, keyed where restore must put them."""
    repo = pygit2.Repository(str(deploy))
    head: dict[str, tuple[str, str]] = {}
    for rec in git(deploy, "ls-tree", "-r", "-z", "HEAD").split("\0"):
        if rec:
            meta, path = rec.split("\t", 1)
            mode, _kind, oid = meta.split()
            head[path] = (mode, oid)
    out: Snapshot = {}
    for rec in git(deploy, "ls-files", "-s", "-z").split("\0"):
        if not rec:
            continue
        meta, path = rec.split("\t", 1)
        mode, oid, stage = meta.split()
        if (stage == "0" and head.get(path) == (mode, oid)) or mode == "160000":
            continue
        rel = f".gitsafe-index/{path}" + ("" if stage == "0" else f".stage{stage}")
        blob = repo[oid]
        assert isinstance(blob, pygit2.Blob)
        data = blob.data
        out[rel] = (
            ("link", os.fsdecode(data)) if mode == "120000" else file_entry(data, mode == "100755")
        )
    return out


def state_files(deploy: Path) -> Snapshot:
    """git's operation state files, keyed where restore must put them (content only)."""
    gitdir = deploy / ".git"
    out: Snapshot = {}
    for name in GIT_STATE:
        path = gitdir / name
        if path.is_dir():
            for rel, value in snapshot(path).items():
                if value[0] == "file":
                    out[f".gitsafe-state/{name}/{rel}"] = ("file", False, value[2])
        elif path.is_file():
            out[f".gitsafe-state/{name}"] = file_entry(path.read_bytes())
    return out


def local_tips(deploy: Path) -> list[str]:
    heads = git(deploy, "for-each-ref", "--format=%(objectname)", "refs/heads").split()
    return sorted({*heads, git(deploy, "rev-parse", "HEAD").strip()})


@dataclass
class Before:
    tree: Snapshot
    committed: Snapshot
    staged: Snapshot
    state: Snapshot
    tips: list[str]


def record(deploy: Path) -> Before:
    return Before(
        snapshot(deploy),
        committed(deploy),
        staged_versions(deploy),
        state_files(deploy),
        local_tips(deploy),
    )


@dataclass
class Rescue:
    report: gitsafe.Report
    before: Before
    after: Snapshot  # the deploy work tree after the pull
    files: Snapshot  # the restored directory
    result: dict[str, Any]  # restore --json
    dir: Path

    @property
    def id(self) -> str:
        assert self.report.backup is not None
        return str(self.report.backup["id"])


def discarded(before: Before, after: Snapshot) -> Snapshot:
    """Work-tree entries the pull changed or removed that no commit holds."""
    return {
        k: v for k, v in before.tree.items() if after.get(k) != v and before.committed.get(k) != v
    }


def assert_gives_back_everything(
    deploy: Path, before: Before, after: Snapshot, rescued: Snapshot, work_tree: bool = True
) -> None:
    problems = []
    if work_tree:
        for k, v in sorted(discarded(before, after).items()):
            if rescued.get(k) == v:
                continue
            if v[0] == "file" and rescued.get(f".gitsafe-index/{k}") == v:
                continue  # a staged file whose work-tree copy equals the index: saved once
            problems.append(f"lost {k!r}: before={v} restored={rescued.get(k)}")
    for k, v in sorted(rescued.items()):
        if k.split("/")[0] not in (".gitsafe-index", ".gitsafe-state") and before.tree.get(k) != v:
            problems.append(f"restored {k!r}={v} but before the pull it was {before.tree.get(k)}")
    for k, v in sorted({**before.staged, **before.state}.items()):
        if rescued.get(k) != v:
            problems.append(f"lost {k!r}: before={v} restored={rescued.get(k)}")
    assert problems == [], "\n".join(problems)
    unreachable = git(
        deploy, "rev-list", *before.tips, "--not", "HEAD", "--branches", "--remotes"
    ).split()
    assert unreachable == [], f"dropped commits not on any restore branch: {unreachable}"


def pull_and_restore(
    deploy: Path,
    rescue: Path,
    env: dict[str, str] | None = None,
    work_tree: bool = True,
    **kwargs: Any,
) -> Rescue:
    before = record(deploy)
    report = gitsafe.pull(deploy, "origin", "main", env=env or {}, **kwargs)
    assert report.exit_code == 0, report.to_json_text()
    assert report.outcome == "healed"
    assert report.backup is not None and "id" in report.backup, report.backup
    after = snapshot(deploy)
    assert git(deploy, "rev-parse", "HEAD") == git(deploy, "rev-parse", "origin/main")
    proc = cli(
        "restore", str(report.backup["id"]), "--into", str(rescue), "-C", str(deploy), "--json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["skipped"] == []
    rescued = snapshot(rescue)
    assert_gives_back_everything(deploy, before, after, rescued, work_tree)
    return Rescue(report, before, after, rescued, result, rescue)


def assert_restored(r: Rescue, expect: Snapshot) -> None:
    wrong = {k: (v, r.files.get(k)) for k, v in expect.items() if r.files.get(k) != v}
    assert wrong == {}, "expected vs restored: " + repr(wrong)


def reasons(report: gitsafe.Report, key: str) -> dict[str, str]:
    assert report.plan is not None
    return {i["path"]: i["reason"] for i in report.plan[key]}


def validate(report: gitsafe.Report) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(report.to_json_text())
    jsonschema.validate(data, SCHEMA)
    return data


# -- kinds of discarded data: each sets up its dirt and returns what restore must give back ------

Setup = Callable[[Origin, Path, Path], Snapshot]


def modified_tracked_file(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    data = b"DEBUG = True\nSECRET = 'only here'\n"
    write(deploy, "src/config.py", data, mode=0o755)
    return {"src/config.py": file_entry(data, True)}


def mode_only_changes(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    (deploy / "README.md").chmod(0o755)
    (deploy / "bin/run.sh").chmod(0o644)
    return {
        "README.md": file_entry(b"hello\n", True),
        "bin/run.sh": file_entry(b"#!/bin/sh\necho run\n", False),
    }


def tracked_file_replaced_by_symlink(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    (deploy / "web/index.html").unlink()
    os.symlink(outside / "target.txt", deploy / "web/index.html")
    return {"web/index.html": ("link", str(outside / "target.txt"))}


def tracked_directory_replaced_by_outside_symlink(
    origin: Origin, deploy: Path, outside: Path
) -> Snapshot:
    (deploy / "static/app.js").unlink()
    (deploy / "static").rmdir()
    os.symlink(outside / "sub", deploy / "static")
    return {"static": ("link", str(outside / "sub"))}


def tracked_file_replaced_by_directory(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    (deploy / "docs/guide.md").unlink()
    write(deploy, "docs/guide.md/part1.md", "part one\n")
    write(deploy, "docs/guide.md/img/a.bin", b"\x00img\x00")
    (deploy / "docs/guide.md/empty").mkdir()
    return {
        "docs/guide.md": ("dir",),
        "docs/guide.md/part1.md": file_entry(b"part one\n"),
        "docs/guide.md/img/a.bin": file_entry(b"\x00img\x00"),
        "docs/guide.md/empty": ("dir",),
    }


def staged_change_differing_from_head_and_work_tree(
    origin: Origin, deploy: Path, outside: Path
) -> Snapshot:
    write(deploy, "lib/util.py", "def util():\n    return 2  # staged\n")
    git(deploy, "add", "lib/util.py")
    write(deploy, "lib/util.py", "def util():\n    return 3  # work tree\n")
    return {
        ".gitsafe-index/lib/util.py": file_entry(b"def util():\n    return 2  # staged\n"),
        "lib/util.py": file_entry(b"def util():\n    return 3  # work tree\n"),
    }


def untracked_file(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    write(deploy, "scratch.txt", "hotfix notes\n", mode=0o755)
    return {"scratch.txt": file_entry(b"hotfix notes\n", True)}


def untracked_tree_with_empty_dir_and_outside_symlinks(
    origin: Origin, deploy: Path, outside: Path
) -> Snapshot:
    write(deploy, "uploads/a.txt", "a\n")
    write(deploy, "uploads/nested/deep/b.txt", "b\n")
    (deploy / "uploads/empty/also-empty").mkdir(parents=True)
    (deploy / "empty-top").mkdir()
    os.symlink(outside, deploy / "uploads/to-outside-dir")
    os.symlink("../../outside/target.txt", deploy / "uploads/relative-out")
    return {
        "uploads/a.txt": file_entry(b"a\n"),
        "uploads/nested/deep/b.txt": file_entry(b"b\n"),
        "uploads/empty": ("dir",),
        "uploads/empty/also-empty": ("dir",),
        "empty-top": ("dir",),
        "uploads/to-outside-dir": ("link", str(outside)),
        "uploads/relative-out": ("link", "../../outside/target.txt"),
    }


def binary_content_with_nul_bytes(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    write(deploy, "assets/logo.bin", BINARY)
    write(deploy, "dump.bin", BINARY[::-1])
    return {"assets/logo.bin": file_entry(BINARY), "dump.bin": file_entry(BINARY[::-1])}


def untracked_non_utf8_names(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    file_name = os.fsdecode(b"caf\xe9-\xff.txt")
    dir_name = os.fsdecode(b"r\xe9sum\xe9")
    write(deploy, file_name, b"latin-1 name\n")
    write(deploy, f"{dir_name}/cv.txt", b"cv\n")
    return {
        file_name: file_entry(b"latin-1 name\n"),
        f"{dir_name}/cv.txt": file_entry(b"cv\n"),
    }


def ignored_file_upstream_starts_tracking(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    write(deploy, ".env", "SECRET=local-only\n")
    write(origin.work, ".env", "SECRET=placeholder\n")
    git(origin.work, "add", "-f", ".env")
    origin.push("track .env")
    return {".env": file_entry(b"SECRET=local-only\n")}


def untracked_directories_in_the_way(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    write(deploy, "vendor/lib.py", "vendored\n")
    (deploy / "vendor/empty").mkdir()
    write(deploy, "build/out.o", b"\x7fELF\x00")  # ignored (build/), yet in the way
    write(origin.work, "vendor", "vendor is a file upstream\n")
    write(origin.work, "build", "build is a file upstream\n")
    origin.push("vendor and build become files")
    return {
        "vendor/lib.py": file_entry(b"vendored\n"),
        "vendor/empty": ("dir",),
        "build/out.o": file_entry(b"\x7fELF\x00"),
    }


def local_commit(origin: Origin, deploy: Path, outside: Path) -> Snapshot:
    write(deploy, "notes/local.txt", "committed only here\n")
    git(deploy, "add", "notes/local.txt")
    git(deploy, "commit", "-q", "-m", "local work: notes")
    write(origin.work, "upstream.txt", "upstream moves on\n")
    origin.push("upstream diverges")
    return {}


ALL_KINDS: list[Setup] = [
    local_commit,  # first: it commits, the others leave their dirt uncommitted
    modified_tracked_file,
    mode_only_changes,
    tracked_file_replaced_by_symlink,
    tracked_file_replaced_by_directory,
    tracked_directory_replaced_by_outside_symlink,
    staged_change_differing_from_head_and_work_tree,
    untracked_file,
    untracked_tree_with_empty_dir_and_outside_symlinks,
    binary_content_with_nul_bytes,
    untracked_non_utf8_names,
    ignored_file_upstream_starts_tracking,
    untracked_directories_in_the_way,
]


# -- the headline: everything at once ----------------------------------------------------------


def test_restore_gives_back_every_byte_a_pull_discarded(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect: Snapshot = {}
    for setup in ALL_KINDS:
        expect.update(setup(origin, deploy, outside))
    outside_before = snapshot(outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert_restored(r, expect)
    # the generic check in pull_and_restore saw every listed work-tree path as discarded
    listed = {k for k in expect if not k.startswith(".gitsafe-")}
    assert listed <= set(discarded(r.before, r.after))
    data = validate(r.report)
    backup = data["backup"]
    assert backup["entries"] == len(r.result["written"])
    assert backup["bytes"] > len(BINARY) * 2
    assert len(backup["commits"]) == 1
    assert r.result["branches"] == [f"gitsafe/restore/{r.id}"]
    assert snapshot(outside) == outside_before
    # the manifest is plain JSON in a plain commit: readable with git alone
    manifest = json.loads(git(deploy, "show", f"{backup['ref']}:manifest.json"))
    assert manifest["id"] == r.id
    assert len(manifest["entries"]) == backup["entries"]


# -- one kind at a time --------------------------------------------------------------------------


def test_modified_tracked_file_comes_back_with_content_and_exec_bit(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = modified_tracked_file(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert reasons(r.report, "restore")["src/config.py"] == "modified"
    assert r.after["src/config.py"] == file_entry(b"DEBUG = False\n")
    assert_restored(r, expect)


def test_mode_only_changes_come_back_with_the_local_exec_bit(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = mode_only_changes(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert reasons(r.report, "restore") == {"README.md": "mode", "bin/run.sh": "mode"}
    assert r.after["README.md"] == file_entry(b"hello\n", False)
    assert_restored(r, expect)


def test_tracked_file_replaced_by_a_symlink_comes_back_as_that_symlink(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = tracked_file_replaced_by_symlink(origin, deploy, outside)
    outside_before = snapshot(outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert "typechange" in reasons(r.report, "restore")["web/index.html"]
    assert_restored(r, expect)
    assert (r.dir / "web/index.html").is_symlink()
    assert snapshot(outside) == outside_before


def test_tracked_directory_replaced_by_a_symlink_comes_back_as_that_symlink_unfollowed(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = tracked_directory_replaced_by_outside_symlink(origin, deploy, outside)
    outside_before = snapshot(outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert r.after["static"] == ("dir",)
    assert r.after["static/app.js"] == file_entry(b"run();\n")
    assert_restored(r, expect)
    assert snapshot(outside) == outside_before


def test_tracked_file_replaced_by_a_directory_comes_back_as_that_directory(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = tracked_file_replaced_by_directory(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert "typechange" in reasons(r.report, "restore")["docs/guide.md"]
    assert r.after["docs/guide.md"] == file_entry(b"# guide\n")
    assert_restored(r, expect)
    assert os.listdir(r.dir / "docs/guide.md/empty") == []


def test_staged_change_differing_from_head_and_work_tree_comes_back_under_gitsafe_index(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = staged_change_differing_from_head_and_work_tree(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert reasons(r.report, "restore")["lib/util.py"] == "staged, modified"
    assert_restored(r, expect)


def test_untracked_file_comes_back(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = untracked_file(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert "scratch.txt" not in r.after
    assert_restored(r, expect)


def test_untracked_tree_comes_back_with_empty_dirs_and_symlinks_recreated_not_followed(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = untracked_tree_with_empty_dir_and_outside_symlinks(origin, deploy, outside)
    outside_before = snapshot(outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert reasons(r.report, "remove") == {
        "uploads/": "untracked directory",
        "empty-top/": "untracked directory",
    }
    assert_restored(r, expect)
    assert (r.dir / "uploads/to-outside-dir").is_symlink()
    assert (r.dir / "uploads/relative-out").is_symlink()
    # neither the pull nor the restore went through the links
    assert snapshot(outside) == outside_before
    # the backup saved the link itself, not what it points to
    assert not any(p.startswith("uploads/to-outside-dir/") for p in r.result["written"])


def test_binary_content_with_nul_bytes_comes_back_byte_for_byte(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = binary_content_with_nul_bytes(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert_restored(r, expect)
    assert (r.dir / "assets/logo.bin").read_bytes() == BINARY
    assert (r.dir / "dump.bin").read_bytes() == BINARY[::-1]


def test_untracked_files_with_non_utf8_names_come_back_under_the_same_bytes(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = untracked_non_utf8_names(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert_restored(r, expect)
    assert sorted(os.listdir(os.fsencode(r.dir))) == [b"caf\xe9-\xff.txt", b"r\xe9sum\xe9"]
    validate(r.report)  # surrogate-escaped names still make valid JSON


def test_modified_tracked_file_with_non_utf8_name_is_backed_up_and_restored(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    write(origin.work, name, "tracked\n")
    origin.push("a latin-1 file name")
    git(deploy, "pull", "-q", "origin", "main")
    write(deploy, name, "edited on the server\n")
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert_restored(r, {name: file_entry(b"edited on the server\n")})


def test_ignored_local_file_overwritten_by_newly_tracked_file_comes_back(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = ignored_file_upstream_starts_tracking(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert reasons(r.report, "overwrite_ignored")[".env"].startswith("ignored file")
    assert r.after[".env"] == file_entry(b"SECRET=placeholder\n")
    assert_restored(r, expect)


def test_untracked_directories_in_the_way_of_newly_tracked_files_come_back(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    expect = untracked_directories_in_the_way(origin, deploy, outside)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert set(reasons(r.report, "overwrite_ignored")) == {"vendor", "build"}
    assert r.after["vendor"][0] == "file" and r.after["build"][0] == "file"
    assert_restored(r, expect)


def test_dropped_local_commit_comes_back_as_a_restore_branch(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    local_commit(origin, deploy, outside)
    mine = git(deploy, "rev-parse", "HEAD").strip()
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert r.report.plan is not None
    assert [c["sha"] for c in r.report.plan["drop_commits"]] == [mine]
    assert r.report.backup is not None
    assert r.report.backup["commits"] == [mine] and r.report.backup["head"] == mine
    branch = f"gitsafe/restore/{r.id}"
    assert r.result["branches"] == [branch]
    assert git(deploy, "rev-parse", branch).strip() == mine
    log = git(deploy, "log", "--format=%H %s", branch).splitlines()
    assert log[0] == f"{mine} local work: notes"
    assert git(deploy, "show", f"{branch}:notes/local.txt") == "committed only here\n"
    assert not (deploy / "notes").exists()


def test_detached_head_and_local_branch_commits_come_back_as_restore_branches(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, "on-main.txt", "main work\n")
    git(deploy, "add", "on-main.txt")
    git(deploy, "commit", "-q", "-m", "work on main")
    on_main = git(deploy, "rev-parse", "HEAD").strip()
    git(deploy, "checkout", "-q", "--detach", "HEAD~1")
    for n in (1, 2):
        write(deploy, f"detached-{n}.txt", f"detached {n}\n")
        git(deploy, "add", f"detached-{n}.txt")
        git(deploy, "commit", "-q", "-m", f"detached work {n}")
    detached = git(deploy, "rev-parse", "HEAD").strip()
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert git(deploy, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert r.report.backup is not None
    assert sorted(r.report.backup["commits"]) == sorted([detached, on_main])
    branches = {b: git(deploy, "rev-parse", b).strip() for b in r.result["branches"]}
    assert set(branches) == {f"gitsafe/restore/{r.id}", f"gitsafe/restore/{r.id}-1"}
    assert sorted(branches.values()) == sorted([detached, on_main])
    detached_branch = next(b for b, sha in branches.items() if sha == detached)
    subjects = git(deploy, "log", "--format=%s", detached_branch).splitlines()
    assert subjects[:2] == ["detached work 2", "detached work 1"]
    main_branch = next(b for b, sha in branches.items() if sha == on_main)
    assert git(deploy, "log", "-1", "--format=%s", main_branch).strip() == "work on main"


def _diverge(origin: Origin, deploy: Path) -> None:
    write(origin.work, "README.md", "upstream\n")
    origin.push("upstream README")
    write(deploy, "README.md", "local\n")
    git(deploy, "commit", "-qam", "local README")
    git(deploy, "fetch", "-q", "origin")


def test_conflict_stages_of_a_failed_merge_come_back_under_gitsafe_index(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    _diverge(origin, deploy)
    git(deploy, "merge", "origin/main", check=False)
    assert git(deploy, "status", "--porcelain").startswith("UU README.md")
    stages = staged_versions(deploy)
    assert stages == {
        ".gitsafe-index/README.md.stage1": file_entry(b"hello\n"),
        ".gitsafe-index/README.md.stage2": file_entry(b"local\n"),
        ".gitsafe-index/README.md.stage3": file_entry(b"upstream\n"),
    }
    merge_msg = (deploy / ".git/MERGE_MSG").read_bytes()
    # work_tree=False: the conflicted work-tree file has a test of its own below
    r = pull_and_restore(deploy, tmp_path / "rescue", work_tree=False)
    assert "unmerged" in reasons(r.report, "restore")["README.md"]
    assert_restored(r, stages)
    assert (r.dir / ".gitsafe-state/MERGE_MSG").read_bytes() == merge_msg
    assert not (deploy / ".git/MERGE_HEAD").exists()


def test_work_tree_content_of_an_unmerged_path_comes_back(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    _diverge(origin, deploy)
    git(deploy, "merge", "origin/main", check=False)
    write(deploy, "README.md", "half-resolved by hand on the server\n")
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert_restored(r, {"README.md": file_entry(b"half-resolved by hand on the server\n")})


def test_leftover_merge_state_is_saved_under_gitsafe_state(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    git(deploy, "checkout", "-q", "-b", "feature")
    write(deploy, "feature.txt", "feature\n")
    git(deploy, "add", "feature.txt")
    git(deploy, "commit", "-q", "-m", "feature")
    git(deploy, "checkout", "-q", "main")
    git(deploy, "merge", "-q", "--no-ff", "--no-commit", "feature")
    write(deploy, ".git/MERGE_MSG", "Merge feature\n\nnotes typed into the merge message\n")
    state = state_files(deploy)
    assert {".gitsafe-state/MERGE_HEAD", ".gitsafe-state/MERGE_MSG"} <= set(state)
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert r.report.plan is not None and "MERGE_HEAD" in r.report.plan["clear_state"]
    assert_restored(r, state)
    assert (r.dir / ".gitsafe-state/MERGE_MSG").read_text().endswith("into the merge message\n")
    assert r.files[".gitsafe-index/feature.txt"] == file_entry(b"feature\n")
    assert not (deploy / ".git/MERGE_MSG").exists()


def test_leftover_rebase_state_is_saved_under_gitsafe_state(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(origin.work, "README.md", "upstream\n")
    origin.push("upstream README")
    write(deploy, "local.txt", "local\n")
    git(deploy, "add", "local.txt")
    git(deploy, "commit", "-q", "-m", "local commit")
    mine = git(deploy, "rev-parse", "HEAD").strip()
    git(deploy, "fetch", "-q", "origin")
    # no conflict: the rebase stops at "exec false" after picking the local commit
    git(deploy, "rebase", "--exec", "false", "origin/main", check=False)
    assert (deploy / ".git/rebase-merge/git-rebase-todo").exists()
    rebased = git(deploy, "rev-parse", "HEAD").strip()
    state = state_files(deploy)
    assert ".gitsafe-state/rebase-merge/head-name" in state
    r = pull_and_restore(deploy, tmp_path / "rescue")
    assert r.report.plan is not None and "rebase-merge/" in r.report.plan["clear_state"]
    assert_restored(r, state)
    assert (r.dir / ".gitsafe-state/rebase-merge/head-name").read_text() == "refs/heads/main\n"
    assert not (deploy / ".git/rebase-merge").exists()
    restored = {git(deploy, "rev-parse", b).strip() for b in r.result["branches"]}
    assert restored == {mine, rebased}


def test_file_above_the_size_bound_is_set_aside_and_restorable_after_the_pull(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    big = BINARY * 5  # ~5 KiB > 1k
    write(deploy, "assets/logo.bin", big)
    write(deploy, "small.txt", "small\n")
    write(origin.work, "assets/logo.bin", b"upstream logo\x00")
    origin.push("upstream rewrites the big file's path")
    r = pull_and_restore(deploy, tmp_path / "rescue", env={"GITSAFE_BACKUP_MAX_FILE_SIZE": "1k"})
    assert r.report.backup is not None
    assert r.report.backup["aside"] == 1
    assert r.report.backup["entries"] == 2
    # the pull rewrote the work-tree path without touching the set-aside bytes
    assert (deploy / "assets/logo.bin").read_bytes() == b"upstream logo\x00"
    aside = deploy / ".git/gitsafe/aside" / r.id
    kept = [p.read_bytes() for p in aside.iterdir()]
    assert kept == [big]
    manifest = json.loads(git(deploy, "show", f"refs/gitsafe/backups/{r.id}:manifest.json"))
    entry = next(e for e in manifest["entries"] if e["path"] == "assets/logo.bin")
    assert entry["oid"] is None and entry["aside"] and entry["size"] == len(big)
    blobs = git(deploy, "ls-tree", "--name-only", f"refs/gitsafe/backups/{r.id}:blobs").split()
    assert len(blobs) == 1  # only small.txt was hashed into the object store
    assert_restored(r, {"assets/logo.bin": file_entry(big), "small.txt": file_entry(b"small\n")})
    listed = json.loads(cli("backups", "-C", str(deploy), "--json").stdout)
    assert listed[0]["aside"] == 1


# -- retention -------------------------------------------------------------------------------


def _backup_refs(deploy: Path) -> list[str]:
    out = git(deploy, "for-each-ref", "--format=%(refname)", "refs/gitsafe/backups/")
    return sorted(ref.rpartition("/")[2] for ref in out.split())


def _aside_dirs(deploy: Path) -> list[str]:
    aside = deploy / ".git/gitsafe/aside"
    return sorted(os.listdir(aside)) if aside.exists() else []


def test_retention_prunes_backups_beyond_keep_with_their_refs_and_aside_dirs(
    deploy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITSAFE_BACKUP_KEEP", "2")
    monkeypatch.setenv("GITSAFE_BACKUP_KEEP_DAYS", "0")
    monkeypatch.setenv("GITSAFE_BACKUP_MAX_FILE_SIZE", "1k")
    ids, pruned = [], []
    for n in range(4):
        write(deploy, f"big-{n}.bin", bytes([n]) * 2048)
        report = gitsafe.pull(deploy, "origin", "main")
        assert report.exit_code == 0, report.to_json_text()
        assert report.settings["backup_keep"]["value"] == 2
        assert report.backup is not None and report.backup["aside"] == 1
        ids.append(report.backup["id"])
        pruned.append(report.backup["pruned"])
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert pruned == [[], [], [ids[0]], [ids[1]]]
    assert _backup_refs(deploy) == ids[2:]
    assert _aside_dirs(deploy) == ids[2:]
    proc = cli("restore", ids[0], "--into", str(deploy.parent / "rescue"), "-C", str(deploy))
    assert proc.returncode == 2
    proc = cli("restore", ids[2], "--into", str(deploy.parent / "rescue"), "-C", str(deploy))
    assert proc.returncode == 0, proc.stderr
    assert (deploy.parent / "rescue/big-2.bin").read_bytes() == bytes([2]) * 2048


def test_retention_keeps_backups_younger_than_keep_days_beyond_the_count(deploy: Path) -> None:
    env = {"GITSAFE_BACKUP_KEEP": "1", "GITSAFE_BACKUP_KEEP_DAYS": "30"}
    ids = []
    for n in range(3):
        write(deploy, f"scratch-{n}.txt", f"{n}\n")
        report = gitsafe.pull(deploy, "origin", "main", env=env)
        assert report.exit_code == 0, report.to_json_text()
        assert report.backup is not None and report.backup["pruned"] == []
        ids.append(report.backup["id"])
    assert _backup_refs(deploy) == ids


def test_retention_of_zero_never_drops_the_backup_the_pull_just_made(
    deploy: Path, tmp_path: Path
) -> None:
    """``backupKeep=0`` with ``backupKeepDays=0`` keeps only the newest backup: each pull's own
    backup survives it, the one before goes."""
    env = {"GITSAFE_BACKUP_KEEP": "0", "GITSAFE_BACKUP_KEEP_DAYS": "0"}
    ids = []
    for n in range(3):
        write(deploy, f"precious-{n}.txt", f"only copy {n}\n")
        report = gitsafe.pull(deploy, "origin", "main", env=env)
        assert report.exit_code == 0, report.to_json_text()
        assert report.backup is not None
        ids.append(report.backup["id"])
        assert report.backup["pruned"] == ids[:-1][-1:]
        assert _backup_refs(deploy) == [ids[-1]]
    proc = cli("restore", "--into", str(tmp_path / "rescue"), "-C", str(deploy))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rescue/precious-2.txt").read_text() == "only copy 2\n"


@pytest.mark.parametrize(
    "target", ["commit-without-manifest", "blob", "manifest-not-json", "manifest-of-no-format"]
)
def test_a_ref_among_the_backups_that_gitsafe_did_not_make_is_left_alone(
    deploy: Path, tmp_path: Path, target: str
) -> None:
    """A ref under refs/gitsafe/backups/ from elsewhere (made by hand, a mirror fetch) is never
    listed, restored or pruned, and breaks neither ``backups`` nor a pull."""
    if target == "blob":
        oid = git(deploy, "rev-parse", "HEAD:README.md").strip()
    elif target == "commit-without-manifest":
        oid = git(deploy, "rev-parse", "HEAD").strip()
    else:
        repo = pygit2.Repository(str(deploy))
        builder = repo.TreeBuilder()
        text = b"{not json" if target == "manifest-not-json" else b'{"entries": []}'
        builder.insert("manifest.json", repo.create_blob(text), pygit2.GIT_FILEMODE_BLOB)
        who = pygit2.Signature("t", "t@t")
        oid = str(repo.create_commit(None, who, who, "not a backup", builder.write(), []))
    foreign = "refs/gitsafe/backups/99999999T000000.000Z-foreign"  # sorts as the newest
    git(deploy, "update-ref", foreign, oid)
    env = {"GITSAFE_BACKUP_KEEP": "0", "GITSAFE_BACKUP_KEEP_DAYS": "0"}
    write(deploy, "scratch.txt", "scratch\n")
    report = gitsafe.pull(deploy, "origin", "main", env=env)
    assert report.exit_code == 0, report.to_json_text()
    assert report.backup is not None and report.backup["pruned"] == []
    assert git(deploy, "rev-parse", foreign).strip() == oid
    proc = cli_process("backups", "-C", str(deploy), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)] == [report.backup["id"]]
    proc = cli_process("restore", "99999999T", "--into", str(tmp_path / "r"), "-C", str(deploy))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    proc = cli_process("restore", "--into", str(tmp_path / "newest"), "-C", str(deploy))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "newest/scratch.txt").read_text() == "scratch\n"


def test_restore_of_a_damaged_backup_gives_back_the_rest_and_names_what_is_lost(
    deploy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITSAFE_BACKUP_MAX_FILE_SIZE", "1k")
    write(deploy, "big.bin", b"x" * 4096)
    write(deploy, "small.txt", "small\n")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.backup is not None and report.backup["aside"] == 1
    for aside in (deploy / ".git/gitsafe/aside").rglob("*"):
        if aside.is_file():
            aside.unlink()  # the file set aside is gone; the backup's ref is not
    proc = cli_process("restore", "--into", str(tmp_path / "r"), "-C", str(deploy), "--json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["damaged"] == ["big.bin"]
    assert "not restored: the backup no longer holds" in proc.stderr
    assert "cannot write" not in proc.stderr
    assert (tmp_path / "r/small.txt").read_text() == "small\n"
    assert not (tmp_path / "r/big.bin").exists()


# -- when no backup is made --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["api-flag", "env", "cli-flag"])
def test_no_backup_leaves_no_ref_and_the_report_says_it_was_skipped(deploy: Path, how: str) -> None:
    write(deploy, "src/config.py", "DEBUG = True\n")
    write(deploy, "scratch.txt", "gone for good\n")
    if how == "cli-flag":
        proc = cli_process("pull", "origin", "main", "-C", str(deploy), "--no-backup", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        jsonschema.validate(data, SCHEMA)
    else:
        report = gitsafe.pull(
            deploy,
            "origin",
            "main",
            backup=False if how == "api-flag" else None,
            env={"GITSAFE_BACKUP": "0"} if how == "env" else {},
        )
        assert report.exit_code == 0, report.to_json_text()
        data = validate(report)
    assert data["outcome"] == "healed"
    assert data["backup"]["skipped"] is True
    assert data["backup"].keys() == {"skipped", "reason"}
    assert "no-backup" in data["backup"]["reason"]
    assert not (deploy / "scratch.txt").exists()
    assert git(deploy, "for-each-ref", "refs/gitsafe/") == ""
    assert not (deploy / ".git/gitsafe/aside").exists()
    proc = cli("backups", "-C", str(deploy), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


@pytest.mark.parametrize("upstream_moves", [False, True], ids=["up-to-date", "fast-forward"])
def test_clean_pull_makes_no_backup(origin: Origin, deploy: Path, upstream_moves: bool) -> None:
    write(deploy, "app.log", "kept: ignored by *.log\n")
    if upstream_moves:
        write(origin.work, "new.txt", "new\n")
        origin.push("upstream moves")
    report = gitsafe.pull(deploy, "origin", "main", env={})
    assert report.exit_code == 0, report.to_json_text()
    assert report.outcome == ("fast-forwarded" if upstream_moves else "up-to-date")
    assert report.backup is None
    assert validate(report)["backup"] is None
    assert git(deploy, "for-each-ref", "refs/gitsafe/") == ""
    assert (deploy / "app.log").exists()


# -- restore modes, listing, errors --------------------------------------------------------------


def test_restore_in_place_writes_only_missing_work_tree_paths_and_never_overwrites(
    origin: Origin, deploy: Path, outside: Path
) -> None:
    modified_tracked_file(origin, deploy, outside)
    staged_change_differing_from_head_and_work_tree(origin, deploy, outside)
    expect = {
        **untracked_file(origin, deploy, outside),
        **untracked_tree_with_empty_dir_and_outside_symlinks(origin, deploy, outside),
    }
    outside_before = snapshot(outside)
    before = snapshot(deploy)
    report = gitsafe.pull(deploy, "origin", "main", env={})
    assert report.exit_code == 0 and report.backup is not None, report.to_json_text()
    after = snapshot(deploy)
    proc = cli("restore", "--in-place", "-C", str(deploy), "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some paths existed
    result = json.loads(proc.stdout)
    assert result["id"] == report.backup["id"]
    assert sorted(result["skipped"]) == ["lib/util.py", "src/config.py"]
    now = snapshot(deploy)
    # nothing that existed after the pull was changed
    assert {k: now.get(k) for k in after} == after
    # every missing work-tree path is back as it was
    for k, v in expect.items():
        assert now.get(k) == v, k
    assert {k: v for k, v in now.items() if k not in after} == {
        k: before.get(k) for k in now if k not in after
    }
    # staged versions and operation state are never written into the live tree
    assert not (deploy / ".gitsafe-index").exists()
    assert not (deploy / ".gitsafe-state").exists()
    assert "skipped src/config.py" in proc.stderr
    assert snapshot(outside) == outside_before


def test_restore_into_a_dir_that_has_some_paths_skips_them_and_exits_1(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    modified_tracked_file(origin, deploy, outside)
    staged_change_differing_from_head_and_work_tree(origin, deploy, outside)
    expect = untracked_file(origin, deploy, outside)
    report = gitsafe.pull(deploy, "origin", "main", env={})
    assert report.exit_code == 0 and report.backup is not None, report.to_json_text()
    rescue = tmp_path / "rescue"
    write(rescue, "src/config.py", "mine, already here\n")
    write(rescue, ".gitsafe-index/lib/util.py", "mine too\n")
    proc = cli("restore", report.backup["id"], "--into", str(rescue), "-C", str(deploy), "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert sorted(result["skipped"]) == [".gitsafe-index/lib/util.py", "src/config.py"]
    assert (rescue / "src/config.py").read_text() == "mine, already here\n"
    assert (rescue / ".gitsafe-index/lib/util.py").read_text() == "mine too\n"
    rescued = snapshot(rescue)
    for k, v in expect.items():
        assert rescued[k] == v
    assert rescued["lib/util.py"] == file_entry(b"def util():\n    return 3  # work tree\n")


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "into"])
def test_restore_never_replaces_an_existing_file_standing_where_a_saved_directory_goes(
    origin: Origin, deploy: Path, tmp_path: Path, in_place: bool
) -> None:
    write(deploy, "vendor/lib.py", "vendored\n")
    write(origin.work, "vendor", "vendor is a file upstream\n")
    origin.push("vendor becomes a file")
    report = gitsafe.pull(deploy, "origin", "main", env={})
    assert report.exit_code == 0 and report.backup is not None, report.to_json_text()
    where = deploy if in_place else tmp_path / "rescue"
    if not in_place:
        write(where, "vendor", "vendor is a file upstream\n")
    mode = ["--in-place"] if in_place else ["--into", str(where)]
    proc = cli("restore", *mode, "-C", str(deploy), "--json")
    assert (where / "vendor").read_text() == "vendor is a file upstream\n"
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["skipped"] == ["vendor/lib.py"]


def test_restore_never_writes_through_a_symlink_in_the_destination(
    origin: Origin, deploy: Path, outside: Path, tmp_path: Path
) -> None:
    untracked_tree_with_empty_dir_and_outside_symlinks(origin, deploy, outside)
    report = gitsafe.pull(deploy, "origin", "main", env={})
    assert report.exit_code == 0 and report.backup is not None, report.to_json_text()
    outside_before = snapshot(outside)
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    os.symlink(outside, rescue / "uploads")  # planted where the saved directory goes
    cli("restore", "--into", str(rescue), "-C", str(deploy))
    os.symlink(outside, deploy / "uploads")  # and in the live tree
    cli("restore", "--in-place", "-C", str(deploy))
    assert snapshot(outside) == outside_before


def test_backups_json_lists_ids_newest_first_with_counts(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, "first.txt", "12345\n")
    first = gitsafe.pull(deploy, "origin", "main", env={})
    local_commit(origin, deploy, tmp_path)
    write(deploy, "src/config.py", "DEBUG = True\n")
    write(deploy, "second.bin", BINARY)
    second = gitsafe.pull(deploy, "origin", "main", env={})
    assert first.backup is not None and second.backup is not None
    proc = cli_process("backups", "-C", str(deploy), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["id"] for r in rows] == [second.backup["id"], first.backup["id"]]
    assert rows[1] == {
        "id": first.backup["id"],
        "ref": f"refs/gitsafe/backups/{first.backup['id']}",
        "created_at": first.backup["created_at"],
        "branch": "main",
        "entries": 1,
        "bytes": 6,
        "commits": 0,
        "aside": 0,
    }
    assert rows[0]["entries"] == second.backup["entries"] == 2
    assert rows[0]["bytes"] == second.backup["bytes"] == len(BINARY) + len("DEBUG = True\n")
    assert rows[0]["commits"] == 1
    text = cli_process("backups", "-C", str(deploy))
    assert text.returncode == 0
    assert first.backup["id"] in text.stderr and second.backup["id"] in text.stderr
    # restore without an id takes the newest
    proc = cli_process("restore", "--into", str(tmp_path / "rescue"), "-C", str(deploy), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == second.backup["id"]


@pytest.mark.parametrize("where", ["a-file", "below-a-file", "empty"])
def test_restore_into_a_destination_that_cannot_be_a_directory_exits_2_in_one_line(
    deploy: Path, tmp_path: Path, where: str
) -> None:
    write(deploy, "scratch.txt", "only copy\n")
    report = gitsafe.pull(deploy, "origin", "main", env={})
    assert report.backup is not None
    (tmp_path / "afile").write_text("mine\n")
    into = {"a-file": "afile", "below-a-file": "afile/rescue", "empty": ""}[where]
    target = str(tmp_path / into) if into else ""
    proc = cli_process("restore", "--into", target, "-C", str(deploy))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "afile").read_text() == "mine\n"
    assert not (deploy.parent / "scratch.txt").exists() and not Path("scratch.txt").exists()


def test_restore_of_an_unknown_backup_or_without_a_destination_exits_2(
    deploy: Path, tmp_path: Path
) -> None:
    rescue = tmp_path / "rescue"
    proc = cli_process("restore", "--into", str(rescue), "-C", str(deploy))
    assert proc.returncode == 2, proc.stderr
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, "origin", "main", env={})
    assert report.backup is not None
    proc = cli_process(
        "restore", "20000101T000000.000Z-1", "--into", str(rescue), "-C", str(deploy)
    )
    assert proc.returncode == 2
    assert "no backup '20000101T000000.000Z-1'" in proc.stderr
    assert not rescue.exists()
    for mode in ([], ["--into", str(rescue), "--in-place"]):
        proc = cli("restore", report.backup["id"], *mode, "-C", str(deploy))
        assert proc.returncode == 2, mode
        assert "exactly one of --into DIR or --in-place" in proc.stderr
    assert not rescue.exists()
    assert not (deploy / "scratch.txt").exists()
