"""Real repositories for tests: a bare origin, deploy clones, the git CLI as the oracle."""

from __future__ import annotations

import ast
import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

Snapshot = dict[str, tuple[object, ...]]


def git(
    cwd: str | os.PathLike[str], *args: str, check: bool = True, env: dict[str, str] | None = None
) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode("utf-8", "surrogateescape")


def write(
    root: str | os.PathLike[str], rel: str, content: str | bytes = "x\n", mode: int | None = None
) -> Path:
    path = Path(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    if mode is not None:
        path.chmod(mode)
    return path


def commit_all(repo: str | os.PathLike[str], message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


class Origin:
    """A bare origin fed through a scratch work tree ("upstream")."""

    def __init__(self, base: Path, files: dict[str, str | bytes] | None = None) -> None:
        self.bare = base / "origin.git"
        self.work = base / "upstream"
        git(base, "init", "-q", "--bare", "-b", "main", str(self.bare))
        git(base, "clone", "-q", str(self.bare), str(self.work))
        for rel, content in (files or {"README.md": "hello\n"}).items():
            write(self.work, rel, content)
        self.push("initial")

    def push(self, message: str = "change", branch: str = "main", force: bool = False) -> str:
        sha = commit_all(self.work, message)
        git(self.work, "push", "-q", *(["--force"] if force else []), "origin", f"HEAD:{branch}")
        return sha

    def clone(self, dest: Path) -> Path:
        git(dest.parent, "clone", "-q", str(self.bare), str(dest))
        return dest


def snapshot(root: str | os.PathLike[str], skip_git: bool = True) -> Snapshot:
    """Every entry below ``root``: directories (empty ones too), files with content and exec bit,
    symlinks with their target.  The top-level ``.git`` is left out."""
    result: Snapshot = {}
    root = os.fspath(root)

    pending = [""]  # a loop, not a recursion: trees may be deeper than Python recurses
    while pending:
        rel = pending.pop()
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            child = f"{rel}/{name}" if rel else name
            if skip_git and child == ".git":
                continue
            path = os.path.join(root, child)
            lst = os.lstat(path)
            if stat.S_ISLNK(lst.st_mode):
                result[child] = ("link", os.readlink(path))
            elif stat.S_ISDIR(lst.st_mode):
                result[child] = ("dir",)
                pending.append(child)
            elif stat.S_ISREG(lst.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                result[child] = ("file", bool(lst.st_mode & 0o100), digest)
            else:
                result[child] = ("other", stat.S_IFMT(lst.st_mode))
    return result


def diff_snapshots(a: Snapshot, b: Snapshot) -> list[str]:
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            lines.append(f"{key}: gitsafe={a.get(key)} git={b.get(key)}")
    return lines


def copy_checkout(src: Path, dest: Path) -> Path:
    # cp, not shutil.copytree, which recurses once a directory level
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--", str(src), str(dest)], check=True)
    return dest


def git_sequence(checkout: Path, remote: str, branch: str, excludes: Sequence[str] = ()) -> None:
    """The command sequence gitsafe must be equivalent to."""
    git(checkout, "fetch", "-q", remote, branch)
    git(checkout, "reset", "-q", "--hard", f"{remote}/{branch}")
    args: list[str] = []
    for p in excludes:
        args += ["-e", p]
    git(checkout, "clean", "-q", "-f", "-d", *args)
    git(checkout, "pull", "-q", "--no-rebase", remote, branch)


def status_porcelain(checkout: Path, extra: Iterable[str] = ()) -> str:
    return git(checkout, "status", "--porcelain", "--ignored", *extra)


def heal_and_compare(
    deploy: Path,
    work: Path,
    excludes: Sequence[str] = (),
    remote: str = "origin",
    branch: str = "main",
) -> tuple[object, Path, Path]:
    """Copy ``deploy`` twice, run gitsafe on one copy and the git sequence on the other, and
    assert the two work trees are identical entry by entry.  Returns (report, gitsafe copy,
    git copy)."""
    import gitsafe

    a = copy_checkout(deploy, work / "with-gitsafe")
    b = copy_checkout(deploy, work / "with-git")
    report = gitsafe.pull(a, remote, branch, exclude=list(excludes))
    assert report.exit_code == 0, report.to_json_text()
    git_sequence(b, remote, branch, excludes)
    differences = diff_snapshots(snapshot(a), snapshot(b))
    assert differences == [], "\n".join(differences)
    assert git(a, "rev-parse", "HEAD") == git(b, "rev-parse", "HEAD")
    assert status_porcelain(a) == status_porcelain(b)
    return report, a, b


# A command-line run, which reports at its end what it loaded of the modules a run should not
# need, whether the cyclic collector was on, and where libgit2 was told to find trusted CAs.
_CLI_PROBE = (
    "import gc, sys\n"
    "from gitsafe.__main__ import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    watched = ('gitsafe.transport', 'gitsafe.credentials', 'ctypes', 'ssl',\n"
    "               'gitsafe.backup', 'gitsafe.execute', 'json', 'tempfile')\n"
    "    loaded = sorted(m for m in watched if m in sys.modules)\n"
    "    import pygit2\n"
    "    ca = (pygit2.settings.ssl_cert_file, pygit2.settings.ssl_cert_dir)\n"
    "    sys.stderr.write('PROBE ' + repr((loaded, gc.isenabled(), ca)) + '\\n')\n"
)


class CliRun(NamedTuple):
    returncode: int
    stderr: str
    loaded: list[str]  # of the modules _CLI_PROBE watches
    collector: bool  # gc.isenabled() at the end
    ca: tuple[str | None, str | None]  # pygit2.settings.ssl_cert_file, ssl_cert_dir


def run_cli(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> CliRun:
    """``gitsafe ARGS`` run in ``cwd`` through the entry point, in a child process (with
    ``NO_COLOR`` and ``env`` added to the environment), and what it reported at its end."""
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        check=False,
    )
    loaded, collector, ca = ast.literal_eval(proc.stderr.rsplit("PROBE ", 1)[-1])
    return CliRun(proc.returncode, proc.stderr, loaded, collector, ca)


# Root less CAP_FOWNER: reads anything, but the kernel refuses it O_NOATIME on others' files.
WITHOUT_FOWNER = ["setpriv", "--bounding-set=-fowner"]
