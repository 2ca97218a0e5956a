"""Race-free file operations confined to one directory tree.

Every operation walks from the top with ``openat(O_DIRECTORY | O_NOFOLLOW)`` one component at a
time and then acts with ``*at`` calls on the final directory's descriptor.  A symlink in a leading
component — there from the start or swapped in by another process mid-run — makes the open fail
instead of being followed, so nothing outside the tree is ever written or deleted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as st
from collections.abc import Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotInTree(OSError):
    """A leading component is not a real directory (a symlink, a file, or missing)."""


class SafeTree:
    """Operations on paths relative to ``root``.

    No directory descriptor outlives one operation: each walks afresh from the top, so a leading
    directory moved away or replaced by a symlink between two operations is noticed, not reused.
    """

    def __init__(self, root: str, replace_blockers: bool = True) -> None:
        """``replace_blockers=False``: creating never removes a file or symlink standing where
        a directory is needed (restores use it: they never overwrite)."""
        self.root = root
        self.replace_blockers = replace_blockers
        self._root_fd = os.open(root, _DIR_FLAGS)

    def close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def __enter__(self) -> SafeTree:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _parent(self, rel: str, create: bool = False) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent directory of ``rel``, final name), walked without
        following a symlink.

        With ``create``, missing directories are made and a non-directory in the way (a file or
        a symlink, which is unlinked, not followed) is replaced by a directory, as git's
        checkout does when the target has a directory there.
        """
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise NotInTree(errno.EINVAL, f"{rel!r}: not a plain relative path")
        fd = os.dup(self._root_fd)
        try:
            for name in parts[:-1]:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if not create or e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        raise NotInTree(e.errno, f"{rel}: not inside the tree") from e
                    if e.errno != errno.ENOENT:
                        if not self.replace_blockers:
                            raise NotInTree(e.errno, f"{rel}: a non-directory is in the way") from e
                        os.unlink(name, dir_fd=fd)
                    os.mkdir(name, dir_fd=fd)
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def lstat(self, rel: str) -> os.stat_result | None:
        try:
            with self._parent(rel) as (dfd, name):
                return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (NotInTree, FileNotFoundError):
            return None

    def remove(self, rel: str) -> bool:
        """Remove whatever is at ``rel`` (a directory recursively, a symlink as a link)."""
        try:
            with self._parent(rel) as (dfd, name):
                try:
                    info = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    return False
                if st.S_ISDIR(info.st_mode):
                    shutil.rmtree(name, dir_fd=dfd)
                else:
                    os.unlink(name, dir_fd=dfd)
                return True
        except NotInTree:
            return False

    def unlink(self, rel: str) -> None:
        with self._parent(rel) as (dfd, name):
            os.unlink(name, dir_fd=dfd)

    def rmdir(self, rel: str) -> None:
        with self._parent(rel) as (dfd, name):
            os.rmdir(name, dir_fd=dfd)

    def mkdir(self, rel: str) -> None:
        with self._parent(rel, create=True) as (dfd, name):
            os.mkdir(name, dir_fd=dfd)

    def symlink(self, target: bytes, rel: str) -> None:
        with self._parent(rel, create=True) as (dfd, name):
            os.symlink(target, name, dir_fd=dfd)

    def write_file(self, rel: str, data: bytes, mode: int) -> None:
        """Create ``rel`` (which must not exist) with git's creation mode; the umask applies."""
        with self._parent(rel, create=True) as (dfd, name):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, mode, dir_fd=dfd)
            with os.fdopen(fd, "wb") as f:
                f.write(data)

    def read_file(self, rel: str, limit: int) -> bytes | None:
        """The content of the regular file ``rel``, or None if it holds more than ``limit``
        bytes.  A symlink or anything but a regular file there raises OSError (a FIFO is not
        waited on)."""
        with self._parent(rel) as (dfd, name):
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            with os.fdopen(os.open(name, flags, dir_fd=dfd), "rb") as f:
                if not st.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise OSError(errno.EINVAL, f"{rel}: not a regular file")
                data = f.read(limit + 1)
        return data if len(data) <= limit else None

    def prune_empty_parents(self, rel: str) -> None:
        """git's schedule_dir_for_removal: rmdir each parent while it is empty."""
        parent = rel.rpartition("/")[0]
        while parent:
            try:
                self.rmdir(parent)
            except OSError:
                return
            parent = parent.rpartition("/")[0]
