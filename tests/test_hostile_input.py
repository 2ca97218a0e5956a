"""Hostile and broken input: one clear line, the documented exit code, the checkout left as it was.

Each test feeds ``gitsafe pull`` (the CLI, as a deploy hook runs it) one kind of bad input and
checks the contract of docs/operations.md ("What it refuses"):

* the exit code is the documented one (2 usage/refused/not a work tree, 1 a rerun can converge);
* stderr (``-q``) is exactly one line naming the problem, and the ``--json`` report agrees;
* the checkout is unchanged: every work-tree entry (content, exec bit, symlink target), HEAD, the
  index bytes and the local/backup refs.  Every checkout is made dirty *and* behind its origin
  first, so a pull that wrongly went ahead would change something and the test would fail.

The last group checks "never outside the work tree": SafeTree against symlink swaps and ``..``,
end-to-end symlinks to outside, hostile tree entries from the remote and ``-C`` with ``..``.

Tests needing root (mounts, chown, running as ``nobody``) skip with a reason when they cannot.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest
from gitfixtures import (
    WITHOUT_FOWNER,
    Origin,
    copy_checkout,
    diff_snapshots,
    git,
    git_sequence,
    heal_and_compare,
    snapshot,
    write,
)

import gitsafe
from gitsafe import backup
from gitsafe.safetree import SafeTree

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mount, chown, setuid)")

DIRTY_CONFIG = "DEBUG = True  # hotfix made on the server\n"
UPSTREAM_README = "hello, upstream moved on\n"


# --------------------------------------------------------------------------------------------
# helpers


def _gitsafe_cmd(user: str | None) -> list[str]:
    return [sys.executable, "-m", "gitsafe"] if user is None else _nobody_python()


@functools.lru_cache(maxsize=1)
def _nobody_python() -> list[str]:
    """A command line that runs gitsafe as ``nobody``.

    The venv interpreter when ``nobody`` may execute it; otherwise (a pyenv interpreter under a
    0700 /root, say) a system interpreter of the same version with the venv's site-packages, which
    holds the editable gitsafe and the compiled pygit2 for this version.
    """
    src_dir = os.path.dirname(gitsafe.__file__)  # the gitsafe under test, wherever it is
    probe = "import gitsafe, pygit2, typer, rich; print(gitsafe.__file__)"
    site_dir = sysconfig.get_paths()["purelib"]
    boot = f"import site; site.addsitedir({site_dir!r}); "
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates: list[tuple[list[str], list[str]]] = [
        ([sys.executable, "-c", probe], [sys.executable, "-m", "gitsafe"])
    ]
    for exe in (f"/usr/bin/python{version}", shutil.which(f"python{version}")):
        if exe and os.path.exists(exe):
            candidates.append(
                (
                    [exe, "-c", boot + probe],
                    [exe, "-c", boot + "from gitsafe.cli import main; main()"],
                )
            )
    for probe_cmd, cmd in candidates:
        try:
            proc = subprocess.run(
                probe_cmd, user="nobody", capture_output=True, text=True, cwd="/", timeout=60
            )
        except OSError:
            continue
        if proc.returncode == 0 and proc.stdout.strip().startswith(src_dir):
            return cmd
    pytest.skip("no Python interpreter that user nobody can run with this gitsafe and pygit2")


def cli(
    *args: str,
    cwd: Path | str = "/",
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the gitsafe CLI; ``.stdout``/``.stderr`` decoded leniently, ``.raw_stdout`` bytes."""
    extra: dict[str, Any] = {}
    if user is not None:
        extra = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    raw = subprocess.run(
        [*_gitsafe_cmd(user), *args],
        cwd=cwd,
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
        **extra,
    )
    proc = subprocess.CompletedProcess(
        raw.args,
        raw.returncode,
        raw.stdout.decode("utf-8", "replace"),
        raw.stderr.decode("utf-8", "replace"),
    )
    proc.raw_stdout = raw.stdout  # type: ignore[attr-defined]
    return proc


