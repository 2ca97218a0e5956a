"""The plan: a read-only computation of everything a pull would do.

``doctor`` prints it and ``pull`` executes it, so the preview and the action cannot disagree.  It
predicts the end state of ``git reset --hard TARGET && git clean -fd -e P...`` without running
either: one pass over the tracked paths decides what the reset rewrites and deletes, then one walk
of the work tree *as the reset will leave it* decides what the clean removes and keeps, with the
ignore rules in force after the reset (the target's ``.gitignore`` files, not the current ones).
"""

from __future__ import annotations

import _thread
import itertools
import os
import stat as st
import sys
from collections.abc import Container, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pygit2
from pygit2.enums import DeltaStatus

from gitsafe import accel, ignore
from gitsafe.filters import attribute_paths, smudge
from gitsafe.index_stat import (
    MODE_EXEC,
    MODE_FILE,
    MODE_GITLINK,
    MODE_LINK,
    Entries,
    Entry,
    IndexSnapshot,
    pack_stat,
    worktree_mode,
)
from gitsafe.records import field, record
from gitsafe.worktree import TreeView, is_nested_repository

if TYPE_CHECKING:
    from gitsafe.prescan import Scanned

Spec = tuple[int, pygit2.Oid]  # a tree file: mode and blob (or commit) id
TreeFiles = Mapping[str, Spec]


@record(frozen=True)
class Item:
    path: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@record(frozen=True)
class Commit:
    sha: str
    subject: str

    def as_json(self) -> dict[str, str]:
        return {"sha": self.sha, "subject": self.subject}


@record(frozen=True)
class Lock:
    path: str
    age_seconds: float
    held_by: tuple[int, ...]
    stale: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "age_seconds": round(self.age_seconds, 3),
            "held_by": list(self.held_by),
            "stale": self.stale,
        }


@record
class WorkTreeChanges:
    """What the reset and the clean do to the work tree (paths relative to its top)."""

    restore: list[Item] = field(default_factory=list)  # dirt on tracked paths, vs HEAD
    incoming: list[Item] = field(default_factory=list)  # HEAD -> target changes
    overwrite: list[Item] = field(default_factory=list)  # untracked things the reset replaces
    remove: list[Item] = field(default_factory=list)  # what the clean removes
    keep: list[Item] = field(default_factory=list)  # untracked things the clean keeps, and why
    # Execution detail, not part of the printed plan:
    writes: list[str] = field(default_factory=list)  # target paths to (re)create
    deletes: list[str] = field(default_factory=list)  # tracked paths absent from the target
    # ... of which the file is already gone, its directory still there: git still tries to
    # remove the emptied directories above it
    vanished: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)  # non-directories in the way of writes
    clean: list[tuple[str, bool]] = field(default_factory=list)  # (path, is_dir) to remove
    # hashed and equal to the target, with the stat data (pack_stat) taken before hashing: the
    # index gets that (a change after it was hashed then shows as stale stat, not "unchanged")
    verified: dict[str, bytes] = field(default_factory=dict)
    # ... and the same for the index's own entries the C stat pass hashed, as its compact
    # records against the planned index's Table (gitsafe._native.record_pairs)
    verified_records: bytes = b""
    index_current: bool = False  # the index already equals the target, stage 0 only


def flatten_tree(tree: pygit2.Tree | None, checked_out: bool = True) -> TreeFiles:
    """Every non-tree entry of ``tree`` by path (libgit2 walks it; Python only reads).
    ``checked_out``: the tree is the target, whose paths git checks before writing them (not
    HEAD's, which it only removes)."""
    if tree is None:
        return {}
    index = pygit2.Index()
    index.read_tree(tree)
    files = {e.path: (_canonical_mode(e.mode), e.id) for e in index}
    for path, (mode, _oid) in files.items() if checked_out else ():
        _refuse_symlinked_gitmodules(path, mode)
    return files


def _refuse_symlinked_gitmodules(path: str, mode: int) -> None:
    """git's ``verify_path`` refuses a symlink named ``.gitmodules`` (in any case, and in the
    NTFS spellings ``core.protectNTFS``, on by default, covers: trailing dots and spaces,
    ``gitmod~1``, ``gi7eba~1``), which libgit2 checks out: a submodule configuration read
    through a link could point anywhere."""
    if mode != MODE_LINK:
        return
    parts = os.fsencode(path).lower().split(b"/")
    if b".gitmodules" in parts[:-1] or _ntfs_gitmodules(parts[-1]):
        raise pygit2.GitError(f"invalid path '{path}' (a symlinked .gitmodules)")


def _ntfs_gitmodules(name: bytes) -> bool:
    """git's ``is_ntfs_dotgitmodules`` on a lower-cased last component."""
    if name.startswith(b".gitmodules"):
        rest = name[len(b".gitmodules") :]
    elif name[:7] == b"gitmod~" and name[7:8] in (b"1", b"2", b"3", b"4"):
        rest = name[8:]
    else:  # the fall-back short name: up to six of "gi7eba", "~", then digits, 8 bytes in all
        head, tilde, tail = name[:8].partition(b"~")
        if not tilde or not b"gi7eba".startswith(head) or len(name) < 8:
            return False
        if not tail.isdigit() or tail.startswith(b"0"):
            return False
        rest = name[8:]
    rest = rest.split(b":", 1)[0]
    return rest.strip(b" .") == b""


