"""One gitsafe at a time per repository, and clean stops on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from gitsafe.errors import Interrupted, LockBusy


@contextlib.contextmanager
def exclusive(
    gitdir: str,
    timeout: float,
    poll: float = 0.05,
    checkpoint: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """Hold ``<gitdir>/gitsafe/run.lock`` with flock for the duration.

    The kernel releases an flock when its holder dies, even by SIGKILL, so a crashed run never
    wedges the next one; the holder's pid is written into the file for the busy message.
    """
    directory = os.path.join(gitdir, "gitsafe")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "run.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LockBusy(
                    f"busy: another gitsafe (pid {holder}) is running on this repository; "
                    f"waited {timeout:g}s",
                    holder=holder,
                )
            checkpoint()
            time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class Interrupts:
    """Turn SIGINT/SIGTERM into a flag that ``check`` raises at the next safe point."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saved: dict[int, object] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved.clear()

    def check(self) -> None:
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise Interrupted(
                f"interrupted by {name}; stopped at a safe point, a rerun converges", self.signum
            )
