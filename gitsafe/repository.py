"""Opening a deploy checkout and the read-only checks made before anything is touched."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

import pygit2

from gitsafe.errors import NotARepository, Refused, UsageError
from gitsafe.filters import attribute_paths
from gitsafe.index_stat import MODE_GITLINK, MODE_LINK
from gitsafe.records import record

# Leftover operation state git leaves in the git directory (relative names).  ``git reset --hard``
# clears only the merge/cherry-pick/revert files; a deploy base must converge, so gitsafe clears
# rebases, bisects and the sequencer too.
STATE_FILES = (
    "MERGE_HEAD",
    "MERGE_MSG",
    "MERGE_MODE",
    "MERGE_RR",
    "AUTO_MERGE",
    "SQUASH_MSG",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "BISECT_LOG",
    "BISECT_START",
    "BISECT_EXPECTED_REV",
    "BISECT_ANCESTORS_OK",
    "BISECT_NAMES",
    "BISECT_RUN",
    "BISECT_TERMS",
    "BISECT_FIRST_PARENT",
    "BISECT_HEAD",
)
STATE_DIRS = ("rebase-merge", "rebase-apply", "sequencer", "refs/bisect")


@record(frozen=True)
class Checkout:
    repo: pygit2.Repository
    workdir: str  # absolute, no trailing slash
    gitdir: str  # per-worktree git directory, no trailing slash
    commondir: str


def check_directory(path: str) -> None:
    """Refuse a ``-C`` that names no directory, as ``git -C`` does."""
    if not os.path.isdir(path):
        what = "not a directory" if os.path.exists(path) else "no such directory"
        raise UsageError(f"cannot change to {path!r}: {what}")


def open_checkout(path: str) -> Checkout:
    """Open the work tree containing ``path`` (like ``git -C path``)."""
    check_directory(path)
    try:
        found = pygit2.discover_repository(path)
    except pygit2.GitError as e:
        raise NotARepository(f"not a git repository: {path} ({e})") from None
    if found is None:
        raise NotARepository(f"not a git repository (or any parent): {os.path.realpath(path)}")
    try:
        # Opened from the work tree, not from the discovered git directory: with a gitfile
        # (clone --separate-git-dir, submodules) or core.worktree, only this way does libgit2
        # know where the work tree is; opened from the git directory it would take that
        # directory's parent for the work tree.
        repo = pygit2.Repository(path)
    except pygit2.GitError as e:
        message = str(e)
        if "objectformat" in message.lower() or "sha256" in message.lower():
            raise Refused(f"refusing {found}: sha256 repositories are not supported") from None
        if "not owned by current user" in message:
            top = (
                os.path.dirname(found.rstrip("/")) if found.rstrip("/").endswith(".git") else found
            )
            raise Refused(
                f"refusing {top}: it is owned by another user (git's safe.directory rule); "
                f"if you trust it: git config --global --add safe.directory {top}"
            ) from None
        raise NotARepository(f"cannot open repository {found}: {message}") from None
    if repo.is_bare or repo.workdir is None:
        raise NotARepository(f"{found.rstrip('/')} is a bare repository: there is no work tree")
    gitdir = repo.path.rstrip("/")
    common = gitdir
    commondir_file = os.path.join(gitdir, "commondir")
    if os.path.exists(commondir_file):
        with open(commondir_file) as f:
            common = os.path.normpath(os.path.join(gitdir, f.read().strip()))
    return Checkout(repo, repo.workdir.rstrip("/"), gitdir, common)


def _config_bool(config: pygit2.Config, name: str) -> bool:
    try:
        return bool(config.get_bool(name))
    except (KeyError, pygit2.GitError, ValueError):
        return False


def refusals(
    co: Checkout,
    target: Mapping[str, tuple[int, pygit2.Oid]] | None = None,
    target_commit: pygit2.Oid | None = None,
) -> list[str]:
    """Reasons libgit2 cannot reproduce git's checkout here; empty when it can."""
    config = co.repo.config
    reasons = []
    try:
        fmt = str(config["extensions.objectFormat"]).lower()
    except (KeyError, pygit2.GitError):
        fmt = "sha1"
    if fmt != "sha1":
        reasons.append(f"object format {fmt}: only sha1 repositories are supported")
    if _config_bool(config, "core.ignoreCase"):
        reasons.append("core.ignoreCase is true: git would match ignore rules case-insensitively")
    try:
        symlinks = bool(config.get_bool("core.symlinks"))
    except (KeyError, pygit2.GitError, ValueError):
        symlinks = True
    if not symlinks:
        reasons.append("core.symlinks is false: git would check symlinks out as plain files")
    if _config_bool(config, "core.sparseCheckout"):
        reasons.append("sparse checkout (core.sparseCheckout) is enabled")
    if _config_bool(config, "index.sparse"):
        reasons.append("a sparse index (index.sparse) is enabled")
    if _config_bool(config, "core.splitIndex") or glob.glob(
        os.path.join(glob.escape(co.gitdir), "sharedindex.*")
    ):
        reasons.append("the index is split (core.splitIndex / sharedindex files)")
    if target is not None and target_commit is not None:
        reasons.extend(_attribute_refusals(co, target, target_commit))
    return reasons


