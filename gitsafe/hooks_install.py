"""``gitsafe hooks install|uninstall post-receive``: put gitsafe's push-to-deploy hook in place.

The hook is ``gitsafe/hook_templates/post-receive`` (the same text as ``hooks/post-receive``)
with its settings block filled in. It carries a marker line so that a later install recognises
it and updates it in place; any other file at the hook's path is someone else's and is never
replaced silently: it is refused, or moved aside to ``post-receive.legacy`` (``--force``) and
optionally still run first (``--chain``). Every write is atomic (temp file in the hooks
directory, fsync, ``os.replace``): git never sees a half-written or non-executable hook.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import tempfile
from importlib import resources

from gitsafe.errors import UsageError
from gitsafe.records import field, record

MARKER = "# gitsafe-managed-hook v1"
HOOK_NAMES = ("post-receive",)
_SETTINGS = re.compile(r"^# >>> settings.*?\n(.*?)^# <<< settings$", re.M | re.S)


@record(frozen=True)
class HookSettings:
    """What the installed hook embeds; empty strings leave the choice to git config."""

    command: tuple[str, ...]
    work_tree: str
    branch: str = ""
    remote: str = ""
    run_legacy: bool = False


@record
class Outcome:
    hook: str  # the hook's path
    action: str  # installed, updated, unchanged, uninstalled, restored, absent
    legacy: str | None = None  # where a foreign hook was moved to / restored from
    notes: list[str] = field(default_factory=list)


def template(name: str = "post-receive") -> str:
    return resources.files("gitsafe").joinpath("hook_templates", name).read_text()


def render(settings: HookSettings, name: str = "post-receive") -> str:
    def assign(var: str, value: str) -> str:
        return f"{var}={shlex.quote(value)}"

    block = "\n".join(
        [
            f"gitsafe_command=({' '.join(shlex.quote(part) for part in settings.command)})",
            assign("work_tree", settings.work_tree),
            assign("deploy_branch", settings.branch),
            assign("deploy_remote", settings.remote),
            f"run_legacy={1 if settings.run_legacy else 0}",
        ]
    )
    text = template(name)
    match = _SETTINGS.search(text)
    assert match is not None, "the hook template lost its settings block"
    return text[: match.start(1)] + block + "\n" + text[match.end(1) :]


def gitsafe_command() -> tuple[str, ...]:
    """How the hook calls the gitsafe that installs it, independent of PATH.

    git runs hooks with the pusher's minimal environment (sshd, a CI runner), where a virtualenv
    or pipx directory is rarely on PATH. The console script next to this interpreter is
    preferred for readability; ``python -P -m gitsafe`` (no current directory on sys.path: the
    hook runs inside the repository) works wherever this interpreter can import gitsafe.
    """
    python = os.path.abspath(sys.executable)
    script = os.path.join(os.path.dirname(python), "gitsafe")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return (script,)
    return (python, "-P", "-m", "gitsafe")


@record(frozen=True)
class Target:
    gitdir: str
    hooks_dir: str
    head_branch: str | None


def locate(path: str) -> Target:
    """The repository that receives pushes (bare or not) containing ``path``, and its hooks dir."""
    import pygit2

    from gitsafe.repository import check_directory

    check_directory(path)
    found = pygit2.discover_repository(path)
    if found is None:
        raise UsageError(f"not a git repository (or any parent): {os.path.realpath(path)}")
    repo = pygit2.Repository(found)
    gitdir = repo.path.rstrip("/")
    head = None if repo.head_is_unborn else repo.head.shorthand
    if head is None:
        with contextlib.suppress(KeyError, pygit2.GitError, ValueError):
            ref = repo.references["HEAD"].target
            if isinstance(ref, str) and ref.startswith("refs/heads/"):
                head = ref.removeprefix("refs/heads/")
    hooks_path = None
    with contextlib.suppress(KeyError, pygit2.GitError):
        hooks_path = str(repo.config["core.hooksPath"])
    if hooks_path:
        # git: relative to where hooks run - the git directory of a bare repository, else the
        # top of the work tree.
        base = gitdir if repo.is_bare or repo.workdir is None else repo.workdir
        hooks_dir = os.path.normpath(os.path.join(base, os.path.expanduser(hooks_path)))
        if not os.path.isdir(hooks_dir):
            raise UsageError(
                f"core.hooksPath is {hooks_path}, which is not a directory: git runs no hooks "
                f"from it; create it or unset core.hooksPath"
            )
    else:
        common = gitdir
        with contextlib.suppress(OSError), open(os.path.join(gitdir, "commondir")) as f:
            common = os.path.normpath(os.path.join(gitdir, f.read().strip()))
        hooks_dir = os.path.join(common, "hooks")
        os.makedirs(hooks_dir, exist_ok=True)  # git init may have been told to skip templates
    return Target(gitdir, hooks_dir, head)


def _managed(path: str) -> str | None:
    """The text of the hook at ``path`` when it is gitsafe's own (a regular file with the
    marker), else None. A symlink is never gitsafe's: install writes regular files only."""
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        head = [f.readline() for _ in range(5)]
    if not any(line.rstrip("\n") == MARKER for line in head):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def check_work_tree(work_tree: str, target: Target, remote: str) -> list[str]:
    """Refuse a work tree the hook could never pull in; return warnings for doubtful ones."""
    import pygit2

    from gitsafe.errors import GitsafeError
    from gitsafe.repository import open_checkout

    try:
        co = open_checkout(work_tree)
    except GitsafeError as e:
        raise UsageError(
            f"--work-tree {work_tree}: {e.message}; create it first with "
            f"git clone {target.gitdir} {work_tree}"
        ) from None
    if os.path.realpath(co.commondir) == os.path.realpath(target.gitdir):
        raise UsageError(
            f"--work-tree {work_tree} is this repository's own work tree: the hook goes in the "
            "repository you push to, --work-tree is a separate clone of it"
        )
    try:
        url = co.repo.remotes[remote].url or ""
    except (KeyError, pygit2.GitError):
        raise UsageError(
            f"--work-tree {work_tree} has no remote {remote!r}; the hook runs "
            f"gitsafe pull {remote} BRANCH there (choose another with --remote)"
        ) from None
    local = url.removeprefix("file://")
    if not os.path.isabs(local):
        local = os.path.join(co.workdir, local)
    if not os.path.isdir(local) or os.path.realpath(local) != os.path.realpath(target.gitdir):
        return [
            f"remote {remote} of {co.workdir} is {url}, not this repository: a push here "
            f"deploys whatever {url} has"
        ]
    return []