def pull_cli(
    checkout: Path | str, *args: str, **kw: Any
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """``gitsafe pull -q --json -C CHECKOUT ARGS``; the parsed stdout report, if any."""
    proc = cli("pull", "-q", "--json", "-C", str(checkout), *args, **kw)
    data = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc, data


def assert_one_line_failure(
    proc: subprocess.CompletedProcess[str],
    data: dict[str, Any] | None,
    exit_code: int,
    *words: str,
) -> str:
    """The documented exit code, one stderr line naming the problem, a report that agrees."""
    where = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, where
    assert proc.returncode == exit_code, where
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1, f"expected ONE line on stderr:\n{where}"
    line = lines[0]
    assert line.startswith("gitsafe pull: "), where
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in the message:\n{where}"
    if data is not None:
        assert data["exit_code"] == exit_code, where
        assert data["outcome"] in ("failed", "refused"), where
        message = data["error"]["message"]
        assert "\n" not in message, where
        assert message in line, where
    return line


def checkout_state(root: Path) -> dict[str, Any]:
    """Everything a refused pull must leave alone (refs/remotes may move: a fetch is harmless)."""

    def g(*args: str) -> str:
        return git(root, "-c", "safe.directory=*", *args, check=False)

    index = root / ".git" / "index"
    return {
        "worktree": snapshot(root),
        "HEAD": (root / ".git" / "HEAD").read_bytes(),
        "head": g("rev-parse", "-q", "--verify", "HEAD"),
        "index": index.read_bytes() if index.exists() else None,
        "refs": g(
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
            "refs/gitsafe",
        ),
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    problems = diff_snapshots(before["worktree"], after["worktree"])
    problems = [p.replace("gitsafe=", "before=").replace(" git=", " after=") for p in problems]
    for key in ("HEAD", "head", "index", "refs"):
        if before[key] != after[key]:
            problems.append(f"{key} changed: {before[key]!r} -> {after[key]!r}")
    assert problems == [], "the checkout changed:\n" + "\n".join(problems)


def make_dirty(origin: Origin, deploy: Path) -> None:
    """Upstream moves on; the deploy base has a modified tracked file and an untracked file."""
    write(origin.work, "README.md", UPSTREAM_README)
    origin.push("upstream moves on")
    write(deploy, "src/config.py", DIRTY_CONFIG)
    write(deploy, "notes.txt", "scratch notes\n")


def assert_converged(deploy: Path, origin: Origin) -> None:
    g = functools.partial(git, deploy, "-c", "safe.directory=*")
    assert g("status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert g("rev-parse", "HEAD") == git(origin.bare, "rev-parse", "main")
    assert g("symbolic-ref", "HEAD").strip() == "refs/heads/main"


@contextlib.contextmanager
def tmpfs(options: str) -> Iterator[Path]:
    """A fresh tmpfs mount, unmounted however the test ends; skips when mounting is impossible."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = Path(tempfile.mkdtemp(prefix="gitsafe-tmpfs-", dir="/tmp"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


# --------------------------------------------------------------------------------------------
# refused or failed inputs: one line, the documented exit code, nothing changed


@pytest.mark.parametrize("kind", ["plain-directory", "missing-directory", "a-file"])
def test_not_a_repository_is_refused_and_nothing_touched(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "srv" / "app"
    if kind == "plain-directory":
        write(target, "index.html", "<h1>not a repo</h1>\n")
        write(target, "static/app.js", "x\n")
        assert git(target, "rev-parse", "--git-dir", check=False) == ""  # really not in a repo
    elif kind == "a-file":
        write(target.parent, target.name, "a file\n")
    before = snapshot(tmp_path)
    proc, data = pull_cli(target, cwd=tmp_path)
    words = {
        "plain-directory": ("not a git repository",),
        "missing-directory": ("no such directory",),
        "a-file": ("not a directory",),
    }[kind]
    assert_one_line_failure(proc, data, 2, *words, str(target))
    assert data is not None and data["error"]["kind"] in ("not-a-work-tree", "usage")
    assert snapshot(tmp_path) == before


def test_bare_repository_is_refused_and_nothing_touched(origin: Origin, tmp_path: Path) -> None:
    before = snapshot(origin.bare, skip_git=False)
    proc, data = pull_cli(origin.bare, "origin", "main", cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, "bare repository", "no work tree")
    assert snapshot(origin.bare, skip_git=False) == before


def test_unborn_branch_is_refused_and_nothing_touched(origin: Origin, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    git(tmp_path, "init", "-q", "-b", "main", str(fresh))
    git(fresh, "remote", "add", "origin", str(origin.bare))
    write(fresh, "app.py", "print('made on the server')\n")
    write(fresh, "uploads/photo.jpg", b"\xff\xd8\xff")
    before = checkout_state(fresh)
    proc, data = pull_cli(fresh, cwd=tmp_path)  # as a hook runs it: no REMOTE/BRANCH given
    assert_one_line_failure(proc, data, 2, "HEAD is unborn")
    assert_unchanged(before, checkout_state(fresh))
    assert not (fresh / ".git" / "refs" / "heads" / "main").exists()


def test_unknown_remote_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    make_dirty(origin, deploy)
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, "upstraem", "main", cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, "unknown remote", "upstraem", "remote.upstraem.url")
    assert_unchanged(before, checkout_state(deploy))


def test_unknown_branch_on_the_remote_fails_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    make_dirty(origin, deploy)
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, "origin", "releases/2026", cwd=tmp_path)
    assert_one_line_failure(proc, data, 1, "releases/2026", "not found")
    assert data is not None and data["error"]["kind"] == "fetch"
    assert_unchanged(before, checkout_state(deploy))


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://user:s3cret@127.0.0.1:1/x.git", "s3cret"),
        ("https://TOKEN123@127.0.0.1:1/x.git", "TOKEN123"),
        ("https://127.0.0.1:1/x.git?private_token=QTOKEN456", "QTOKEN456"),
    ],
    ids=["password", "token", "query-token"],
)
def test_remote_url_with_credentials_is_redacted_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path, url: str, secret: str
) -> None:
    make_dirty(origin, deploy)
    git(deploy, "remote", "set-url", "origin", url)
    before = checkout_state(deploy)
    report = tmp_path / "report.json"
    proc, data = pull_cli(deploy, "--report", str(report), cwd=tmp_path)
    assert_one_line_failure(proc, data, 1, "fetch", "127.0.0.1", "***")
    assert data is not None and "***" in data["remote"]["url"]
    doctor = cli("doctor", "--fetch", "--json", "-C", str(deploy), cwd=tmp_path)
    assert doctor.returncode == 2, doctor.stderr
    outputs = {
        "--json stdout": proc.stdout,
        "stderr": proc.stderr,
        "report file": report.read_text(),
        "doctor --json": doctor.stdout,
        "doctor stderr": doctor.stderr,
    }
    for dirpath, _dirs, files in os.walk(deploy / ".git" / "gitsafe"):
        for name in files:
            path = Path(dirpath, name)
            outputs[str(path)] = path.read_bytes().decode(errors="replace")
    leaks = [where for where, text in outputs.items() if secret in text]
    assert leaks == [], f"{secret} leaked into: {leaks}"
    assert_unchanged(before, checkout_state(deploy))


@pytest.mark.parametrize("source", ["flag", "env"])
def test_report_path_in_missing_directory_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path, source: str
) -> None:
    make_dirty(origin, deploy)
    missing = tmp_path / "var" / "log" / "deploy"
    path = missing / "gitsafe.json"
    before = checkout_state(deploy)
    if source == "flag":
        proc, data = pull_cli(deploy, "--report", str(path), cwd=tmp_path)
    else:
        proc, data = pull_cli(deploy, cwd=tmp_path, env={"GITSAFE_REPORT": str(path)})
    assert_one_line_failure(proc, data, 2, str(path), "does not exist")
    assert not (tmp_path / "var").exists(), "the missing directory was created"
    assert_unchanged(before, checkout_state(deploy))


@needs_root
def test_report_path_in_unwritable_directory_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    make_dirty(origin, deploy)
    before = checkout_state(deploy)
    with tmpfs("ro,size=64k,mode=0777") as readonly:
        path = readonly / "gitsafe.json"
        proc, data = pull_cli(deploy, "--report", str(path), cwd=tmp_path)
        assert_one_line_failure(proc, data, 2, str(path), "not writable")
        assert os.listdir(readonly) == []
    assert_unchanged(before, checkout_state(deploy))


@pytest.mark.parametrize("target", ["existing-file", "dangling"])
def test_report_path_through_a_symlink_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path, target: str
) -> None:
    make_dirty(origin, deploy)
    outside = tmp_path / "outside"
    victim = outside / "passwd"
    if target == "existing-file":
        write(outside, "passwd", "root:x:0:0::/root:/bin/sh\n")
    else:
        outside.mkdir()
    link = tmp_path / "gitsafe.json"
    link.symlink_to(victim)
    outside_before = snapshot(outside)
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, "--report", str(link), cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, str(link), "symlink")
    assert os.readlink(link) == str(victim)
    assert snapshot(outside) == outside_before
    assert_unchanged(before, checkout_state(deploy))


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_report_path_that_is_not_a_regular_file_is_refused_and_left_alone(
    origin: Origin, deploy: Path, tmp_path: Path, kind: str
) -> None:
    """The report replaces its file by a rename: ``--report /dev/null`` once replaced the
    device with a plain file."""
    make_dirty(origin, deploy)
    path = tmp_path / "r.json"
    with contextlib.ExitStack() as stack:
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            sock = stack.enter_context(socket.socket(socket.AF_UNIX))
            sock.bind(str(path))
        else:
            if os.geteuid() != 0:
                pytest.skip("mknod needs root")
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # as /dev/null
        mode = os.lstat(path).st_mode
        before = checkout_state(deploy)
        proc, data = pull_cli(deploy, "--report", str(path), cwd=tmp_path)
        assert_one_line_failure(proc, data, 2, str(path), "not a regular file")
        assert os.lstat(path).st_mode == mode
        assert_unchanged(before, checkout_state(deploy))
        proc = cli("doctor", "-q", "-C", str(deploy), "--report", str(path), cwd=tmp_path)
        assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr
        assert os.lstat(path).st_mode == mode
        assert_unchanged(before, checkout_state(deploy))


def _garbage(data: bytes) -> bytes:
    return os.urandom(512)


def _bad_checksum(data: bytes) -> bytes:
    body = bytearray(data)
    body[40:60] = b"\xff" * 20  # inside the first entry, after the valid DIRC header
    return bytes(body)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize("damage", [_garbage, _bad_checksum, _truncated], ids=lambda f: f.__name__)
def test_corrupt_index_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    make_dirty(origin, deploy)
    index = deploy / ".git" / "index"
    index.write_bytes(damage(index.read_bytes()))
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, "index is unreadable", "git reset")
    assert_unchanged(before, checkout_state(deploy))


@pytest.mark.parametrize(
    "missing",
    [
        "blob",
        "tree",
    ],
)
def test_missing_object_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path, missing: str
) -> None:
    make_dirty(origin, deploy)
    # A fresh clone packs its objects: commit locally to get loose ones, then delete one.
    write(deploy, "hotfix.py", "PATCH = 'only copy of this hotfix'\n")
    git(deploy, "add", "hotfix.py")
    git(deploy, "commit", "-q", "-m", "hotfix made on the server")
    spec = "HEAD:hotfix.py" if missing == "blob" else "HEAD^{tree}"
    oid = git(deploy, "rev-parse", spec).strip()
    loose = deploy / ".git" / "objects" / oid[:2] / oid[2:]
    assert loose.is_file()
    loose.unlink()
    assert git(deploy, "cat-file", "-e", oid, check=False) == ""
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, "git fsck")
    assert_unchanged(before, checkout_state(deploy))


def _saved_contents(deploy: Path, rescue: Path) -> dict[str, set[bytes]]:
    """Every file content held by any gitsafe backup of ``deploy``, by path (what
    ``gitsafe restore ID --into DIR`` gives back, done in-process to save interpreter starts)."""
    repo = pygit2.Repository(str(deploy))
    found: dict[str, set[bytes]] = {}
    for n, listed in enumerate(backup.list_backups(repo)):
        into = rescue / f"{n}"
        backup.restore(repo, repo.path.rstrip("/"), listed, str(into), False)
        for dirpath, _dirs, files in os.walk(into):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), into)
                found.setdefault(rel, set()).add(Path(dirpath, name).read_bytes())
    return found


@needs_root
def test_disk_full_mid_pull_fails_with_nothing_lost_and_a_rerun_converges(
    origin: Origin, tmp_path: Path
) -> None:
    dirt = {"src/config.py": DIRTY_CONFIG.encode(), "notes.txt": b"scratch notes\n"}
    with tmpfs("size=1m,mode=0755") as small:
        deploy = origin.clone(small / "deploy")
        for rel, content in dirt.items():
            write(deploy, rel, content)
        # Zeros compress to almost nothing in the fetched pack but fill the work tree.
        big = 4 * 1024 * 1024
        write(origin.work, "assets/big.bin", b"\0" * big)
        write(origin.work, "README.md", UPSTREAM_README)
        origin.push("a large asset")
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        assert free < big, f"the tmpfs has {free} bytes free: the file would fit"

        proc, data = pull_cli(deploy, cwd=tmp_path)
        assert_one_line_failure(proc, data, 1, "space")
        assert data is not None
        # Nothing lost: each piece of dirt is still in the work tree or in the backup.
        rescued = _saved_contents(deploy, tmp_path / "rescue-after-failure")
        for rel, content in dirt.items():
            path = deploy / rel
            in_tree = path.is_file() and path.read_bytes() == content
            assert in_tree or content in rescued.get(rel, set()), f"{rel} lost after ENOSPC"

        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        again, data = pull_cli(deploy, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert_converged(deploy, origin)
        assert (deploy / "assets/big.bin").read_bytes() == b"\0" * big
        rescued = _saved_contents(deploy, tmp_path / "rescue-after-rerun")
        for rel, content in dirt.items():
            assert content in rescued.get(rel, set()), f"{rel} is in no backup after the rerun"


@needs_root
def test_file_the_process_may_not_delete_fails_naming_it_and_nothing_touched() -> None:
    base = Path(tempfile.mkdtemp(prefix="gitsafe-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        origin = Origin(base, {"README.md": "hello\n", "src/config.py": "DEBUG = False\n"})
        deploy = origin.clone(base / "deploy")
        make_dirty(origin, deploy)
        home = base / "home"
        write(
            home,
            ".gitconfig",
            "[user]\n\tname = nobody\n\temail = nobody@gitsafe.invalid\n"
            f"[safe]\n\tdirectory = {origin.bare}\n",
        )
        for dirpath, _dirs, files in os.walk(origin.bare):  # readable by nobody for the fetch
            os.chmod(dirpath, 0o755)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        chown_tree(deploy, "nobody")
        chown_tree(home, "nobody")
        # Created by root after the chown: nobody cannot delete cache/build.tmp.
        write(deploy, "cache/build.tmp", "made by root\n")
        (deploy / "cache").chmod(0o755)
        before = checkout_state(deploy)
        proc, data = pull_cli(
            deploy, cwd=base, user="nobody", env={"HOME": str(home), "USER": "nobody"}
        )
        line = assert_one_line_failure(proc, data, 1, "permission denied", "cache/")
        assert "nothing was changed" in line
        assert_unchanged(before, checkout_state(deploy))
    finally:
        shutil.rmtree(base, ignore_errors=True)


needs_setpriv = pytest.mark.skipif(
    not IS_ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv (util-linux)"
)


@needs_setpriv
def test_directories_of_another_owner_are_read_all_the_same(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    """Directories are opened with O_NOATIME, which the kernel refuses (EPERM) to a reader who
    neither owns them nor has CAP_FOWNER (here root without it, which still reads anything):
    the listing must then be made without it."""
    make_dirty(origin, deploy)
    # Owned by another user: a tracked directory (read by the threaded scan) and an untracked
    # one (read by the walk of untracked files).
    write(deploy, "src/extra.tmp", "made by root\n")
    write(deploy, "cache/build.tmp", "made by root\n")
    for d in ("src", "cache"):
        os.chown(deploy / d, pwd.getpwnam("nobody").pw_uid, -1)
    proc = subprocess.run(
        [*WITHOUT_FOWNER, sys.executable, "-m", "gitsafe", "doctor", "--json", "-C", str(deploy)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    removed = {item["path"] for item in json.loads(proc.stdout)["plan"]["remove"]}
    assert {"cache/", "src/extra.tmp"} <= removed, removed


def _cli_heal_and_compare(deploy: Path, work: Path) -> dict[str, Any]:
    """Heal ``deploy`` with the CLI and a copy with the git sequence; both reports must parse."""
    with_git = copy_checkout(deploy, work / "with-git")
    report = work / "report.json"
    proc = cli("pull", "origin", "main", "-C", str(deploy), "--json", "--report", str(report))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.raw_stdout.decode("utf-8"))  # type: ignore[attr-defined]  # strict
    assert json.loads(report.read_bytes().decode("utf-8")) == data
    git_sequence(with_git, "origin", "main")
    differences = diff_snapshots(snapshot(deploy), snapshot(with_git))
    assert differences == [], "\n".join(differences)
    return data


def test_non_utf8_untracked_names_heal_and_report_is_valid_json(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    make_dirty(origin, deploy)
    write(deploy, "junk-\udcff.txt", b"untracked\n")
    write(deploy, "upload-\udcfe/photo-\udce9.jpg", b"\xff\xd8")
    write(deploy, "trace-\udcff.log", b"ignored: kept\n")
    data = _cli_heal_and_compare(deploy, tmp_path)
    removed = {item["path"] for item in data["plan"]["remove"]}
    assert {"junk-\udcff.txt", "upload-\udcfe/"} <= removed, removed
    assert (deploy / "trace-\udcff.log").exists()


def test_non_utf8_tracked_names_heal_and_report_is_valid_json(
    origin: Origin, tmp_path: Path
) -> None:
    write(origin.work, "caf\udce9.txt", "tracked\n")
    write(origin.work, "d\udcff/f\udcfe.txt", "nested\n")
    origin.push("non-UTF-8 names")
    deploy = origin.clone(tmp_path / "deploy")
    write(origin.work, "README.md", UPSTREAM_README)
    origin.push("upstream moves on")
    write(deploy, "caf\udce9.txt", "modified on the server\n")
    os.unlink(deploy / "d\udcff/f\udcfe.txt")
    write(deploy, "junk-\udcff.txt", b"untracked\n")
    data = _cli_heal_and_compare(deploy, tmp_path / "work")
    restored = {item["path"] for item in data["plan"]["restore"]}
    assert {"caf\udce9.txt", "d\udcff/f\udcfe.txt"} <= restored, restored


@needs_root
def test_work_tree_owned_by_another_user_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    make_dirty(origin, deploy)
    chown_tree(deploy, "nobody")
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, cwd=tmp_path)
    line = assert_one_line_failure(proc, data, 2, "safe.directory", str(deploy))
    assert f"git config --global --add safe.directory {deploy}" in line
    assert_unchanged(before, checkout_state(deploy))


@pytest.mark.parametrize("pattern", ["!notes.txt", "#notes.txt"])
def test_keep_pattern_with_leading_bang_or_hash_is_refused_and_nothing_touched(
    origin: Origin, deploy: Path, tmp_path: Path, pattern: str
) -> None:
    make_dirty(origin, deploy)
    before = checkout_state(deploy)
    first = pattern[0]
    words = (pattern, f"leading '{first}'", f"'\\{first}'")
    # Each layer a keep-pattern can come from: flag, environment, git config.
    proc, data = pull_cli(deploy, "-e", "keep.me", "-e", pattern, cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, *words)
    proc, data = pull_cli(deploy, cwd=tmp_path, env={"GITSAFE_EXCLUDE": f"keep.me:{pattern}"})
    assert_one_line_failure(proc, data, 2, *words)
    assert_unchanged(before, checkout_state(deploy))
    git(deploy, "config", "--add", "gitsafe.exclude", pattern)
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, *words)
    assert_unchanged(before, checkout_state(deploy))


# --------------------------------------------------------------------------------------------
# never outside the work tree


OPS = ["remove", "unlink", "write_file", "mkdir", "symlink"]


def _run_op(tree: SafeTree, op: str, rel: str) -> object:
    if op == "remove":
        return tree.remove(rel)
    if op == "unlink":
        return tree.unlink(rel)
    if op == "write_file":
        return tree.write_file(rel, b"written by gitsafe\n", 0o666)
    if op == "mkdir":
        return tree.mkdir(rel)
    return tree.symlink(b"target-of-new-link", rel)


def _inside_entries(root: Path) -> set[str]:
    return set(snapshot(root, skip_git=False))


def _swap_setup(tmp_path: Path, depth: str) -> tuple[Path, Path, str]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    lead = "a" if depth == "a" else "a/b"
    for base in (root / lead, outside):
        write(base, "victim", "must survive\n")
        write(base, "keep/inner", "must survive\n")
    write(root, "top.txt", "top\n")
    return root, outside, lead


@pytest.mark.parametrize("cached", [False, True], ids=["fresh-tree", "after-earlier-op"])
@pytest.mark.parametrize("depth", ["a", "a/b"])
@pytest.mark.parametrize("op", OPS)
def test_safetree_leading_directory_swapped_for_symlink_never_reaches_outside(
    tmp_path: Path, op: str, depth: str, cached: bool
) -> None:
    root, outside, lead = _swap_setup(tmp_path, depth)
    outside_before = snapshot(outside)
    tree = SafeTree(str(root))
    try:
        if cached:  # the tree has already walked through the directory about to be swapped
            assert tree.lstat(f"{lead}/victim") is not None
        # The swap: the leading directory "a" goes (moved aside, inside the tree) and a
        # symlink to the outside directory takes its place.
        os.rename(root / "a", root / "a.moved")
        if depth == "a":
            (root / "a").symlink_to(outside)
        else:
            (root / "a").mkdir()
            (root / "a" / "b").symlink_to(outside)
        rel = f"{lead}/victim" if op in ("remove", "unlink") else f"{lead}/new"
        try:
            result = _run_op(tree, op, rel)
        except OSError as e:  # NotInTree is an OSError
            raised: OSError | None = e
        else:
            raised = None
    finally:
        tree.close()
    assert snapshot(outside) == outside_before, f"{op} {rel} reached the outside directory"
    if op in ("remove", "unlink"):
        # Refused, nothing there, or (tree opened "a" before the swap) the victim in the
        # directory that was moved aside inside the tree: never the outside one.
        moved_victim = root / "a.moved" / lead.partition("/")[2] / "victim"
        assert raised is not None or result is False or not moved_victim.exists()
    elif raised is None:
        # Created without error: it must be inside, with the symlink replaced (as git's
        # checkout does) or in the directory the tree had already opened.
        made = [k for k in _inside_entries(root) if k.endswith("/new")]
        assert made, f"{op} {rel} reported success but created nothing inside the tree"
    else:
        assert isinstance(raised, OSError)


@pytest.mark.parametrize("lead", ["..", "a/../.."])
@pytest.mark.parametrize("op", OPS)
def test_safetree_dotdot_components_never_leave_the_tree(
    tmp_path: Path, op: str, lead: str
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root, "a/file", "inside\n")
    write(outside, "victim", "must survive\n")
    outside_before = snapshot(outside)
    rel = f"{lead}/outside/" + ("victim" if op in ("remove", "unlink") else "new")
    with SafeTree(str(root)) as tree, contextlib.suppress(OSError, ValueError):
        _run_op(tree, op, rel)
    assert snapshot(outside) == outside_before, f"{op} {rel!r} acted outside the tree"


@pytest.mark.parametrize("op", OPS)
def test_safetree_leading_directory_moved_out_between_operations_never_reaches_outside(
    tmp_path: Path, op: str
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root, "a/victim", "must survive\n")
    outside.mkdir()
    tree = SafeTree(str(root))
    try:
        assert tree.lstat("a/victim") is not None  # "a" is now open and cached
        os.rename(root / "a", outside / "a")  # a racing process moves it out of the tree
        (root / "a").symlink_to(outside / "a")
        outside_before = snapshot(outside)
        rel = "a/victim" if op in ("remove", "unlink") else "a/new"
        with contextlib.suppress(OSError):
            _run_op(tree, op, rel)
    finally:
        tree.close()
    assert snapshot(outside) == outside_before, f"{op} {rel} acted outside the tree"


def test_symlinks_to_outside_and_a_tracked_dir_replaced_by_a_symlink_never_reach_outside(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    write(outside, "canary.txt", "canary\n")
    write(outside, "config.py", "outside config, not ours\n")
    write(outside, "data/important.db", b"\x00precious")
    make_dirty(origin, deploy)
    write(origin.work, "src/config.py", "DEBUG = False\nLEVEL = 2\n")
    write(origin.work, "src/new/module.py", "NEW = 1\n")
    origin.push("upstream changes src/")
    # Untracked symlinks to outside directories and files, absolute and relative.
    (deploy / "link-dir").symlink_to(outside)
    (deploy / "link-rel").symlink_to(Path("..") / "outside" / "data")
    (deploy / "link-file").symlink_to(outside / "canary.txt")
    write(deploy, "tmp/inner", "x\n")
    (deploy / "tmp" / "up").symlink_to(Path("..") / ".." / "outside")
    # A tracked directory and a tracked file replaced by symlinks to outside.
    shutil.rmtree(deploy / "src")
    (deploy / "src").symlink_to(outside)
    os.unlink(deploy / "README.md")
    (deploy / "README.md").symlink_to(outside / "canary.txt")
    outside_before = snapshot(outside)
    with_git = copy_checkout(deploy, tmp_path / "with-git")

    proc, _ = pull_cli(deploy, "origin", "main", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(outside) == outside_before, "gitsafe changed the outside directory"
    assert_converged(deploy, origin)
    assert not (deploy / "src").is_symlink() and (deploy / "src/config.py").is_file()
    assert (deploy / "README.md").read_text() == UPSTREAM_README
    git_sequence(with_git, "origin", "main")
    differences = diff_snapshots(snapshot(deploy), snapshot(with_git))
    assert differences == [], "\n".join(differences)


def _hostile_commit(origin: Origin, name: str) -> None:
    """Push a commit whose root tree holds an entry ``name`` (``..`` or ``.git``) with a file
    inside: git mktree writes it, receive-pack accepts it (no fsck by default)."""
    w = origin.work
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], cwd=w, input=b"pwned\n", capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    sub = (
        subprocess.run(
            ["git", "mktree"],
            cwd=w,
            input=f"100644 blob {blob}\tpwned.txt\n".encode(),
            capture_output=True,
        )
        .stdout.decode()
        .strip()
    )
    entries = git(w, "ls-tree", "HEAD") + f"040000 tree {sub}\t{name}\n"
    root = (
        subprocess.run(
            ["git", "mktree"], cwd=w, input=entries.encode(), capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    commit = git(w, "commit-tree", root, "-p", "HEAD", "-m", f"hostile {name}").strip()
    git(w, "push", "-q", "origin", f"{commit}:refs/heads/main")


@pytest.mark.parametrize("name", ["..", ".git", ".GIT"])
def test_hostile_tree_entry_from_the_remote_is_refused_and_nothing_written_outside(
    origin: Origin, deploy: Path, tmp_path: Path, name: str
) -> None:
    write(deploy, "src/config.py", DIRTY_CONFIG)
    _hostile_commit(origin, name)
    before = checkout_state(deploy)
    everything_before = snapshot(tmp_path, skip_git=False)
    proc, data = pull_cli(deploy, cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, f"{name}/pwned.txt", "unsafe path")
    assert_unchanged(before, checkout_state(deploy))
    created = [
        k
        for k in set(snapshot(tmp_path, skip_git=False)) - set(everything_before)
        if k.endswith("pwned.txt")
    ]
    assert created == [], created


@pytest.mark.parametrize(
    "name",
    [".gitmodules", ".GitModules", "gitmod~1", ".gitmodules .", "gi7eba~1", "sub/.gitmodules"],
)
def test_a_symlinked_gitmodules_from_the_remote_is_refused_as_git_refuses_it(
    origin: Origin, deploy: Path, tmp_path: Path, name: str
) -> None:
    """git's verify_path refuses a symlink named .gitmodules (and its NTFS spellings, which
    core.protectNTFS checks everywhere by default); libgit2 would check it out."""
    write(deploy, "src/config.py", DIRTY_CONFIG)
    w = origin.work

    def run(*args: str, stdin: str = "") -> str:  # git add refuses such a path: mktree does not
        out = subprocess.run(args, cwd=w, input=stdin.encode(), capture_output=True, check=True)
        return out.stdout.decode().strip()

    link = run("git", "hash-object", "-w", "--stdin", stdin="../../../../etc/passwd")
    parent, _, base = name.rpartition("/")
    tree = run("git", "mktree", stdin=f"120000 blob {link}\t{base}\n")
    if parent:
        tree = run("git", "mktree", stdin=f"040000 tree {tree}\t{parent}\n")
    listing = git(w, "ls-tree", "HEAD")
    for line in run("git", "ls-tree", tree).splitlines():
        listing += line + "\n"
    root = run("git", "mktree", stdin=listing)
    commit = run("git", "commit-tree", root, "-p", "HEAD", "-m", f"symlinked {name}")
    git(w, "push", "-q", "origin", f"{commit}:refs/heads/main")
    oracle = tmp_path / "oracle"
    subprocess.run(["cp", "-a", str(deploy), str(oracle)], check=True)
    git(oracle, "fetch", "-q", "origin")
    assert (
        "invalid path"
        in subprocess.run(
            ["git", "reset", "--hard", "origin/main"], cwd=oracle, capture_output=True, text=True
        ).stderr
    )  # git refuses it too
    before = checkout_state(deploy)
    proc, data = pull_cli(deploy, cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, "unsafe path", "symlinked .gitmodules")
    assert_unchanged(before, checkout_state(deploy))


def test_a_symlinked_gitmodules_only_in_head_does_not_block_the_heal(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    """git checks only the paths it checks out: a HEAD holding such a link (an older tool put
    it there) heals once upstream has removed it."""
    w = origin.work
    clean = git(w, "rev-parse", "HEAD").strip()

    def run(*args: str, stdin: str = "") -> str:
        out = subprocess.run(args, cwd=w, input=stdin.encode(), capture_output=True, check=True)
        return out.stdout.decode().strip()

    link = run("git", "hash-object", "-w", "--stdin", stdin="../../../../etc/passwd")
    listing = git(w, "ls-tree", "HEAD") + f"120000 blob {link}\t.gitmodules\n"
    bad = run("git", "commit-tree", run("git", "mktree", stdin=listing), "-p", clean, "-m", "bad")
    git(w, "push", "-q", "origin", f"{bad}:refs/heads/main")
    git(deploy, "fetch", "-q", "origin")
    git(deploy, "reset", "-q", "--soft", "origin/main")  # HEAD holds the link, the tree not
    fixed = run("git", "commit-tree", f"{clean}^{{tree}}", "-p", bad, "-m", "drop the link")
    git(w, "push", "-q", "origin", f"{fixed}:refs/heads/main")
    write(deploy, "scratch.txt")
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert not (healed / ".gitmodules").exists()


@pytest.mark.parametrize("how", ["absolute", "relative", "from-outside"])
def test_dash_c_with_dotdot_components_works_and_never_escapes(
    origin: Origin, deploy: Path, tmp_path: Path, how: str
) -> None:
    outside = tmp_path / "outside"
    write(outside, "canary.txt", "canary\n")
    write(outside, "sub/junk.txt", "untracked-looking junk outside the work tree\n")
    make_dirty(origin, deploy)
    write(deploy, "src/deep/er/junk.txt", "untracked\n")
    if how == "absolute":
        cwd, where = tmp_path, f"{deploy}/src/deep/../../src/.."
    elif how == "relative":
        cwd, where = deploy / "src" / "deep" / "er", "../../.././"
    else:
        cwd, where = outside / "sub", "../../deploy/src/.."
    others_before = {
        k: v for k, v in snapshot(tmp_path, skip_git=False).items() if not k.startswith("deploy")
    }
    proc, data = pull_cli(where, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert data is not None and data["repo"] == str(deploy)
    assert_converged(deploy, origin)
    others_after = {
        k: v for k, v in snapshot(tmp_path, skip_git=False).items() if not k.startswith("deploy")
    }
    assert diff_snapshots(others_before, others_after) == []


def test_dash_c_through_a_symlink_and_dotdot_never_escapes(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    """``-C deploy/link/..`` where ``link`` points outside means the outside directory (as for
    ``git -C``, the kernel resolves ``..`` after the symlink): not a work tree, nothing touched."""
    outside = tmp_path / "outside"
    write(outside, "inner/canary.txt", "canary\n")
    make_dirty(origin, deploy)
    (deploy / "link").symlink_to(outside / "inner")
    before = checkout_state(deploy)
    outside_before = snapshot(outside)
    proc, data = pull_cli(f"{deploy}/link/..", cwd=tmp_path)
    assert_one_line_failure(proc, data, 2, "not a git repository")
    assert_unchanged(before, checkout_state(deploy))
    assert snapshot(outside) == outside_before


def test_dash_c_through_a_symlink_and_dotdot_names_the_directory_it_examined(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (deploy / "link").symlink_to(outside / "inner")
    given = f"{deploy}/link/.."
    proc, data = pull_cli(given, cwd=tmp_path)
    line = assert_one_line_failure(proc, data, 2, "not a git repository")
    assert given in line or os.path.realpath(given) in line, line


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs)")
@pytest.mark.parametrize("locked", ["directory", "file"])
def test_file_locked_with_chattr_immutable_is_refused_and_nothing_changed(
    origin: Origin, deploy: Path, locked: str
) -> None:
    write(origin.work, "new.txt")
    origin.push("upstream moves")
    write(deploy, "src/config.py", "dirty\n")
    write(deploy, "cache/build.tmp", "scratch\n")
    target = deploy / "cache" if locked == "directory" else deploy / "cache/build.tmp"
    if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
        pytest.skip("this file system does not support chattr +i")
    try:
        before = snapshot(deploy)
        report = gitsafe.pull(deploy, "origin", "main")
        assert (report.exit_code, report.outcome) == (1, "failed"), report.to_json_text()
        assert (
            "cache" in report.error["message"] and "nothing was changed" in report.error["message"]
        )
        assert snapshot(deploy) == before
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=False)


def test_a_directory_swapped_for_a_symlink_after_its_lstat_is_not_listed(tmp_path: Path) -> None:
    """The plan's listings never follow a symlink out of the work tree, and a directory that
    became one since its lstat is "not a directory" (None), not an empty one: an empty listing
    would let the plan count it among the directories the reset empties, and leave the
    symlink out of the clean."""
    from gitsafe.worktree import TreeView

    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root, "d/inside.txt", "in\n")
    write(outside, "secret.txt", "out\n")
    view = TreeView(str(root))
    assert view.is_dir("d") and view.listdir("d") == ["inside.txt"]
    shutil.rmtree(root / "d")
    (root / "d").symlink_to(outside)
    assert view.is_dir("d")  # the cached lstat still says so
    assert view.listdir("d") is None
    assert view.listdir_kinds("d") == []