def _attribute_refusals(
    co: Checkout, target: Mapping[str, tuple[int, pygit2.Oid]], target_commit: pygit2.Oid
) -> list[str]:
    """Paths whose checkout needs a filter driver (git-lfs, say) or an encoding conversion."""
    sources: list[bytes] = []
    for path in attribute_files(target):
        blob = co.repo[target[path][1]]
        if isinstance(blob, pygit2.Blob):
            sources.append(blob.data)
    sources.extend(_read_attribute_files(co.repo, co.commondir))
    text = b"\n".join(sources)
    if b"filter" not in text and b"working-tree-encoding" not in text:
        return []
    from pygit2.enums import AttrCheck

    paths = [p for p, (mode, _) in target.items() if mode not in (MODE_LINK, MODE_GITLINK)]

    # Attributes as the target commit defines them, not as the (dirty) work tree does.
    flags = AttrCheck.INCLUDE_COMMIT
    filtered: list[str] = []
    encoded: list[str] = []
    for path in paths:
        value = co.repo.get_attr(path, "filter", flags=flags, commit=target_commit)
        if isinstance(value, str) and value:
            filtered.append(f"{path} (filter={value})")
        enc = co.repo.get_attr(path, "working-tree-encoding", flags=flags, commit=target_commit)
        if isinstance(enc, str) and enc:
            encoded.append(f"{path} (working-tree-encoding={enc})")
    reasons = []
    if filtered:
        reasons.append("paths need a filter driver libgit2 cannot run: " + _first(filtered))
    if encoded:
        reasons.append("paths need a working-tree-encoding conversion: " + _first(encoded))
    return reasons


def attribute_files(files: Mapping[str, tuple[int, pygit2.Oid]]) -> list[str]:
    """The regular ``.gitattributes`` files among ``files`` (git never follows a symlinked
    one)."""
    return [p for p in attribute_paths(files) if files[p][0] not in (MODE_LINK, MODE_GITLINK)]