class IndexFiles(Mapping[str, Spec]):
    """A tree's files as the index's stage-0 entries with the paths where the tree differs
    overlaid (None: not in the tree).

    A deploy base's trees are its index give or take a few paths; this mapping shares the
    parsed index instead of copying 50,000 entries into a dict of ``Oid`` objects, and makes an
    ``Oid`` only for a path someone reads.
    """

    def __init__(self, entries: Entries, overlay: dict[str, Spec | None]) -> None:
        self._entries = entries
        self.raw = raw = entries.raw
        self._overlay = overlay
        # +1 for each path the overlay adds to the index's, -1 for each it takes away
        self._steps = {
            p: step for p, spec in overlay.items() if (step := (spec is not None) - (p in raw))
        }
        self._len = len(raw) + sum(self._steps.values())
        self._attributes: list[str] | None = None
        self._dirs: set[str] | None = None

    def __getitem__(self, path: str) -> Spec:
        if path in self._overlay:
            spec = self._overlay[path]
            if spec is None:
                raise KeyError(path)
            return spec
        mode, oid, _key = self.raw[path]
        return mode, pygit2.Oid(raw=oid)

    def get(self, path: str, default: Any = None) -> Any:
        try:
            return self[path]
        except KeyError:
            return default

    def __contains__(self, path: object) -> bool:
        if path in self._overlay:
            return self._overlay[path] is not None
        return path in self.raw

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay
        if not overlay:
            return iter(self.raw)
        return itertools.chain(
            (p for p in self.raw if p not in overlay),
            (p for p, spec in overlay.items() if spec is not None),
        )

    @property
    def entries(self) -> Entries:
        """The index entries it is laid over."""
        return self._entries

    def overlay(self) -> Mapping[str, Spec | None]:
        """Where it differs from the index (None: not in the tree).  Read-only."""
        return self._overlay

    def gitlinks(self) -> list[str]:
        """Its submodule paths: the index's, as the overlay leaves them, and the overlay's."""
        overlay = self._overlay
        kept = [p for p in self._entries.gitlinks() if p not in overlay]
        return kept + [p for p, spec in overlay.items() if spec and spec[0] == MODE_GITLINK]

    def dirs(self) -> set[str]:
        """Its leading directories (what :func:`tree_dirs` gives).  Read-only.

        The index's own, corrected where the overlay adds or takes away paths: a directory is
        the tree's while the index's count of entries below it, plus the overlay's steps below
        it, stays above zero.  Listing every path of a 200,000-file tree costs 0.1 s."""
        if not self._steps:
            return self._entries.dirs()
        if self._dirs is None:
            sizes = self._entries.dir_sizes()
            below: dict[str, int] = {}
            for d, step in self._changed_dirs():
                below[d] = below.get(d, 0) + step
            dirs = set(self._entries.dirs())
            for d, step in below.items():
                if sizes.get(d, 0) + step > 0:
                    dirs.add(d)
                else:
                    dirs.discard(d)
            self._dirs = dirs
        return self._dirs

    def _changed_dirs(self) -> Iterator[tuple[str, int]]:
        """(directory, step) for each leading directory of each path the overlay adds (+1) or
        takes away (-1)."""
        for path, step in self._steps.items():
            parent = path.rpartition("/")[0]
            while parent:
                yield parent, step
                parent = parent.rpartition("/")[0]

    def changed_dirs(self) -> set[str]:
        """The directories where its paths and the index's differ: the leading directories of
        every path the overlay adds or takes away, and the top ("") when there is one.  Below
        any other directory, the tree's names and subdirectories are the index's."""
        changed = {d for d, _step in self._changed_dirs()}
        return changed | {""} if self._steps else changed

    def paths(self) -> Container[str]:
        """Its paths, for membership tests (the walk asks for every name it lists)."""
        if not self._steps:
            return self.raw  # a dict or gitsafe._native.Table: both test their keys
        return self

    def __len__(self) -> int:
        return self._len

    def attribute_paths(self) -> list[str]:
        """Its ``.gitattributes`` files, from the index's list and the overlay (see
        :func:`gitsafe.filters.attribute_paths`)."""
        if self._attributes is None:
            overlay = self._overlay
            known = [p for p in self._entries.attribute_paths() if p not in overlay]
            extra = [p for p in attribute_paths(overlay) if overlay[p] is not None]
            self._attributes = sorted(known + extra)
        return self._attributes


def index_files(index: IndexSnapshot) -> TreeFiles:
    """The stage-0 entries as tree files."""
    return IndexFiles(index.entries, {})


def gitlinks(files: TreeFiles) -> list[str]:
    """The submodule paths among ``files``, without going through every entry's ``Oid``."""
    if isinstance(files, IndexFiles):
        return files.gitlinks()
    return [p for p, (mode, _oid) in files.items() if mode == MODE_GITLINK]


def gitlink_paths(index: IndexSnapshot) -> list[str]:
    """The submodule entries of the index."""
    return index.entries.gitlinks()


