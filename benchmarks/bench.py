#!/usr/bin/env python3
"""Reproducible benchmark: gitsafe against the git command sequence it replaces.

Generates deploy bases of N tracked files (nested directories of ~50 files each, a .gitignore,
an ignored ``build/`` directory holding ~N/10 files) as a bare origin plus a clone, caches them
per size under ``--workdir``, and times, alternating the order run by run, each scenario on a
fresh copy of its prepared state (the copy is made, and flushed to disk, outside the timed
region).

Scenarios (gitsafe vs git):

* ``heal``: origin moved by one commit; 15 edited tracked files, 400 untracked files in 8
  directories and an excluded ``deploy-hook.log``.
  ``gitsafe pull origin main -e deploy-hook.log`` vs ``git status --porcelain; git fetch origin
  main; git reset --hard origin/main; git clean -fd -e deploy-hook.log; git pull origin main``.
* ``heal-nobackup``: the same with ``gitsafe pull --no-backup`` (isolates the backup's cost).
* ``noop``: a clean, up-to-date checkout: ``gitsafe pull`` vs ``git fetch origin main; git status
  --porcelain; git pull origin main``.
* ``doctor``: the ``heal`` state: ``gitsafe doctor -e deploy-hook.log`` vs ``git status
  --porcelain; git clean -nd -e deploy-hook.log``.
* ``touched``: the ``noop`` state after every tracked file got a new mtime (``os.utime``), so
  every cached stat in the index is stale.  Each tool runs twice on its own copy: the first run
  must re-hash every file (reported as ``touched-1st``), the second run (``touched-2nd``) shows
  whether the first one persisted the refreshed stat data into the index.  The git side is the
  ``noop`` sequence.
* ``startup``: ``gitsafe --version`` vs ``git --version`` (and ``python -c pass`` for reference).

Peak memory is the maximum resident set size over the command's process tree (``/usr/bin/time
-f %M`` around ``sh -c 'cmd1; cmd2; ...'``; it includes waited-for descendants such as ``git
fetch`` -> ``upload-pack``); for a command sequence it is the maximum over its commands.  Every
measured command line, gitsafe's and git's alike, runs through that same wrapper, so its
overhead (two small execs, ~2 ms) is in both columns.

Usage::

    .venv/bin/python benchmarks/bench.py --sizes 10000,50000 --repeat 5 --out results.md

Run it with the Python that has gitsafe installed (pygit2/libgit2 versions are read from it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CACHE_VERSION = 1
EXCLUDE = "deploy-hook.log"
FILES_PER_DIR = 50
TOPS = ("src", "lib", "app", "assets", "tests", "docs", "config", "templates")
EXTS = (".py", ".js", ".html", ".css", ".json", ".md", ".txt", ".yml")
GITIGNORE = b"build/\n*.pyc\n__pycache__/\n.env\nnode_modules/\n*.swp\n"
WHEN = 1_700_000_000
SCENARIOS = ("heal", "heal-nobackup", "noop", "doctor", "touched", "startup")

# --------------------------------------------------------------------------------------------
# environment


def bench_env(home: str) -> dict[str, str]:
    """A clean environment: no user/system git config, no GITSAFE_* overrides, and Python free
    to write bytecode: an installed gitsafe has its modules compiled (pip does it at install
    time), and a run that compiled every module from source would time the compiler (about
    60 ms a run)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "GITSAFE_"))
        and k not in ("HOME", "XDG_CONFIG_HOME", "PYTHONDONTWRITEBYTECODE")
    }
    env.update(HOME=home, GIT_CONFIG_NOSYSTEM="1", LC_ALL="C", XDG_CONFIG_HOME=home + "/.config")
    return env


ENV: dict[str, str] = {}


def sh(cmd: Sequence[str], cwd: str | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, env=ENV, check=True, **kw)


def out(cmd: Sequence[str], cwd: str | None = None) -> str:
    return sh(cmd, cwd, capture_output=True).stdout.decode().strip()


# --------------------------------------------------------------------------------------------
# generation


def tracked_path(i: int) -> str:
    d = i // FILES_PER_DIR
    top = TOPS[d % len(TOPS)]
    g = d // len(TOPS)
    return f"{top}/m{g // 25:03d}/p{g % 25:02d}/f{i % FILES_PER_DIR:02d}{EXTS[i % len(EXTS)]}"


