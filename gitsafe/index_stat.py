"""The index with its stat data, and git's rule for trusting it.

pygit2's ``IndexEntry`` carries only path, id and mode; the cached stat data that lets git skip
hashing unchanged files is reachable only through libgit2's C struct, which pygit2 exposes via
its cffi module.  Reading it here lets gitsafe decide "unchanged" exactly as git's
``ie_match_stat`` does (mtime and ctime to the nanosecond, inode, owner, size, and the racy-git
rule), and writing it back lets the next run skip hashing too.
"""

from __future__ import annotations

import os
import stat as st
import struct
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import pygit2
from pygit2.ffi import C, ffi

from gitsafe import accel, index_file
from gitsafe.index_file import file_identity
from gitsafe.records import record

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_GITLINK = 0o160000
MODE_TREE = 0o040000

_U32 = 0xFFFFFFFF
_NS = 1_000_000_000
_STAGE_MASK = 0x3000
_STAGE_SHIFT = 12
_SKIP_WORKTREE = 1 << 14  # GIT_INDEX_ENTRY_SKIP_WORKTREE, in flags_extended


class Entry(NamedTuple):
    """One index entry: a tuple, as small as the up to one per tracked file that a slow
    path builds."""

    path: str
    mode: int
    oid: pygit2.Oid
    stage: int
    # ctime sec, ctime nsec, mtime sec, mtime nsec, dev, ino, uid, gid, size
    stat: tuple[int, int, int, int, int, int, int, int, int]