def files_near_index(
    repo: pygit2.Repository,
    index: IndexSnapshot,
    tree: pygit2.Tree | None,
    gitlinks: Iterable[str],
    checked_out: bool = True,
) -> tuple[TreeFiles, set[str]]:
    """Every file of ``tree`` and the paths where it differs from the index (``checked_out``:
    as for :func:`flatten_tree`).

    Flattening a 50,000-file tree entry by entry costs about a second of Python; a deploy base's
    trees are almost always the index give or take a few paths, and libgit2's tree-to-index diff
    finds those in C.  When the index's cache-tree says it equals ``tree`` outright (git and
    libgit2 record that on every reset, checkout and commit), there is nothing to diff.
    ``gitlinks`` are the index's submodule paths; the caller makes sure the index holds no
    conflicts and no intent-to-add or assume-unchanged entries (libgit2's diff passes over
    those).
    """
    entries = index.entries
    if tree is None:
        return {}, set(entries)
    if index.tree_root is not None and index.tree_root == tree.id.raw:
        return IndexFiles(entries, {}), set()
    in_tree: dict[str, Spec] = {}
    in_index: set[str] = set()
    index_tree = _cached_tree(repo, index)
    # The cache-tree's root is the index as a tree: comparing two trees descends only into
    # the subtrees they do not share, and needs neither libgit2's copy of the index (0.1 s to
    # load at 200,000 files) nor its diff, which reads every subtree of both.
    if index_tree is None or not _tree_changes(index_tree, tree, in_tree, in_index):
        in_tree.clear()
        in_index.clear()
        repo_index = repo.index
        repo_index.read(force=False)  # as loaded now, should another process have written it
        for delta in repo_index.diff_to_tree(tree).deltas:  # old side: the tree; new: the index
            status = delta.status
            if status != DeltaStatus.ADDED:
                old = delta.old_file
                in_tree[os.fsdecode(old.raw_path)] = (_canonical_mode(int(old.mode)), old.id)
            if status != DeltaStatus.DELETED:
                in_index.add(os.fsdecode(delta.new_file.raw_path))
    _validate_paths(in_tree, checked_out)
    overlay: dict[str, Spec | None] = dict.fromkeys(in_index)
    overlay.update(in_tree)
    changed = in_index | set(in_tree)
    # The submodule entries must be the tree's whatever libgit2's diff makes of submodules (its
    # ignore settings must not hide a moved gitlink from the plan).
    files = IndexFiles(entries, overlay)
    for path in gitlinks:
        spec = _tree_entry(tree, path)
        if files.get(path) != spec:
            changed.add(path)
            overlay[path] = spec
    return IndexFiles(entries, overlay), changed


def _cached_tree(repo: pygit2.Repository, index: IndexSnapshot) -> pygit2.Tree | None:
    """The tree the index's valid cache-tree root names, if the object store has it (a tool
    may record a cache-tree without writing its trees)."""
    if index.tree_root is None:
        return None
    try:
        found = repo.get(pygit2.Oid(raw=index.tree_root))
    except (ValueError, pygit2.GitError):
        return None
    return found if isinstance(found, pygit2.Tree) else None


_TREE_CHANGES_BUDGET = 20_000  # entries compared before libgit2's diff is the cheaper way


def _tree_changes(
    old: pygit2.Tree,
    new: pygit2.Tree,
    in_new: dict[str, Spec],
    in_old: set[str],
    prefix: bytes = b"",
    budget: list[int] | None = None,
) -> bool:
    """The files where ``new`` differs from ``old``: each differing file of ``new`` into
    ``in_new`` (path: spec), each of ``old`` into ``in_old``, as a tree-to-tree diff without
    rename detection reports them (a changed mode counts, a file turned directory is a file
    gone and files added).  Subtrees with the same id are not opened.  False when the trees
    differ in more than about ``_TREE_CHANGES_BUDGET`` entries: then a diff in C is faster."""
    budget = [_TREE_CHANGES_BUDGET] if budget is None else budget
    olds = {_name(e): e for e in old}
    news = {_name(e): e for e in new}
    budget[0] -= len(olds) + len(news)
    if budget[0] < 0:
        return False
    for name in olds.keys() | news.keys():
        a, b = olds.get(name), news.get(name)
        if a is not None and b is not None and a.id == b.id and a.filemode == b.filemode:
            continue
        path = prefix + name
        a_tree, b_tree = isinstance(a, pygit2.Tree), isinstance(b, pygit2.Tree)
        if a_tree and b_tree:
            assert isinstance(a, pygit2.Tree) and isinstance(b, pygit2.Tree)
            if not _tree_changes(a, b, in_new, in_old, path + b"/", budget):
                return False
            continue
        for side, is_tree, files in ((a, a_tree, None), (b, b_tree, in_new)):
            if side is None:
                continue
            found = _files_under(side, path, budget) if is_tree else [(path, side)]
            if found is None:
                return False
            for file_path, entry in found:
                if files is None:
                    in_old.add(os.fsdecode(file_path))
                else:
                    files[os.fsdecode(file_path)] = (_canonical_mode(entry.filemode), entry.id)
    return True


def _name(entry: pygit2.Object) -> bytes:
    """A tree entry's name (pygit2 types it optional: objects not read from a tree lack one)."""
    name = entry.raw_name
    assert name is not None
    return name


def _files_under(
    tree: pygit2.Object, path: bytes, budget: list[int]
) -> list[tuple[bytes, pygit2.Object]] | None:
    """Every non-tree entry below ``tree`` with its path; None past the budget."""
    assert isinstance(tree, pygit2.Tree)
    out: list[tuple[bytes, pygit2.Object]] = []
    for entry in tree:
        budget[0] -= 1
        if budget[0] < 0:
            return None
        below = path + b"/" + _name(entry)
        if isinstance(entry, pygit2.Tree):
            found = _files_under(entry, below, budget)
            if found is None:
                return None
            out.extend(found)
        else:
            out.append((below, entry))
    return out


def _canonical_mode(mode: int) -> int:
    """The mode an index entry gets for a tree entry (old trees hold modes such as 100664)."""
    if st.S_ISREG(mode):
        return MODE_EXEC if mode & 0o100 else MODE_FILE
    return mode


def _validate_paths(files: TreeFiles, checked_out: bool = True) -> None:
    """Raise libgit2's "invalid path" for a path its checkout would refuse (``..``, ``.git``
    in any spelling, ...), as flattening the tree would: the paths the index already holds
    passed this check when they entered it, the others are checked here."""
    scratch = pygit2.Index()
    for path, (mode, oid) in files.items():
        if checked_out:
            _refuse_symlinked_gitmodules(path, mode)
        # bytes and int: a non-UTF-8 name must not fail here (pygit2 accepts both where its
        # stubs say str and FileMode)
        entry = pygit2.IndexEntry(os.fsencode(path), oid, mode)  # type: ignore[arg-type]
        scratch.add(entry)


