"""The reads of the work tree that a run starts before it needs them.

The plan needs the target commit, which only the fetch gives, but its costly reads do not: the
index file, the stat pass over every tracked file, and the listing of every tracked directory
(``plan._Analysis``).  They run in a thread, in one call into C (``_native.prescan``), without
the interpreter lock from the first byte read to the last directory listed:

- ``gitsafe pull`` and ``gitsafe doctor`` start them first thing (:func:`start_early`, from
  ``gitsafe/__main__.py``), while the main thread imports pygit2 and the rest of gitsafe
  (about 0.1 s that a 2-CPU machine otherwise spends on one CPU);
- a pull that could not start them early (the Python API, or the command line with a
  ``.git`` file or a busy run lock) starts them beside its fetch.

This module imports nothing of pygit2 at import time, so the thread never waits for the main
thread's imports.  Nothing here writes.

The results stand for the index file they were made from: :meth:`Prescan.result` checks that
the file is still the same one (device, inode, size, mtime, ctime) and drops them otherwise.
Reads started before the pull holds its run lock also need the lock to have stayed free: the
thread takes a look at ``run.lock`` (:func:`gitsafe.runlock.peek`) before it starts, and the
results are used only if the pull then finds the lock file exactly as seen then (no gitsafe ran
in between; every holder writes its pid into it).  Any other writer races with a scan whenever
it runs, early or not; the plan's own reads would be no fresher.
"""

from __future__ import annotations

import _thread
import atexit
import os

from gitsafe import accel, index_file, runlock

# This module and what it imports load before the reads start, so no typing or dataclasses
# here (about 15 ms); mypy reads this name as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gitsafe.index_stat import IndexSnapshot

# A filemode guess for reads started before the configuration is read: git's default.
_FILEMODE_DEFAULT = True


class Scanned:
    """What the thread found; the plan uses it in place of its own reads."""

    def __init__(
        self,
        index: IndexSnapshot,
        filemode: bool,
        rest: list[str],
        touched: bytes,
        holding: list[str] | None,
    ) -> None:
        self.index, self.filemode = index, filemode
        # stat_pass(near=None): the entries the stat data cannot vouch for, and the touched
        # files that hold their entry's blob, as records against the index's Table
        self.rest, self.touched = rest, touched
        # table_dirs_holding_others against the index; None where the C scan gave up (the
        # plan's own listing then decides)
        self.holding = holding