def content(path: str, i: int, version: int = 0) -> bytes:
    size = 200 + (i * 7919) % 1800  # 200..2000 bytes, ~1.1 KB on average
    head = f"# {path} (v{version})\n".encode()
    line = f"value_{i} = compute({i}, '{path}')  # generated line\n".encode()
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


def _blob(buf: list[bytes], data: bytes) -> None:
    buf.append(b"data %d\n" % len(data))
    buf.append(data)
    buf.append(b"\n")


def _commit_header(buf: list[bytes], message: str, when: int, parent: str | None) -> None:
    buf.append(b"commit refs/heads/main\n")
    sig = b"Bench <bench@example.com> %d +0000\n" % when
    buf.append(b"author " + sig)
    buf.append(b"committer " + sig)
    _blob(buf, message.encode())
    if parent:
        buf.append(f"from {parent}\n".encode())


def commit1_stream(n: int):
    """The first commit, yielded in chunks: N files plus README.md and .gitignore."""
    buf: list[bytes] = []
    _commit_header(buf, "initial deploy base\n", WHEN, None)
    buf.append(b"M 100644 inline .gitignore\n")
    _blob(buf, GITIGNORE)
    buf.append(b"M 100644 inline README.md\n")
    _blob(buf, b"# deploy base\n")
    for i in range(n):
        path = tracked_path(i)
        buf.append(f"M 100644 inline {path}\n".encode())
        _blob(buf, content(path, i))
        if len(buf) > 4000:
            yield b"".join(buf)
            buf.clear()
    buf.append(b"\n")
    yield b"".join(buf)


