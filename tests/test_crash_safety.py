"""Crash safety of ``gitsafe pull`` as a real process: SIGKILL at random instants, eight pulls
at once while origin keeps moving, clean stops on SIGINT/SIGTERM, and the per-repository run
lock.  The git CLI is the oracle for the end state; the backups are read back to prove that
nothing a pull discards is lost, whenever it was killed.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
import pytest
from gitfixtures import (
    Origin,
    commit_all,
    copy_checkout,
    diff_snapshots,
    git,
    git_sequence,
    snapshot,
    status_porcelain,
    write,
)

BACKUP_PREFIX = "refs/gitsafe/backups/"


# -- helpers --------------------------------------------------------------------------------------


def gitsafe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gitsafe", *args]


def run_gitsafe(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gitsafe_cmd(*args),
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
        timeout=timeout,
    )


def pull_args(checkout: Path, *extra: str) -> list[str]:
    return ["pull", "origin", "main", "-C", str(checkout), *extra]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def head(checkout: Path) -> str:
    return git(checkout, "rev-parse", "HEAD").strip()


def ref_or_none(checkout: Path, ref: str) -> str | None:
    out = git(checkout, "rev-parse", "-q", "--verify", ref, check=False).strip()
    return out or None


def backup_refs(checkout: Path) -> list[str]:
    out = git(checkout, "for-each-ref", "--format=%(refname)", BACKUP_PREFIX)
    return [line for line in out.splitlines() if line]


def assert_fsck_clean(checkout: Path) -> None:
    proc = subprocess.run(
        ["git", "fsck", "--no-dangling", "--no-progress"],
        cwd=checkout,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", (
        f"git fsck in {checkout} ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    )


def git_locks(checkout: Path) -> list[str]:
    """The ``*.lock`` files in the git directory, gitsafe's own run lock aside."""
    gitdir = checkout / ".git"
    return sorted(
        str(p.relative_to(gitdir))
        for p in gitdir.rglob("*.lock")
        if p.relative_to(gitdir) != Path("gitsafe/run.lock")
    )


def assert_no_leftover_locks(checkout: Path) -> None:
    assert git_locks(checkout) == []
    assert not (checkout / ".git" / "gitsafe" / "inflight.json").exists()


@dataclass
class Recovered:
    """The union of every backup in a repository."""

    contents: set[tuple[str, str]] = field(default_factory=set)  # (path, sha256)
    parents: set[str] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)


def read_backups(checkout: Path) -> Recovered:
    """Read every backup straight from its commit: manifest entries and their numbered blobs."""
    repo = pygit2.Repository(str(checkout))
    found = Recovered()
    for name in repo.references:
        if not name.startswith(BACKUP_PREFIX):
            continue
        commit = repo.references[name].peel(pygit2.Commit)
        manifest = json.loads(repo[commit.tree["manifest.json"].id].data)
        found.ids.append(name[len(BACKUP_PREFIX) :])
        assert [str(p) for p in commit.parent_ids] == manifest["parents"], name
        found.parents.update(manifest["parents"])
        blobs = commit.tree["blobs"]
        for n, entry in enumerate(manifest["entries"]):
            if entry["type"] == "dir":
                continue
            if entry.get("aside"):
                data = (checkout / ".git" / entry["aside"]).read_bytes()
            else:
                blob = blobs[f"{n:06d}"]
                assert str(blob.id) == entry["oid"], (name, entry)
                data = repo[blob.id].data
            found.contents.add((entry["path"], sha256(data)))
    return found


def restore_all_via_cli(checkout: Path, into: Path) -> set[tuple[str, str]]:
    """``gitsafe backups --json`` then ``gitsafe restore ID --into DIR`` for each backup; the
    (path, sha256) of every file written, with index versions under ``.gitsafe-index/``."""
    listed = run_gitsafe("backups", "-C", str(checkout), "--json")
    assert listed.returncode == 0, listed.stderr
    contents: set[tuple[str, str]] = set()
    for n, row in enumerate(json.loads(listed.stdout)):
        dest = into / f"{n:02d}"
        proc = run_gitsafe("restore", row["id"], "--into", str(dest), "-C", str(checkout))
        assert proc.returncode == 0, proc.stderr
        for key, value in snapshot(dest, skip_git=False).items():
            if value[0] == "file":
                path = key.removeprefix(".gitsafe-index/")
                contents.add((path, str(value[2])))
    return contents


