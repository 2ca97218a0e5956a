"""The index file as bytes: what can be checked and read from it without libgit2 or pygit2.

Kept apart from :mod:`gitsafe.index_stat` so that the early reads of a pull
(:mod:`gitsafe.prescan`) can run in a thread while the main thread is still importing pygit2.
Those reads start only once this module is imported, so it imports ``re`` and ``hashlib``
where they are used (about 4 ms of start otherwise, spent before the first byte is read), and
``collections.abc`` for the type checker only (1.5 ms).
"""

from __future__ import annotations

import os

# Not typing's (mypy reads it as typing's): see the module's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def read(path: str) -> tuple[bytes, os.stat_result] | None:
    """The file's bytes and its stat data from the same open file; None if there is none."""
    try:
        with open(path, "rb") as f:
            return f.read(), os.fstat(f.fileno())
    except FileNotFoundError:
        return None


def file_identity(lst: os.stat_result) -> tuple[int, ...]:
    """What changes whenever a file is replaced or rewritten (git and libgit2 replace the index
    by renaming a new file over it, so its inode changes too)."""
    return (lst.st_dev, lst.st_ino, lst.st_size, lst.st_mtime_ns, lst.st_ctime_ns)


def identity(path: str) -> tuple[int, ...] | None:
    """:func:`file_identity` of the file at ``path`` now; None if it cannot be stat-ed."""
    try:
        return file_identity(os.stat(path))
    except OSError:
        return None


Extensions = tuple[tuple[bytes, int] | None, bool, bool]


def tail(data: bytes, end: int) -> tuple[Extensions, int, bytes]:
    """What a snapshot needs of the file besides its entries (which end at ``end``): the
    :func:`extensions`, the header's entry count and the trailing checksum."""
    return extensions(data, end), int.from_bytes(data[8:12], "big"), bytes(data[-20:])


def extensions(data: bytes, end: int) -> Extensions:
    """The extensions after the entries: the cache-tree's root id (None unless valid); whether
    the entries parsed are the whole index (False: a required extension such as a split
    index's ``link`` or a sparse index's ``sdir``, or a malformed block); and whether there is
    an extension besides the cache-tree (resolve-undo ``REUC``, untracked cache ``UNTR``...)."""
    root: tuple[bytes, int] | None = None
    others = False
    pos, stop = end, len(data) - 20
    while pos + 8 <= stop:
        signature = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        body_end = pos + 8 + size
        if body_end > stop:
            return None, False, others
        if signature == b"TREE":
            root = cache_tree_root(data[pos + 8 : body_end])
        elif not b"A" <= signature[:1] <= b"Z":
            return None, False, True  # git: an extension not starting with A-Z is required
        else:
            others = True
        pos = body_end
    return root, pos == stop, others


_CACHE_TREE_COUNTS = rb"(-1|0|[1-9][0-9]{0,9}) (0|[1-9][0-9]{0,9})"


def cache_tree_root(body: bytes) -> tuple[bytes, int] | None:
    """The root entry of a TREE extension: the id of the tree the whole index equals and the
    number of entries it covers, when git (or libgit2) recorded one and nothing has
    invalidated it since (entry count -1).  Read as strictly as git reads it: any other shape
    and the cache-tree is ignored."""
    newline = body.find(b"\n")
    if not body.startswith(b"\0") or newline < 0:
        return None
    import re  # here, like hashlib below: see the module's docstring

    counts = re.compile(_CACHE_TREE_COUNTS).fullmatch(body, 1, newline)
    if counts is None or counts.group(1) == b"-1" or len(body) < newline + 21:
        return None
    return body[newline + 1 : newline + 21], int(counts.group(1))


def checksum_ok(data: bytes) -> bool:
    import hashlib

    return len(data) >= 32 and hashlib.sha1(memoryview(data)[:-20]).digest() == data[-20:]


def write_refreshed(
    path: str, identity: tuple[int, ...], checksum: bytes, patch: Callable[[bytearray], None]
) -> bool:
    """Rewrite the index file at ``path`` with ``patch`` applied to its bytes (new stat data in
    place, nothing else) and its trailing checksum renewed, as git writes a refreshed index:
    under ``index.lock``, renamed over the old file.  Only if the file is still the one of
    ``identity`` and ``checksum`` (a file rewritten in the same second of a coarse clock can
    reuse the inode, size and times); False, with nothing changed, when it is not, the lock is
    taken or anything fails, so that the caller can take the long way (libgit2), which meets
    the same problem and reports it.  The lock is never left behind.

    Not flushed with fsync, as libgit2 does not flush the index either: the index only caches
    what the work tree and the object store hold.
    """
    import contextlib
    import hashlib

    lock = path + ".lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError:
        return False
    renamed = False
    try:
        with os.fdopen(fd, "wb") as out:
            found = read(path)
            if found is None or file_identity(found[1]) != identity or found[0][-20:] != checksum:
                return False
            data = bytearray(found[0])
            del found
            patch(data)
            data[-20:] = hashlib.sha1(memoryview(data)[:-20]).digest()
            out.write(data)
        os.replace(lock, path)
        renamed = True
        return True
    except (OSError, ValueError):
        return False
    finally:
        if not renamed:  # whatever stopped it, even an interrupt: git must not find it held
            with contextlib.suppress(OSError):
                os.unlink(lock)
