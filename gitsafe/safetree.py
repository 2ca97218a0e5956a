"""Race-free file operations confined to one directory tree.

Every operation walks from the top with ``openat(O_DIRECTORY | O_NOFOLLOW)`` one component at a
time and then acts with ``*at`` calls on the final directory's descriptor.  A symlink in a leading
component — there from the start or swapped in by another process mid-run — makes the open fail
instead of being followed, so nothing outside the tree is ever written or deleted.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as st
from collections import OrderedDict

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHE = 32  # open directory descriptors kept; operations come sorted, so few are needed


class NotInTree(OSError):
    """A leading component is not a real directory (a symlink, a file, or missing)."""


class SafeTree:
    def __init__(self, root: str) -> None:
        self.root = root
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fds[""] = os.open(root, _DIR_FLAGS)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> SafeTree:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _remember(self, rel: str, fd: int) -> int:
        self._fds[rel] = fd
        while len(self._fds) > _CACHE:
            oldest = next(k for k in self._fds if k)
            os.close(self._fds.pop(oldest))
        return fd

    def dir_fd(self, rel_dir: str, create: bool = False) -> int:
        """A descriptor for directory ``rel_dir``, reached without following any symlink.

        With ``create``, missing directories are made and a non-directory in the way (a file or
        a symlink, which is unlinked, not followed) is replaced by a directory — what git's
        checkout does when the target has a directory there.
        """
        if rel_dir in self._fds:
            self._fds.move_to_end(rel_dir)
            return self._fds[rel_dir]
        parent, _, name = rel_dir.rpartition("/")
        pfd = self.dir_fd(parent, create)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if not create or e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise NotInTree(e.errno, f"{rel_dir}: not a directory inside the tree") from e
            if e.errno != errno.ENOENT:
                os.unlink(name, dir_fd=pfd)
            os.mkdir(name, dir_fd=pfd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        return self._remember(rel_dir, fd)

    def _split(self, rel: str, create: bool = False) -> tuple[int, str]:
        parent, _, name = rel.rpartition("/")
        return self.dir_fd(parent, create), name

    def lstat(self, rel: str) -> os.stat_result | None:
        try:
            dfd, name = self._split(rel)
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (NotInTree, FileNotFoundError):
            return None

    def remove(self, rel: str) -> bool:
        """Remove whatever is at ``rel`` (a directory recursively, a symlink as a link)."""
        try:
            dfd, name = self._split(rel)
            info = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (NotInTree, FileNotFoundError):
            return False
        if st.S_ISDIR(info.st_mode):
            self._forget_below(rel)
            shutil.rmtree(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)
        return True

    def unlink(self, rel: str) -> None:
        dfd, name = self._split(rel)
        os.unlink(name, dir_fd=dfd)

    def rmdir(self, rel: str) -> None:
        self._forget_below(rel)
        dfd, name = self._split(rel)
        os.rmdir(name, dir_fd=dfd)

    def mkdir(self, rel: str) -> None:
        dfd, name = self._split(rel, create=True)
        os.mkdir(name, dir_fd=dfd)

    def symlink(self, target: bytes, rel: str) -> None:
        dfd, name = self._split(rel, create=True)
        os.symlink(target, name, dir_fd=dfd)

    def write_file(self, rel: str, data: bytes, mode: int) -> None:
        """Create ``rel`` (which must not exist) with git's creation mode; the umask applies."""
        dfd, name = self._split(rel, create=True)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def prune_empty_parents(self, rel: str) -> None:
        """git's schedule_dir_for_removal: rmdir each parent while it is empty."""
        parent = rel.rpartition("/")[0]
        while parent:
            try:
                self.rmdir(parent)
            except OSError:
                return
            parent = parent.rpartition("/")[0]

    def _forget_below(self, rel: str) -> None:
        prefix = rel + "/"
        for key in [k for k in self._fds if k == rel or k.startswith(prefix)]:
            os.close(self._fds.pop(key))