@record
class IndexSnapshot:
    entries: Entries  # stage 0 only
    conflicted: dict[str, list[Entry]]  # stages 1-3 by path
    mtime_ns: int  # the index file's own mtime: entries at or after it are racy
    skip_worktree: list[str]  # entries git's reset leaves alone in the work tree
    # Some entry is intent-to-add (``git add -N``) or assume-unchanged: libgit2's tree-to-index
    # diff passes over such entries, so the plan flattens the trees instead.
    marked: bool = False
    # The tree the stage-0 entries equal, from the index's valid cache-tree (TREE extension),
    # as git's unpack-trees trusts it; None when unknown.
    tree_root: bytes | None = None
    # The index file's file_identity() when it was read; None for no file.
    identity: tuple[int, ...] | None = None
    # It has an extension besides the cache-tree (REUC, UNTR, ...), or was read by libgit2.
    other_extensions: bool = True
    # The file's trailing checksum, when gitsafe parsed it (execute.refresh_in_place)
    checksum: bytes | None = None

    @property
    def editable(self) -> bool:
        """May the file this was read from be changed entry by entry, keeping the rest as it
        is (execute.load_target, execute.refresh_in_place)?  Not when its identity is unknown,
        nor with conflicts, intent-to-add or assume-unchanged entries or extensions besides the
        cache-tree, which only libgit2's full reload handles as git does."""
        return self.identity is not None and not (
            self.conflicted or self.marked or self.other_extensions
        )

    def stat_clean(self, entry: Entry, lst: os.stat_result) -> bool:
        """git's ie_match_stat, strict form: True only when the cached stat proves the content.

        ``core.trustctime`` and ``core.checkStat`` are treated as their defaults (true, all).
        """
        c_sec, c_nsec, m_sec, m_nsec, _dev, ino, uid, gid, size = entry.stat
        if (
            m_sec != ((lst.st_mtime_ns // _NS) & _U32)
            or m_nsec != lst.st_mtime_ns % 1_000_000_000
            or c_sec != ((lst.st_ctime_ns // _NS) & _U32)
            or c_nsec != lst.st_ctime_ns % 1_000_000_000
            or ino != (lst.st_ino & _U32)
            or uid != (lst.st_uid & _U32)
            or gid != (lst.st_gid & _U32)
            or size != (lst.st_size & _U32)
        ):
            return False
        if size == 0 and lst.st_size != 0:
            return False  # a smudged (racily clean) entry
        # Racy git: a file modified in the same tick the index was written can look unchanged.
        entry_mtime_ns = m_sec * 1_000_000_000 + m_nsec
        return entry_mtime_ns < self.mtime_ns

    def git_sees_change(
        self,
        entry: Entry,
        lst: os.stat_result,
        filemode: bool,
        trust_ctime: bool = True,
        check_stat: bool = True,
    ) -> bool:
        """Would git's ie_match_stat call this entry changed, before any content check?

        Unlike :meth:`stat_clean` (strict, for trusting content), this mirrors what git itself
        decides, so gitsafe rewrites exactly what ``git reset --hard`` rewrites: git's default
        build compares timestamps to the second (no USE_NSEC) and ignores st_dev; the exec bit
        counts only with core.fileMode.  As git's match_stat_data, ``core.checkStat=minimal``
        (``check_stat`` false) leaves only the mtime's seconds and the size, and
        ``core.trustctime=false`` drops the ctime.  A racily clean entry is compared by
        content, which the caller has already done.
        """
        c_sec, _c_nsec, m_sec, _m_nsec, _dev, ino, uid, gid, size = entry.stat
        if (entry.mode == MODE_LINK) != st.S_ISLNK(lst.st_mode):
            return True
        if (
            filemode
            and entry.mode != MODE_LINK
            and (entry.mode == MODE_EXEC) != bool(lst.st_mode & 0o100)
        ):
            return True
        if m_sec != ((lst.st_mtime_ns // _NS) & _U32) or size != (lst.st_size & _U32):
            return True
        if not check_stat:
            return False
        return (
            (trust_ctime and c_sec != ((lst.st_ctime_ns // _NS) & _U32))
            or ino != (lst.st_ino & _U32)
            or uid != (lst.st_uid & _U32)
            or gid != (lst.st_gid & _U32)
        )


_HEADER = struct.Struct(">4sII")
_ON_DISK = struct.Struct(">10I20sH")  # ctime s/ns, mtime s/ns, dev, ino, mode, uid, gid, size
_EXTENDED = 0x4000  # in flags: a second flags word follows (index v3+)
_INTENT_TO_ADD = 1 << 13  # in flags_extended
_ASSUME_VALID = 0x8000  # in flags: git update-index --assume-unchanged

# (mode, raw object id, key): the key is the stat data in the shape os.lstat gives it (mtime
# and ctime in ns, inode, size, uid, gid), so the common "unchanged" case is one tuple
# comparison; st_dev is not kept (git ignores it by default, and so does gitsafe).
RawEntry = tuple[int, bytes, tuple[int, int, int, int, int, int]]


class Entries(Mapping[str, Entry]):
    """Stage-0 entries by path; an :class:`Entry` is built only for paths someone asks about."""

    def __init__(self, raw: Mapping[str, RawEntry]) -> None:
        self.raw = raw
        self._built: dict[str, Entry] = {}
        self._attributes: list[str] | None = None
        self._dirs: set[str] | None = None
        self._sizes: dict[str, int] | None = None

    def attribute_paths(self) -> list[str]:
        """The ``.gitattributes`` entries, found once (several checks ask)."""
        if self._attributes is None:
            self._find_facts()
            assert self._attributes is not None
        return self._attributes

    def dirs(self) -> set[str]:
        """Every leading directory of the entries, found once.  Read-only."""
        if self._dirs is None:
            self._find_facts()
            assert self._dirs is not None
        return self._dirs

    def dir_sizes(self) -> dict[str, int]:
        """For every leading directory, how many entries lie below it (at any depth); found
        once."""
        if self._sizes is None:
            if accel.native is not None and isinstance(self.raw, accel.native.Table):
                self._sizes = accel.native.dir_sizes(self.raw)
            else:
                self._sizes = dir_sizes(self.raw)
        return self._sizes

    def gitlinks(self) -> list[str]:
        """The submodule entries' paths."""
        if accel.native is not None:
            paths: list[str] = accel.native.with_mode(self.raw, MODE_GITLINK)
            return paths
        return [p for p, (mode, _oid, _key) in self.raw.items() if mode == MODE_GITLINK]

    def _find_facts(self) -> None:
        if accel.native is not None:
            self._dirs, self._attributes = accel.native.tree_facts(self.raw)
            return
        from gitsafe.filters import attribute_paths
        from gitsafe.plan import tree_dirs

        self._dirs, self._attributes = tree_dirs(self.raw), attribute_paths(self.raw)

    def __getitem__(self, path: str) -> Entry:
        entry = self._built.get(path)
        if entry is None:
            mode, oid, (mtime, ctime, ino, size, uid, gid) = self.raw[path]
            stat = (ctime // _NS, ctime % _NS, mtime // _NS, mtime % _NS, 0, ino, uid, gid, size)
            entry = self._built[path] = Entry(path, mode, pygit2.Oid(raw=oid), 0, stat)
        return entry

    def __contains__(self, path: object) -> bool:
        return path in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def dir_sizes(paths: Iterable[str]) -> dict[str, int]:
    """For every leading directory of ``paths``, how many of them lie below it."""
    immediate: dict[str, int] = {}
    for path in paths:
        parent = path.rpartition("/")[0]
        if parent:
            immediate[parent] = immediate.get(parent, 0) + 1
    sizes = dict(immediate)
    for d, n in immediate.items():
        parent = d.rpartition("/")[0]
        while parent:
            sizes[parent] = sizes.get(parent, 0) + n
            parent = parent.rpartition("/")[0]
    return sizes


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """git's offset varint (varint.c), used by index v4 path compression."""
    c = data[pos]
    pos += 1
    value = c & 127
    while c & 128:
        c = data[pos]
        pos += 1
        value = ((value + 1) << 7) + (c & 127)
    return value, pos


# The stage-0 entries come as a dict from the Python parser and as gitsafe._native.Table (the
# same mapping without a Python object per entry) from the C one.
Parsed = tuple[Mapping[str, RawEntry], list[Entry], list[str], bool, int]


def _parse(data: bytes) -> Parsed | None:
    """Entries of an index file (versions 2-4): stage 0, other stages, skip-worktree paths,
    whether any entry is intent-to-add or assume-unchanged, and where the entries end (the
    extensions follow).  None for anything unexpected: the caller then has libgit2 read the
    file, which rejects a damaged one."""
    try:
        signature, version, count = _HEADER.unpack_from(data, 0)
    except struct.error:
        return None
    if signature != b"DIRC" or version not in (2, 3, 4):
        return None
    entries: dict[str, RawEntry] = {}
    staged: list[Entry] = []
    skip_worktree: list[str] = []
    marked = False
    pos = _HEADER.size
    previous = b""
    unpack = _ON_DISK.unpack_from
    decode, encoding = bytes.decode, sys.getfilesystemencoding()  # os.fsdecode, minus the calls
    try:
        for _ in range(count):
            start = pos
            (c_sec, c_nsec, m_sec, m_nsec, dev, ino, mode, uid, gid, size, oid, flags) = unpack(
                data, pos
            )
            pos += _ON_DISK.size
            extended = 0
            if flags & _EXTENDED:
                extended = int.from_bytes(data[pos : pos + 2], "big")
                pos += 2
            if version == 4:
                strip, pos = _varint(data, pos)
                if strip > len(previous):
                    return None  # libgit2 refuses such a file too
                end = data.index(b"\0", pos)
                name = previous[: len(previous) - strip] + data[pos:end]
                pos = end + 1
                previous = name
            else:
                end = data.index(b"\0", pos)
                name = data[pos:end]
                pos = start + ((end - start + 8) & ~7)
            path = decode(name, encoding, "surrogateescape")
            if flags & _ASSUME_VALID:
                marked = True
            if extended:
                if extended & _SKIP_WORKTREE:
                    skip_worktree.append(path)
                if extended & _INTENT_TO_ADD:
                    marked = True
            if flags & _STAGE_MASK:
                stage = (flags & _STAGE_MASK) >> _STAGE_SHIFT
                stat = (c_sec, c_nsec, m_sec, m_nsec, dev, ino, uid, gid, size)
                staged.append(Entry(path, mode, pygit2.Oid(raw=oid), stage, stat))
            else:
                key = (m_sec * _NS + m_nsec, c_sec * _NS + c_nsec, ino, size, uid, gid)
                entries[path] = (mode, oid, key)
    except (struct.error, ValueError, IndexError):
        return None
    return entries, staged, skip_worktree, marked, pos


def _parse_native(data: bytes) -> Parsed | None:
    """:func:`_parse`, by the C extension (same answers, a third of the time)."""
    assert accel.native is not None
    return from_native(accel.native.parse_index(data))


def from_native(parsed: Any) -> Parsed | None:
    """What ``gitsafe._native.parse_index`` returned, in the shape :func:`_parse` returns."""
    if parsed is None:
        return None
    table, staged, skip_worktree, marked, end = parsed
    conflicts = [Entry(p, mode, pygit2.Oid(raw=oid), stage, s) for p, mode, oid, stage, s in staged]
    return table, conflicts, skip_worktree, marked, end


def parse(data: bytes) -> Parsed | None:
    """The index file's entries (:func:`_parse`), in C when the extension is built."""
    return _parse_native(data) if accel.native is not None else _parse(data)


def _entry_from_c(centry: object) -> Entry:
    c = centry  # cffi struct pointer
    mode = int(c.mode)  # type: ignore[attr-defined]
    return Entry(
        path=os.fsdecode(ffi.string(c.path)),  # type: ignore[attr-defined]
        mode=mode,
        oid=pygit2.Oid(raw=bytes(ffi.buffer(c.id.id, 20))),  # type: ignore[attr-defined]
        stage=(int(c.flags) & _STAGE_MASK) >> _STAGE_SHIFT,  # type: ignore[attr-defined]
        stat=(
            int(c.ctime.seconds) & _U32,  # type: ignore[attr-defined]
            int(c.ctime.nanoseconds),  # type: ignore[attr-defined]
            int(c.mtime.seconds) & _U32,  # type: ignore[attr-defined]
            int(c.mtime.nanoseconds),  # type: ignore[attr-defined]
            int(c.dev),  # type: ignore[attr-defined]
            int(c.ino),  # type: ignore[attr-defined]
            int(c.uid),  # type: ignore[attr-defined]
            int(c.gid),  # type: ignore[attr-defined]
            int(c.file_size),  # type: ignore[attr-defined]
        ),
    )


def _read_through_libgit2(
    handle: object,
) -> tuple[dict[str, RawEntry], list[Entry], list[str], bool]:
    entries: dict[str, RawEntry] = {}
    staged: list[Entry] = []
    skip_worktree: list[str] = []
    marked = False
    for n in range(C.git_index_entrycount(handle)):
        centry = C.git_index_get_byindex(handle, n)
        e = _entry_from_c(centry)
        extended = int(centry.flags_extended)
        if extended & _SKIP_WORKTREE:
            skip_worktree.append(e.path)
        if extended & _INTENT_TO_ADD or int(centry.flags) & _ASSUME_VALID:
            marked = True
        if e.stage:
            staged.append(e)
        else:
            c_sec, c_nsec, m_sec, m_nsec, _dev, ino, uid, gid, size = e.stat
            key = (m_sec * _NS + m_nsec, c_sec * _NS + c_nsec, ino, size, uid, gid)
            entries[e.path] = (e.mode, e.oid.raw, key)
    return entries, staged, skip_worktree, marked


def read_index(repo: pygit2.Repository, index_path: str) -> IndexSnapshot:
    """The index as git sees it.

    The file is parsed from its bytes in one pass (in C when the extension is built) after its
    trailing checksum is verified, as git verifies it; libgit2's own copy of the index, which
    costs as much again to load, is read only when that fails or the file is something the
    parser leaves to libgit2 (a split or sparse index, or damage: libgit2 then raises).
    """
    found = index_file.read(index_path)
    if found is None:
        return IndexSnapshot(Entries({}), {}, 0, [], False, None)
    data, lst = found
    snap = snapshot(data, parse(data) if index_file.checksum_ok(data) else None, lst)
    if snap is not None:
        return snap
    index = repo.index  # loads the file, or re-reads it if it changed since (force=False)
    index.read(force=False)
    raw, staged, skip_worktree, marked = _read_through_libgit2(index._index)
    return _snapshot(raw, staged, skip_worktree, marked, lst, None, True, None)


def snapshot(data: bytes, parsed: Parsed | None, lst: os.stat_result) -> IndexSnapshot | None:
    """The snapshot of the index file ``data`` (read with stat data ``lst``) from its parsed
    entries; None where libgit2 must read it (not parsed, duplicate paths, or entries kept
    elsewhere, as in a split or sparse index)."""
    if parsed is None:
        return None
    return assemble(parsed, lst, index_file.tail(data, parsed[4]))


def assemble(
    parsed: Parsed, lst: os.stat_result, tail: tuple[index_file.Extensions, int, bytes]
) -> IndexSnapshot | None:
    """:func:`snapshot` from what it reads of the file besides the entries
    (:func:`gitsafe.index_file.tail`)."""
    raw, staged, skip_worktree, marked, _end = parsed
    (cache_tree, whole, others), count, checksum = tail
    if not whole or len(raw) + len(staged) != count:
        return None
    tree_root: bytes | None = None
    if cache_tree is not None and cache_tree[1] == count and not staged:
        tree_root = cache_tree[0]  # it covers every entry, as git writes it
    return _snapshot(raw, staged, skip_worktree, marked, lst, tree_root, others, checksum)


def _snapshot(
    raw: Mapping[str, RawEntry],
    staged: list[Entry],
    skip_worktree: list[str],
    marked: bool,
    lst: os.stat_result,
    tree_root: bytes | None,
    others: bool,
    checksum: bytes | None,
) -> IndexSnapshot:
    conflicted: dict[str, list[Entry]] = {}
    for e in staged:
        conflicted.setdefault(e.path, []).append(e)
    return IndexSnapshot(
        Entries(raw),
        conflicted,
        lst.st_mtime_ns,
        skip_worktree,
        marked,
        tree_root,
        file_identity(lst),
        others,
        checksum,
    )


# The stat data an index entry caches, packed as the leading fields of libgit2's
# git_index_entry (ctime, mtime, dev, ino, mode, uid, gid, file_size): 40 bytes a path, where an
# os.stat_result kept for the index write costs about a kilobyte.
_PACKED = struct.Struct("=iIiIIIIIII")
# GIT_INDEX_ENTRY_UPTODATE (libgit2's git2/index.h), which pygit2 does not declare.
_ENTRY_UPTODATE = 1 << 2


def pack_stat(lst: os.stat_result, mode: int) -> bytes:
    """``lst`` as the entry for a file of git mode ``mode`` will cache it."""
    return _PACKED.pack(
        (lst.st_ctime_ns // _NS) & 0x7FFFFFFF,
        lst.st_ctime_ns % _NS,
        (lst.st_mtime_ns // _NS) & 0x7FFFFFFF,
        lst.st_mtime_ns % _NS,
        lst.st_dev & _U32,
        lst.st_ino & _U32,
        mode,
        lst.st_uid & _U32,
        lst.st_gid & _U32,
        lst.st_size & _U32,
    )


def _store(centry: Any, packed: bytes) -> None:
    if _LAYOUT_OK:
        ffi.memmove(centry, packed, _PACKED.size)  # one copy, not ten attribute stores
        return
    fields = _PACKED.unpack(packed)
    centry.ctime.seconds, centry.ctime.nanoseconds = fields[0], fields[1]
    centry.mtime.seconds, centry.mtime.nanoseconds = fields[2], fields[3]
    centry.dev, centry.ino, centry.mode = fields[4], fields[5], fields[6]
    centry.uid, centry.gid, centry.file_size = fields[7], fields[8], fields[9]


def set_stat(index: pygit2.Index, path: str, packed: bytes) -> bool:
    """Give ``path``'s stage-0 entry the mode and stat data of :func:`pack_stat`, in place
    (False: no such entry).

    Much cheaper than re-adding the entry: after a build or a restore touched every file, a
    pull refreshes them all, as git's refresh does.  The mode is set too because libgit2's
    read_tree keeps an old tree's non-canonical modes (100664) where git writes 100644.
    """
    centry = C.git_index_get_bypath(index._index, os.fsencode(path), 0)
    if centry == ffi.NULL:
        return False
    _store(centry, packed)
    # The stat data is what the caller saw when it hashed or wrote the file: the entry is up to
    # date, as git marks an entry it refreshed (CE_UPTODATE).  Without the mark libgit2's index
    # write takes every entry newer than the index file it read for racily clean and hashes it
    # again (all of them after a build touched every file: 6 s at 200,000 files).  The mark is
    # never written to disk; libgit2 sets it itself on every entry it adds.
    centry.flags_extended |= _ENTRY_UPTODATE
    return True


def _layout_ok() -> bool:
    """Is libgit2's git_index_entry laid out as :data:`_PACKED` packs (it has been since
    libgit2 0.x)?  Otherwise the fields are stored one by one."""
    expected = {"ctime": 0, "mtime": 8, "dev": 16, "ino": 20, "mode": 24, "file_size": 36}
    try:
        return ffi.sizeof("git_index_time") == 8 and all(
            ffi.offsetof("git_index_entry", name) == at for name, at in expected.items()
        )
    except (ffi.error, KeyError, TypeError):
        return False


_LAYOUT_OK = _layout_ok()


def add_with_stat(
    index: pygit2.Index, path: str, mode: int, oid: pygit2.Oid, packed: bytes | None
) -> None:
    """Add a stage-0 entry with ``mode`` and ``packed`` (:func:`pack_stat`) as its cached stat
    data (zeros when None)."""
    centry = ffi.new("git_index_entry *")
    cpath = ffi.new("char[]", os.fsencode(path))
    centry.path = cpath
    if packed is not None:
        _store(centry, packed)
    centry.mode = mode
    ffi.memmove(centry.id.id, oid.raw, 20)
    err = C.git_index_add(index._index, centry)
    if err < 0:
        raise pygit2.GitError(f"cannot add {path!r} to the index (libgit2 error {err})")


def worktree_mode(lst: os.stat_result) -> int | None:
    """The git mode a work tree entry would be recorded with, None for dirs and specials."""
    if st.S_ISLNK(lst.st_mode):
        return MODE_LINK
    if st.S_ISREG(lst.st_mode):
        return MODE_EXEC if lst.st_mode & 0o100 else MODE_FILE
    return None