def _tree_entry(tree: pygit2.Tree, path: str) -> tuple[int, pygit2.Oid] | None:
    """The file ``tree`` holds at ``path``; None where it holds none, or a directory (whose
    files the diff reports one by one: a submodule the target turns into a directory)."""
    node: pygit2.Object = tree
    for name in os.fsencode(path).split(b"/"):
        if not isinstance(node, pygit2.Tree):
            return None
        found = next((e for e in node if e.raw_name == name), None)
        if found is None:
            return None
        node = found
    if isinstance(node, pygit2.Tree):
        return None
    return _canonical_mode(int(node.filemode)), node.id


def tree_dirs(files: Iterable[str]) -> set[str]:
    """Every leading directory of ``files``."""
    if accel.native is not None:
        dirs: set[str] = accel.native.tree_facts(files)[0]
        return dirs
    dirs = set()
    for parent in {path.rpartition("/")[0] for path in files}:  # a few per directory
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return dirs


def _spec(entry: Entry | None) -> tuple[int, pygit2.Oid] | None:
    """An index entry as a tree file (mode, id)."""
    return (entry.mode, entry.oid) if entry is not None else None


def _kind(lst: os.stat_result | None) -> str:
    if lst is None:
        return "missing"
    if st.S_ISDIR(lst.st_mode):
        return "dir"
    if st.S_ISLNK(lst.st_mode):
        return "link"
    if st.S_ISREG(lst.st_mode):
        return "file"
    return "other"


class _Everything:
    def __contains__(self, path: object) -> bool:
        return True


class _NotPlain:
    """Paths in ``near`` or that :meth:`_Analysis.plain_hash` refuses."""

    def __init__(self, analysis: _Analysis, near: Container[str]) -> None:
        self.analysis, self.near = analysis, near

    def __contains__(self, path: object) -> bool:
        assert isinstance(path, str)
        return path in self.near or not self.analysis.plain_hash(path)