def upstream_changes(n: int) -> tuple[list[int], list[str], list[int]]:
    """Commit 2: 10 modified files, 2 added, 1 deleted."""
    modified = [(k * n) // 10 + 3 for k in range(10)]
    added = [f"src/feature/new_{k}.py" for k in range(2)]
    deleted = [n // 2 + 11]
    return modified, added, deleted


def commit2_stream(n: int) -> bytes:
    buf: list[bytes] = []
    _commit_header(buf, "upstream: one more deploy\n", WHEN + 3600, "refs/heads/main^0")
    modified, added, deleted = upstream_changes(n)
    for i in modified:
        path = tracked_path(i)
        buf.append(f"M 100644 inline {path}\n".encode())
        _blob(buf, content(path, i, 1))
    for k, path in enumerate(added):
        buf.append(f"M 100644 inline {path}\n".encode())
        _blob(buf, content(path, n + k, 1))
    for i in deleted:
        buf.append(f"D {tracked_path(i)}\n".encode())
    buf.append(b"\n")
    return b"".join(buf)


def fast_import(repo: str, chunks) -> None:
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet"], cwd=repo, env=ENV, stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    for chunk in chunks:
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")


def write_ignored(root: str, n: int) -> None:
    """~N/10 ignored build artefacts in build/, ~50 per directory."""
    count = max(1, n // 10)
    for i in range(count):
        d = os.path.join(root, "build", "obj", f"d{i // FILES_PER_DIR:04d}")
        if i % FILES_PER_DIR == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"o{i % FILES_PER_DIR:02d}.o"), "wb") as f:
            f.write(b"\x7fELF" + i.to_bytes(4, "little") * 64)


@dataclass
class Template:
    n: int
    root: str
    gen_seconds: float

    @property
    def origin(self) -> str:
        return os.path.join(self.root, "origin.git")

    @property
    def behind(self) -> str:  # clone at commit 1; origin/main at commit 2
        return os.path.join(self.root, "behind")

    @property
    def current(self) -> str:  # clone at commit 2, up to date
        return os.path.join(self.root, "current")


def refresh(repo: str) -> None:
    """Re-stat the index (a copy has new inodes and ctimes) so the copy starts like the original."""
    subprocess.run(
        ["git", "update-index", "-q", "--refresh"],
        cwd=repo,
        env=ENV,
        check=False,
        stdout=subprocess.DEVNULL,
    )


def template(workdir: str, n: int) -> Template:
    root = os.path.join(workdir, f"template-v{CACHE_VERSION}-n{n}")
    ready = os.path.join(root, "READY")
    if os.path.exists(ready):
        with open(ready) as f:
            return Template(n, root, float(json.load(f)["gen_seconds"]))
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    t0 = time.perf_counter()
    t = Template(n, root, 0.0)
    sh(["git", "init", "-q", "--bare", "--initial-branch=main", t.origin])
    fast_import(t.origin, commit1_stream(n))
    sh(["git", "clone", "-q", "file://" + t.origin, t.behind])
    write_ignored(t.behind, n)
    sh(["cp", "-a", t.behind, t.current])
    fast_import(t.origin, [commit2_stream(n)])  # origin moves on; "behind" never sees it
    sh(["git", "pull", "-q", "origin", "main"], t.current)
    for repo in (t.behind, t.current):
        refresh(repo)
    t.gen_seconds = time.perf_counter() - t0
    with open(ready, "w") as f:
        json.dump({"gen_seconds": t.gen_seconds, "n": n}, f)
    return t


# --------------------------------------------------------------------------------------------
# states


def copy_state(src: str, dest: str) -> None:
    sh(["cp", "-a", "--reflink=auto", src, dest])
    refresh(dest)


def make_dirty(repo: str, n: int) -> None:
    """15 edited tracked files, 400 untracked files in 8 directories, the excluded log."""
    for k in range(15):
        path = os.path.join(repo, tracked_path((k * n) // 15 + 7))
        with open(path, "ab") as f:
            f.write(b"# local hotfix\n")
    dirs = ["tmp/cache-a", "tmp/cache-b", "uploads/incoming", "scratch"]
    dirs += [os.path.dirname(tracked_path((k * n) // 4 + 1)) for k in range(4)]
    for d in dirs:
        full = os.path.join(repo, d)
        os.makedirs(full, exist_ok=True)
        for j in range(50):
            with open(os.path.join(full, f"untracked-{j:02d}.tmp"), "wb") as f:
                f.write(b"scratch %d\n" % j)
    with open(os.path.join(repo, EXCLUDE), "wb") as f:
        f.write(b"deploy hook ran\n")


def touch_all(repo: str) -> None:
    files = out(["git", "ls-files", "-z"], repo).split("\0")
    stamp = time.time_ns() - 120 * 1_000_000_000  # a new mtime, safely older than the index
    for rel in files:
        if rel:
            os.utime(os.path.join(repo, rel), ns=(stamp, stamp))


# --------------------------------------------------------------------------------------------
# running


@dataclass
class Run:
    seconds: float
    maxrss_kb: int
    codes: list[int]


TIME = shutil.which("time", path="/usr/bin:/bin")


def timed(cmds: Sequence[Sequence[str]], cwd: str | None) -> Run:
    """Run ``cmds`` in sequence; wall time, peak RSS over them, exit codes.

    Both sides run through the same ``/usr/bin/time -f %M sh -c '...'`` wrapper, so its ~ms of
    overhead is symmetric.  The wrapper matters for memory: a child forked from this Python
    inherits its RSS high-water mark until exec, so ``wait4`` on a direct child would report at
    least this process's RSS; ``time`` is a small C program and reports what its child tree used.
    """
    with tempfile.TemporaryDirectory(prefix="timed-") as tmp:
        codes_file, rss_file = os.path.join(tmp, "codes"), os.path.join(tmp, "rss")
        script = "; ".join(
            f"{shlex.join(c)}; printf '%s ' $? >> {shlex.quote(codes_file)}" for c in cmds
        )
        argv = ["sh", "-c", script]
        if TIME:
            argv = [TIME, "-f", "%M", "-o", rss_file, *argv]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        with open(codes_file) as f:
            codes = [int(x) for x in f.read().split()]
        if TIME:
            with open(rss_file) as f:
                peak = int(f.read().split()[-1])
        else:  # floor: this process's own RSS (see above)
            peak = usage.ru_maxrss
    return Run(seconds, peak, codes)


def gitsafe_cmd(args: argparse.Namespace) -> list[str]:
    if args.gitsafe:
        return args.gitsafe.split()
    script = os.path.join(os.path.dirname(sys.executable), "gitsafe")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "gitsafe"]


GIT_HEAL = [
    ["git", "status", "--porcelain"],
    ["git", "fetch", "origin", "main"],
    ["git", "reset", "--hard", "origin/main"],
    ["git", "clean", "-fd", "-e", EXCLUDE],
    ["git", "pull", "origin", "main"],
]
GIT_NOOP = [
    ["git", "fetch", "origin", "main"],
    ["git", "status", "--porcelain"],
    ["git", "pull", "origin", "main"],
]
GIT_DOCTOR = [["git", "status", "--porcelain"], ["git", "clean", "-nd", "-e", EXCLUDE]]


def snapshot(repo: str) -> dict[str, object]:
    """The end state that matters: work tree (type, mode, content), HEAD, branch, index,
    upstream."""
    tree: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(repo):
        rel_dir = os.path.relpath(dirpath, repo)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d != ".git"]
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            lst = os.lstat(full)
            if os.path.islink(full):
                tree[rel] = "link:" + os.readlink(full)
            elif os.path.isdir(full):
                tree[rel + "/"] = "dir"
            else:
                with open(full, "rb") as f:
                    digest = hashlib.sha1(f.read()).hexdigest()
                tree[rel] = f"{oct(lst.st_mode & 0o777)}:{digest}"

    def git(*a: str) -> str:
        proc = subprocess.run(["git", *a], cwd=repo, env=ENV, capture_output=True)
        return proc.stdout.decode().strip()

    return {
        "tree": tree,
        "HEAD": git("rev-parse", "HEAD"),
        "branch": git("symbolic-ref", "-q", "HEAD"),
        "index": hashlib.sha1(git("ls-files", "-s").encode()).hexdigest(),
        "upstream": git("rev-parse", "--abbrev-ref", "@{u}"),
        "status": git("status", "--porcelain"),
    }


def diff_snapshots(a: dict[str, object], b: dict[str, object]) -> list[str]:
    problems = []
    for key in a:
        if key == "tree":
            ta, tb = a["tree"], b["tree"]
            assert isinstance(ta, dict) and isinstance(tb, dict)
            only_a = sorted(set(ta) - set(tb))
            only_b = sorted(set(tb) - set(ta))
            changed = sorted(p for p in set(ta) & set(tb) if ta[p] != tb[p])
            if only_a:
                problems.append(f"only after gitsafe: {only_a[:5]} ({len(only_a)})")
            if only_b:
                problems.append(f"only after git: {only_b[:5]} ({len(only_b)})")
            if changed:
                problems.append(f"differ: {changed[:5]} ({len(changed)})")
        elif a[key] != b[key]:
            problems.append(f"{key}: gitsafe {a[key]!r} vs git {b[key]!r}")
    return problems


@dataclass
class Scenario:
    name: str
    prepare: Callable[[Template, str], None]  # builds the state at the given path
    gitsafe: Callable[[list[str]], list[list[str]]]
    git: list[list[str]]
    warmup_runs: int = 0  # unmeasured runs of the same command before the measured one
    check_end_state: bool = False
    ok_codes: tuple[int, ...] = (0,)


def prep_heal(t: Template, dest: str) -> None:
    copy_state(t.behind, dest)
    make_dirty(dest, t.n)


def prep_noop(t: Template, dest: str) -> None:
    copy_state(t.current, dest)


def prep_touched(t: Template, dest: str) -> None:
    copy_state(t.current, dest)
    touch_all(dest)


def scenarios() -> dict[str, Scenario]:
    pull = lambda g, *extra: [[*g, "pull", "origin", "main", "-e", EXCLUDE, *extra]]  # noqa: E731
    return {
        "heal": Scenario("heal", prep_heal, pull, GIT_HEAL, check_end_state=True),
        "heal-nobackup": Scenario(
            "heal-nobackup",
            prep_heal,
            lambda g: pull(g, "--no-backup"),
            GIT_HEAL,
            check_end_state=True,
        ),
        "noop": Scenario("noop", prep_noop, pull, GIT_NOOP),
        "doctor": Scenario(
            "doctor",
            prep_heal,
            lambda g: [[*g, "doctor", "-e", EXCLUDE]],
            GIT_DOCTOR,
            ok_codes=(0, 1),  # doctor exits 1 for "would heal"
        ),
        "touched": Scenario("touched", prep_touched, pull, GIT_NOOP, warmup_runs=1),
    }


@dataclass
class Result:
    n: int
    scenario: str
    gitsafe: list[Run] = field(default_factory=list)
    git: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def measure(args: argparse.Namespace, t: Template, sc: Scenario, scratch: str) -> list[Result]:
    g = gitsafe_cmd(args)
    res = Result(t.n, sc.name)
    first = Result(t.n, sc.name + "-1st") if sc.warmup_runs else None
    if first:
        res.scenario = sc.name + "-2nd"
    for r in range(args.repeat):
        sides = [("gitsafe", sc.gitsafe(g)), ("git", sc.git)]
        if r % 2:
            sides.reverse()
        dirs = {}
        for side, _ in sides:  # both copies first, outside the timed region
            dest = os.path.join(scratch, f"{sc.name}-{side}-{r}")
            shutil.rmtree(dest, ignore_errors=True)
            sc.prepare(t, dest)
            dirs[side] = dest
        # The copies (and the last repeat's deletions) reach the disk now, not as writeback
        # by the kernel's flusher threads, on the CPUs, during the timed runs.
        os.sync()
        for side, cmds in sides:
            for _ in range(sc.warmup_runs):
                run = timed(cmds, dirs[side])
                if first is not None:
                    getattr(first, side).append(run)
            run = timed(cmds, dirs[side])
            getattr(res, side).append(run)
            if any(c not in sc.ok_codes for c in run.codes):
                res.notes.append(f"repeat {r}: {side} exit codes {run.codes}")
        if sc.check_end_state and r == 0:
            problems = diff_snapshots(snapshot(dirs["gitsafe"]), snapshot(dirs["git"]))
            res.notes.append(
                "end state equals git's"
                if not problems
                else "END STATE DIFFERS: " + "; ".join(problems)
            )
            print(f"  n={t.n} {sc.name}: {res.notes[-1]}", flush=True)
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        print(
            f"  n={t.n} {sc.name} repeat {r}: gitsafe {res.gitsafe[-1].seconds:.3f}s"
            f" git {res.git[-1].seconds:.3f}s",
            flush=True,
        )
    return [x for x in (first, res) if x is not None]


def warm_up(args: argparse.Namespace, t: Template, scratch: str) -> None:
    """One untimed heal, so that every module a pull imports has its bytecode written."""
    dest = os.path.join(scratch, "warm-up")
    prep_heal(t, dest)
    timed(scenarios()["heal"].gitsafe(gitsafe_cmd(args)), dest)
    shutil.rmtree(dest, ignore_errors=True)


def measure_startup(args: argparse.Namespace) -> Result:
    g = gitsafe_cmd(args)
    res = Result(0, "startup")
    python: list[Run] = []
    for r in range(max(10, args.repeat)):
        order = [("gitsafe", [[*g, "--version"]]), ("git", [["git", "--version"]])]
        if r % 2:
            order.reverse()
        for side, cmds in order:
            getattr(res, side).append(timed(cmds, None))
        python.append(timed([[sys.executable, "-c", "pass"]], None))
    res.notes.append(
        f"reference: `{sys.executable} -c pass` median "
        f"{statistics.median(x.seconds for x in python) * 1000:.0f} ms, "
        f"{statistics.median(x.maxrss_kb for x in python) / 1024:.0f} MB"
    )
    return res


# --------------------------------------------------------------------------------------------
# report


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?"
            )
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    try:
        import pygit2

        pg = f"pygit2 {pygit2.__version__}, libgit2 {pygit2.LIBGIT2_VERSION}"
    except ImportError:
        pg = "pygit2 not importable from this Python"
    try:
        from gitsafe import __version__ as gv
    except ImportError:
        gv = "?"
    fs = subprocess.run(
        ["df", "-T", tempfile.gettempdir()], capture_output=True, text=True
    ).stdout.splitlines()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pygit2": pg,
        "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
        "gitsafe": gv,
        "filesystem": fs[-1].split()[1] if len(fs) > 1 else "?",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def med(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def fmt_s(runs: list[Run]) -> str:
    xs = sorted(r.seconds for r in runs)
    return f"{statistics.median(xs):.3f} ({xs[0]:.3f}–{xs[-1]:.3f})"


def table(results: list[Result]) -> str:
    lines = [
        "| files | scenario | gitsafe s, median (min–max) | git s, median (min–max) | "
        "time gitsafe/git | gitsafe peak MB | git peak MB | runs |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r.gitsafe or not r.git:
            continue
        gs, gt = med(r.gitsafe, "seconds"), med(r.git, "seconds")
        lines.append(
            f"| {r.n or '—'} | {r.scenario} | {fmt_s(r.gitsafe)} | {fmt_s(r.git)} | "
            f"{gs / gt:.2f}× | {med(r.gitsafe, 'maxrss_kb') / 1024:.0f} | "
            f"{med(r.git, 'maxrss_kb') / 1024:.0f} | {len(r.gitsafe)} |"
        )
    return "\n".join(lines)


def render(
    results: list[Result], templates: list[Template], info: dict[str, str], command: str
) -> str:
    parts = ["# gitsafe benchmark", "", table(results), ""]
    notes = [f"- {r.n or ''} {r.scenario}: {n}" for r in results for n in r.notes]
    if notes:
        parts += ["Notes:", "", *notes, ""]
    if templates:
        parts += ["Deploy bases (generated once, cached):", ""]
        parts += [
            f"- {t.n} tracked files + {max(1, t.n // 10)} ignored: generated in "
            f"{t.gen_seconds:.1f} s ({t.root})"
            for t in templates
        ]
        parts.append("")
    parts += ["Machine:", ""]
    parts += [f"- {k}: {v}" for k, v in info.items()]
    parts += ["", "Reproduce:", "", "```", command, "```", ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,50000", help="comma-separated tracked-file counts")
    p.add_argument("--repeat", type=int, default=5, help="measured runs per side and scenario")
    p.add_argument("--out", help="write the markdown report here (and raw runs to OUT.json)")
    p.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable); default: all",
    )
    p.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "gitsafe-bench"),
        help="where templates are cached and scratch copies are made",
    )
    p.add_argument("--gitsafe", help="gitsafe command (default: the console script of this Python)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    chosen = args.only or list(SCENARIOS)

    os.makedirs(args.workdir, exist_ok=True)
    home = os.path.join(args.workdir, "home")
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, ".gitconfig"), "w") as f:
        f.write(
            "[user]\n\tname = Bench\n\temail = bench@example.com\n"
            "[advice]\n\tdetachedHead = false\n"
        )
    ENV.clear()
    ENV.update(bench_env(home))

    info = machine()
    command = " ".join([sys.executable, *[a for a in sys.argv]])
    results: list[Result] = []
    templates: list[Template] = []
    if "startup" in chosen:
        print("startup ...", flush=True)
        results.append(measure_startup(args))
    table_scenarios = scenarios()
    for n in sizes:
        print(f"template n={n} ...", flush=True)
        t = template(args.workdir, n)
        templates.append(t)
        print(f"  ready ({t.gen_seconds:.1f} s when generated)", flush=True)
        scratch = tempfile.mkdtemp(prefix=f"run-n{n}-", dir=args.workdir)
        try:
            warm_up(args, t, scratch)
            for name in chosen:
                if name in table_scenarios:
                    results.extend(measure(args, t, table_scenarios[name], scratch))
                    save(args, results, templates, info, command, partial=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg (end)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(save(args, results, templates, info, command, partial=False))
    return 0


def save(
    args: argparse.Namespace,
    results: list[Result],
    templates: list[Template],
    info: dict[str, str],
    command: str,
    partial: bool,
) -> str:
    """Write the report (and OUT.json); while running, a partial one after every scenario."""
    text = render(results, templates, info, command)
    if partial:
        text = text.replace(
            "# gitsafe benchmark", "# gitsafe benchmark (partial: still running)", 1
        )
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        raw = [
            {
                "n": r.n,
                "scenario": r.scenario,
                "gitsafe": [x.__dict__ for x in r.gitsafe],
                "git": [x.__dict__ for x in r.git],
                "notes": r.notes,
            }
            for r in results
        ]
        with open(args.out + ".json", "w") as f:
            json.dump({"machine": info, "command": command, "results": raw}, f, indent=1)
    return text


if __name__ == "__main__":
    sys.exit(main())