def _first(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _read_attribute_files(
    repo: pygit2.Repository, commondir: str, system: bool = False
) -> list[bytes]:
    """The attributes files outside the work tree that exist: ``info/attributes``,
    ``core.attributesFile`` (or its XDG default) and, with ``system``, ``/etc/gitattributes``."""
    paths = [os.path.join(commondir, "info", "attributes"), _attributes_file(repo)]
    if system:
        paths.append("/etc/gitattributes")
    found = []
    for path in paths:
        if path and os.path.isfile(path):
            with open(path, "rb") as f:
                found.append(f.read())
    return found


def _attributes_file(repo: pygit2.Repository) -> str | None:
    try:
        value = str(repo.config["core.attributesFile"])
    except (KeyError, pygit2.GitError):
        xdg = os.environ.get("XDG_CONFIG_HOME") or (
            os.path.join(os.environ["HOME"], ".config") if "HOME" in os.environ else None
        )
        return os.path.join(xdg, "git", "attributes") if xdg else None
    return os.path.expanduser(value)


def excludes_file(co: Checkout) -> str | None:
    """core.excludesFile, or its XDG default, as git resolves it."""
    try:
        value = str(co.repo.config["core.excludesFile"])
    except (KeyError, pygit2.GitError):
        xdg = os.environ.get("XDG_CONFIG_HOME") or (
            os.path.join(os.environ["HOME"], ".config") if os.environ.get("HOME") else None
        )
        return os.path.join(xdg, "git", "ignore") if xdg else None
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.join(co.workdir, value)


def state_path(gitdir: str, commondir: str, name: str) -> str:
    """Where a ``leftover_state`` name lives: shared state in the common git directory."""
    shared = name.startswith("refs/") or name == "shallow"
    return os.path.join(commondir if shared else gitdir, name.rstrip("/"))


def leftover_state(co: Checkout) -> list[str]:
    """Operation state files and directories present in the git directory."""
    found = []
    for name in STATE_FILES:
        if os.path.lexists(os.path.join(co.gitdir, name)):
            found.append(name)
    for name in STATE_DIRS:
        base = co.commondir if name.startswith("refs/") else co.gitdir
        if os.path.lexists(os.path.join(base, name)):
            found.append(name + "/")
    # An empty shallow file is what a fetch killed mid-way leaves; git would take the checkout
    # for a shallow clone with no boundary.  A real shallow file is never empty.
    shallow = os.path.join(co.commondir, "shallow")
    if os.path.isfile(shallow) and not os.path.islink(shallow) and os.path.getsize(shallow) == 0:
        found.append("shallow")
    return found


def filemode(co: Checkout) -> bool:
    try:
        return bool(co.repo.config.get_bool("core.fileMode"))
    except (KeyError, pygit2.GitError, ValueError):
        return True


def stat_checks(co: Checkout) -> tuple[bool, bool]:
    """(core.trustctime, core.checkStat is not "minimal"): what of the stat data git compares
    before it calls a file changed (git's match_stat_data); both true by default."""
    config = co.repo.config
    try:
        trust_ctime = bool(config.get_bool("core.trustctime"))
    except (KeyError, pygit2.GitError, ValueError):
        trust_ctime = True
    try:
        check_stat = str(config["core.checkStat"]).lower() != "minimal"
    except (KeyError, pygit2.GitError):
        check_stat = True
    return trust_ctime, check_stat


_CONVERSION_ATTRIBUTES = (b"text", b"eol", b"crlf", b"ident", b"filter")


def conversion_configured(repo: pygit2.Repository, commondir: str) -> bool:
    """Could a conversion apply to files anywhere in the work tree, by configuration
    (``core.autocrlf``, ``core.eol``) or an attributes file outside it (``info/attributes``,
    ``core.attributesFile``, the system's ``/etc/gitattributes``)?  The ``.gitattributes``
    files in the tree are the caller's to check."""
    config = repo.config
    for name in ("core.autocrlf", "core.eol"):
        try:
            value = str(config[name]).lower()
        except (KeyError, pygit2.GitError):
            continue
        if value not in ("false", "lf", "native", ""):
            return True
    return any(
        a in text
        for text in _read_attribute_files(repo, commondir, system=True)
        for a in _CONVERSION_ATTRIBUTES
    )


def may_convert(co: Checkout, target: Mapping[str, tuple[int, pygit2.Oid]]) -> bool:
    """Could a checkout conversion (eol, ident, filters) apply to any file here?

    False lets the plan skip per-file filter look-ups in the common case of a repository with no
    ``core.autocrlf``/``core.eol`` and no attribute that converts.
    """
    if conversion_configured(co.repo, co.commondir):
        return True
    for path in attribute_files(target):
        blob = co.repo.get(target[path][1])
        if isinstance(blob, pygit2.Blob) and any(a in blob.data for a in _CONVERSION_ATTRIBUTES):
            return True
    return False


def checked_out_elsewhere(co: Checkout, branch: str) -> str | None:
    """The other work tree that has ``branch`` checked out, if any.

    git refuses to check out a branch another work tree is on: moving it under that work tree
    would leave its files silently out of date.  gitsafe refuses the same way.
    """
    wanted = f"ref: refs/heads/{branch}"
    heads = {os.path.join(co.commondir, "HEAD"): os.path.dirname(co.commondir)}
    worktrees = os.path.join(co.commondir, "worktrees")
    if os.path.isdir(worktrees):
        for name in os.listdir(worktrees):
            admin = os.path.join(worktrees, name)
            try:
                with open(os.path.join(admin, "gitdir")) as f:
                    where = os.path.dirname(f.read().strip())
            except OSError:
                where = admin
            heads[os.path.join(admin, "HEAD")] = where
    own = os.path.realpath(os.path.join(co.gitdir, "HEAD"))
    for head, where in heads.items():
        if os.path.realpath(head) == own:
            continue
        try:
            with open(head) as f:
                if f.read().strip() == wanted:
                    return where
        except OSError:
            continue
    return None