class _Analysis:
    """The state needed while planning; discarded afterwards."""

    def __init__(
        self,
        repo: pygit2.Repository,
        view: TreeView,
        index: IndexSnapshot,
        head: TreeFiles,
        target: TreeFiles,
        rules: ignore.ExcludeRules,
        filemode: bool,
        may_filter: bool = True,
        near: set[str] | None = None,
        scanned: Scanned | None = None,
        stat_checks: tuple[bool, bool] = (True, True),
    ) -> None:
        self.repo = repo
        # (core.trustctime, not core.checkStat=minimal): what git's reset compares
        self.stat_checks = stat_checks
        # Reads made while the pull fetched, for this very index (gitsafe.prescan)
        self.scanned = scanned if scanned is not None and scanned.index is index else None
        # Paths where HEAD or the target differ from the index; None: not known, so every
        # tracked path is examined in full.
        self.near = near
        self.may_filter = may_filter  # False: no checkout conversion can apply in this repo
        self.view = view
        self.index = index
        self.head = head
        self.target = target
        self.target_paths: Container[str] = (
            target.paths() if isinstance(target, IndexFiles) else target.keys()
        )
        self.target_dirs = target.dirs() if isinstance(target, IndexFiles) else tree_dirs(target)
        self.rules = rules
        self.filemode = filemode
        self._oids: dict[str, pygit2.Oid | None] = {}
        self.hashed: set[str] = set()  # paths whose stat data could not vouch for them
        self.changes = WorkTreeChanges()
        self.reset_rmdirs: set[str] = set()
        self._attributes_below: dict[str, bool] = {}
        self._tracked_attributes: bool | None = None
        self._moving: bool | None = None
        self._holding_others: set[str] = set()

    # -- content ---------------------------------------------------------------------------

    def plain_hash(self, path: str) -> bool:
        """May ``path`` be hashed as raw bytes, without libgit2's filter look-up?

        Only where no conversion can apply when content enters the object store: none
        configured (``may_filter`` False: no ``core.autocrlf``, no converting attribute in
        info/attributes, core.attributesFile or the target), no ``.gitattributes`` in the index
        and none on disk in the file's directory or above it.  The look-up costs about four times
        the hashing itself, which matters when every file of a large checkout was touched.
        """
        if self.may_filter or self._tracked_attribute_files():
            return False
        return not self._attributes_at_or_above(path.rpartition("/")[0])

    def _tracked_attribute_files(self) -> bool:
        if self._tracked_attributes is None:
            self._tracked_attributes = bool(
                attribute_paths(self.index.entries) or attribute_paths(self.index.conflicted)
            )
        return self._tracked_attributes

    def _attributes_at_or_above(self, d: str) -> bool:
        found = self._attributes_below.get(d)
        if found is None:
            here = os.path.lexists(os.path.join(self.view.abspath(d), ".gitattributes"))
            found = here or (bool(d) and self._attributes_at_or_above(d.rpartition("/")[0]))
            self._attributes_below[d] = found
        return found

    def hash_file(self, path: str) -> pygit2.Oid:
        """The blob id of the regular file at ``path`` as ``git add`` would store it."""
        if self.plain_hash(path):
            return pygit2.hashfile(self.view.abspath(path))
        return self.repo.hashfile(
            self.view.abspath(path),
            as_path=os.fsencode(path),  # type: ignore[arg-type]  # non-UTF-8 names
        )

    def worktree_oid(self, path: str, lst: os.stat_result) -> pygit2.Oid | None:
        """The blob id the work tree content at ``path`` would get, trusting the stat cache
        only where git would."""
        if path in self._oids:
            return self._oids[path]
        mode = worktree_mode(lst)
        oid: pygit2.Oid | None = None
        entry = self.index.entries.get(path)
        if (
            mode is not None
            and entry is not None
            and (entry.mode == MODE_LINK) == (mode == MODE_LINK)
            and entry.mode != MODE_GITLINK
            and self.index.stat_clean(entry, lst)
        ):
            oid = entry.oid
        elif mode == MODE_LINK:
            self.hashed.add(path)
            oid = pygit2.hash(os.readlink(os.fsencode(self.view.abspath(path))))
        elif mode is not None:
            self.hashed.add(path)
            try:
                oid = self.hash_file(path)
            except (OSError, pygit2.GitError):
                oid = None
        self._oids[path] = oid
        return oid

    def matches(self, path: str, lst: os.stat_result | None, spec: tuple[int, pygit2.Oid]) -> bool:
        """Does the work tree at ``path`` hold exactly ``spec`` (mode and content)?"""
        mode, oid = spec
        kind = _kind(lst)
        if mode == MODE_GITLINK:
            return kind == "dir"
        if lst is None or kind not in ("file", "link"):
            return False
        if (mode == MODE_LINK) != (kind == "link"):
            return False
        if kind == "file" and self.filemode and (mode == MODE_EXEC) != bool(lst.st_mode & 0o100):
            return False
        return self.worktree_oid(path, lst) == oid

    def _git_would_rewrite(
        self, path: str, lst: os.stat_result | None, t: tuple[int, pygit2.Oid]
    ) -> bool:
        """Content matches the target; would git's rewrite still change the file?

        git's reset rewrites every entry whose cached stat data does not vouch for it, without
        comparing content.  Skipping such a rewrite changes nothing unless the rewrite would:
        it restores the executable bit from the index even with core.fileMode=false, and it
        applies today's checkout conversions (core.autocrlf, eol attributes) to the bytes.
        """
        if lst is None or not st.S_ISREG(lst.st_mode) or t[0] == MODE_LINK:
            return False
        entry = self.index.entries.get(path)
        if (
            entry is not None
            and (entry.mode, entry.oid) == t
            and not self.index.git_sees_change(entry, lst, self.filemode, *self.stat_checks)
        ):
            return False  # git keeps it as it is (a racy entry's content is known to match)
        if (t[0] == MODE_EXEC) != bool(lst.st_mode & 0o100):
            return True
        if not self.may_filter:
            # The target converts nothing, so the rewrite writes the blob's bytes: a change only
            # if the file's bytes are not those (it matched through today's conversions).
            if self.plain_hash(path):
                return False
            try:
                return pygit2.hashfile(self.view.abspath(path)) != t[1]
            except (OSError, pygit2.GitError):
                return True
        if self._attributes_move():
            return True  # git converts with the target's attributes, which libgit2 cannot
            # read before they are on disk: rewriting is what git does, so it is exact
        blob = self.repo[t[1]]
        assert isinstance(blob, pygit2.Blob)
        smudged = smudge(self.repo, path, blob)
        if smudged is None:
            return False
        try:
            with open(self.view.abspath(path), "rb") as f:
                return f.read() != smudged
        except OSError:
            return True

    def _attributes_move(self) -> bool:
        """Could the .gitattributes in force differ after the reset (a tracked one changed,
        added or deleted by the target, or edited in the work tree)?"""
        if self._moving is None:
            self._moving = False
            index = self.index
            tracked = (index.entries, self.target, index.conflicted)
            for path in sorted({p for paths in tracked for p in attribute_paths(paths)}):
                spec = _spec(index.entries.get(path))
                if (
                    path in index.conflicted
                    or spec is None
                    or spec != self.target.get(path)
                    or not self.matches(path, self.view.lstat(path), spec)
                ):
                    self._moving = True
                    break
        return self._moving

    # -- ignore rules after the reset --------------------------------------------------------

    def gitignore_after_reset(self, base: bytes) -> bytes | None:
        """The content ``base/.gitignore`` will have once the reset is done."""
        path = os.fsdecode(base + b".gitignore")
        spec = self.target.get(path)
        if spec is not None:
            mode, oid = spec
            if mode in (MODE_LINK, MODE_GITLINK):
                return None  # git never follows a symlinked .gitignore
            blob = self.repo[oid]
            assert isinstance(blob, pygit2.Blob)
            return blob.data
        if path in self.index.entries:
            return None  # tracked, absent from the target: the reset deletes it
        parent = os.fsdecode(base.rstrip(b"/"))
        if parent and (parent in self.reset_rmdirs or not self.view.is_dir(parent)):
            return None
        return ignore.read_worktree_gitignore(os.fsencode(self.view.root), base)

    def ignored_now(self, path: str, is_dir: bool) -> ignore.Pattern | None:
        """Ignored under the rules of the work tree as it is (what its owner relied on)."""
        root = os.fsencode(self.view.root)
        return ignore.decide(
            self.rules,
            os.fsencode(path),
            is_dir,
            lambda base: ignore.read_worktree_gitignore(root, base),
        )

    # -- the reset ----------------------------------------------------------------------------

    def unchanged_elsewhere(self) -> set[str]:
        """Index entries outside ``near`` that the stat data alone cannot prove untouched.

        Every other entry equals HEAD's and the target's and its file is what the index says,
        down to the nanosecond of its stat data; the full analysis below would find nothing to
        do for it (no dirt, no write, no rewrite, no blocker), so it is skipped.  This loop is
        the whole cost of a no-op pull on a large checkout, hence the flat, precomputed form.
        """
        assert self.near is not None
        if accel.native is not None:
            return self._unchanged_elsewhere_native(self.near)
        near = self.near
        rest: set[str] = set()
        prefix = self.view.root.rstrip("/") + "/"
        index_mtime_ns = self.index.mtime_ns
        type_only, with_exec = 0o170000, 0o170100 if self.filemode else 0o170000
        parent_ok: dict[str, bool] = {}
        lstat = os.lstat
        hash_unchanged = not self.may_filter  # the second chance below; see plain_hash
        verified = self.changes.verified
        for path, (mode, oid, key) in self.index.entries.raw.items():
            if path in near or mode == MODE_GITLINK:
                rest.add(path)
                continue
            parent = path.rpartition("/")[0]
            ok = parent_ok.get(parent)
            if ok is None:
                ok = parent_ok[parent] = self.view.is_dir(parent)  # no symlink on the way
            if not ok:
                rest.add(path)
                continue
            try:
                lst = lstat(prefix + path)
            except OSError:
                rest.add(path)
                continue
            mask = type_only if mode == MODE_LINK else with_exec
            if (
                (lst.st_mode & mask) != (mode & mask)
                or key
                != (
                    lst.st_mtime_ns,
                    lst.st_ctime_ns,
                    lst.st_ino & 0xFFFFFFFF,
                    lst.st_size & 0xFFFFFFFF,
                    lst.st_uid,
                    lst.st_gid,
                )
                or key[0] >= index_mtime_ns  # racily clean: only content can tell
                or (key[3] == 0 and lst.st_size != 0)  # smudged by git's racy-entry check
            ):
                # Touched but perhaps not changed (a build, a copy, a restore): same type and
                # exec bit and the same bytes mean no dirt and no rewrite, as the full analysis
                # would conclude; only the index's stat data needs refreshing ("verified").
                if (
                    hash_unchanged
                    and mode != MODE_LINK
                    and (lst.st_mode & 0o170100) == (mode & 0o170100)
                    and self._same_bytes(path, oid)
                ):
                    verified[path] = pack_stat(lst, mode)
                    continue
                rest.add(path)
        return rest

    def _unchanged_elsewhere_native(self, near: set[str]) -> set[str]:
        """:meth:`unchanged_elsewhere` with its stat loop in C (``gitsafe._native``), which
        answers what the Python loop answers: the entries that need the full analysis, and the
        touched files of unchanged type and exec bit, whose bytes C compares for a Table and
        this method for a dict."""
        native = accel.native
        assert native is not None
        raw = self.index.entries.raw
        scanned = self.scanned
        touched: bytes | list[tuple[str, bytes]]
        early = scanned is not None and scanned.filemode == self.filemode
        if early:
            assert scanned is not None
            # Made without ``near``: its entries go to the full analysis whatever their stat
            # data says, as stat_pass sends them.
            rest = set(scanned.rest)
            rest.update(p for p in near if p in raw)
            touched = scanned.touched
        else:
            rest_list, touched = native.stat_pass(
                raw, near, self.view.root, self.index.mtime_ns, self.filemode, accel.threads()
            )
            rest = set(rest_list)
        if isinstance(touched, bytes):
            # A Table's touched files, already hashed in C: these hold their entry's blob,
            # byte for byte.  Which of them that proves unchanged is decided as for the dict
            # below, by plain_hash; the rest, and ``near`` for reads made without it, go to the
            # full analysis.
            assert isinstance(raw, native.Table)
            records, drop = touched, self._not_plain(near if early else frozenset())
            if drop is not None:
                records, dropped = native.records_split(raw, records, drop)
                rest.update(dropped)
            self.changes.verified_records = records
            return rest
        hash_unchanged = not self.may_filter
        verified = self.changes.verified
        for path, packed in touched:
            if hash_unchanged and self._same_bytes(path, raw[path][1]):
                verified[path] = packed
            else:
                rest.add(path)
        return rest

    def _not_plain(self, near: Container[str]) -> Container[str] | None:
        """The paths in ``near`` or not to be hashed as raw bytes (:meth:`plain_hash`), as a
        container to test touched paths against; None when that is none of them.

        Asking plain_hash path by path costs an interpreter round trip per touched file
        (0.2 s at 200,000), so the common answer is found first: no conversion configured,
        no ``.gitattributes`` in the index, and none on disk, which the early reads can tell,
        since a ``.gitattributes`` the index does not list puts its directory among those
        holding something untracked.
        """
        if self.may_filter or self._tracked_attribute_files():
            return _Everything()
        scanned = self.scanned
        if scanned is not None and scanned.holding is not None:
            root = self.view.root
            if not any(
                os.path.lexists(os.path.join(root, d, ".gitattributes")) for d in scanned.holding
            ):
                return near if near else None
        return _NotPlain(self, near)

    def _same_bytes(self, path: str, oid: bytes) -> bool:
        """Does the file hash, as raw bytes, to ``oid``?  Only where :meth:`plain_hash` allows."""
        if not self.plain_hash(path):
            return False
        try:
            return pygit2.hashfile(self.view.abspath(path)).raw == oid
        except (OSError, pygit2.GitError):
            return False

    def analyse_tracked(self) -> None:
        ch = self.changes
        index = self.index
        if self.near is None:
            paths = set(self.head) | set(index.entries) | set(self.target) | set(index.conflicted)
        else:
            paths = self.near | self.unchanged_elsewhere() | set(index.conflicted)
        blockers: set[str] = set()
        for path in sorted(paths):
            t = self.target.get(path)
            entry = index.entries.get(path)
            h = self.head.get(path)
            lst = self.view.lstat(path)
            kind = _kind(lst)

            reasons = []
            if path in index.conflicted:
                reasons.append("unmerged")
            i_spec = _spec(entry)
            if i_spec != h and path not in index.conflicted:
                reasons.append("staged")
            if entry is not None and entry.mode != MODE_GITLINK:
                if kind == "missing":
                    reasons.append("deleted")
                elif kind not in ("file", "link") or (entry.mode == MODE_LINK) != (kind == "link"):
                    reasons.append("typechange")
                elif lst is not None and not self.matches(path, lst, (entry.mode, entry.oid)):
                    same_content = self.worktree_oid(path, lst) == entry.oid
                    reasons.append("mode" if same_content else "modified")
            if reasons:
                ch.restore.append(Item(path, ", ".join(reasons)))

            if h != t:
                what = "added" if h is None else "deleted" if t is None else "modified"
                ch.incoming.append(Item(path, what))

            if t is not None:
                if not self.matches(path, lst, t) or self._git_would_rewrite(path, lst, t):
                    ch.writes.append(path)
                    if entry is None and kind != "missing" and path not in index.conflicted:
                        ch.overwrite.append(Item(path, self._overwrite_reason(path, kind)))
                    elif kind == "dir" and t[0] != MODE_GITLINK:
                        ch.overwrite.append(Item(path + "/", "directory replaced by a file"))
                elif path in self.hashed and lst is not None:
                    ch.verified[path] = pack_stat(lst, t[0])
                blocker = self.view.first_non_dir_ancestor(path)
                if blocker is not None and blocker not in blockers:
                    blockers.add(blocker)
                    if blocker not in index.entries:
                        blocker_kind = _kind(self.view.lstat(blocker))
                        ch.overwrite.append(
                            Item(blocker, self._overwrite_reason(blocker, blocker_kind))
                        )
            elif entry is not None or path in index.conflicted:
                if kind in ("file", "link", "other"):
                    ch.deletes.append(path)
                elif kind == "missing" and self.view.is_dir(path.rpartition("/")[0]):
                    ch.vanished.append(path)
        ch.blockers = sorted(blockers)
        # Outside ``near`` the index equals the target by construction.
        candidates = set(index.entries) | set(self.target) if self.near is None else self.near
        ch.index_current = not index.conflicted and all(
            _spec(index.entries.get(p)) == self.target.get(p) for p in candidates
        )
        self._reset_removed_dirs()

    def _overwrite_reason(self, path: str, kind: str) -> str:
        noun = {"dir": "directory", "link": "symlink"}.get(kind, "file")
        pattern = self.ignored_now(path, kind == "dir")
        if pattern is not None:
            return f"ignored {noun} ({pattern.describe()}) replaced by tracked content"
        return f"untracked {noun} replaced by tracked content"

    def _reset_removed_dirs(self) -> None:
        """Directories git's reset removes because deleting tracked files emptied them.

        git tries ``rmdir`` on each parent of a deleted file, going up while it succeeds; a
        directory that held anything else (untracked, ignored, a kept file) stays.
        """
        deleted = set(self.changes.deletes) | set(self.changes.vanished)
        candidates = tree_dirs(deleted)
        removed: set[str] = set()
        for d in sorted(candidates, key=lambda p: p.count("/"), reverse=True):
            names = self.view.listdir(d)
            if names is None:
                continue  # not a real directory (any more: the walk of untracked paths sees it)
            if all(f"{d}/{n}" in deleted or f"{d}/{n}" in removed for n in names):
                removed.add(d)
        self.reset_rmdirs = removed

    # -- the clean ------------------------------------------------------------------------------

    def analyse_untracked(self) -> None:
        self._holding_others = self._dirs_holding_others()
        root_list = ignore.read_dir_list(self.gitignore_after_reset(b""), b"")
        with deep_enough():
            self._walk("", (root_list,), None)

    def _dirs_holding_others(self) -> set[str]:
        """The target's directories with something below them that the target does not track.

        Only those need the walk below, with its ignore lists and checks: a directory holding
        nothing but tracked files and directories has nothing for the clean to remove or keep.
        On a clean checkout that leaves the walk a handful of directories out of thousands;
        finding them costs one listing of each directory, as git's own walk does.
        """
        target_paths, target_dirs, view = self.target_paths, self.target_dirs, self.view
        holding = self._dirs_holding_others_native()
        if holding is None:
            holding = set()
            for d in (*target_dirs, ""):
                prefix = f"{d}/" if d else ""
                for name in view.listdir(d) or ():
                    path = prefix + name
                    if path not in target_paths and path not in target_dirs and name != ".git":
                        holding.add(d)
                        break
        for d in list(holding):
            parent = d.rpartition("/")[0]
            while parent and parent not in holding:
                holding.add(parent)
                parent = parent.rpartition("/")[0]
        return holding

    def _dirs_holding_others_native(self) -> set[str] | None:
        """:meth:`_dirs_holding_others` by the C extension; None where the Python listing must
        decide: no extension, or a failure the C scan does not judge (EACCES, EMFILE, EIO, a
        path too long for its buffers), which the listing then meets as the walk would."""
        if accel.native is None:
            return None
        root, target = self.view.root, self.target
        try:
            if isinstance(target, IndexFiles) and isinstance(target.raw, accel.native.Table):
                # The reads run in threads, without the interpreter, against the index's own
                # paths and directories.  Where the target differs from the index, only the
                # directories above the differing paths can answer otherwise: those are walked
                # in any case (a directory walked for nothing costs a listing).
                scanned = self.scanned
                if scanned is not None and scanned.holding is not None:
                    found = set(scanned.holding)  # the same scan, made during the fetch
                else:
                    found = set(
                        accel.native.table_dirs_holding_others(root, target.raw, accel.threads())
                    )
                found.update(target.changed_dirs())
                return found
            found = accel.native.dirs_holding_others(root, self.target_paths, self.target_dirs)
        except OSError:
            return None
        return set(found)

    def _walk(
        self,
        d: str,
        lists: tuple[ignore.PatternList, ...],
        excluded_parent: ignore.Pattern | None,
    ) -> tuple[bool, list[tuple[str, bool]], list[Item]]:
        """Walk directory ``d`` of the post-reset tree.

        Returns (something inside must stay, removals, keeps) the way git's fill_directory plus
        correct_untracked_entries decide: an untracked directory with nothing to keep inside goes
        as a whole; one with something to keep stays and loses only its removable content.
        """
        ch = self.changes
        keep_inside = False
        removals: list[tuple[str, bool]] = []
        keeps: list[Item] = []
        if d and d in self.reset_rmdirs:
            return False, removals, keeps
        target_paths = self.target_paths
        # The kinds come from the listing: an lstat of each of 400 untracked files took 1.7 ms
        for name, kind in self.view.listdir_kinds(d):
            path = f"{d}/{name}" if d else name
            if name == ".git":
                continue  # never listed by git; goes only with its parent
            if path in target_paths:
                continue  # tracked after the reset: never the clean's business
            if path in self.target_dirs:
                if kind == "dir" and path in self._holding_others:
                    sub_excluded = excluded_parent or self._excluded(lists, path, True)
                    sub_lists = lists if sub_excluded else self._push(lists, path)
                    _, sub_removals, sub_keeps = self._walk(path, sub_lists, sub_excluded)
                    removals.extend(sub_removals)
                    keeps.extend(sub_keeps)
                continue
            if kind in ("file", "link", "other") and (
                path in self.index.entries or path in self.index.conflicted
            ):
                continue  # the reset deletes it
            if path in self.reset_rmdirs:
                continue
            if kind == "other":
                continue  # git lists no sockets or fifos; they go only with their parent
            is_dir = kind == "dir"
            pattern = excluded_parent or self._excluded(lists, path, is_dir)
            if pattern is not None:
                keep_inside = True
                keeps.append(Item(path + ("/" if is_dir else ""), _keep_reason(pattern)))
                continue
            if not is_dir:
                removals.append((path, False))
                continue
            if is_nested_repository(self.view.abspath(path)):
                keep_inside = True
                keeps.append(Item(path + "/", "nested repository"))
                continue
            sub_keep, sub_removals, sub_keeps = self._walk(path, self._push(lists, path), None)
            keeps.extend(sub_keeps)
            if sub_keep:
                keep_inside = True
                removals.extend(sub_removals)
            else:
                removals.append((path, True))
        if not d:
            ch.clean = removals
            ch.remove = [
                Item(p + ("/" if is_dir else ""), "untracked directory" if is_dir else "untracked")
                for p, is_dir in removals
            ]
            ch.keep = keeps
        return keep_inside, removals, keeps

    def _excluded(
        self, lists: tuple[ignore.PatternList, ...], path: str, is_dir: bool
    ) -> ignore.Pattern | None:
        hit = self.rules.match(lists, os.fsencode(path), is_dir)
        return hit if hit is not None and not hit.negative else None

    def _push(
        self, lists: tuple[ignore.PatternList, ...], d: str
    ) -> tuple[ignore.PatternList, ...]:
        base = os.fsencode(d) + b"/"
        return (*lists, ignore.read_dir_list(self.gitignore_after_reset(base), base))


