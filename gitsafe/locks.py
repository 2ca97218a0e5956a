"""git's ``*.lock`` files: which are stale, proven by age and by no process holding them open.

A lock left by a killed git wedges every later git command.  Age alone is a guess (a slow
``git gc`` holds ``index.lock`` for minutes), so a lock counts as stale only when it is older
than the bound *and* no running process has it open (Linux: ``/proc/*/fd``).  A fresh or held
lock is waited for, never removed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from gitsafe.errors import LockBusy
from gitsafe.plan import Lock

_REF_LOCK_LIMIT = 10_000  # never walk a huge refs/ tree looking for locks


def candidate_locks(gitdir: str, commondir: str) -> list[str]:
    """Lock files that would block a pull, if present."""
    paths = [os.path.join(gitdir, n) for n in ("index.lock", "HEAD.lock", "ORIG_HEAD.lock")]
    shared = ("shallow.lock", "packed-refs.lock", "config.lock")
    paths += [os.path.join(commondir, n) for n in shared]
    seen = 0
    refs = os.path.join(commondir, "refs")
    for dirpath, _dirs, files in os.walk(refs):
        for name in files:
            seen += 1
            if name.endswith(".lock"):
                paths.append(os.path.join(dirpath, name))
        if seen > _REF_LOCK_LIMIT:
            break
    return [p for p in dict.fromkeys(paths) if os.path.lexists(p)]


def holders(path: str) -> tuple[int, ...]:
    """PIDs of processes that have ``path`` open (those whose fds this user may read)."""
    try:
        real = os.path.realpath(path)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return ()
    found = []
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == real:
                    found.append(int(pid))
                    break
            except OSError:
                continue
    return tuple(found)


def inspect(path: str, stale_age: float, now: float | None = None) -> Lock | None:
    try:
        mtime = os.lstat(path).st_mtime
    except FileNotFoundError:
        return None
    age = max(0.0, (time.time() if now is None else now) - mtime)
    held = holders(path)
    return Lock(path, age, held, stale=age >= stale_age and not held)


def survey(gitdir: str, commondir: str, stale_age: float) -> list[Lock]:
    locks = (inspect(p, stale_age) for p in candidate_locks(gitdir, commondir))
    return [lock for lock in locks if lock is not None]


def settle(
    gitdir: str,
    commondir: str,
    stale_age: float,
    timeout: float,
    poll: float = 0.1,
    checkpoint: Callable[[], None] = lambda: None,
) -> list[Lock]:
    """Remove stale locks; wait up to ``timeout`` for fresh ones to go.  Returns the removed."""
    removed: list[Lock] = []
    deadline = time.monotonic() + timeout
    while True:
        blocking = []
        for lock in survey(gitdir, commondir, stale_age):
            if lock.stale:
                try:
                    os.unlink(lock.path)
                    removed.append(lock)
                except FileNotFoundError:
                    pass
            else:
                blocking.append(lock)
        if not blocking:
            return removed
        if time.monotonic() >= deadline:
            lock = blocking[0]
            who = f"held by pid {', '.join(map(str, lock.held_by))}" if lock.held_by else "not held"
            raise LockBusy(
                f"{lock.path} exists ({who}, {lock.age_seconds:.0f}s old); "
                f"waited {timeout:g}s. Another git process may be running; a lock older than "
                f"{stale_age:g}s that no process holds is removed automatically",
                lock=lock.path,
                held_by=list(lock.held_by),
            )
        checkpoint()
        time.sleep(poll)


# -- locks of our own, left by a gitsafe run that was killed ----------------------------------

_JOURNAL = os.path.join("gitsafe", "inflight.json")


def write_journal(gitdir: str, paths: list[str]) -> None:
    """Name the lock files this run's libgit2 calls may create, before making any of them.

    Written while holding the run lock; a later run that acquires the run lock knows the writer
    is dead, so any of these lock files still present and held by no process is provably its
    leftover and goes at once, whatever its age.
    """
    import json  # the journal is a pull's: a doctor never loads json for it

    record = {"pid": os.getpid(), "locks": paths}
    path = os.path.join(gitdir, _JOURNAL)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def clear_journal(gitdir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(gitdir, _JOURNAL))


def recover_journal(gitdir: str) -> list[Lock]:
    """Remove the unheld lock files a killed gitsafe run left (call with the run lock held)."""
    import json

    path = os.path.join(gitdir, _JOURNAL)
    try:
        with open(path) as f:
            record = json.load(f)
    except (FileNotFoundError, ValueError):
        clear_journal(gitdir)
        return []
    removed = []
    for lock_path in record.get("locks", []):
        lock = inspect(str(lock_path), stale_age=0.0)
        if lock is not None and lock.stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock.path)
                removed.append(lock)
    clear_journal(gitdir)
    return removed