def missing_from(
    recovered: set[tuple[str, str]], expected: dict[tuple[str, str], str]
) -> list[str]:
    return sorted(what for key, what in expected.items() if key not in recovered)


# -- the dirty template -------------------------------------------------------------------------

KEEP = "*.keep"


@dataclass
class Template:
    origin: Origin
    checkout: Path
    target: str  # origin/main after the move
    local_commit: str
    # (path, sha256) -> what it is, for every byte a pull discards
    discarded: dict[tuple[str, str], str]
    before: dict[str, tuple[object, ...]]  # snapshot of the dirty checkout
    expected: dict[str, tuple[object, ...]]  # snapshot after the git sequence
    expected_status: str


def _py(path: str, version: str) -> str:
    return f"# {path} ({version})\n" + "".join(
        f"value_{i} = {i!r}  # {version}\n" for i in range(8)
    )


def build_template(base: Path, dirs: int, per_dir: int, untracked_per_dir: int) -> Template:
    """An origin that moved by one commit and a deploy checkout dirty in every way a pull
    discards: modified tracked files, a staged version, untracked files in several directories,
    an ignored file the new origin commit starts tracking, a local commit; plus a file kept by
    ``-e``, ignored files the clean keeps, and a file deleted locally."""
    base.mkdir(parents=True, exist_ok=True)
    tracked = [f"src/pkg{d}/mod{j:03d}.py" for d in range(dirs) for j in range(per_dir)]
    files: dict[str, str | bytes] = {p: _py(p, "v1") for p in tracked}
    files["README.md"] = "hello\n"
    files[".gitignore"] = ".env\n*.log\nbuild/\ngenerated/\n"
    origin = Origin(base, files)
    checkout = origin.clone(base / "template")

    # Origin moves: changes, deletions, additions, and it starts tracking an ignored path.
    for n, path in enumerate(tracked):
        if n % 9 == 0:
            write(origin.work, path, _py(path, "v2-origin"))
        elif n % 17 == 5:
            os.unlink(origin.work / path)
    for k in range(20):
        write(origin.work, f"added/new{k:02d}.txt", f"new upstream file {k}\n")
    write(origin.work, "generated/schema.json", '{"schema": "upstream"}\n')
    git(origin.work, "add", "-f", "generated/schema.json")
    target = origin.push("move origin")

    discarded: dict[tuple[str, str], str] = {}

    def dirty(rel: str, content: bytes, what: str) -> None:
        write(checkout, rel, content)
        discarded[(rel, sha256(content))] = f"{what} {rel}"

    # A local commit the reset drops.
    write(checkout, "src/local_only.py", "LOCAL = True\n")
    write(checkout, tracked[1], _py(tracked[1], "local-commit"))
    local_commit = commit_all(checkout, "local hotfix")

    # Modified tracked files (some of which origin changed or deleted too).
    modified = tracked[: len(tracked) * 5 // 6]
    for path in modified:
        dirty(path, _py(path, "edited on the server").encode(), "modified")
    # A staged version and a different work-tree version of one file.
    write(checkout, "README.md", "staged edit\n")
    git(checkout, "add", "README.md")
    discarded[("README.md", sha256(b"staged edit\n"))] = "staged README.md"
    dirty("README.md", b"work-tree edit\n", "modified")
    # A tracked file deleted locally: nothing to save, the reset brings it back.
    os.unlink(checkout / tracked[-1])

    # Untracked files in several directories (binary ones too).
    rng = random.Random(1234)
    for k in range(untracked_per_dir):
        dirty(f"tmp/t{k:03d}.txt", f"temporary {k}\n".encode(), "untracked")
        dirty(f"uploads/a/u{k:03d}.bin", rng.randbytes(64) + b"\0" + bytes([k % 256]), "untracked")
        dirty(f"uploads/b/u{k:03d}.bin", rng.randbytes(32) + bytes([k % 256]), "untracked")
        dirty(f"scratch/deep/nested/s{k:03d}.txt", f"scratch {k}\n".encode(), "untracked")
        dirty(f"src/pkg1/untracked_{k:03d}.py", f"# stray {k}\n".encode(), "untracked")
    # Kept by -e, in a directory whose other files go and at the top.
    write(checkout, "uploads/a/important.keep", "keep me\n")
    write(checkout, "persist.keep", "keep me too\n")
    # Ignored: kept by the clean, except the one the new origin commit starts tracking.
    write(checkout, ".env", "SECRET=1\n")
    write(checkout, "logs/app.log", "log line\n")
    write(checkout, "build/out.o", b"\x7fELF")
    write(checkout, "generated/other.json", "{}\n")
    dirty("generated/schema.json", b'{"schema": "local, generated"}\n', "overwritten ignored")

    expected_copy = copy_checkout(checkout, base / "expected")
    git_sequence(expected_copy, "origin", "main", [KEEP])
    assert head(expected_copy) == target
    return Template(
        origin=origin,
        checkout=checkout,
        target=target,
        local_commit=local_commit,
        discarded=discarded,
        before=snapshot(checkout),
        expected=snapshot(expected_copy),
        expected_status=status_porcelain(expected_copy),
    )


def assert_converged(checkout: Path, t: Template) -> None:
    differences = diff_snapshots(snapshot(checkout), t.expected)
    assert differences == [], "\n".join(differences[:40])
    assert head(checkout) == t.target
    assert git(checkout, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert status_porcelain(checkout) == t.expected_status
    assert not (checkout / ".git" / "shallow").exists(), "the checkout became 'shallow'"


def assert_nothing_lost(checkout: Path, t: Template) -> Recovered:
    found = read_backups(checkout)
    lost = missing_from(found.contents, t.discarded)
    assert lost == [], f"{len(lost)} discarded file version(s) in no backup: {lost[:10]}"
    assert t.local_commit in found.parents, "the dropped local commit is no backup's parent"
    repo = pygit2.Repository(str(checkout))
    assert repo.get(t.local_commit) is not None
    return found


# -- 1. SIGKILL at random instants -----------------------------------------------------------------


def _phase(copy: Path, t: Template, exited: bool) -> str:
    """Where the killed run was, judged from what it left on disk."""
    if exited:
        return "after: exited before the kill"
    now = snapshot(copy)
    if backup_refs(copy):
        if now == t.before:
            return "before: backed up, nothing touched yet"
        if now == t.expected and head(copy) == t.target:
            return "after: converged, killed while finishing"
        return "during: destructive phase"
    if now != t.before or head(copy) != t.local_commit:
        return "BROKEN: changed without a backup"
    if ref_or_none(copy, "refs/remotes/origin/main") == t.target:
        return "before: fetched, not backed up"
    if (copy / ".git" / "gitsafe").exists():
        return "before: holding the run lock, not fetched"
    return "before: starting up"


def _backup_ref_written(copy: Path) -> bool:
    folder = copy / ".git" / "refs" / "gitsafe" / "backups"
    try:
        return any(not name.endswith(".lock") for name in os.listdir(folder))
    except FileNotFoundError:
        return False


class WorkTreeWatch:
    """Notices changes to the work tree: any directory's mtime moving (every unlink, create or
    rename in it does), without reading a file."""

    def __init__(self, copy: Path, directories: list[str]) -> None:
        self.paths = [os.path.join(copy, d) for d in directories]
        self.baseline = self.state()

    def state(self) -> tuple[int, ...]:
        mtimes = []
        for path in self.paths:
            try:
                mtimes.append(os.stat(path).st_mtime_ns)
            except FileNotFoundError:
                mtimes.append(-1)
        return tuple(mtimes)

    def touched(self) -> bool:
        return self.state() != self.baseline


def _start_pull(copy: Path, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        gitsafe_cmd(*pull_args(copy, "-e", KEEP, "-q")),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=os.environ.copy(),
    )


@dataclass
class Timed:
    returncode: int
    stderr: str
    duration: float  # seconds from start to exit
    backed_up: float | None  # from start until the backup ref appeared
    touched: float | None  # from start until the work tree first changed
    settled: float | None  # from start until the work tree last changed
    # The work tree was seen changed and, looking after that, the backup ref was not there yet.
    changed_first: bool


def _timed_pull(copy: Path, watch: WorkTreeWatch) -> Timed:
    """Run one pull to its end, watching for its backup ref and its work-tree changes."""
    t0 = time.monotonic()
    proc = _start_pull(copy, stderr=subprocess.PIPE)
    backed_up = touched = settled = None
    changed_first = False
    last = watch.baseline
    while proc.poll() is None:
        # The work tree first, then the ref: a change seen before a look that still finds no
        # ref certainly came before the backup (the other order cannot tell two events that
        # fell between the same two looks apart).
        state = watch.state()
        if state != last:
            last, settled = state, time.monotonic() - t0
            touched = settled if touched is None else touched
        if backed_up is None and _backup_ref_written(copy):
            backed_up = time.monotonic() - t0
        changed_first = changed_first or (touched is not None and backed_up is None)
        time.sleep(0.0005)
    duration = time.monotonic() - t0
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode(errors="replace")
    return Timed(proc.returncode, stderr, duration, backed_up, touched, settled, changed_first)


def _kill(copy: Path, watch: WorkTreeWatch, kind: str, delay: float) -> bool:
    """Start a pull and SIGKILL it: ``delay`` seconds after its start (uniform), ``delay``
    seconds after it first changed the work tree (destructive), or the instant its
    ``index.lock`` appears (lock).  True when it exited on its own first."""
    proc = _start_pull(copy)
    t0 = time.monotonic()
    if kind == "lock":
        index_lock = os.path.join(copy, ".git", "index.lock")
        while proc.poll() is None:
            if os.path.lexists(index_lock):
                proc.kill()
                break
        return proc.wait() == 0
    if kind == "destructive":
        while proc.poll() is None and not watch.touched():
            time.sleep(0.0005)
        t0 = time.monotonic()
    try:
        proc.wait(timeout=max(0.0, delay - (time.monotonic() - t0)))
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


class Clock:
    """A duration kept current: the median of the latest samples, so the kill instants stay
    spread over a whole run even when the machine's load changes under the test."""

    def __init__(self) -> None:
        self.samples: collections.deque[float] = collections.deque(maxlen=5)
        self.all: list[float] = []
        self.lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self.lock:
            self.samples.append(seconds)
            self.all.append(seconds)

    def now(self) -> float:
        with self.lock:
            return statistics.median(self.samples)

    def __str__(self) -> str:
        low, high = min(self.all) * 1000, max(self.all) * 1000
        return f"{statistics.median(self.all) * 1000:.0f} ms ({low:.0f}..{high:.0f})"


@dataclass
class KillStats:
    phases: collections.Counter[str] = field(default_factory=collections.Counter)
    backups: collections.Counter[int] = field(default_factory=collections.Counter)
    cli_checked: int = 0
    locks_left: int = 0
    lock_names: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def test_pull_killed_at_random_instants_converges_and_loses_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    cpu_before = os.times()
    # 200 modified tracked files and 200 untracked ones: a pull takes ~0.6 s here, most of it
    # the backup's fsync'd object writes and the interpreter's start.
    t = build_template(tmp_path / "t", dirs=5, per_dir=48, untracked_per_dir=40)
    assert len(t.discarded) >= 400
    built = time.monotonic() - started
    # Two lanes of kill-and-rerun at a time: the pulls are mostly single-threaded.
    lanes = max(1, min(2, os.cpu_count() or 1))

    # The directories whose mtime tells that the work tree changed.
    watched = [""] + [k for k, v in t.before.items() if v == ("dir",)]

    # How long an unkilled pull takes, as a process (startup included) and with the lanes
    # busy, and how long its destructive phase (first .. last work-tree change) lasts:
    # measured first, then again on every rerun that does all the work of an unkilled pull.
    # Each measured run also proves the template converges and that its backup holds all.
    pull_clock, destructive_clock = Clock(), Clock()

    def timed_pull(copy: Path, watch: WorkTreeWatch, context: str) -> None:
        run = _timed_pull(copy, watch)
        assert run.returncode == 0, f"{context}: pull exited {run.returncode}\n{run.stderr}"
        assert run.backed_up is not None, context
        assert run.touched is not None and run.settled is not None, context
        assert not run.changed_first, f"{context}: changed before its backup"
        pull_clock.add(run.duration)
        destructive_clock.add(run.settled - run.touched)

    def measure(n: int) -> None:
        copy = copy_checkout(t.checkout, tmp_path / f"measure{n}")
        timed_pull(copy, WorkTreeWatch(copy, watched), f"unkilled pull #{n}")
        assert_converged(copy, t)
        assert_nothing_lost(copy, t)
        assert_fsck_clean(copy)
        shutil.rmtree(copy)

    with ThreadPoolExecutor(lanes) as pool:
        for future in [pool.submit(measure, n) for n in range(2 * lanes)]:
            future.result()

    iterations = max(50, int(os.environ.get("GITSAFE_KILL_ITERATIONS", "50")))
    rng = random.Random(20240611)
    # Stratified uniform draws over the whole run: every slice of [0, duration] gets a kill,
    # the first near 0 and the last near the end.
    plan = [("uniform", (i + rng.random()) / iterations) for i in range(iterations)]
    # The destructive phase is a small slice of a run (the interpreter's start and the
    # backup's fsyncs dominate), so a fifth as many kills again are aimed at it: uniform over
    # its measured length from its first change to the work tree; and a tenth at the instant
    # a git lock (index.lock) exists, which only the in-flight journal can clear at once.
    aimed = iterations // 5
    plan += [("destructive", (i + rng.random()) / aimed) for i in range(aimed)]
    plan += [("lock", 0.0)] * (iterations // 10)
    rng.shuffle(plan)
    stats = KillStats()

    def one(i: int, kind: str, fraction: float) -> None:
        copy = copy_checkout(t.checkout, tmp_path / f"kill{i:03d}")
        watch = WorkTreeWatch(copy, watched)
        delay = fraction * (destructive_clock if kind == "destructive" else pull_clock).now()
        exited = _kill(copy, watch, kind, delay)
        phase = _phase(copy, t, exited)
        locks_left = git_locks(copy)
        when = {"uniform": "its start", "destructive": "its first change"}.get(kind)
        context = (
            f"kill #{i} ({kind}{f', {delay * 1000:.0f} ms after {when}' if when else ''}; "
            f"{phase}; locks left: {locks_left}) in {copy}"
        )
        assert not phase.startswith("BROKEN"), context

        if phase.startswith("before") and "backed up" not in phase:
            timed_pull(copy, WorkTreeWatch(copy, watched), f"{context}: rerun")
        else:
            rerun = run_gitsafe(*pull_args(copy, "-e", KEEP, "-q"))
            assert rerun.returncode == 0, (
                f"{context}: rerun exited {rerun.returncode}\n{rerun.stderr}"
            )
        assert_converged(copy, t)
        assert_no_leftover_locks(copy)
        assert_fsck_clean(copy)
        found = assert_nothing_lost(copy, t)
        with stats.lock:
            stats.phases[f"{kind:11s} {phase}"] += 1
            stats.locks_left += bool(locks_left)
            stats.lock_names.update(locks_left)
            stats.backups[len(found.ids)] += 1
            check_cli = len(found.ids) > 1 and phase.startswith("during") and stats.cli_checked < 2
            stats.cli_checked += check_cli
        # The user-facing path as well, where the backups are split over two runs.
        if check_cli:
            restored = restore_all_via_cli(copy, tmp_path / f"restored{i:03d}")
            lost = missing_from(restored, t.discarded)
            assert lost == [], f"{context}: not restorable via the CLI: {lost[:10]}"
            branches = git(copy, "for-each-ref", "--format=%(objectname)", "refs/heads/gitsafe/")
            assert t.local_commit in branches.split()
        shutil.rmtree(copy)

    with ThreadPoolExecutor(lanes) as pool:
        futures = [pool.submit(one, i, kind, f) for i, (kind, f) in enumerate(plan)]
        done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            pool.shutdown(wait=True, cancel_futures=True)
            failed[0].result()

    total = time.monotonic() - started
    cpu_self = sum(os.times()[k] - cpu_before[k] for k in (0, 1))
    cpu_children = sum(os.times()[k] - cpu_before[k] for k in (2, 3))
    uniform = collections.Counter(
        p.split()[1].rstrip(":") for p in stats.phases.elements() if p.startswith("uniform")
    )
    summary = (
        f"{len(plan)} kills in {lanes} lane(s): {iterations} uniform over an unkilled pull "
        f"of {pull_clock}, {aimed} aimed at its destructive phase of {destructive_clock}, "
        f"{iterations // 10} at its index.lock; template {built:.1f}s; total {total:.1f}s "
        f"wall, CPU {cpu_self:.1f}s in the test + {cpu_children:.1f}s in subprocesses\n"
        f"uniform kills before/during/after the destructive phase: {dict(uniform)}\n"
        + "\n".join(f"  {n:3d}  {p}" for p, n in sorted(stats.phases.items()))
        + f"\nkills that left a git lock behind: {stats.locks_left}; "
        f"backups per converged copy: {dict(stats.backups)}; "
        f"CLI restores checked: {stats.cli_checked}; locks left: {dict(stats.lock_names)}"
    )
    print(summary)
    (tmp_path / "kill-summary.txt").write_text(summary)
    during = sum(n for p, n in stats.phases.items() if "during" in p)
    assert during >= 3, summary
    assert stats.cli_checked >= 1, summary


# -- 2. eight pulls at once while origin moves ---------------------------------------------------


class Pusher(threading.Thread):
    """Pushes a new commit to origin every ~50 ms until stopped."""

    def __init__(self, origin: Origin, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.origin = origin
        self.interval = interval
        self.stop = threading.Event()
        self.pushed: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                write(self.origin.work, "moving/counter.txt", f"{n}\n")
                write(self.origin.work, f"moving/file{n:04d}.txt", f"pushed while pulling {n}\n")
                if n % 3 == 0:
                    os.unlink(self.origin.work / f"moving/file{n - 1:04d}.txt")
                self.pushed.append(self.origin.push(f"moving {n}"))
                self.stop.wait(self.interval)
        except BaseException as e:  # reported by the test
            self.error = e


def test_eight_concurrent_pulls_while_origin_keeps_moving(tmp_path: Path) -> None:
    t = build_template(tmp_path / "t", dirs=3, per_dir=40, untracked_per_dir=20)
    original = copy_checkout(t.checkout, tmp_path / "original")
    deploy = t.checkout

    pusher = Pusher(t.origin)
    pusher.start()
    try:
        time.sleep(0.15)  # origin is already moving when the pulls start
        gate = threading.Barrier(8)
        results: list[tuple[int, subprocess.CompletedProcess[str], Path]] = []
        lock = threading.Lock()

        def one(n: int) -> None:
            report = tmp_path / f"report{n}.json"
            gate.wait()
            proc = run_gitsafe(
                *pull_args(deploy, "-e", KEEP, "--lock-timeout", "2", "--report", str(report))
            )
            with lock:
                results.append((n, proc, report))

        threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        pushed_during = len(pusher.pushed)
    finally:
        pusher.stop.set()
        pusher.join(timeout=30)
    assert pusher.error is None, repr(pusher.error)
    assert len(results) == 8

    outcomes = []
    for n, proc, report_path in sorted(results, key=lambda r: r[0]):
        report = json.loads(report_path.read_text())
        assert report["exit_code"] == proc.returncode, (n, report)
        if proc.returncode == 0:
            outcomes.append(report["outcome"])
            continue
        assert proc.returncode == 1, f"pull #{n} exited {proc.returncode}:\n{proc.stderr}"
        error = report["error"] or {}
        assert error.get("kind") == "lock" and "busy" in error.get("message", ""), (n, report)
        assert "busy" in proc.stderr, proc.stderr
        outcomes.append("busy")
    print(f"outcomes of the eight: {outcomes}; origin moved {pushed_during} time(s) meanwhile")
    assert outcomes.count("healed") >= 1, outcomes
    assert pushed_during >= 3, f"origin moved only {pushed_during} time(s) during the pulls"

    # Origin is still now; one more pull converges on its tip.
    final = run_gitsafe(*pull_args(deploy, "-e", KEEP, "--json"))
    assert final.returncode == 0, final.stderr
    tip = git(t.origin.bare, "rev-parse", "refs/heads/main").strip()
    assert head(deploy) == tip
    # Clean but for the untracked files -e keeps.
    assert git(deploy, "status", "--porcelain").splitlines() == ["?? persist.keep", "?? uploads/"]
    # Whatever the eight did, the result is the one heal of the original checkout.
    git_sequence(original, "origin", "main", [KEEP])
    assert head(original) == tip
    differences = diff_snapshots(snapshot(deploy), snapshot(original))
    assert differences == [], "\n".join(differences[:40])
    assert status_porcelain(deploy) == status_porcelain(original)
    assert_no_leftover_locks(deploy)
    assert_fsck_clean(deploy)
    # And what the original dirt was is in the backups, however the runs shared the work.
    found = read_backups(deploy)
    assert missing_from(found.contents, t.discarded) == []
    assert t.local_commit in found.parents


# -- 3. SIGINT and SIGTERM -----------------------------------------------------------------------


def _small_dirty_checkout(tmp_path: Path) -> tuple[Origin, Path, Path]:
    """A dirty checkout behind origin, and a copy healed by the git sequence (the oracle)."""
    origin = Origin(
        tmp_path,
        {"README.md": "hello\n", "src/config.py": "DEBUG = False\n", ".gitignore": "*.log\n"},
    )
    deploy = origin.clone(tmp_path / "deploy")
    write(origin.work, "src/new.py", "NEW = 1\n")
    origin.push("move")
    write(deploy, "src/config.py", "DEBUG = True\n")
    write(deploy, "junk/untracked.txt", "junk\n")
    write(deploy, "app.log", "log\n")
    expected = copy_checkout(deploy, tmp_path / "expected")
    git_sequence(expected, "origin", "main")
    return origin, deploy, expected


def _has_open(pid: int, path: Path) -> bool:
    real = os.path.realpath(path)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == real:
                return True
        except OSError:
            continue
    return False


def _wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("signum", "waiting_for"),
    [
        (signal.SIGINT, "index.lock"),
        (signal.SIGTERM, "index.lock"),
        (signal.SIGINT, "run.lock"),
        (signal.SIGTERM, "run.lock"),
    ],
    ids=["SIGINT-git-lock", "SIGTERM-git-lock", "SIGINT-run-lock", "SIGTERM-run-lock"],
)
def test_sigint_and_sigterm_stop_cleanly_with_130_and_143(
    tmp_path: Path, signum: signal.Signals, waiting_for: str
) -> None:
    _origin, deploy, expected = _small_dirty_checkout(tmp_path)
    gitdir = deploy / ".git"
    run_lock = gitdir / "gitsafe" / "run.lock"
    report_path = gitdir / "gitsafe" / "last-report.json"
    before = snapshot(deploy)
    head_before = head(deploy)
    tracking_before = ref_or_none(deploy, "refs/remotes/origin/main")

    holder_fd = None
    if waiting_for == "index.lock":
        (gitdir / "index.lock").write_text("")  # fresh and unheld: waited for, never removed
    else:
        run_lock.parent.mkdir(exist_ok=True)
        holder_fd = os.open(run_lock, os.O_RDWR | os.O_CREAT, 0o644)
        os.write(holder_fd, f"{os.getpid()}\n".encode())
        fcntl.flock(holder_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        proc = subprocess.Popen(
            gitsafe_cmd(*pull_args(deploy, "--lock-timeout", "30", "--json")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        if waiting_for == "index.lock":
            # It holds the run lock (so its signal handlers are in place) and waits for git's.
            _wait_until(
                lambda: run_lock.exists() and run_lock.read_text().strip() == str(proc.pid),
                30,
                "the pull holds the run lock",
            )
        else:
            _wait_until(lambda: _has_open(proc.pid, run_lock), 30, "the pull opens the run lock")
        time.sleep(0.3)  # well inside the wait loop
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if holder_fd is not None:
            os.close(holder_fd)

    assert proc.returncode == 128 + signum, (proc.returncode, stderr)
    assert took < 5, f"took {took:.1f}s to stop"
    report = json.loads(report_path.read_text())
    assert report["error"]["kind"] == "interrupted", report
    assert report["exit_code"] == 128 + signum
    assert json.loads(stdout)["error"]["kind"] == "interrupted"
    # Nothing was touched: work tree, HEAD, remote-tracking ref, no backup, the foreign lock.
    assert diff_snapshots(snapshot(deploy), before) == []
    assert head(deploy) == head_before
    assert ref_or_none(deploy, "refs/remotes/origin/main") == tracking_before
    assert backup_refs(deploy) == []
    if waiting_for == "index.lock":
        assert (gitdir / "index.lock").exists(), "a lock gitsafe does not own was removed"
        (gitdir / "index.lock").unlink()

    rerun = run_gitsafe(*pull_args(deploy, "--lock-timeout", "5"))
    assert rerun.returncode == 0, rerun.stderr
    assert diff_snapshots(snapshot(deploy), snapshot(expected)) == []
    assert head(deploy) == head(expected)
    assert_fsck_clean(deploy)


# -- SIGKILL inside libgit2's fetch, at an exact syscall (strace) -------------------------------
#
# libgit2's fetch creates .git/shallow.lock, link()s it to .git/shallow, unlinks the lock, then
# unlinks the (empty) shallow file.  The random kills above found both windows; these stop the
# pull in each one deterministically.

STRACE = shutil.which("strace")


def _killed_at_syscall(checkout: Path, path: Path, syscall: str) -> None:
    """Run a pull under strace, SIGKILLed on entering the first ``syscall`` on ``path``."""
    proc = subprocess.run(
        [
            *("strace", "-f", "-qq", "-o", os.devnull, "-P", str(path)),
            *("-e", f"inject={syscall}:signal=SIGKILL"),
            *gitsafe_cmd(*pull_args(checkout, "-q")),
        ],
        capture_output=True,
        env=os.environ.copy(),
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0, "the pull was not stopped"


@pytest.mark.skipif(STRACE is None, reason="needs strace to stop the pull at an exact syscall")
def test_kill_inside_the_fetch_leaves_no_shallow_lock_that_wedges_reruns(tmp_path: Path) -> None:
    """Was a bug: the in-flight journal did not list shallow.lock, so every rerun failed on the
    killed fetch's lock ('exists (not held)') until it was stale_lock_age (600 s) old."""
    _origin, deploy, expected = _small_dirty_checkout(tmp_path)
    lock = deploy / ".git" / "shallow.lock"
    _killed_at_syscall(deploy, lock, "link")
    if not lock.exists():
        pytest.skip("the fetch no longer creates shallow.lock (or strace could not trace it)")
    rerun = run_gitsafe(*pull_args(deploy, "--lock-timeout", "2"))
    assert rerun.returncode == 0, rerun.stderr
    assert diff_snapshots(snapshot(deploy), snapshot(expected)) == []
    assert head(deploy) == head(expected)
    assert_no_leftover_locks(deploy)


@pytest.mark.skipif(STRACE is None, reason="needs strace to stop the pull at an exact syscall")
def test_kill_inside_the_fetch_leaves_no_empty_shallow_file(tmp_path: Path) -> None:
    """Was a bug: the rerun (nothing left to fetch) kept the empty .git/shallow, and git took
    the deploy checkout for a shallow clone (rev-parse --is-shallow-repository: true)."""
    _origin, deploy, expected = _small_dirty_checkout(tmp_path)
    shallow = deploy / ".git" / "shallow"
    _killed_at_syscall(deploy, shallow, "unlink")
    if not shallow.exists():
        pytest.skip("the fetch no longer writes .git/shallow (or strace could not trace it)")
    rerun = run_gitsafe(*pull_args(deploy))
    assert rerun.returncode == 0, rerun.stderr
    assert diff_snapshots(snapshot(deploy), snapshot(expected)) == []
    assert git(deploy, "rev-parse", "--is-shallow-repository").strip() == "false"
    assert not shallow.exists()
    assert_fsck_clean(deploy)


# -- 4. the run lock -----------------------------------------------------------------------------


def test_second_gitsafe_waits_for_the_first_then_reports_busy_with_its_pid(
    tmp_path: Path,
) -> None:
    _origin, deploy, expected = _small_dirty_checkout(tmp_path)
    run_lock = deploy / ".git" / "gitsafe" / "run.lock"
    run_lock.parent.mkdir()
    before = snapshot(deploy)
    me = os.getpid()

    fd = os.open(run_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{me}\n".encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t0 = time.monotonic()
        busy = run_gitsafe(*pull_args(deploy, "--lock-timeout", "0.5", "--json"))
        waited = time.monotonic() - t0
        assert busy.returncode == 1, busy.stderr
        assert waited >= 0.5
        message = json.loads(busy.stdout)["error"]["message"]
        assert message.startswith("busy: another gitsafe") and f"(pid {me})" in message, message
        assert f"pid {me}" in busy.stderr
        report = json.loads((deploy / ".git" / "gitsafe" / "last-report.json").read_text())
        assert report["error"]["kind"] == "lock" and f"(pid {me})" in report["error"]["message"]
        assert diff_snapshots(snapshot(deploy), before) == []
        assert backup_refs(deploy) == []

        # A pull that starts while the lock is held waits for it, then runs.
        waiter = subprocess.Popen(
            gitsafe_cmd(*pull_args(deploy, "--lock-timeout", "20", "-q")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        _wait_until(lambda: _has_open(waiter.pid, run_lock), 30, "the second pull waits")
        time.sleep(0.5)
        assert waiter.poll() is None, "the pull did not wait for the run lock"
        assert diff_snapshots(snapshot(deploy), before) == []
    finally:
        os.close(fd)  # releases the flock
    _out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert diff_snapshots(snapshot(deploy), snapshot(expected)) == []
    # The run lock now names the pull that ran.
    assert run_lock.read_text().strip() == str(waiter.pid)

    again = run_gitsafe(*pull_args(deploy, "--lock-timeout", "0.5"))
    assert again.returncode == 0, again.stderr
    assert_fsck_clean(deploy)
