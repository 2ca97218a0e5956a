"""One gitsafe at a time per repository, and clean stops on SIGINT/SIGTERM."""

from __future__ import annotations

import errno
import fcntl
import os
import time

from gitsafe.errors import Interrupted, LockBusy

# No typing, collections or contextlib at run time (1.5 ms): the early reads import this module
# before they start (gitsafe/prescan.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Literal

    # What a look at run.lock saw: the file's inode, ctime and content (the last holder's
    # pid), or one of these words.  Every holder rewrites the content, so two looks that see
    # the same thing had no gitsafe run between them.
    Seen = tuple[int, int, bytes] | Literal["absent", "busy", "unseen"]
ABSENT: Seen = "absent"  # no run.lock yet
BUSY: Seen = "busy"  # another gitsafe holds it
UNSEEN: Seen = "unseen"  # nobody looked


def _seen(fd: int) -> Seen:
    lst = os.fstat(fd)
    return (lst.st_ino, lst.st_ctime_ns, os.pread(fd, 64, 0))


def peek(gitdir: str) -> Seen:
    """Is the run lock free, and what does its file hold?  Writes nothing."""
    try:
        fd = os.open(_path(gitdir), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return ABSENT
    except OSError:
        return BUSY  # cannot tell: as good as busy
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails while someone holds it
        return _seen(fd)
    except OSError:
        return BUSY
    finally:
        os.close(fd)


def _path(gitdir: str) -> str:
    return os.path.join(gitdir, "gitsafe", "run.lock")


class exclusive:  # lower case: used as the function it was, with exclusive(...) as before
    """Hold ``<gitdir>/gitsafe/run.lock`` with flock for the duration; gives what the file
    held when it was taken (as :func:`peek` sees it), before this run wrote its pid.

    The kernel releases an flock when its holder dies, even by SIGKILL, so a crashed run never
    wedges the next one; the holder's pid is written into the file for the busy message.  A
    class rather than ``contextlib.contextmanager``, whose import would come before the early
    reads start.
    """

    def __init__(
        self,
        gitdir: str,
        timeout: float,
        poll: float = 0.05,
        checkpoint: Callable[[], None] = lambda: None,
    ) -> None:
        self._gitdir, self._timeout, self._poll = gitdir, timeout, poll
        self._checkpoint = checkpoint
        self._fd = -1

    def __enter__(self) -> Seen:
        if self._fd >= 0:
            raise RuntimeError("the run lock is already held through this object")
        os.makedirs(os.path.join(self._gitdir, "gitsafe"), exist_ok=True)
        path = _path(self._gitdir)
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
        created = False
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:  # another run created it just now
                fd = os.open(path, flags)
        try:
            deadline = time.monotonic() + self._timeout
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
                        f"waited {self._timeout:g}s",
                        holder=holder,
                    )
                self._checkpoint()
                time.sleep(self._poll)
            before = ABSENT if created else _seen(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._fd = fd
        except BaseException:
            os.close(fd)
            raise
        return before

    def __exit__(self, *_exc: object) -> None:
        fd, self._fd = self._fd, -1
        os.close(fd)  # closing releases the flock


class Interrupts:
    """Turn SIGINT/SIGTERM into a flag that ``check`` raises at the next safe point."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saved: dict[int, object] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> Interrupts:
        # signal and threading here, not at the top: the early reads import this module
        # before they start (gitsafe/prescan.py), and need neither
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *_exc: object) -> None:
        import signal

        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved.clear()

    def check(self) -> None:
        if self.signum is not None:
            import signal

            name = signal.Signals(self.signum).name
            raise Interrupted(
                f"interrupted by {name}; stopped at a safe point, a rerun converges", self.signum
            )
