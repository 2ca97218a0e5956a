"""Backups: everything a pull discards, stored as git objects before anything is deleted.

A backup is a commit under ``refs/gitsafe/backups/<id>`` whose tree holds ``manifest.json`` and
one blob per saved file under ``blobs/`` (numbered, so any path — non-UTF-8, ``.git`` components —
fits).  Its parents are the commits the pull moves away from, so dropped local commits stay
reachable.  Files above the size bound are set aside (hard-linked, else copied) under
``<gitdir>/gitsafe/aside/<id>/`` instead of hashed.  The ids sort by time.
"""

from __future__ import annotations

import json
import os
import shutil
import stat as st
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pygit2
from pygit2.enums import Option

from gitsafe.index_stat import MODE_EXEC, MODE_FILE, MODE_GITLINK, MODE_LINK, IndexSnapshot
from gitsafe.plan import WorkTreeChanges
from gitsafe.safetree import NotInTree, SafeTree

REF_PREFIX = "refs/gitsafe/backups/"
MANIFEST_FORMAT = "gitsafe.backup/1"
_SIGNATURE_NAME = "gitsafe"
_SIGNATURE_EMAIL = "gitsafe@localhost"


@dataclass
class Entry:
    path: str
    source: str  # worktree | index | untracked | overwritten | state
    type: str  # file | link | dir
    mode: int
    oid: str | None = None
    size: int = 0
    aside: str | None = None  # relative to the git directory

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class BackupInfo:
    id: str
    ref: str
    created_at: str
    branch: str | None
    head: str | None
    entries: int
    bytes: int
    commits: list[str]
    aside: int = 0
    pruned: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "created_at": self.created_at,
            "branch": self.branch,
            "head": self.head,
            "entries": self.entries,
            "bytes": self.bytes,
            "commits": self.commits,
            "aside": self.aside,
            "pruned": self.pruned,
            "restore": f"gitsafe restore {self.id} --into DIR",
        }


def new_id(now: float | None = None) -> str:
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}Z-{os.getpid()}"


