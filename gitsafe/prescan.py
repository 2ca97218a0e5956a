"""The reads of the work tree that a pull starts while it fetches.

The plan needs the target commit, which only the fetch gives, but its costly reads do not: the
index file, the stat pass over every tracked file, and the listing of every tracked directory
(``plan._Analysis``).  A pull starts them in a thread before it fetches; they run in C, without
the interpreter lock, while the fetch waits on the network and libgit2 indexes what arrives.
git's sequence reads the work tree only after its fetch.

The results stand for the index file they were made from: :meth:`Prescan.result` checks that
the file is still the same one (device, inode, size, mtime, ctime) and drops them otherwise, and
the plan then reads everything itself.  Nothing here writes.  The run lock keeps other gitsafe
runs out meanwhile; any other writer races with a scan whenever it runs, early or not.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from gitsafe import accel
from gitsafe.index_stat import IndexSnapshot, file_identity, read_index


@dataclass
class Scanned:
    """What the thread found; the plan uses it in place of its own reads."""

    index: IndexSnapshot
    filemode: bool
    # stat_pass(near=None): the entries the stat data cannot vouch for, and the touched files
    rest: list[str]
    touched: list[tuple[str, bytes]]
    # table_dirs_holding_others against the index; None where the C scan gave up (the plan's
    # own listing then decides)
    holding: list[str] | None


class Prescan:
    """Start the reads now; :meth:`result` joins them."""

    def __init__(self, workdir: str, index_path: str, filemode: bool) -> None:
        self._workdir, self._index_path, self._filemode = workdir, index_path, filemode
        self._found: Scanned | None = None
        self._thread: threading.Thread | None = None
        if accel.native is not None:  # the Python loops would hold the interpreter lock
            self._thread = threading.Thread(target=self._run, name="gitsafe-prescan", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        native = accel.native
        assert native is not None
        try:
            # No repository: an index file the parser leaves to libgit2 is not read here,
            # beside the fetch's libgit2 calls, but by the plan afterwards.
            index = read_index(None, self._index_path)
            table = index.entries.raw
            if index.identity is None or not isinstance(table, native.Table):
                return
            rest, touched = native.stat_pass(
                table, None, self._workdir, index.mtime_ns, self._filemode, accel.threads()
            )
            try:
                holding: list[str] | None = native.table_dirs_holding_others(
                    self._workdir, table, accel.threads()
                )
            except OSError:
                holding = None
            self._found = Scanned(index, self._filemode, rest, touched, holding)
        except Exception:  # NotParsed, OSError, a damaged file, ...
            # Whatever went wrong, the plan reads for itself and meets the problem there,
            # with the message and exit code it documents.
            return

    def result(self) -> Scanned | None:
        """The reads, if they stand for the index file as it is now; waits for them."""
        self.join()
        found = self._found
        if found is None:
            return None
        try:
            now = file_identity(os.stat(self._index_path))
        except OSError:
            return None
        return found if now == found.index.identity else None

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
