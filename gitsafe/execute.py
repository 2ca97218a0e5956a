"""Carrying out a plan: the only module that writes to the work tree, the index and refs.

Every work-tree operation goes through :class:`SafeTree`, so a symlink planted in a leading
component (before or during the run) can never redirect a write or a deletion outside the tree.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator

import pygit2

from gitsafe import accel, index_file
from gitsafe.errors import GitsafeError
from gitsafe.filters import smudge
from gitsafe.index_stat import (
    MODE_EXEC,
    MODE_GITLINK,
    MODE_LINK,
    IndexSnapshot,
    add_with_stat,
    pack_stat,
    set_stat,
)
from gitsafe.plan import IndexFiles, TreeFiles, WorkTreeChanges, gitlinks
from gitsafe.repository import state_path
from gitsafe.safetree import NotInTree, SafeTree


def _blob_content(repo: pygit2.Repository, path: str, oid: pygit2.Oid) -> bytes:
    blob = repo[oid]
    assert isinstance(blob, pygit2.Blob)
    converted = smudge(repo, path, blob)
    return blob.data if converted is None else converted


def _write_entry(
    repo: pygit2.Repository, tree: SafeTree, path: str, mode: int, oid: pygit2.Oid
) -> None:
    tree.remove(path)
    if mode == MODE_GITLINK:
        tree.mkdir(path)  # git reset leaves submodule content alone; it only needs the directory
        return
    blob = repo[oid]
    assert isinstance(blob, pygit2.Blob)
    if mode == MODE_LINK:
        tree.symlink(blob.data, path)
        return
    # The creation modes git uses, so the umask decides the permission bits as it does for git.
    tree.write_file(path, _blob_content(repo, path, oid), 0o777 if mode == MODE_EXEC else 0o666)


def reset_worktree(
    repo: pygit2.Repository,
    root: str,
    target_tree: pygit2.Tree,
    target: TreeFiles,
    changes: WorkTreeChanges,
    checkpoint: Callable[[], None] = lambda: None,
    index: IndexSnapshot | None = None,
) -> None:
    """``git reset --hard`` for the planned paths, then an index matching the target."""
    with SafeTree(root) as tree:
        for path in changes.deletes:
            checkpoint()
            try:
                tree.unlink(path)
            except (NotInTree, FileNotFoundError):
                continue  # behind a symlink or already gone: nothing of ours to delete
            except IsADirectoryError:
                continue  # a directory now stands there: it is untracked, the clean decides
            tree.prune_empty_parents(path)
        for path in changes.vanished:
            tree.prune_empty_parents(path)
        # A submodule path needs its directory, even if the deletions above just pruned it
        # (a tracked directory the target turns into a gitlink): git's checkout recreates it.
        if changes.deletes or changes.vanished:
            writing = set(changes.writes)
            for path in gitlinks(target):
                if path not in writing and tree.lstat(path) is None:
                    tree.mkdir(path)
        # Files are smudged by the target's attributes, as git's checkout reads them from the
        # new index: load the target into the in-memory index (libgit2 falls back to it when a
        # .gitattributes file is absent) and write the .gitattributes files first.
        loaded = bool(changes.writes)
        if loaded:
            load_target(repo, target_tree, target, index)
        writes = sorted(changes.writes, key=lambda p: (not p.endswith(".gitattributes"), p))
        for path in writes:
            checkpoint()
            mode, oid = target[path]
            try:
                _write_entry(repo, tree, path, mode, oid)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise GitsafeError(
                        f"no space left on the device while writing {path}; free space and "
                        "rerun: the pull converges from here",
                        path=path,
                    ) from e
                raise GitsafeError(f"cannot write {path}: {e.strerror}", path=path) from e
    refreshed = bool(changes.verified or changes.verified_records)
    if changes.writes or refreshed or changes.deletes or not changes.index_current:
        if not loaded and refresh_in_place(repo, changes, index):
            return
        if not loaded:
            load_target(repo, target_tree, target, index)
        verified: Iterable[tuple[str, bytes]] = changes.verified.items()
        if changes.verified_records:
            assert index is not None
            verified = itertools.chain(
                verified, _record_pairs(index.entries.raw, changes.verified_records)
            )
        write_index(repo, root, target, changes.writes, verified)


def _record_pairs(table: object, records: bytes) -> Iterator[tuple[str, bytes]]:
    """The (path, packed stat) pairs of the C stat pass's records, a few thousand at a time:
    after a build touched 200,000 files, all at once would be about 45 MB beside libgit2's
    index."""
    native = accel.native
    assert native is not None
    step = native.RECORD_SIZE * 4096  # whole records
    for at in range(0, len(records), step):
        yield from native.record_pairs(table, records[at : at + step])


def refresh_in_place(
    repo: pygit2.Repository, changes: WorkTreeChanges, planned: IndexSnapshot | None
) -> bool:
    """Write new stat data for the hashed-and-unchanged entries straight into the index file
    the plan read, when that is all the index needs (after a build or a restore touched every
    file): no libgit2 index, which at 200,000 files costs 0.5 s and 50 MB to load and write.
    True if it is done; False leaves it to libgit2 (the index changed since, another entry
    needs more than stat data, or an index this does not rewrite by itself: conflicts,
    intent-to-add or assume-unchanged entries, extensions besides the cache-tree)."""
    native = accel.native
    if (
        native is None
        or planned is None
        or not planned.editable
        or planned.identity is None  # (editable says so; for the type checker)
        or planned.checksum is None
        or changes.writes
        or changes.deletes
        or not changes.index_current
        or not isinstance(planned.entries.raw, native.Table)
    ):
        return False
    table = planned.entries.raw
    try:
        # The entries the full analysis hashed too (links, files touched near a change)
        records = changes.verified_records + native.path_records(table, changes.verified.items())
    except KeyError:
        return False
    return index_file.write_refreshed(
        os.path.join(repo.path, "index"),
        planned.identity,
        planned.checksum,
        lambda data: native.patch_stat(data, table, records),
    )


def load_target(
    repo: pygit2.Repository,
    target_tree: pygit2.Tree,
    target: TreeFiles,
    planned: IndexSnapshot | None,
) -> None:
    """Make libgit2's in-memory index the target tree, keeping the stat data of every entry
    whose path, mode and id stay (so nothing needs rehashing next time).

    When the plan's target is the index with a few paths laid over it and libgit2 loads the
    very file the plan read, only those paths are changed in place; the tree the result makes
    must be the target's (its cache-tree is rebuilt on the way), or the long way is taken:
    libgit2's read_tree rebuilds every entry, about 0.3 s and twice the index's memory at
    200,000 files.  Conflicts, intent-to-add or assume-unchanged entries and other extensions
    (resolve-undo, ...), which read_tree clears, always take the long way.
    """
    index = repo.index
    index.read(force=False)  # as on disk now
    if (
        isinstance(target, IndexFiles)
        and planned is not None
        and planned.editable
        and planned.entries is target.entries
        and index_file.identity(os.path.join(repo.path, "index")) == planned.identity
    ):
        try:
            # The index's own paths come first, so a file that goes makes room for a directory.
            for path, spec in target.overlay().items():
                if spec is None:
                    if path in index:
                        index.remove(path)
                else:
                    mode, oid = spec
                    # bytes and int: a non-UTF-8 name must not fail (pygit2 accepts both)
                    entry = pygit2.IndexEntry(os.fsencode(path), oid, mode)  # type: ignore[arg-type]
                    index.add(entry)
            if index.write_tree() == target_tree.id:
                return
        except (pygit2.GitError, ValueError):
            pass  # whatever the edits left, read_tree replaces every entry
    index.read_tree(target_tree)


def write_index(
    repo: pygit2.Repository,
    root: str,
    target: TreeFiles,
    written: list[str],
    verified: Iterable[tuple[str, bytes]],
) -> None:
    """Write the in-memory index, which holds the target tree (:func:`load_target`), with
    fresh stat data for the written and verified entries: a verified file gets the stat data
    it had when it was hashed; a written one, its new data."""
    index = repo.index
    prefix = root.rstrip("/") + "/"
    refresh: dict[str, bytes | None] = {}
    for path in written:
        try:
            refresh[path] = pack_stat(os.lstat(prefix + path), target[path][0])
        except OSError:
            refresh[path] = None
    for path, packed in itertools.chain(verified, refresh.items()):
        mode, oid = target[path]
        if mode == MODE_GITLINK:
            continue
        # load_target gave every path its entry with the target's mode and id: only the stat
        # data needs refreshing (an entry with no file gets zeros, so git re-checks it).
        if packed is None or not set_stat(index, path, packed):
            add_with_stat(index, path, mode, oid, packed)
    index.write()


def clean_worktree(
    root: str,
    removals: list[tuple[str, bool]],
    checkpoint: Callable[[], None] = lambda: None,
) -> list[tuple[str, str]]:
    """Remove the planned untracked paths; returns (path, why) for those that could not go."""
    failed = []
    with SafeTree(root) as tree:
        for path, _is_dir in removals:
            checkpoint()
            try:
                tree.remove(path)
            except NotInTree:
                continue  # a leading directory became a symlink: never follow it
            except OSError as e:
                failed.append((path, e.strerror or str(e)))
    return failed


def clear_state(gitdir: str, commondir: str, names: list[str]) -> None:
    for name in names:
        full = state_path(gitdir, commondir, name)
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


_FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h, for a long-sized argument on 64-bit
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20


def _locked_by_attribute(full: str) -> bool:
    """chattr +i / +a: not even root may remove or replace what is inside or the file itself."""
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # a symlink, a socket: no attributes to ask about
    try:
        buf = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 8)
    except OSError:
        return False  # the file system has no such attributes
    finally:
        os.close(fd)
    return bool(int.from_bytes(buf[:4], sys.byteorder) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL))


def preflight(root: str, changes: WorkTreeChanges) -> list[str]:
    """Paths the plan must change but this process may not.

    A directory it cannot write (permissions, a read-only mount) or a file or directory locked
    with ``chattr +i``/``+a`` blocks the pull.  Checked before the backup and before any change,
    so a checkout holding, say, a root-owned scratch directory is refused whole rather than left
    half healed.
    """
    writable: dict[str, bool] = {}

    def can_write(directory: str) -> bool:
        if directory not in writable:
            full = os.path.join(root, directory) if directory else root
            if os.path.isdir(full) and not os.path.islink(full):
                writable[directory] = (
                    os.access(full, os.W_OK | os.X_OK)
                    and not read_only_mount(full)
                    and not _locked_by_attribute(full)
                )
            else:  # created by the pull: decided by the nearest existing parent
                writable[directory] = (
                    can_write(directory.rpartition("/")[0]) if directory else False
                )
        return writable[directory]

    def can_replace(path: str) -> bool:
        full = os.path.join(root, path)
        return not (os.path.lexists(full) and _locked_by_attribute(full))

    blocked = []
    for path in sorted({*changes.writes, *changes.deletes, *changes.blockers}):
        if not can_write(path.rpartition("/")[0]) or not can_replace(path):
            blocked.append(f"{path} (not writable)")
    for path, is_dir in changes.clean:
        if not can_write(path.rpartition("/")[0]) or not can_replace(path):
            blocked.append(f"{path} (not removable)")
        elif is_dir:
            for dirpath, dirs, files in os.walk(os.path.join(root, path)):
                rel = os.path.relpath(dirpath, root)
                if not can_write(rel) or any(
                    _locked_by_attribute(os.path.join(dirpath, f)) for f in files
                ):
                    blocked.append(f"{rel}/ (not removable)")
                    break
                dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
    return blocked


def read_only_mount(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False