# A path is at most PATH_MAX (4096) bytes: no more than 2048 directories deep.
_DEEPEST = 2048


class deep_enough:
    """Room for a walk that recurses once a directory level, as deep as a path can go.

    Python stops at 1,000 frames; git walks any depth.  The limit is raised while any walk
    needs it and put back when the last one ends (for a caller of the Python API, whose process
    it is, and whose threads may run several pulls at once: each restoring what it saw would
    drop the limit under another's walk).  From Python 3.11 on, Python-to-Python calls do not
    grow the C stack, so the deeper limit is safe.
    """

    _lock = _thread.allocate_lock()
    _active = 0
    _before = 0

    def __enter__(self) -> None:
        cls = deep_enough
        with cls._lock:
            if cls._active == 0:
                cls._before = sys.getrecursionlimit()
                sys.setrecursionlimit(cls._before + 4 * _DEEPEST)
            cls._active += 1

    def __exit__(self, *_exc: object) -> None:
        cls = deep_enough
        with cls._lock:
            cls._active -= 1
            if cls._active == 0:
                sys.setrecursionlimit(cls._before)


def _keep_reason(pattern: ignore.Pattern) -> str:
    if pattern.source == "--exclude":
        return f"excluded by --exclude {os.fsdecode(pattern.text)}"
    return f"ignored ({pattern.describe()})"


def plan_worktree(
    repo: pygit2.Repository,
    view: TreeView,
    index: IndexSnapshot,
    head: TreeFiles,
    target: TreeFiles,
    rules: ignore.ExcludeRules,
    filemode: bool = True,
    may_filter: bool = True,
    near: set[str] | None = None,
    scanned: Scanned | None = None,
    stat_checks: tuple[bool, bool] = (True, True),
) -> WorkTreeChanges:
    analysis = _Analysis(
        repo, view, index, head, target, rules, filemode, may_filter, near, scanned, stat_checks
    )
    analysis.analyse_tracked()
    analysis.analyse_untracked()
    return analysis.changes
