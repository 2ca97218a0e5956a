"""Carrying out a plan: the only module that writes to the work tree, the index and refs.

Every path is relative to the work tree top and is checked, right before it is touched, to lie
behind real directories only: a symlink planted in a leading component (before or during the
run) can never redirect a write or a deletion outside the work tree.
"""

from __future__ import annotations

import os
import shutil
import stat as st

import pygit2
from pygit2.enums import FilterMode

from gitsafe.errors import GitsafeError
from gitsafe.index_stat import MODE_EXEC, MODE_GITLINK, MODE_LINK, add_with_stat
from gitsafe.plan import TreeFiles, WorkTreeChanges


class _SafeTree:
    def __init__(self, root: str) -> None:
        self.root = root

    def abspath(self, path: str) -> str:
        return os.path.join(self.root, path)

    def parent_is_real(self, path: str) -> bool:
        """Every leading component of ``path`` is a real directory (not a symlink)."""
        parent = path.rpartition("/")[0]
        current = self.root
        for part in parent.split("/") if parent else ():
            current = os.path.join(current, part)
            try:
                if not st.S_ISDIR(os.lstat(current).st_mode):
                    return False
            except OSError:
                return False
        return True

    def make_parents(self, path: str) -> None:
        """Create the leading directories of ``path``, replacing any non-directory in the way."""
        parent = path.rpartition("/")[0]
        current = self.root
        for part in parent.split("/") if parent else ():
            current = os.path.join(current, part)
            try:
                lst = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current)
                continue
            if not st.S_ISDIR(lst.st_mode):
                os.unlink(current)  # a file or symlink where the target has a directory
                os.mkdir(current)

    def remove_any(self, path: str) -> None:
        """Remove whatever is at ``path`` (not following symlinks); absent is fine."""
        full = self.abspath(path)
        try:
            lst = os.lstat(full)
        except FileNotFoundError:
            return
        if st.S_ISDIR(lst.st_mode):
            shutil.rmtree(full)
        else:
            os.unlink(full)

    def prune_empty_parents(self, path: str) -> None:
        """git's schedule_dir_for_removal: rmdir each parent while it is empty."""
        parent = path.rpartition("/")[0]
        while parent:
            try:
                os.rmdir(self.abspath(parent))
            except OSError:
                return
            parent = parent.rpartition("/")[0]


def _blob_content(repo: pygit2.Repository, path: str, oid: pygit2.Oid) -> bytes:
    blob = repo[oid]
    assert isinstance(blob, pygit2.Blob)
    filters = repo.load_filter_list(path, FilterMode.TO_WORKTREE)
    if filters is None:
        return blob.data
    # FilterList.apply_to_buffer stops at the first NUL byte; BlobIO applies the same
    # smudge filters (eol, ident) through git_blob_filter and keeps every byte.
    with pygit2.BlobIO(blob, as_path=path) as stream:
        return stream.read()


def _write_entry(
    repo: pygit2.Repository, tree: _SafeTree, path: str, mode: int, oid: pygit2.Oid
) -> None:
    full = tree.abspath(path)
    tree.make_parents(path)
    tree.remove_any(path)
    if mode == MODE_GITLINK:
        os.mkdir(full)  # git reset leaves submodule content alone; it only needs the directory
        return
    blob = repo[oid]
    assert isinstance(blob, pygit2.Blob)
    if mode == MODE_LINK:
        os.symlink(blob.data, os.fsencode(full))
        return
    data = _blob_content(repo, path, oid)
    # The same creation mode git uses, so the umask decides the permission bits as it does.
    fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if mode == MODE_EXEC else 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def reset_worktree(
    repo: pygit2.Repository,
    root: str,
    target_tree: pygit2.Tree,
    target: TreeFiles,
    changes: WorkTreeChanges,
) -> None:
    """``git reset --hard`` for the planned paths, then an index matching the target."""
    tree = _SafeTree(root)
    for path in changes.deletes:
        if tree.parent_is_real(path):
            try:
                os.unlink(tree.abspath(path))
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                continue  # a directory now stands there: it is untracked, the clean decides
            tree.prune_empty_parents(path)
    # Attributes first: later files are smudged according to the target's .gitattributes.
    writes = sorted(changes.writes, key=lambda p: (not p.endswith(".gitattributes"), p))
    for path in writes:
        mode, oid = target[path]
        try:
            _write_entry(repo, tree, path, mode, oid)
        except OSError as e:
            raise GitsafeError(f"cannot write {path}: {e.strerror}", path=path) from e
    write_index(repo, root, target_tree, target, set(changes.writes) | changes.verified)


def write_index(
    repo: pygit2.Repository,
    root: str,
    target_tree: pygit2.Tree,
    target: TreeFiles,
    refresh: set[str],
) -> None:
    """Index = target tree; entries for ``refresh`` carry fresh stat data.

    libgit2's read_tree keeps the cached stat data of every entry whose path, mode and id are
    unchanged, so untouched files keep theirs and nothing needs rehashing next time.
    """
    index = repo.index
    index.read_tree(target_tree)
    for path in sorted(refresh):
        mode, oid = target[path]
        if mode == MODE_GITLINK:
            continue
        try:
            lst = os.lstat(os.path.join(root, path))
        except OSError:
            lst = None
        add_with_stat(index, path, mode, oid, lst)
    index.write()


def clean_worktree(root: str, removals: list[tuple[str, bool]]) -> list[str]:
    """Remove the planned untracked paths; returns those that could not be removed."""
    tree = _SafeTree(root)
    failed = []
    for path, is_dir in removals:
        if not tree.parent_is_real(path):
            continue
        full = tree.abspath(path)
        try:
            lst = os.lstat(full)
        except FileNotFoundError:
            continue
        try:
            if is_dir and st.S_ISDIR(lst.st_mode):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except OSError:
            failed.append(path)
    return failed


def clear_state(gitdir: str, commondir: str, names: list[str]) -> None:
    for name in names:
        base = commondir if name.startswith("refs/") else gitdir
        full = os.path.join(base, name.rstrip("/"))
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            pass


def move_branch(
    repo: pygit2.Repository,
    remote: str,
    branch: str,
    target: pygit2.Oid,
    head_before: pygit2.Oid | None,
) -> None:
    """Local ``branch`` at ``target``, checked out, tracking ``remote/branch``; ORIG_HEAD kept."""
    message = f"gitsafe: reset to {remote}/{branch}"
    ref = f"refs/heads/{branch}"
    if head_before is not None:
        repo.create_reference_direct("ORIG_HEAD", head_before, True)
    existing = repo.references.get(ref)
    if existing is None or existing.target != target:
        repo.create_reference_direct(ref, target, True, message=message)
    head = repo.references.get("HEAD")
    if head is None or head.type != pygit2.enums.ReferenceType.SYMBOLIC or head.target != ref:
        repo.set_head(ref)
    local = repo.branches.local.get(branch)
    tracking = repo.branches.remote.get(f"{remote}/{branch}")
    if local is not None and tracking is not None:
        upstream = local.upstream
        if upstream is None or upstream.name != tracking.name:
            local.upstream = tracking