class Prescan:
    """Start the reads now; :meth:`result` joins them.

    ``lock`` is what :func:`gitsafe.runlock.peek` saw before an early start, or
    :data:`runlock.UNSEEN` for reads started under the run lock (or by doctor, which takes
    none).
    """

    def __init__(
        self,
        workdir: str,
        index_path: str,
        filemode: bool,
        lock: runlock.Seen = runlock.UNSEEN,
    ) -> None:
        self.workdir, self.index_path, self.lock = workdir, index_path, lock
        self._filemode = filemode
        self._found: (
            tuple[
                tuple[index_file.Extensions, int, bytes], os.stat_result, Any, list[str], Any, Any
            ]
            | None
        ) = None
        # A bare _thread, not threading, whose import (about 2 ms) would come before the first
        # read.  _running is held while the reads run (join() waits for it); _started until
        # the thread is about to enter C.
        self._running: _thread.LockType | None = None
        self._started = _thread.allocate_lock()
        self._told = False
        if accel.native is not None:  # the Python loops would hold the interpreter lock
            self._running = _thread.allocate_lock()
            self._running.acquire()
            self._started.acquire()
            _thread.start_new_thread(self._run, ())
            # The thread needs the interpreter lock to get into C, and the imports that follow
            # would hold it for a switch interval (5 ms) at a time: wait until it is there.
            self._started.acquire()

    def _run(self) -> None:
        try:
            self._read()
        finally:
            self._start()  # if it never got as far as the reads
            assert self._running is not None
            self._running.release()

    def _start(self) -> None:
        if not self._told:
            self._told = True
            self._started.release()

    def _read(self) -> None:
        native = accel.native
        assert native is not None
        try:
            # One call into C for all of it, without the interpreter lock from the first byte
            # read to the last directory listed: the main thread holds the lock nearly all the
            # time while it imports, and each return to Python from a read, the checksum or a
            # parse waited for it (about 15 ms at 50,000 files before the stat pass began).
            fd = os.open(self.index_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                lst = os.fstat(fd)
                self._start()
                header = os.pread(fd, 12, 0)  # "DIRC", version, entry count
                entries = int.from_bytes(header[8:12], "big") if len(header) == 12 else 0
                found = native.prescan(
                    fd,
                    lst.st_size,
                    lst.st_mtime_ns,
                    lst.st_ctime_ns,
                    self.workdir,
                    self._filemode,
                    accel.early_threads(entries),
                )
            finally:
                os.close(fd)
            if found is None:
                return  # the plan reads the index, through libgit2 if need be
            # ends: the file's header and what follows its entries, all the snapshot needs of
            # its bytes besides the Table (the extensions, the entry count, the checksum)
            ends, parsed, rest, touched, holding = found
            tail = index_file.tail(ends, 12)
            # holding is None where the C scan gave up (the plan's own listing then decides)
            self._found = (tail, lst, parsed, rest, touched, holding)
        except Exception:
            # Whatever went wrong, the plan reads for itself and meets the problem there,
            # with the message and exit code it documents.
            return

    def result(self, lock_now: runlock.Seen = runlock.UNSEEN) -> Scanned | None:
        """The reads, if they stand for the index file as it is now and, for an early start,
        the run lock was free throughout (``lock_now``: what the pull found in ``run.lock``
        when it took it); waits for them."""
        from gitsafe import index_stat

        self.join()
        if self._found is None or (self.lock != runlock.UNSEEN and self.lock != lock_now):
            return None
        tail, lst, parsed, rest, touched, holding = self._found
        self._found = None  # the plan keeps what it uses
        if index_file.identity(self.index_path) != index_file.file_identity(lst):
            return None
        entries = index_stat.from_native(parsed)
        snap = None if entries is None else index_stat.assemble(entries, lst, tail)
        if snap is None:
            return None
        return Scanned(snap, self._filemode, rest, touched, holding)

    def join(self) -> None:
        if self._running is not None:
            with self._running:  # free once the reads are done
                pass


_early: Prescan | None = None


def start_early(where: str, command: str) -> None:
    """Start the reads for ``gitsafe pull`` or ``gitsafe doctor`` run in directory ``where``,
    if its work tree is plain to see: the nearest ``.git`` above it is a directory.  Anything
    else (a ``.git`` file, no repository, a busy run lock) is left to the run itself."""
    global _early
    if accel.native is None or _early is not None:
        return
    top = os.path.abspath(where)
    while not os.path.lexists(os.path.join(top, ".git")):
        parent = os.path.dirname(top)
        if parent == top:
            return
        top = parent
    gitdir = os.path.join(top, ".git")
    if os.path.islink(gitdir) or not os.path.isdir(gitdir):
        return
    lock = runlock.UNSEEN
    if command == "pull":
        lock = runlock.peek(gitdir)
        if lock is runlock.BUSY:
            return  # another gitsafe is at work: the pull waits for it, then reads afresh
    _early = Prescan(top, os.path.join(gitdir, "index"), _FILEMODE_DEFAULT, lock)
    atexit.register(_early.join)  # never leave the thread running into shutdown


def claim(workdir: str, index_path: str) -> Prescan | None:
    """The early reads, if they were started for this work tree and index file."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    if (os.path.realpath(early.workdir), os.path.realpath(early.index_path)) != (
        os.path.realpath(workdir),
        os.path.realpath(index_path),
    ):
        early.join()
        return None
    return early