class _Collector:
    def __init__(
        self, repo: pygit2.Repository, root: str, gitdir: str, backup_id: str, max_size: int
    ) -> None:
        self.repo = repo
        self.root = root
        self.gitdir = gitdir
        self.id = backup_id
        self.max_size = max_size
        self.entries: list[Entry] = []
        self.blobs: list[pygit2.Oid | None] = []
        self.seen: set[str] = set()
        self.total = 0
        self.aside = 0

    def _add(self, entry: Entry, oid: pygit2.Oid | None) -> None:
        self.entries.append(entry)
        self.blobs.append(oid)
        self.total += entry.size

    def add_worktree(self, tree: SafeTree, path: str, source: str) -> None:
        """Save what the work tree holds at ``path`` (recursively for a directory)."""
        if path in self.seen:
            return  # one work-tree path is saved once, whichever list named it first
        self.seen.add(path)
        info = tree.lstat(path)
        if info is None:
            return
        full = os.path.join(self.root, path)
        if st.S_ISLNK(info.st_mode):
            target = os.readlink(os.fsencode(full))
            oid = self.repo.create_blob(target)
            self._add(Entry(path, source, "link", MODE_LINK, str(oid), len(target)), oid)
        elif st.S_ISDIR(info.st_mode):
            names = sorted(os.listdir(full))
            if not names:
                self._add(Entry(path, source, "dir", 0o040000), None)
            for name in names:
                self.add_worktree(tree, f"{path}/{name}", source)
        elif st.S_ISREG(info.st_mode):
            mode = MODE_EXEC if info.st_mode & 0o100 else MODE_FILE
            if info.st_size > self.max_size:
                rel = os.path.join("gitsafe", "aside", self.id, f"{len(self.entries):06d}")
                dest = os.path.join(self.gitdir, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                # A hard link sets the file aside without copying it or touching the work tree:
                # the pull then unlinks or replaces the work-tree name, never the inode's data.
                try:
                    os.link(full, dest, follow_symlinks=False)
                except OSError:
                    shutil.copy2(full, dest, follow_symlinks=False)
                self.aside += 1
                self._add(Entry(path, source, "file", mode, None, info.st_size, rel), None)
            else:
                oid = self.repo.create_blob_fromdisk(full)
                self._add(Entry(path, source, "file", mode, str(oid), info.st_size), oid)

    def add_blob(self, path: str, source: str, mode: int, oid: pygit2.Oid) -> None:
        if mode == MODE_GITLINK:  # a submodule commit id: recorded, there is no blob to keep
            self._add(Entry(path, source, "gitlink", mode, str(oid), 0), None)
            return
        obj = self.repo.get(oid)
        size = obj.size if isinstance(obj, pygit2.Blob) else 0
        kind = "link" if mode == MODE_LINK else "file"
        self._add(Entry(path, source, kind, mode, str(oid), size), oid)

    def add_state(self, name: str) -> None:
        full = os.path.join(self.gitdir, name.rstrip("/"))
        if os.path.isdir(full) and not os.path.islink(full):
            for dirpath, _dirs, files in os.walk(full):
                for f in sorted(files):
                    self._state_file(os.path.join(dirpath, f))
        elif os.path.isfile(full):
            self._state_file(full)

    def _state_file(self, full: str) -> None:
        rel = os.path.relpath(full, self.gitdir)
        oid = self.repo.create_blob_fromdisk(full)
        self._add(Entry(rel, "state", "file", MODE_FILE, str(oid), os.path.getsize(full)), oid)


def create(
    repo: pygit2.Repository,
    root: str,
    gitdir: str,
    changes: WorkTreeChanges,
    index: IndexSnapshot,
    head_files: Mapping[str, tuple[int, pygit2.Oid]],
    state: list[str],
    parents: list[pygit2.Oid],
    branch: str | None,
    max_size: int,
    backup_id: str | None = None,
) -> BackupInfo | None:
    """Save everything the plan discards; None when it discards nothing at all."""
    backup_id = backup_id or new_id()
    c = _Collector(repo, root, gitdir, backup_id, max_size)
    with SafeTree(root) as tree:
        for item in changes.restore:
            path = item.path
            if any(r in item.reason for r in ("modified", "typechange", "mode", "unmerged")):
                c.add_worktree(tree, path, "worktree")
            entry = index.entries.get(path)
            if entry is not None and (entry.mode, entry.oid) != head_files.get(path):
                c.add_blob(path, "index", entry.mode, entry.oid)
            for staged in index.conflicted.get(path, []):
                c.add_blob(path, f"index:stage{staged.stage}", staged.mode, staged.oid)
        for item in changes.overwrite:
            c.add_worktree(tree, item.path.rstrip("/"), "overwritten")
        for path, _is_dir in changes.clean:
            c.add_worktree(tree, path, "untracked")
    for name in state:
        c.add_state(name)
    dropped = [str(p) for p in parents]
    if not c.entries and not parents:
        return None
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest = {
        "format": MANIFEST_FORMAT,
        "id": backup_id,
        "created_at": created,
        "work_tree": root,
        "branch": branch,
        "parents": dropped,
        "entries": [e.as_json() for e in c.entries],
    }
    builder = repo.TreeBuilder()
    blobs = repo.TreeBuilder()
    for n, oid in enumerate(c.blobs):
        if oid is not None:
            blobs.insert(f"{n:06d}", oid, pygit2.enums.FileMode.BLOB)
    builder.insert("blobs", blobs.write(), pygit2.enums.FileMode.TREE)
    text = json.dumps(manifest, indent=1, ensure_ascii=True).encode()
    builder.insert("manifest.json", repo.create_blob(text), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL)
    message = (
        f"gitsafe backup {backup_id}\n\n{len(c.entries)} entries, {c.total} bytes, "
        f"{len(parents)} parent commit(s)\n"
    )
    ref = REF_PREFIX + backup_id
    repo.create_commit(ref, sig, sig, message, builder.write(), parents)
    return BackupInfo(
        id=backup_id,
        ref=ref,
        created_at=created,
        branch=branch,
        head=dropped[0] if dropped else None,
        entries=len(c.entries),
        bytes=c.total,
        commits=dropped,
        aside=c.aside,
    )


class durable:  # a context manager that reads like a statement: "with durable():"
    """libgit2 fsyncs objects and refs while inside: a backup is on disk before deletions."""

    def __enter__(self) -> None:
        pygit2.option(Option.ENABLE_FSYNC_GITDIR, 1)

    def __exit__(self, *_exc: object) -> None:
        pygit2.option(Option.ENABLE_FSYNC_GITDIR, 0)


# -- listing, pruning, restoring ----------------------------------------------------------------


@dataclass
class Listed:
    id: str
    ref: str
    commit: pygit2.Commit
    manifest: dict[str, Any]

    @property
    def created(self) -> float:
        return float(self.commit.commit_time)

    def summary(self) -> dict[str, Any]:
        entries = self.manifest.get("entries", [])
        return {
            "id": self.id,
            "ref": self.ref,
            "created_at": self.manifest.get("created_at"),
            "branch": self.manifest.get("branch"),
            "entries": len(entries),
            "bytes": sum(int(e.get("size", 0)) for e in entries),
            "commits": len(self.manifest.get("parents", [])),
            "aside": sum(1 for e in entries if e.get("aside")),
        }


def _blob_data(repo: pygit2.Repository, oid: pygit2.Oid) -> bytes:
    blob = repo[oid]
    assert isinstance(blob, pygit2.Blob)
    return blob.data


def list_backups(repo: pygit2.Repository) -> list[Listed]:
    """Backups, newest first."""
    found = []
    for name in repo.references:
        if not name.startswith(REF_PREFIX):
            continue
        commit = repo.references[name].peel(pygit2.Commit)
        manifest = json.loads(_blob_data(repo, commit.tree["manifest.json"].id))
        found.append(Listed(name[len(REF_PREFIX) :], name, commit, manifest))
    return sorted(found, key=lambda b: b.id, reverse=True)


def prune(
    repo: pygit2.Repository, gitdir: str, keep: int, keep_days: float, now: float | None = None
) -> list[str]:
    """Drop backups beyond the newest ``keep`` that are also older than ``keep_days``."""
    now = time.time() if now is None else now
    pruned = []
    for n, b in enumerate(list_backups(repo)):
        if n < keep or now - b.created < keep_days * 86400:
            continue
        repo.references.delete(b.ref)
        shutil.rmtree(os.path.join(gitdir, "gitsafe", "aside", b.id), ignore_errors=True)
        pruned.append(b.id)
    return pruned


def find(repo: pygit2.Repository, backup_id: str | None) -> Listed | None:
    backups = list_backups(repo)
    if backup_id is None:
        return backups[0] if backups else None
    matches = [b for b in backups if b.id == backup_id or b.id.startswith(backup_id)]
    return matches[0] if len(matches) == 1 else None


def _restore_entry(
    repo: pygit2.Repository,
    gitdir: str,
    tree: SafeTree,
    blobs: pygit2.Tree,
    n: int,
    e: dict[str, Any],
    rel: str,
    result: RestoreResult,
) -> None:
    if e["type"] == "gitlink":
        return  # nothing to write: the entry only records which submodule commit was staged
    existing = tree.lstat(rel)
    if e["type"] == "dir":
        if existing is None:
            tree.mkdir(rel)
            result.written.append(rel + "/")
        elif not st.S_ISDIR(existing.st_mode):
            result.skipped.append(rel)
        return
    if existing is not None:
        result.skipped.append(rel)
        return
    if e.get("aside"):
        with open(os.path.join(gitdir, e["aside"]), "rb") as f:
            data = f.read()
    else:
        data = _blob_data(repo, blobs[f"{n:06d}"].id)
    if e["type"] == "link":
        tree.symlink(data, rel)
    else:
        tree.write_file(rel, data, 0o777 if e["mode"] == MODE_EXEC else 0o666)
    result.written.append(rel)


@dataclass
class RestoreResult:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # existed already
    branches: list[str] = field(default_factory=list)


def restore(
    repo: pygit2.Repository,
    gitdir: str,
    backup: Listed,
    into: str,
    in_place: bool,
) -> RestoreResult:
    """Write every saved file under ``into`` (never over an existing path) and branch the
    dropped commits as ``gitsafe/restore/<id>``.

    Work-tree, untracked and overwritten content goes to its original relative path; staged
    (index) versions go under ``.gitsafe-index/`` and operation state under ``.gitsafe-state/``,
    so no version hides another.  In place, only work-tree content is restored.
    """
    result = RestoreResult()
    blobs = backup.commit.tree["blobs"]
    assert isinstance(blobs, pygit2.Tree)
    os.makedirs(into, exist_ok=True)
    with SafeTree(into, replace_blockers=False) as tree:
        for n, e in enumerate(backup.manifest["entries"]):
            source = e["source"]
            if source.startswith("index"):
                if in_place:
                    continue
                suffix = "" if source == "index" else "." + source.split(":", 1)[1]
                rel = f".gitsafe-index/{e['path']}{suffix}"
            elif source == "state":
                if in_place:
                    continue
                rel = f".gitsafe-state/{e['path']}"
            else:
                rel = e["path"]
            try:
                _restore_entry(repo, gitdir, tree, blobs, n, e, rel, result)
            except (NotInTree, FileExistsError):
                result.skipped.append(rel)  # something that is not ours stands in the way
    for n, parent in enumerate(backup.manifest.get("parents", [])):
        name = f"gitsafe/restore/{backup.id}" + (f"-{n}" if n else "")
        oid = pygit2.Oid(hex=parent)
        if repo.get(oid) is not None and repo.branches.local.get(name) is None:
            repo.branches.local.create(name, repo[oid].peel(pygit2.Commit))
            result.branches.append(name)
    return result
