"""Read-only questions about the work tree, answered the way git answers them."""

from __future__ import annotations

import errno
import os
import re
import stat as st

_HEX40 = re.compile(rb"[0-9a-f]{40}")
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOATIME: int = getattr(os, "O_NOATIME", 0)
_NOT_A_DIRECTORY = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # gone, a file, a symlink


def _validate_headref(path: str) -> bool:
    """git's validate_headref: a refs/ symlink, a "ref: refs/..." file, or a hex object id."""
    try:
        lst = os.lstat(path)
    except OSError:
        return False
    if st.S_ISLNK(lst.st_mode):
        try:
            return os.readlink(os.fsencode(path)).startswith(b"refs/")
        except OSError:
            return False
    try:
        with open(path, "rb") as f:
            buf = f.read(255)
    except OSError:
        return False
    if buf.startswith(b"ref:"):
        return buf[4:].lstrip(b" \t\n\r\v\f").startswith(b"refs/")
    return bool(_HEX40.match(buf) or _HEX64.match(buf))


def is_git_directory(suspect: str) -> bool:
    """git's is_git_directory: HEAD is valid, objects/ and refs/ are searchable."""
    if not _validate_headref(os.path.join(suspect, "HEAD")):
        return False
    common = suspect
    try:
        with open(os.path.join(suspect, "commondir"), "rb") as f:
            rel = f.read().rstrip(b"\n").rstrip(b"\r")
        common = os.path.join(suspect, os.fsdecode(rel))
    except OSError:
        pass
    return os.access(os.path.join(common, "objects"), os.X_OK) and os.access(
        os.path.join(common, "refs"), os.X_OK
    )


def is_nested_repository(path: str) -> bool:
    """git's is_nonbare_repository_dir: ``path/.git`` is a git directory or a gitfile to one.

    An empty ``.git`` directory or a gitfile pointing nowhere does not count, exactly as in
    ``git clean``; a gitfile that exists but cannot be opened or read does count (git errs on the
    side of keeping it).
    """
    dotgit = os.path.join(path, ".git")
    try:
        info = os.stat(dotgit)
    except OSError:
        return False
    if st.S_ISDIR(info.st_mode):
        return is_git_directory(dotgit)
    if not st.S_ISREG(info.st_mode):
        return False
    try:
        with open(dotgit, "rb") as f:
            buf = f.read(1 << 20)
    except OSError:
        return True  # READ_GITFILE_ERR_OPEN_FAILED / READ_FAILED: git keeps it
    if not buf.startswith(b"gitdir: "):
        return False
    target = buf[len(b"gitdir: ") :].rstrip(b"\r\n")
    if not target:
        return False
    target_path = os.fsdecode(target)
    if not os.path.isabs(target_path):
        target_path = os.path.join(path, target_path)
    return is_git_directory(target_path)


class TreeView:
    """lstat answers for one work tree, never following a symlink below its top.

    ``kind`` says what a path is as git would see it: a path behind a symlinked or non-directory
    leading component does not exist for git (``has_symlink_leading_path``), so it does not
    exist here either.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._lstat: dict[str, os.stat_result | None] = {}

    def abspath(self, path: str) -> str:
        return os.path.join(self.root, path) if path else self.root

    def lstat(self, path: str) -> os.stat_result | None:
        """lstat of ``path`` if every leading component is a real directory, else None."""
        cache = self._lstat
        if path in cache:
            return cache[path]
        # Up to the nearest ancestor already looked at, then down: a loop, not a recursion, as
        # a path can be 2,000 directories deep.
        pending = [path]
        while pending[-1] and (parent := pending[-1].rpartition("/")[0]) not in cache:
            pending.append(parent)
        for p in reversed(pending):
            parent_stat = cache[p.rpartition("/")[0]] if p else None
            if p and (parent_stat is None or not st.S_ISDIR(parent_stat.st_mode)):
                cache[p] = None
                continue
            try:
                cache[p] = os.lstat(self.abspath(p))
            except (FileNotFoundError, NotADirectoryError):
                cache[p] = None
        return cache[path]

    def is_dir(self, path: str) -> bool:
        lst = self.lstat(path)
        return lst is not None and st.S_ISDIR(lst.st_mode)

    def first_non_dir_ancestor(self, path: str) -> str | None:
        """The shallowest leading component of ``path`` that exists but is not a directory."""
        parts = path.split("/")[:-1]
        prefix = ""
        for part in parts:
            prefix = f"{prefix}/{part}" if prefix else part
            lst = self.lstat(prefix)
            if lst is None:
                return None
            if not st.S_ISDIR(lst.st_mode):
                return prefix
        return None

    def listdir(self, path: str) -> list[str] | None:
        """The names in directory ``path``, sorted; None if it is not a real directory (now:
        one replaced by a symlink since its lstat is not listed as empty)."""
        fd = self._open_dir(path)
        if fd is None:
            return None
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def listdir_kinds(self, path: str) -> list[tuple[str, str]]:
        """:meth:`listdir` with what each name is ("dir", "link", "file" or "other"), as the
        listing's entry types tell it (an lstat only where the file system does not): git's
        walk of untracked files reads the types the same way."""
        fd = self._open_dir(path)
        if fd is None:
            return []
        found = []
        try:
            with os.scandir(fd) as listing:
                for entry in listing:
                    if entry.is_dir(follow_symlinks=False):
                        kind = "dir"
                    elif entry.is_symlink():
                        kind = "link"
                    elif entry.is_file(follow_symlinks=False):
                        kind = "file"
                    else:
                        kind = "other"
                    found.append((entry.name, kind))
        finally:
            os.close(fd)
        found.sort()
        return found

    def _open_dir(self, path: str) -> int | None:
        """A descriptor to read directory ``path`` through, None if it is not a real directory.

        O_NOFOLLOW: a directory swapped for a symlink since its lstat is not listed.  O_NOATIME:
        a listing leaves the directory's access time alone (see ``open_quiet`` in _native.c);
        the kernel refuses the flag with EPERM to a reader who neither owns the directory nor
        has CAP_FOWNER.
        """
        if not self.is_dir(path):
            return None
        try:
            return _open_quiet(self.abspath(path), _DIR_FLAGS)
        except OSError as e:
            if e.errno in _NOT_A_DIRECTORY:
                return None
            raise


def _open_quiet(path: str, flags: int) -> int:
    """``os.open`` with O_NOATIME, and without it where the kernel refuses it (EPERM), as
    ``open_quiet`` in _native.c; EACCES (unreadable) fails either way."""
    try:
        return os.open(path, flags | _NOATIME)
    except PermissionError as e:
        if not _NOATIME or e.errno != errno.EPERM:
            raise
        return os.open(path, flags)
