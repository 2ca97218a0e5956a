"""Writing git objects as one pack file, flushed to disk with three fsyncs in all.

A backup must be on disk before the pull deletes anything.  Written as loose objects, that is
two fsyncs per object (the file and its directory): about 0.5 ms each on a plain ext4 disk, so
0.2 s for 400 untracked files.  One pack holding them all needs the pack, its index and the
pack directory flushed, however many objects it holds.

libgit2's pack builder (the only pack writer pygit2 exposes) searches for deltas with
unbounded memory and no size limit it lets a caller set, so a backup of a few similar 50 MB
files could take minutes; gitsafe writes the objects whole instead, which is what a loose
object holds too.  The format is git's pack version 2 with a version 2 index
(``Documentation/gitformat-pack.txt``); ``git verify-pack`` and ``git fsck`` check what this
writes in ``tests/test_packfile.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
import zlib

# Object type numbers in a pack entry's header, and the names in an object's id.
COMMIT, TREE, BLOB, TAG = 1, 2, 3, 4
_NAMES = {COMMIT: b"commit", TREE: b"tree", BLOB: b"blob", TAG: b"tag"}

_LEVEL = 1  # zlib's fastest, as libgit2 writes loose objects
_LARGE = 1 << 31  # an index offset at or above this goes to the 8-byte table


def entry_header(kind: int, size: int) -> bytes:
    """The pack entry's header: type and size, the size 4 bits then 7 bits a byte."""
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def object_id(kind: int, data: bytes) -> bytes:
    """The object's id: the SHA-1 of its loose form's header and content."""
    digest = hashlib.sha1(b"%s %d\x00" % (_NAMES[kind], len(data)))
    digest.update(data)
    return digest.digest()


class PackWriter:
    """One pack being written into ``pack_dir``: :meth:`add` objects, then :meth:`finish`.

    Each object is compressed and written as it comes, so memory holds one object at a time;
    the header, which counts them, is filled in at the end and the checksum read back from the
    file.  Until :meth:`finish` has renamed it, the pack is a temporary file that git and
    libgit2 ignore; leaving the ``with`` block without finishing removes it.
    """

    def __init__(self, pack_dir: str, large: int = _LARGE) -> None:
        """Offsets from ``large`` on go to the index's 8-byte table (git's rule is 2**31; the
        tests lower it)."""
        self.pack_dir, self._large = pack_dir, large
        if not os.path.isdir(pack_dir):  # git and libgit2 make it when they first need it
            os.makedirs(pack_dir, exist_ok=True)
            fsync_path(os.path.dirname(pack_dir))
        # Named as git names its own (git gc removes old ones a crash leaves), never reused.
        fd, self._tmp = tempfile.mkstemp(prefix="tmp_pack_", dir=pack_dir)
        self._file = os.fdopen(fd, "w+b")
        self._file.write(bytes(12))  # the header, once the count is known
        self._offset = 12
        self._entries: dict[bytes, tuple[int, bytes]] = {}  # id: (offset, crc32 of the entry)

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, kind: int, data: bytes) -> bytes:
        """Add an object (once, however often it is added); returns its id."""
        oid = object_id(kind, data)
        if oid not in self._entries:
            entry = entry_header(kind, len(data)) + zlib.compress(data, _LEVEL)
            self._file.write(entry)
            self._entries[oid] = (self._offset, struct.pack(">I", zlib.crc32(entry)))
            self._offset += len(entry)
        return oid

    def finish(self) -> str | None:
        """Complete the pack and its index and move them into place, flushed to disk (both
        files and the directory); returns the pack's path, or None if nothing was added."""
        if not self._entries:
            return None
        out = self._file
        out.seek(0)
        out.write(b"PACK" + struct.pack(">II", 2, len(self._entries)))
        out.flush()
        out.seek(0)
        digest = hashlib.sha1()
        while chunk := out.read(1 << 20):
            digest.update(chunk)
        trailer = digest.digest()
        out.write(trailer)
        out.flush()
        os.fchmod(out.fileno(), 0o444)  # as git and libgit2 leave packs
        os.fsync(out.fileno())
        out.close()
        base = os.path.join(self.pack_dir, f"pack-{trailer.hex()}")
        fd, idx_tmp = tempfile.mkstemp(prefix="tmp_idx_", dir=self.pack_dir)
        try:
            _write_index(fd, self._entries, trailer, self._large)
            # The pack first, its index last: git and libgit2 find a pack through its index.
            os.replace(self._tmp, base + ".pack")
            os.replace(idx_tmp, base + ".idx")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(idx_tmp)
        fsync_path(self.pack_dir)
        return base + ".pack"


def _write_index(
    fd: int, objects: dict[bytes, tuple[int, bytes]], pack_sum: bytes, large_from: int
) -> None:
    ids = sorted(objects)
    fanout = [0] * 256
    for oid in ids:
        fanout[oid[0]] += 1
    total = 0
    for n in range(256):
        total += fanout[n]
        fanout[n] = total
    small: list[int] = []
    large: list[int] = []
    for oid in ids:
        offset = objects[oid][0]
        if offset < large_from:
            small.append(offset)
        else:
            small.append(_LARGE | len(large))
            large.append(offset)
    body = b"".join(
        [
            b"\377tOc",
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(ids),
            b"".join(objects[oid][1] for oid in ids),
            struct.pack(f">{len(small)}I", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_sum,
        ]
    )
    with os.fdopen(fd, "wb") as out:
        out.write(body + hashlib.sha1(body).digest())
        out.flush()
        os.fchmod(out.fileno(), 0o444)
        os.fsync(out.fileno())


def fsync_path(path: str) -> None:
    """Flush a file or a directory (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