def _write_atomic(path: str, text: str, mode: int = 0o755) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        # os.replace swaps the directory entry: a symlink at ``path`` is replaced, not followed.
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _move_aside(hook: str, legacy: str) -> None:
    """Keep the foreign hook as ``legacy``, leaving it at ``hook`` until the new one replaces it,
    so a push at this instant still runs a hook. A hard link does both; where links are not
    allowed the rename leaves a short gap."""
    try:
        os.link(hook, legacy, follow_symlinks=False)
    except FileExistsError:
        raise UsageError(f"{legacy} already exists; move it away first") from None
    except OSError:
        if os.path.lexists(legacy):
            raise UsageError(f"{legacy} already exists; move it away first") from None
        os.rename(hook, legacy)


def install(
    repo_path: str,
    work_tree: str,
    *,
    branch: str = "",
    remote: str = "",
    force: bool = False,
    chain: bool | None = None,
    command: tuple[str, ...] | None = None,
    name: str = "post-receive",
) -> Outcome:
    """Install (or update) gitsafe's hook ``name`` in the repository containing ``repo_path``.

    ``chain``: True runs a moved-aside hook first, False stops doing so, None keeps what an
    earlier install chose. A foreign hook is moved aside only with ``force`` or ``chain``.
    """
    if name not in HOOK_NAMES:
        raise UsageError(f"unknown hook {name!r}; gitsafe provides: {', '.join(HOOK_NAMES)}")
    target = locate(repo_path)
    work_tree = os.path.abspath(work_tree)
    notes = check_work_tree(work_tree, target, remote or "origin")
    if not branch and target.head_branch is None:
        raise UsageError(f"{target.gitdir}: HEAD names no branch; give --branch")
    hook = os.path.join(target.hooks_dir, name)
    legacy = hook + ".legacy"
    existing = _managed(hook)
    moved: str | None = None
    if existing is None and os.path.lexists(hook):
        if not (force or chain):
            raise UsageError(
                f"{hook} exists and was not installed by gitsafe; --chain moves it to "
                f"{os.path.basename(legacy)} and runs it before gitsafe, --force moves it there "
                "without running it (it is never deleted)"
            )
        moved = legacy
    if chain is None:
        chain = existing is not None and re.search(r"^run_legacy=1$", existing, re.M) is not None
    if chain and not (moved or os.path.lexists(legacy)):
        notes.append(f"--chain: there is no {legacy} to run; nothing is chained")
        chain = False
    settings = HookSettings(command or gitsafe_command(), work_tree, branch, remote, chain)
    text = render(settings, name)
    if existing == text:
        return Outcome(hook, "unchanged", None, notes)
    if moved:
        _move_aside(hook, legacy)
    _write_atomic(hook, text)
    action = "updated" if existing is not None else "installed"
    return Outcome(hook, action, moved, notes)


def uninstall(repo_path: str, name: str = "post-receive") -> Outcome:
    """Remove gitsafe's hook; put a moved-aside ``.legacy`` hook back in its place."""
    if name not in HOOK_NAMES:
        raise UsageError(f"unknown hook {name!r}; gitsafe provides: {', '.join(HOOK_NAMES)}")
    target = locate(repo_path)
    hook = os.path.join(target.hooks_dir, name)
    legacy = hook + ".legacy"
    if not os.path.lexists(hook):
        return Outcome(hook, "absent")
    if _managed(hook) is None:
        raise UsageError(f"{hook} was not installed by gitsafe; left as it is")
    if os.path.lexists(legacy):
        os.replace(legacy, hook)  # one step: the old hook is back, gitsafe's is gone
        _fsync_dir(target.hooks_dir)
        return Outcome(hook, "restored", legacy)
    os.unlink(hook)
    _fsync_dir(target.hooks_dir)
    return Outcome(hook, "uninstalled")
