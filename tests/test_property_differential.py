"""Differential property test: ``gitsafe.pull`` against the git command sequence it replaces.

Every example builds a random origin (nested directories, executables, symlinks, ``.gitignore``
files written in git's pattern grammar), clones it as a deploy base, optionally pushes a second
origin commit, dirties the clone at random, and then converges one copy with gitsafe and another
with the oracle::

    git fetch origin main && git reset --hard origin/main && git clean -fd -e P... &&
    git pull origin main

The two work trees must agree entry by entry (content, exec bit, symlink target, empty
directories, nested repositories), and so must ``git status --porcelain --ignored`` and the index.
``doctor`` must change nothing at all (not even the index) and must predict the plan ``pull``
then carries out.  A canary directory outside the work tree, reachable through planted symlinks,
must never be touched.

Two ways of getting two identical starting states, drawn per example:

* copies: the deploy clone is copied twice (``copy_checkout``, symlinks preserved); gitsafe runs on
  one copy, git on the other.  In a copy every index entry is stat-dirty (new inodes), which is
  what ``git reset --hard`` sees after a ``cp -a`` or a restore from backup.
* fresh_stat: the whole scenario is built twice from the same script (fixed commit dates, so the
  same commit ids); gitsafe runs on one build, git on the other.  The index stat data is then as
  valid as in real life, so the stat-trusting code paths (racy entries, same-size edits with the
  mtime put back) are exercised.

The clone is kept (copies) or copied (fresh_stat) untouched as the "before" state.  git itself
sometimes gives up (an assume-unchanged entry the target deletes): then gitsafe must still
converge or refuse cleanly.  gitsafe calls run under a time limit, so a hang fails one example
instead of the whole run.

Profiles: ``HYPOTHESIS_PROFILE=ci`` (default, 60 examples) or ``thorough`` (500 examples).
On failure the report prints a shell script that rebuilds the failing example's starting state.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from gitfixtures import copy_checkout, diff_snapshots, git, git_sequence, snapshot
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import gitsafe
from gitsafe import accel

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Profiles

_COMMON: dict[str, Any] = dict(
    deadline=None,
    derandomize=False,
    print_blob=True,
    # The explain phase reruns a failing example hundreds of times: minutes, for little news.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile("ci", max_examples=60, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)


def _profile() -> settings:
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    try:
        return settings.get_profile(name)
    except InvalidArgument:
        return settings.get_profile("ci")


# --------------------------------------------------------------------------------------------
# Generator branches that can be switched off.  False: fixed, the branch is explored.  True: the
# state is outside what the equivalence covers (gitsafe refuses it with exit 2 — skip-worktree
# entries, core.ignoreCase, core.symlinks=false, tested in test_converge — or the difference is
# documented and left alone — the assume-unchanged bit).

# pull raises pygit2.GitError ("failed to insert entry: invalid object specified") when the index
# holds a staged gitlink that is not in HEAD (``git add`` of an embedded repository): the backup
# stores the gitlink's commit id as a blob.  On: embedded repositories are never staged.
KNOWN_GAP_STAGED_GITLINK = False

# ``git reset --hard`` rewrites every tracked file whose cached stat data no longer matches the
# index (ie_match_stat, no content comparison); gitsafe rewrites only files whose content or mode
# differ.  Visible with core.fileMode=false (a chmod is undone by git, kept by gitsafe) and with
# checkout conversions changed since the file was written (core.autocrlf set later: git rewrites
# stat-dirty files with CRLF, gitsafe keeps LF).  On: no core.fileMode=false, and core.autocrlf
# only where the index stat data is fresh.
KNOWN_GAP_STAT_DIRTY_REWRITE = False

# pull hangs for ever (and defers SIGTERM, so only SIGKILL ends it) when it writes a file that
# needs smudge filters (.gitattributes text/eol/ident, core.autocrlf): execute._blob_content passes
# ``as_path`` to pygit2.BlobIO as bytes, BlobIO's worker thread dies with "TypeError: argument 5
# must be str or None, not bytes" and the reader waits on its queue.  On: no .gitattributes and
# no core.autocrlf.
KNOWN_GAP_SMUDGE_HANG = False

# Index entries marked skip-worktree (``git update-index --skip-worktree``, the usual way to keep a
# server-local config file): git's reset --hard leaves the work tree file alone and keeps the bit;
# gitsafe overwrites the file with the committed content and drops the bit.  On: no such entries.
KNOWN_GAP_SKIP_WORKTREE = True

# ``git update-index --assume-unchanged``: the work trees agree, but git keeps the bit ("h" in
# ``git ls-files -v``) and gitsafe's rewritten index drops it.  On: the flags are not compared.
KNOWN_GAP_ASSUME_UNCHANGED_FLAG = True

# core.ignoreCase=true (typical of a checkout copied from macOS or Windows): git matches ignore
# and keep patterns case-insensitively (X.LOG is ignored by "*.log" and kept), gitsafe matches
# them case-sensitively and deletes the file.  On: core.ignoreCase is never set.
KNOWN_GAP_IGNORECASE = True

# core.symlinks=false: git checks a symlink out as a plain file holding the target; gitsafe
# creates a real symlink.  On: core.symlinks is never set.
KNOWN_GAP_SYMLINKS_FALSE = True


# gitsafe smudges with the attributes of the pre-reset index, not the target's: a .gitattributes
# the target deletes (its work tree copy is gone, the old index still has it) still applies, and
# the target's .gitattributes itself is written under the old attributes.  Repro, with no local
# change at all: origin has "*.md text eol=crlf"; clone; upstream then runs "git rm .gitattributes"
# and changes README.md; pull: git writes README.md with LF, gitsafe with CRLF (" M README.md").
# Also: origin "* text eol=crlf", in the clone ": > .gitattributes && git add .gitattributes":
# git restores it with CRLF, gitsafe with LF.  On: neither the origin's second commit nor the
# dirt touches a tracked .gitattributes.
KNOWN_GAP_GITATTRIBUTES_SOURCE = False

# A checkout whose .git is a gitfile ("git clone --separate-git-dir", a submodule's checkout):
# gitsafe opens pygit2.Repository(discover_repository(path)), which takes the *parent of the git
# directory* as the work tree.  doctor plans to remove the git directory itself and everything
# next to it; pull resets and cleans that directory (deleting the repository's own git directory
# and any sibling files), leaves the real checkout untouched and then raises an uncaught
# pygit2.GitError ("head reference does not exist").  Repro:
#   git clone --separate-git-dir=$PWD/gitdirs/d.git ORIGIN d; echo precious > gitdirs/p.txt
#   python -c 'import gitsafe; gitsafe.pull("d", "origin", "main")'   # gitdirs/ is emptied
# On: the deploy clone always has a .git directory.
KNOWN_GAP_SEPARATE_GITDIR = False

# The target turns a tracked directory into a gitlink (a vendored directory replaced by a
# submodule): git deletes the tracked files and leaves the empty submodule directory; gitsafe
# counts the existing directory as matching the gitlink, then deletes the files and prunes the
# emptied directory, so the path is missing (``git status``: " D vendor").  Repro: origin has
# vendor/f; clone; upstream "git rm -r vendor && mkdir vendor && git update-index --add
# --cacheinfo 160000,<sha>,vendor && git commit"; pull.  On: no local commit puts files
# under a path the origin turns into a gitlink.
KNOWN_GAP_DIR_TO_GITLINK = False


def _gap(name: str) -> bool:
    return bool(globals().get(f"KNOWN_GAP_{name.upper()}", False))


# --------------------------------------------------------------------------------------------
# Name pools.  Directory and file names overlap on purpose ("x", "b", "a", "keep") so that a file
# can become a directory and dir-only patterns meet files of the same name.

DIRS = ["a", "b", "build", "src", "x", "keep", "logs", "c", "sub dir"]
FILES = [
    "a.txt",
    "b.log",
    "x",
    "c.keep",
    "anchored",
    "deploy-hook.log",
    "top-only",
    "run.sh",
    "b",
    "notes.md",
    ".deploy-prev-image-1",
    "important.log",
    "keep.txt",
    "z.tmp",
    "a",
    "keep",
]
ODD_NAMES = [
    "with space.txt",
    "-dash",
    "--rf",
    "ünïcødé.txt",
    "trailing space ",
    "star*.log",
    "ünï.log",
    "q?uestion",
    "[bracket]",
    "back\\slash",
    "#hash",
    "!bang",
    "tab\tname",
    "new\nline",
]
CONTENTS = [
    b"",
    b"one\n",
    b"two\n",
    b"hello world\n",
    b"\x00\x01binary\xff",
    b"crlf\r\nline\r\n",
    b"no newline",
    b"one\r\n",
    b"#!/bin/sh\necho hi\n",
    b"$Id$\n",
    b"mixed\r\nend\n",
]
OUTSIDE = "@OUTSIDE@"  # replaced by the canary directory's absolute path
LINK_TARGETS = [
    "a.txt",
    "../a.txt",
    "src",
    "..",
    "nowhere/missing",
    "build",
    "../src",
    "x",
    ".",
    "b/../a.txt",
    "../../x",
    "keep",
    OUTSIDE,
    OUTSIDE + "/canary.txt",
]
OUTSIDE_TARGETS = [
    OUTSIDE,
    OUTSIDE + "/canary.txt",
    OUTSIDE + "/sub",
    OUTSIDE + "/emptysub",
    "../../../../../../../../../.." + OUTSIDE,
]

IGNORE_LINES = [
    "*.log",
    "build/",
    "/anchored",
    "a/**/b",
    "!b.log",
    "!important.log",
    "!build/keep.txt",
    "[a-c]*",
    "[a-c]*.txt",
    "**/x",
    "x/",
    "logs/",
    "*.keep",
    "!*.keep",
    "/build",
    "keep/",
    "!keep/",
    "src/*.log",
    "**/build/**",
    "a/**",
    "c",
    "!c",
    "*.tmp",
    "# comment",
    "",
    "b/",
    "/x",
    "?.txt",
    "[!a]*.log",
    "\\#hash",
    "trailing  ",
    "!x",
    "deploy-hook.log",
    ".deploy-*",
    "!/anchored",
    "b/x",
    "*/x",
    "a/*",
    "**/logs",
    "ünï*",
    "!keep/keep.txt",
    "sub dir/",
    "*",
    "!*/",
    "!.gitignore",
    ".gitignore",
    "**/",
    "!a.txt",
    "keep",
    "/*.md",
    "a/b/",
    "\\!bang",
    "star\\*.log",
    "x/**/",
    "!**/x",
    "*.txt\r",
    "with space.txt",
    "trailing space\\ ",
    "trailing\\ space",
    "-dash",
    "[[]bracket]",
    "q\\?uestion",
    "new?line",
    "tab?name",
    "back\\\\slash",
    "ünï.log",
    "!ünï.log",
    "#hash",
    "!--rf",
]
KEEP_PATTERNS = [
    "deploy-hook.log",
    ".deploy-prev-image-*",
    "keep/",
    "*.keep",
    "/top-only",
    "x",
    "**/x",
    "build/",
    "src/*.log",
    "a/b.log",
    "*.txt",
    "sub dir/",
    "b",
    "c/",
    "a/**/x",
    "[a-c]*",
    "keep.txt",
    "/keep",
    "keep/**/state.json",
    "**/logs/**/*.txt",
]


def _dir_chain(max_depth: int, min_depth: int = 0) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(DIRS), min_size=min_depth, max_size=max_depth).map("/".join)


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


_path = st.builds(_join, _dir_chain(3), st.sampled_from(FILES))
_content = st.one_of(st.sampled_from(CONTENTS), st.binary(max_size=24))
_ignore_line = st.one_of(
    st.sampled_from(IGNORE_LINES),
    st.sampled_from(FILES),
    st.sampled_from(FILES).map(lambda n: "!" + n),
    st.sampled_from(DIRS).map(lambda n: "/" + n),
    st.sampled_from(DIRS).map(lambda n: n + "/"),
    st.builds(_join, _dir_chain(2), st.sampled_from(FILES)),
    st.builds(lambda d, f: f"{d}/**/{f}", st.sampled_from(DIRS), st.sampled_from(FILES + DIRS)),
)
# Coherent groups, so that negations, dir-only patterns and anchors actually decide something.
RULE_GROUPS = [
    ["*.log", "!important.log"],
    ["build/", "!build/keep.txt"],  # a negation below an excluded directory has no effect
    ["keep/*", "!keep/keep.txt"],  # ... but below a non-excluded one it does
    ["*", "!*/", "!*.txt", "!.gitignore"],  # whitelist
    ["*", "!.gitignore"],
    ["a/**/b", "!a/b"],
    ["[a-c]*", "!c"],
    ["x/"],
    ["x", "!x/"],
    ["/anchored", "!/anchored/keep.txt"],
    ["**/x", "!src/x"],
    ["logs/", "!logs/"],
    ["*.keep", "!c.keep"],
    ["b/", "!b/b.log"],
    ["b", "!b/"],
    ["src/*.log", "src/**/a.txt"],
    ["*.tmp", "!z.tmp"],
    ["/*.md", "!notes.md"],
    ["a/*", "!a/a.txt", "!a/b/"],
    ["sub dir/", "!sub dir/keep.txt"],
    ["**/build/**", "!**/build/**/"],
    ["deploy-hook.log", ".deploy-*"],
    ["keep", "!keep/"],
    ["*.txt", "!/a.txt", "a.txt"],
    ["\ufeffz.tmp"],
    ["x/**/", "!x/**/keep.txt"],
    ["*/", "!src/"],
    ["/*", "!/src", "!/.gitignore", "!/README.md"],
    ["run.sh", "!*.sh"],
    ["logs/**/today", "!logs/**/keep.txt"],
    ["a/**/b/**/c.txt"],
    ["**/x/**", "!**/x/**/"],
]
_ignore_lines = st.lists(
    st.one_of(st.sampled_from(RULE_GROUPS), st.lists(_ignore_line, min_size=1, max_size=2)),
    min_size=1,
    max_size=4,
).map(lambda groups: [line for g in groups for line in g])
_pick = st.integers(min_value=0, max_value=10_000)


@dataclass(frozen=True)
class FileSpec:
    content: bytes
    executable: bool = False


@dataclass(frozen=True)
class LinkSpec:
    target: str


_file_spec = st.builds(FileSpec, _content, st.booleans())
_link_spec = st.builds(LinkSpec, st.sampled_from(LINK_TARGETS))
_entry_spec = st.one_of(_file_spec, _file_spec, _file_spec, _link_spec)


@dataclass
class Scenario:
    initial: list[tuple[str, Any]]
    gitignores: list[tuple[str, list[str], bool]]  # (dir, lines, as a symlink)
    attributes: list[str] | None  # a root .gitattributes in the initial commit
    second: list[tuple[Any, ...]] | None
    force_push: bool  # the second commit replaces the first (amend + push --force)
    prefetch: bool
    fresh_stat: bool
    separate_gitdir: bool  # the deploy's .git is a gitfile (clone --separate-git-dir)
    config: list[tuple[str, str]]  # deploy-local git config
    dirt: list[tuple[Any, ...]]
    keeps: list[str]


IGNORED_LIKE = [
    "foo.log",
    "build/out.o",
    "anchored",
    "x",
    "a/q/b",
    "abc.txt",
    "logs/today",
    "keep/k.txt",
    "build",
    "logs",
    "b",
    "x/anchored",
    "src/anchored",
    "a/b",
    "a/x/b",
    "a/b/c",
    "c/x",
    "z.tmp",
    "c",
    "b/x",
    "a/x/y/b",
    "important.log",
    "keep/keep.txt",
    "build/keep.txt",
    "b/b.log",
    "notes.md",
    "other.md",
    "src/x",
    "x/keep.txt",
    "x/y/keep.txt",
    "a/a.txt",
    "a/b/c.txt",
    "X.LOG",
    "BUILD/out.o",
    "Keep/k.txt",
    "README.MD",
    "Anchored",
    "A.txt",
]
KEEP_LIKE = [
    "deploy-hook.log",
    ".deploy-prev-image-42",
    "keep/state.json",
    "s.keep",
    "top-only",
    "x",
    "keep.txt",
    "keep",
    "a/b.log",
    "c/inner",
    "a/y/x",
    "keep/a/b/state.json",
    "keep/state.json",
    "logs/a/b/c.txt",
    "src/logs/a/b.txt",
]
ATTRIBUTE_LINES = [
    "* text=auto",
    "*.txt text eol=crlf",
    "*.log -text",
    "*.md eol=lf",
    "* text=auto eol=crlf",
    "*.sh text eol=lf",
    "*.txt ident",
    "x binary",
    "*.keep text",
    "* -text",
]
_untracked_path = st.one_of(
    _path,
    st.builds(_join, _dir_chain(2), st.sampled_from(IGNORED_LIKE + KEEP_LIKE)),
)
_untracked_entry = st.one_of(_file_spec, _file_spec, _link_spec, st.just("dir"))


# Second origin commit operations.
_upstream_op = st.one_of(
    st.tuples(st.just("modify"), _pick, _content),
    st.tuples(st.just("delete"), _pick),
    st.tuples(st.just("add"), _path, _entry_spec),
    st.tuples(st.just("chmod"), _pick),
    st.tuples(st.just("file_to_dir"), _pick, st.sampled_from(FILES), _content),
    st.tuples(st.just("dir_to_file"), _pick, _content),
    st.tuples(st.just("to_link"), _pick, st.sampled_from(LINK_TARGETS)),
    st.tuples(st.just("link_to_file"), _pick, _content),
    st.tuples(st.just("ignore_add"), _dir_chain(2), _ignore_lines),
    st.tuples(st.just("ignore_drop_line"), _pick, _pick),
    st.tuples(st.just("ignore_delete"), _pick),
    st.tuples(st.just("burst"), st.lists(st.tuples(_path, _entry_spec), min_size=1, max_size=5)),
    st.tuples(st.just("ignore_add"), st.just(""), _ignore_lines),
    st.tuples(st.just("gitlink"), _path),
)

# Deploy dirt operations.
_dirt_op = st.one_of(
    st.tuples(st.just("edit"), _pick, _content),
    st.tuples(st.just("same_size_edit"), _pick, st.booleans()),
    st.tuples(st.just("delete"), _pick),
    st.tuples(st.just("chmod"), _pick),
    st.tuples(
        st.just("file_to_dir"),
        _pick,
        st.lists(st.tuples(st.sampled_from(FILES), _content), max_size=2),
    ),
    st.tuples(st.just("to_link"), _pick, st.sampled_from(LINK_TARGETS + OUTSIDE_TARGETS)),
    st.tuples(st.just("dir_to_other"), _pick, st.sampled_from(["file", *OUTSIDE_TARGETS, "src"])),
    st.tuples(st.just("stage_all")),
    st.tuples(st.just("stage_path"), _pick),
    st.tuples(st.just("rm_cached"), _pick),
    st.tuples(st.just("untracked"), _untracked_path, _file_spec),
    st.tuples(
        st.just("burst"),
        st.lists(st.tuples(_untracked_path, _untracked_entry), min_size=1, max_size=6),
    ),
    st.tuples(
        st.just("burst"),
        st.lists(st.tuples(_untracked_path, _untracked_entry), min_size=1, max_size=6),
    ),
    st.tuples(st.just("untracked_link"), _path, st.sampled_from(LINK_TARGETS)),
    st.tuples(st.just("empty_dir"), _dir_chain(3, 1)),
    st.tuples(
        st.just("ignored_like"),
        _dir_chain(2),
        st.sampled_from(
            [
                "foo.log",
                "build/out.o",
                "anchored",
                "x",
                "a/q/b",
                "abc.txt",
                "logs/today",
                "keep/k.txt",
                "z.tmp",
                "c",
                "b/x",
                "a/x/y/b",
            ]
        ),
    ),
    st.tuples(
        st.just("keep_like"),
        _dir_chain(2),
        st.sampled_from(
            [
                "deploy-hook.log",
                ".deploy-prev-image-42",
                "keep/state.json",
                "s.keep",
                "top-only",
                "x",
                "keep.txt",
                "keep",
                "a/b.log",
                "c/inner",
            ]
        ),
    ),
    st.tuples(
        st.just("nested_repo"),
        _dir_chain(2, 1),
        st.booleans(),
        st.sampled_from(["", "ignored.log", "x"]),
    ),
    st.tuples(
        st.just("nested_repo"),
        _dir_chain(2, 1),
        st.booleans(),
        st.sampled_from(["", "ignored.log", "x"]),
    ),
    st.tuples(
        st.just("fake_repo"),
        _dir_chain(2, 1),
        st.sampled_from(
            [
                "empty_dir",
                "gitfile_nowhere",
                "gitfile_valid",
                "gitfile_garbage",
                "partial_dir",
                "dotgit_symlink",
                "dotgit_symlink_outside",
            ]
        ),
        st.booleans(),
    ),
    st.tuples(st.just("outside_link"), _path, st.sampled_from(OUTSIDE_TARGETS)),
    st.tuples(st.just("odd_name"), _dir_chain(1), st.sampled_from(ODD_NAMES), _content),
    st.tuples(st.just("local_commit")),
    st.tuples(st.just("local_gitignore"), _dir_chain(2), _ignore_lines),
    st.tuples(st.just("info_exclude"), _ignore_lines),
    st.tuples(st.just("excludes_file"), _ignore_lines),
    st.tuples(st.just("gitignore_link"), _dir_chain(2), _ignore_lines),
    st.tuples(st.just("assume_unchanged"), _pick, _content),
    st.tuples(st.just("skip_worktree"), _pick, st.none() | _content),
    st.tuples(st.just("conflict"), _pick),
    st.tuples(st.just("refresh_index")),
    st.tuples(st.just("detach")),
    st.tuples(st.just("other_branch")),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    initial = draw(st.lists(st.tuples(_path, _entry_spec), min_size=1, max_size=16))
    gitignores = draw(
        st.lists(
            st.tuples(_dir_chain(2), _ignore_lines, st.just(False)),
            max_size=3,
        )
    )
    if draw(st.integers(0, 3)):  # usually a top-level .gitignore, listed first
        gitignores.insert(0, ("", draw(_ignore_lines), False))
    # A tracked .gitignore that is a symlink (git never follows one) now and then.
    if draw(st.integers(0, 3)) == 0 and gitignores:
        d, lines, _ = gitignores[0]
        gitignores[0] = (d, lines, True)
    # fresh_stat: gitsafe and git each run on their own build of the scenario, so the index's
    # cached stat data is valid as in real life.  Otherwise both run on copies (cp -a style),
    # where every tracked file is stat-dirty.
    fresh_stat = draw(st.booleans())
    # (copies of a gitfile checkout would share one git directory: fresh builds only)
    separate_gitdir = fresh_stat and not _gap("separate_gitdir") and draw(st.integers(0, 4)) == 0
    attributes = None
    # Checkout conversions make a stat-dirty rewrite visible (KNOWN_GAP_STAT_DIRTY_REWRITE).
    conversions = not _gap("smudge_hang") and (fresh_stat or not _gap("stat_dirty_rewrite"))
    if conversions and draw(st.integers(0, 5)) == 0:
        attributes = draw(st.lists(st.sampled_from(ATTRIBUTE_LINES), min_size=1, max_size=3))
    second = draw(st.none() | st.lists(_upstream_op, min_size=1, max_size=8))
    force_push = second is not None and draw(st.integers(0, 4)) == 0
    # (with a separate git directory doctor is not probed on a copy: fetch beforehand)
    prefetch = separate_gitdir or draw(st.booleans())
    config: list[tuple[str, str]] = []
    if not _gap("stat_dirty_rewrite") and draw(st.integers(0, 9)) == 0:
        config.append(("core.fileMode", "false"))
    if conversions and draw(st.integers(0, 14)) == 0:
        config.append(("core.autocrlf", draw(st.sampled_from(["true", "input"]))))
    if not _gap("ignorecase") and draw(st.integers(0, 9)) == 0:
        config.append(("core.ignoreCase", "true"))
    if not _gap("symlinks_false") and draw(st.integers(0, 14)) == 0:
        config.append(("core.symlinks", "false"))
    dirt = draw(st.lists(_dirt_op, max_size=24))
    # Untracked entries are cheap (no git call) and are what the ignore rules decide on: a
    # batch of them in (almost) every example, at a random point among the other operations.
    batch = draw(st.lists(st.tuples(_untracked_path, _untracked_entry), max_size=12))
    if batch:
        dirt.insert(draw(st.integers(0, len(dirt))), ("burst", batch))
    # Names made from the patterns in force, as files, directories or symlinks: dir-only
    # patterns meet files, anchored ones meet deeper names, wildcards meet what they match.
    baits = draw(
        st.lists(
            st.tuples(
                _pick, _dir_chain(2), st.sampled_from(["file", "dir", "empty_dir", "link"]), _pick
            ),
            max_size=8,
        )
    )
    if baits:
        dirt.insert(draw(st.integers(0, len(dirt))), ("baits", baits))
    keeps = draw(st.lists(st.sampled_from(KEEP_PATTERNS), max_size=3, unique=True))
    return Scenario(
        initial,
        gitignores,
        attributes,
        second,
        force_push,
        prefetch,
        fresh_stat,
        separate_gitdir,
        config,
        dirt,
        keeps,
    )


# --------------------------------------------------------------------------------------------
# Acting on the file system, with a shell transcript for failure reports.


def _printf(data: bytes) -> str:
    out = []
    for b in data:
        c = chr(b)
        if c == "%":
            out.append("%%")
        elif c == "\\":
            out.append("\\\\")
        elif c == "'":
            out.append("'\\''")
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return "printf '" + "".join(out) + "'"


class World:
    """One example's directories, and a transcript of everything done to them."""

    def __init__(self, base: Path) -> None:
        self.base = base  # shared by every build of the example
        self.home = base  # where the current build puts its repositories
        self.outside = base / "outside"
        self.log: list[str] = []
        self.quiet = False
        self.nested: list[str] = []  # embedded repositories created in the deploy
        self.patterns: list[str] = []  # every ignore/keep pattern written so far: bait for names
        self.gitlinks: list[str] = []  # gitlink entries of the upstream tree
        self.gitdir = base  # the deploy's git directory, once cloned

    def rel(self, path: Path) -> str:
        return shlex.quote(os.path.relpath(path, self.base))

    def resolve_target(self, target: str) -> str:
        return target.replace(OUTSIDE, str(self.outside))

    def say(self, cmd: str) -> None:
        if not self.quiet:
            self.log.append(cmd)

    # -- guarded primitives: never act through a symlink or a non-directory ------------------

    def real_parent(self, root: Path, rel: str, create: bool) -> bool:
        """Every leading component of ``rel`` is a real directory (created if ``create``)."""
        current = root
        for part in rel.split("/")[:-1]:
            current = current / part
            try:
                lst = os.lstat(current)
            except FileNotFoundError:
                if not create:
                    return False
                os.mkdir(current)
                self.say(f"mkdir {self.rel(current)}")
                continue
            except NotADirectoryError:
                return False
            if not stat.S_ISDIR(lst.st_mode):
                return False
        return True

    def lexists(self, root: Path, rel: str) -> bool:
        return self.real_parent(root, rel, False) and os.path.lexists(root / rel)

    def remove(self, root: Path, rel: str) -> bool:
        if not self.real_parent(root, rel, False):
            return False
        p = root / rel
        try:
            lst = os.lstat(p)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(lst.st_mode):
            shutil.rmtree(p)
            self.say(f"rm -rf {self.rel(p)}")
        else:
            os.unlink(p)
            self.say(f"rm -f {self.rel(p)}")
        return True

    def write(
        self, root: Path, rel: str, data: bytes, executable: bool = False, replace: bool = True
    ) -> bool:
        if not self.real_parent(root, rel, True):
            return False
        p = root / rel
        if os.path.lexists(p):
            if not replace or (os.path.isdir(p) and not os.path.islink(p)):
                return False
            os.unlink(p)
            self.say(f"rm -f {self.rel(p)}")
        p.write_bytes(data)
        self.say(f"{_printf(data)} > {self.rel(p)}")
        if executable:
            p.chmod(p.stat().st_mode | 0o111)
            self.say(f"chmod +x {self.rel(p)}")
        return True

    def overwrite_in_place(self, root: Path, rel: str, data: bytes, keep_mtime: bool) -> bool:
        if not self.real_parent(root, rel, False):
            return False
        p = root / rel
        try:
            lst = os.lstat(p)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(lst.st_mode):
            return False
        with open(p, "r+b") as f:
            f.write(data)
            f.truncate()
        self.say(f"{_printf(data)} 1<> {self.rel(p)}  # in place, same inode")
        if keep_mtime:
            os.utime(p, ns=(lst.st_atime_ns, lst.st_mtime_ns))
            self.say(f"touch -d @{lst.st_mtime_ns / 1e9:.9f} {self.rel(p)}")
        return True

    def symlink(self, root: Path, rel: str, target: str) -> bool:
        if not self.real_parent(root, rel, True):
            return False
        p = root / rel
        if os.path.lexists(p):
            if os.path.isdir(p) and not os.path.islink(p):
                return False
            os.unlink(p)
            self.say(f"rm -f {self.rel(p)}")
        real = self.resolve_target(target)
        os.symlink(real, p)
        self.say(f"ln -s {shlex.quote(real)} {self.rel(p)}")
        return True

    def mkdir(self, root: Path, rel: str) -> bool:
        if not self.real_parent(root, rel + "/x", True):
            return False
        return os.path.isdir(root / rel) and not os.path.islink(root / rel)

    def chmod_toggle(self, root: Path, rel: str) -> bool:
        if not self.real_parent(root, rel, False):
            return False
        p = root / rel
        try:
            lst = os.lstat(p)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(lst.st_mode):
            return False
        if lst.st_mode & 0o100:
            p.chmod(lst.st_mode & ~0o111)
            self.say(f"chmod -x {self.rel(p)}")
        else:
            p.chmod(lst.st_mode | 0o111)
            self.say(f"chmod +x {self.rel(p)}")
        return True

    def git(self, cwd: Path, *args: str, check: bool = True) -> str:
        # Fixed dates: two builds of one scenario must produce the same commit ids.
        self.say(f"git -C {self.rel(cwd)} " + " ".join(shlex.quote(a) for a in args))
        return git(cwd, *args, check=check, env=_FIXED_DATES)

    def transcript(self) -> str:
        return "\n".join(self.log)


_FIXED_DATES = {
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00 +0000",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00 +0000",
}


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """(non-directories, directories) below ``root``, sorted, without following symlinks and
    without any ``.git``."""
    files: list[str] = []
    dirs: list[str] = []

    def visit(rel: str) -> None:
        full = root / rel if rel else root
        for name in sorted(os.listdir(full)):
            if name == ".git":
                continue
            child = _join(rel, name)
            if os.path.isdir(root / child) and not os.path.islink(root / child):
                dirs.append(child)
                visit(child)
            else:
                files.append(child)

    visit("")
    return files, dirs


def _pick_from(items: list[str], n: int) -> str | None:
    return items[n % len(items)] if items else None


# --------------------------------------------------------------------------------------------
# Building an example


def _conflicts(path: str, taken: set[str]) -> bool:
    parts = path.split("/")
    prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
    if path in taken or prefixes & taken:
        return True
    return any(t.startswith(path + "/") for t in taken)


def _blocked(path: str, files: list[str], dirs: list[str]) -> bool:
    """Writing a non-directory at ``path`` would need a file turned into a directory or a
    directory replaced."""
    parts = path.split("/")
    prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
    return path in dirs or bool(prefixes & set(files))


def _commit_upstream(w: World, work: Path, message: str, amend: bool = False) -> None:
    w.git(work, "add", "-A", "-f")
    for path in w.gitlinks:
        if os.path.isdir(work / path) and not os.listdir(work / path):
            sha = w.git(work, "rev-parse", "HEAD", check=False).strip() or "1" * 40
            w.git(work, "update-index", "--add", "--cacheinfo", f"160000,{sha},{path}")
    w.gitlinks = [p for p in w.gitlinks if os.path.isdir(work / p)]
    w.git(work, "commit", "-q", "--allow-empty", *(["--amend"] if amend else []), "-m", message)
    w.git(work, "push", "-q", *(["--force"] if amend else []), "origin", "HEAD:main")


def build_origin(w: World, sc: Scenario) -> tuple[Path, Path]:
    bare, work = w.home / "origin.git", w.home / "upstream"
    w.git(w.home, "init", "-q", "--bare", "-b", "main", str(bare))
    w.git(w.home, "clone", "-q", str(bare), str(work))
    taken: set[str] = set()
    for path, spec in [("README.md", FileSpec(b"hello\n")), *sc.initial]:
        if _conflicts(path, taken):
            continue
        taken.add(path)
        if isinstance(spec, FileSpec):
            w.write(work, path, spec.content, spec.executable)
        else:
            w.symlink(work, path, spec.target)
    for d, lines, as_link in sc.gitignores:
        path = _join(d, ".gitignore")
        if _conflicts(path, taken):
            continue
        taken.add(path)
        text = "".join(line + "\n" for line in lines).encode()
        w.patterns.extend(lines)
        if as_link:
            real = _join(d, "ignore-rules")
            if _conflicts(real, taken):
                continue
            taken.add(real)
            w.write(work, real, text)
            w.symlink(work, path, "ignore-rules")
        else:
            w.write(work, path, text)
    if sc.attributes is not None and ".gitattributes" not in taken:
        w.write(work, ".gitattributes", "".join(a + "\n" for a in sc.attributes).encode())
    _commit_upstream(w, work, "initial")
    return bare, work


def apply_upstream_op(w: World, work: Path, op: tuple[Any, ...]) -> None:
    kind = op[0]
    files, dirs = _walk(work)
    plain = [f for f in files if not f.endswith(".gitignore")]
    if _gap("gitattributes_source"):
        plain = [f for f in plain if f.rpartition("/")[2] != ".gitattributes"]
    ignores = [f for f in files if f.rpartition("/")[2] == ".gitignore"]
    if kind == "modify":
        p = _pick_from(plain, op[1])
        if p and not os.path.islink(work / p):
            w.write(work, p, op[2], os.access(work / p, os.X_OK))
    elif kind == "delete":
        p = _pick_from(plain, op[1])
        if p:
            w.remove(work, p)
    elif kind == "add":
        path, spec = op[1], op[2]
        if _blocked(path, files, dirs):
            return
        if isinstance(spec, FileSpec):
            w.write(work, path, spec.content, spec.executable)
        else:
            w.symlink(work, path, spec.target)
    elif kind == "chmod":
        p = _pick_from(plain, op[1])
        if p:
            w.chmod_toggle(work, p)
    elif kind == "file_to_dir":
        p = _pick_from(plain, op[1])
        if p and w.remove(work, p):
            w.write(work, _join(p, op[2]), op[3])
    elif kind == "dir_to_file":
        d = _pick_from(dirs, op[1])
        if d and w.remove(work, d):
            w.write(work, d, op[2])
    elif kind == "to_link":
        p = _pick_from(plain, op[1])
        if p:
            w.symlink(work, p, op[2])
    elif kind == "link_to_file":
        links = [f for f in plain if os.path.islink(work / f)]
        p = _pick_from(links, op[1])
        if p:
            w.write(work, p, op[2])
    elif kind == "ignore_add":
        path = _join(op[1], ".gitignore")
        if op[1] and not w.mkdir(work, op[1]):
            return
        old = b""
        if os.path.isfile(work / path) and not os.path.islink(work / path):
            old = (work / path).read_bytes()
        elif os.path.lexists(work / path):
            return
        w.write(work, path, old + "".join(line + "\n" for line in op[2]).encode())
        w.patterns.extend(op[2])
    elif kind == "burst":
        for path, spec in op[1]:
            apply_upstream_op(w, work, ("add", path, spec))
    elif kind == "gitlink":  # a submodule-style entry (no .gitmodules): an empty directory
        path = op[1]
        if _blocked(path, files, dirs) or path in files or path in dirs:
            return
        if w.mkdir(work, path):
            w.gitlinks.append(path)
    elif kind == "ignore_drop_line":
        p = _pick_from(ignores, op[1])
        if p and os.path.isfile(work / p) and not os.path.islink(work / p):
            lines = (work / p).read_bytes().split(b"\n")
            if lines:
                del lines[op[2] % len(lines)]
                w.write(work, p, b"\n".join(lines))
    elif kind == "ignore_delete":
        p = _pick_from(ignores, op[1])
        if p:
            w.remove(work, p)


def _bait_name(pattern: str, variant: int) -> str | None:
    """A path the pattern (an ignore line or a keep-pattern) matches, or nearly matches."""
    p = pattern.rstrip("\r").lstrip("\ufeff")
    if p.startswith("!"):
        p = p[1:]
    p = p.rstrip("/").lstrip("/")
    star = ["", "zz", "a"][variant % 3]
    out, i = [], 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append(["", "q/", "q/r/"][variant % 3])
            i += 3
        elif p.startswith("**", i):
            out.append(["q", "q/r", ""][variant % 3])
            i += 2
        elif p[i] == "*":
            out.append(star)
            i += 1
        elif p[i] == "?":
            out.append("q")
            i += 1
        elif p[i] == "[":
            end = p.find("]", i + 2)
            if end < 0:
                return None
            body = p[i + 1 : end]
            out.append("z" if body[:1] in ("!", "^") else body[0] if body[0] != "\\" else "b")
            i = end + 1
        elif p[i] == "\\" and i + 1 < len(p):
            out.append(p[i + 1])
            i += 2
        else:
            out.append(p[i])
            i += 1
    name = "".join(out).strip("/")
    while "//" in name:
        name = name.replace("//", "/")
    if not name or any(part in (".", "..", ".git") for part in name.split("/")):
        return None
    return name


def _not_nested(w: World) -> list[str]:
    """Pathspecs for ``git add``: embedded repositories stay unstaged while
    KNOWN_GAP_STAGED_GITLINK is on, paths the origin made gitlinks while
    KNOWN_GAP_DIR_TO_GITLINK is on."""
    paths = list(w.nested) if _gap("staged_gitlink") else []
    paths += w.gitlinks if _gap("dir_to_gitlink") else []
    return [f":(exclude,literal){d}" for d in paths]


def apply_dirt(
    w: World, deploy: Path, op: tuple[Any, ...], tracked: list[str], tracked_dirs: list[str]
) -> None:
    kind = op[0]
    if kind == "edit":
        p = _pick_from(tracked, op[1])
        if p:
            w.write(
                deploy, p, op[2], os.access(deploy / p, os.X_OK) and not os.path.islink(deploy / p)
            )
    elif kind == "same_size_edit":
        p = _pick_from(tracked, op[1])
        if p and os.path.isfile(deploy / p) and not os.path.islink(deploy / p):
            data = (deploy / p).read_bytes()
            if data:
                flipped = bytes([data[0] ^ 0x01]) + data[1:]
                w.overwrite_in_place(deploy, p, flipped, keep_mtime=op[2])
    elif kind == "delete":
        p = _pick_from(tracked, op[1])
        if p:
            w.remove(deploy, p)
    elif kind == "chmod":
        p = _pick_from(tracked, op[1])
        if p:
            w.chmod_toggle(deploy, p)
    elif kind == "file_to_dir":
        p = _pick_from(tracked, op[1])
        if p and w.lexists(deploy, p) and not os.path.isdir(deploy / p):
            w.remove(deploy, p)
            if not op[2]:
                w.mkdir(deploy, p)
            for name, content in op[2]:
                w.write(deploy, _join(p, name), content)
    elif kind == "to_link":
        p = _pick_from(tracked, op[1])
        if (
            p
            and w.lexists(deploy, p)
            and not (os.path.isdir(deploy / p) and not os.path.islink(deploy / p))
        ):
            w.symlink(deploy, p, op[2])
    elif kind == "dir_to_other":
        d = _pick_from(tracked_dirs, op[1])
        if d and w.remove(deploy, d):
            if op[2] == "file":
                w.write(deploy, d, b"now a file\n")
            else:
                w.symlink(deploy, d, op[2])
    elif kind == "stage_all":
        w.git(deploy, "add", "-A", "--", ".", *_not_nested(w), check=False)
    elif kind == "stage_path":
        p = _pick_from(tracked, op[1])
        if p:
            w.git(deploy, "add", "-A", "--", p, *_not_nested(w), check=False)
    elif kind == "rm_cached":
        p = _pick_from(tracked, op[1])
        if p:
            w.git(deploy, "rm", "-q", "-r", "--cached", "--ignore-unmatch", "--", p, check=False)
    elif kind == "untracked":
        spec: FileSpec = op[2]
        w.write(deploy, op[1], spec.content, spec.executable, replace=False)
    elif kind == "burst":
        for path, spec in op[1]:
            if w.lexists(deploy, path):
                continue
            if spec == "dir":
                w.mkdir(deploy, path)
            elif isinstance(spec, FileSpec):
                w.write(deploy, path, spec.content, spec.executable, replace=False)
            else:
                w.symlink(deploy, path, spec.target)
    elif kind == "baits":
        for pick, d, how, variant in op[1]:
            pattern = _pick_from(w.patterns, pick)
            name = _bait_name(pattern, variant) if pattern else None
            if not name:
                continue
            path = (
                name
                if pattern and pattern.lstrip("!").startswith("/") and variant % 3
                else (_join(d, name))
            )
            if w.lexists(deploy, path):
                continue
            if how == "file":
                w.write(deploy, path, b"bait\n", replace=False)
            elif how == "dir":
                w.mkdir(deploy, path)
                w.write(deploy, _join(path, "inside.txt"), b"bait\n", replace=False)
            elif how == "empty_dir":
                w.mkdir(deploy, path)
            else:
                w.symlink(deploy, path, "a.txt")
    elif kind == "untracked_link":
        if not w.lexists(deploy, op[1]):
            w.symlink(deploy, op[1], op[2])
    elif kind == "empty_dir":
        w.mkdir(deploy, op[1])
    elif kind in ("ignored_like", "keep_like"):
        w.write(deploy, _join(op[1], op[2]), b"local state\n", replace=False)
    elif kind == "nested_repo":
        d, commit, extra = op[1], op[2], op[3]
        if w.lexists(deploy, d) and not os.path.isdir(deploy / d):
            return
        if not w.mkdir(deploy, d) or os.path.lexists(deploy / d / ".git"):
            return
        w.git(deploy / d, "init", "-q")
        w.nested.append(d)
        w.write(deploy, _join(d, "inner.txt"), b"nested work\n")
        if extra:
            w.write(deploy, _join(d, extra), b"nested extra\n")
        if commit:
            # (check=False: an uncommitted repository nested inside makes "add" fail)
            w.git(deploy / d, "add", "-A", check=False)
            w.git(deploy / d, "commit", "-q", "--allow-empty", "-m", "nested", check=False)
    elif kind == "fake_repo":
        d, how, with_file = op[1], op[2], op[3]
        if w.lexists(deploy, d) and not os.path.isdir(deploy / d):
            return
        if not w.mkdir(deploy, d) or os.path.lexists(deploy / d / ".git"):
            return
        dotgit = _join(d, ".git")
        if how == "empty_dir":
            w.mkdir(deploy, dotgit)
        elif how == "partial_dir":  # HEAD but no objects/refs: not a repository
            w.write(deploy, _join(dotgit, "HEAD"), b"ref: refs/heads/main\n")
        elif how == "gitfile_nowhere":
            w.write(deploy, dotgit, b"gitdir: /nowhere\n")
        elif how == "gitfile_garbage":
            w.write(deploy, dotgit, b"not a gitfile\n")
        elif how == "gitfile_valid":
            store = w.base / "separate-gitdir.git"  # shared: its path is in the gitfile
            if not store.exists():
                w.git(w.base, "init", "-q", "--bare", str(store))
            w.write(deploy, dotgit, f"gitdir: {store}\n".encode())
        elif how == "dotgit_symlink":  # .git -> a real git directory elsewhere
            store = w.base / "separate-gitdir.git"
            if not store.exists():
                w.git(w.base, "init", "-q", "--bare", str(store))
            w.symlink(deploy, dotgit, str(store))
        elif how == "dotgit_symlink_outside":
            w.symlink(deploy, dotgit, OUTSIDE)
        if with_file:
            w.write(deploy, _join(d, "payload.txt"), b"inside\n", replace=False)
    elif kind == "outside_link":
        if not w.lexists(deploy, op[1]):
            w.symlink(deploy, op[1], op[2])
    elif kind == "odd_name":
        w.write(deploy, _join(op[1], op[2]), op[3], replace=False)
    elif kind == "local_commit":
        w.git(deploy, "add", "-A", "--", ".", *_not_nested(w), check=False)
        w.git(deploy, "commit", "-q", "--allow-empty", "-m", "local change", check=False)
    elif kind == "local_gitignore":
        path = _join(op[1], ".gitignore")
        if op[1] and not w.mkdir(deploy, op[1]):
            return
        if os.path.lexists(deploy / path) and not os.path.isfile(deploy / path):
            return
        old = (deploy / path).read_bytes() if os.path.isfile(deploy / path) else b""
        w.write(deploy, path, old + "".join(line + "\n" for line in op[2]).encode())
        w.patterns.extend(op[2])
    elif kind == "assume_unchanged":
        p = _pick_from(tracked, op[1])
        if p and w.lexists(deploy, p):
            w.git(deploy, "update-index", "--assume-unchanged", "--", p, check=False)
            w.write(deploy, p, op[2], os.access(deploy / p, os.X_OK))
    elif kind == "skip_worktree":
        p = _pick_from(tracked, op[1])
        if p and not _gap("skip_worktree") and w.lexists(deploy, p):
            w.git(deploy, "update-index", "--skip-worktree", "--", p, check=False)
            if op[2] is None:
                w.remove(deploy, p)
            else:
                w.write(deploy, p, op[2])
    elif kind == "gitignore_link":  # git never reads a symlinked .gitignore
        path = _join(op[1], ".gitignore")
        rules = _join(op[1], "rules.txt")
        if op[1] and not w.mkdir(deploy, op[1]):
            return
        if w.lexists(deploy, path) or w.lexists(deploy, rules):
            return
        w.write(deploy, rules, "".join(line + "\n" for line in op[2]).encode())
        w.symlink(deploy, path, "rules.txt")
        w.patterns.extend(op[2])
    elif kind == "conflict":  # a merge stopped on a conflict: unmerged index, MERGE_HEAD
        files = [
            p for p in tracked if os.path.isfile(deploy / p) and not os.path.islink(deploy / p)
        ]
        p = _pick_from(files, op[1])
        if not p or not w.real_parent(deploy, p, False):
            return
        if w.git(deploy, "symbolic-ref", "-q", "HEAD", check=False).strip() == "":
            return
        w.git(deploy, "add", "-A", "--", ".", *_not_nested(w), check=False)
        w.git(deploy, "commit", "-q", "--allow-empty", "-m", "before conflict", check=False)
        w.git(deploy, "checkout", "-q", "-b", "side", "HEAD~0", check=False)
        w.write(deploy, p, b"side version\n")
        w.git(deploy, "commit", "-q", "-a", "-m", "side", check=False)
        w.git(deploy, "checkout", "-q", "-", check=False)
        w.write(deploy, p, b"our version\n")
        w.git(deploy, "commit", "-q", "-a", "-m", "ours", check=False)
        w.git(deploy, "merge", "-q", "side", check=False)
    elif kind == "info_exclude":
        path = w.gitdir / "info" / "exclude"
        path.parent.mkdir(exist_ok=True)
        data = "".join(line + "\n" for line in op[1]).encode()
        w.patterns.extend(op[1])
        with open(path, "ab") as f:
            f.write(data)
        w.say(f"{_printf(data)} >> {w.rel(path)}")
    elif kind == "excludes_file":
        path = w.home / "global-ignore"
        data = "".join(line + "\n" for line in op[1]).encode()
        w.patterns.extend(op[1])
        with open(path, "ab") as f:
            f.write(data)
        w.say(f"{_printf(data)} >> {w.rel(path)}")
        w.git(deploy, "config", "core.excludesFile", str(path))
    elif kind == "refresh_index":
        w.git(deploy, "update-index", "-q", "--refresh", check=False)
    elif kind == "detach":
        w.git(deploy, "checkout", "-q", "--detach", check=False)
    elif kind == "other_branch":
        w.git(deploy, "checkout", "-q", "-B", "other", check=False)
    else:  # pragma: no cover
        raise AssertionError(kind)


# --------------------------------------------------------------------------------------------
# The property


def _make_outside(w: World) -> None:
    o = w.outside
    (o / "sub").mkdir(parents=True)
    (o / "emptysub").mkdir()
    (o / "canary.txt").write_bytes(b"never touch me\n")
    (o / "sub" / "inner.txt").write_bytes(b"nor me\n")
    w.say(
        "mkdir -p outside/sub outside/emptysub && echo 'never touch me' > outside/canary.txt"
        " && echo 'nor me' > outside/sub/inner.txt"
    )


def _snap(root: Path) -> dict[str, tuple[object, ...]]:
    """snapshot(), except the index of a nested repository: its cached stat data differs
    between two builds of one scenario."""
    snap = snapshot(root)
    for key in snap:
        if key.endswith("/.git/index") and snap[key][0] == "file":
            snap[key] = ("file", snap[key][1], "<nested index>")
    return snap


class Hung(BaseException):
    """gitsafe did not return in time (a BaseException: gitsafe turns OSErrors into reports)."""


@contextlib.contextmanager
def _time_limit(what: str, seconds: int = 20) -> Iterator[None]:
    def alarm(_signum: int, _frame: object) -> None:
        raise Hung(f"{what} did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    # Repeating: clean-up code (a ``with`` block's __exit__) may block again after the first one.
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_HUNG_REMAINS: list[BaseException] = []


def _exit_without_finalising() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _guarded(what: str, call: Callable[[], T]) -> T:
    """``call()`` under a time limit; a hang fails the example instead of the whole run.

    What hung (a reader waiting on a dead thread, say) would block again when finalised, so it
    is kept alive for good, and the process leaves without finalising anything.
    """
    try:
        with _time_limit(what):
            return call()
    except Hung as e:
        if not _HUNG_REMAINS:
            atexit.register(_exit_without_finalising)
        _HUNG_REMAINS.append(e)
        message = str(e)
    raise AssertionError(message)


def _outside_gitdir(gitdir: Path) -> dict[str, tuple[object, ...]]:
    """What lies next to a separate git directory (the directory itself left out)."""
    snap = snapshot(gitdir.parent, skip_git=False) if gitdir.parent.is_dir() else {}
    return {k: v for k, v in snap.items() if k.split("/")[0] != gitdir.name}


def _status(checkout: Path) -> str:
    """``git status --porcelain --ignored``, or its error: git refuses some states (a gitlink
    whose directory holds an empty .git), and then both sides must refuse alike."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"],
        cwd=checkout,
        capture_output=True,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "surrogateescape")
    if proc.returncode:
        out += f"[exit {proc.returncode}] " + proc.stderr.decode("utf-8", "replace").replace(
            str(checkout), "<checkout>"
        )
    return out


def _check(cond: bool, message: str, failures: list[str]) -> None:
    if not cond:
        failures.append(message)


def build(w: World, sc: Scenario) -> tuple[Path, str]:
    """Origin, deploy clone, second commit, dirt; returns (deploy, origin's main)."""
    w.home.mkdir(exist_ok=True)
    w.nested = []
    w.gitlinks = []
    w.patterns = list(sc.keeps)
    bare, work = build_origin(w, sc)
    deploy = w.home / "deploy"
    if sc.separate_gitdir:
        separate = w.home / "gitdirs" / "deploy.git"
        separate.parent.mkdir(exist_ok=True)
        w.git(w.home, "clone", "-q", f"--separate-git-dir={separate}", str(bare), str(deploy))
        w.write(w.home, "gitdirs/precious.txt", b"next to the git directory\n")
    else:
        w.git(w.home, "clone", "-q", str(bare), str(deploy))
    w.gitdir = Path(git(deploy, "rev-parse", "--absolute-git-dir").strip())
    tracked, tracked_dirs = _walk(deploy)
    if _gap("gitattributes_source"):
        tracked = [p for p in tracked if p.rpartition("/")[2] != ".gitattributes"]
    for key, value in sc.config:
        w.git(deploy, "config", key, value)
    if sc.second is not None:
        for op in sc.second:
            apply_upstream_op(w, work, op)
        _commit_upstream(w, work, "second", amend=sc.force_push)
    if sc.prefetch:
        w.git(deploy, "fetch", "-q", "origin")
    for op in sc.dirt:
        apply_dirt(w, deploy, op, tracked, tracked_dirs)
    return deploy, git(bare, "rev-parse", "main").strip()


def _age_tracked_files(tree: Path) -> None:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=tree, capture_output=True, check=False
    ).stdout
    for name in filter(None, listing.split(b"\0")):
        with contextlib.suppress(OSError):
            os.utime(os.path.join(os.fsencode(tree), name), (1e9, 1e9), follow_symlinks=False)


def _attributes_changed(tree: Path, before: str, after: str) -> bool:
    names = git(tree, "diff", "--name-only", "--no-renames", before, after, check=False)
    return any(n.rpartition("/")[2] == ".gitattributes" for n in names.splitlines())


def run_example(base: Path, sc: Scenario) -> None:
    w = World(base)
    _make_outside(w)
    keeps = list(sc.keeps)
    if sc.fresh_stat:
        w.home = base / "A"
        deploy, target = build(w, sc)
        w.home, w.quiet = base / "B", True
        oracle, target_b = build(w, sc)
        assert target_b == target, "the two builds differ: the scenario is not deterministic"
        before_copy = copy_checkout(deploy, base / "before")
        diff = diff_snapshots(_snap(deploy), _snap(oracle))
        assert diff == [], f"the two builds differ: {diff}"
    else:
        w.home = base / "A"
        original, target = build(w, sc)
        before_copy = original
        deploy = copy_checkout(original, base / "gitsafe")
        oracle = copy_checkout(original, base / "git")

    outside_before = snapshot(w.outside, skip_git=False)

    failures: list[str] = []

    # doctor: read-only, at the remote-tracking ref as last fetched.
    gitdir = Path(git(deploy, "rev-parse", "--absolute-git-dir").strip())
    full_before = snapshot(deploy, skip_git=False)
    gitdir_before = snapshot(gitdir, skip_git=False)
    siblings_before = _outside_gitdir(gitdir) if sc.separate_gitdir else {}
    doc = _guarded(
        "gitsafe.doctor", lambda: gitsafe.doctor(deploy, "origin", "main", exclude=keeps)
    )
    _check(doc.exit_code in (0, 1), f"doctor exit {doc.exit_code}: {doc.error}", failures)
    diff = diff_snapshots(snapshot(deploy, skip_git=False), full_before)
    diff += diff_snapshots(snapshot(gitdir, skip_git=False), gitdir_before)
    _check(diff == [], f"doctor changed the checkout or its .git: {diff}", failures)
    if not sc.prefetch and sc.second is not None:
        # The tracking ref is stale, so that plan is for another target.  Ask doctor to fetch,
        # on a copy so that pull still has to fetch the new commit itself.
        probe = copy_checkout(before_copy, base / "doctor-fetch")
        index_before = (probe / ".git" / "index").read_bytes()
        fetch_head = probe / ".git" / "FETCH_HEAD"
        fh_before = fetch_head.read_bytes() if fetch_head.exists() else None
        wt_before = snapshot(probe)
        doc = _guarded(
            "gitsafe.doctor(fetch_first=True)",
            lambda: gitsafe.doctor(probe, "origin", "main", exclude=keeps, fetch_first=True),
        )
        _check(
            doc.exit_code in (0, 1), f"doctor --fetch exit {doc.exit_code}: {doc.error}", failures
        )
        diff = diff_snapshots(snapshot(probe), wt_before)
        _check(diff == [], f"doctor --fetch changed the work tree: {diff}", failures)
        _check(
            (probe / ".git" / "index").read_bytes() == index_before,
            "doctor --fetch rewrote the index",
            failures,
        )
        _check(
            (fetch_head.read_bytes() if fetch_head.exists() else None) == fh_before,
            "doctor --fetch left FETCH_HEAD changed",
            failures,
        )
    _check(doc.target == target, f"doctor target {doc.target} != origin {target}", failures)

    before_pull = len(failures)
    try:
        rep = _guarded(
            "gitsafe.pull", lambda: gitsafe.pull(deploy, "origin", "main", exclude=keeps)
        )
    except Exception as e:  # the API promises reports, never exceptions
        failures.append(f"pull raised {type(e).__name__}: {e}")
    # Damage outside the work tree is checked first: later checks need an intact repository.
    if sc.separate_gitdir:
        _check(gitdir.is_dir(), f"the git directory {gitdir} is gone", failures)
        siblings = _outside_gitdir(gitdir)
        _check(
            siblings == siblings_before,
            "entries next to the git directory changed: "
            f"{diff_snapshots(siblings, siblings_before)}",
            failures,
        )
    out_after = snapshot(w.outside, skip_git=False)
    _check(out_after == outside_before, "outside canary touched", failures)
    if len(failures) > before_pull:
        note(w.transcript().replace(str(base), "$PWD"))
        raise AssertionError("\n".join(failures))
    try:
        git_sequence(oracle, "origin", "main", keeps)
    except AssertionError as e:
        # git itself gives up (reset --hard: "Entry 'x' not uptodate. Cannot merge." for an
        # assume-unchanged entry the target deletes): there is no end state to compare with.
        # gitsafe must still converge (or refuse cleanly) and stay inside the work tree.
        event("git sequence failed")
        _check(
            rep.exit_code in (0, 2),
            f"pull exit {rep.exit_code} {rep.outcome}: {rep.error}",
            failures,
        )
        if rep.exit_code == 0:
            head = git(deploy, "rev-parse", "HEAD").strip()
            _check(head == target, f"HEAD {head} != origin/main {target}", failures)
            dirty = git(deploy, "status", "--porcelain", "--untracked-files=no", check=False)
            _check(
                dirty == "", f"tracked paths not converged although git failed:\n{dirty}", failures
            )
        out_after = snapshot(w.outside, skip_git=False)
        _check(out_after == outside_before, "outside canary touched", failures)
        if failures:
            note(w.transcript().replace(str(base), "$PWD"))
            raise AssertionError("\n".join([*failures, f"(the git sequence failed: {e})"])) from e
        return

    _check(rep.exit_code == 0, f"pull exit {rep.exit_code} {rep.outcome}: {rep.error}", failures)
    diff = diff_snapshots(_snap(deploy), _snap(oracle))
    _check(diff == [], "work trees differ (gitsafe vs git):\n  " + "\n  ".join(diff), failures)
    head = git(deploy, "rev-parse", "HEAD").strip()
    _check(head == target, f"HEAD {head} != origin/main {target}", failures)
    st_a, st_b = _status(deploy), _status(oracle)
    if st_a != st_b and (
        sc.attributes is not None
        or (rep.head_before and _attributes_changed(deploy, rep.head_before, target))
    ):
        # With eol/text attributes, a file's bytes can hash equal to its blob under one set of
        # attributes and not under another, and git trusts cached stat data without rehashing:
        # whether such a file shows as modified then hangs on whether it was written in the
        # same second as the index (racy-entry smudging), which is timing, not logic.  The work
        # trees are compared byte for byte above; compare the status once every cached stat
        # entry is stale in both (an old mtime on every tracked file), so git re-hashes it all
        # under the attributes now in force.
        for tree in (deploy, oracle):
            _age_tracked_files(tree)
        st_a, st_b = _status(deploy), _status(oracle)
    _check(st_a == st_b, f"git status --ignored differs:\ngitsafe:\n{st_a}\ngit:\n{st_b}", failures)
    flags = [] if _gap("assume_unchanged_flag") else ["-v"]
    ls_a, ls_b = git(deploy, "ls-files", "-s", *flags), git(oracle, "ls-files", "-s", *flags)
    _check(ls_a == ls_b, f"index differs:\ngitsafe:\n{ls_a}\ngit:\n{ls_b}", failures)
    out_after = snapshot(w.outside, skip_git=False)
    _check(
        out_after == outside_before,
        f"outside canary touched: {diff_snapshots(out_after, outside_before)}",
        failures,
    )

    if rep.plan is not None and doc.plan is not None:
        _check(
            doc.plan["remove"] == rep.plan["remove"],
            f"doctor remove {doc.plan['remove']} != pull remove {rep.plan['remove']}",
            failures,
        )
        _check(
            (doc.plan["applied"], rep.plan["applied"]) == (False, rep.exit_code == 0),
            f"applied: doctor {doc.plan['applied']}, pull {rep.plan['applied']}",
            failures,
        )
        skip = ("fetched", "busy_locks", "applied")
        dp = {k: v for k, v in doc.plan.items() if k not in skip}
        pp = {k: v for k, v in rep.plan.items() if k not in skip}
        for key in sorted(set(dp) | set(pp)):
            _check(
                dp.get(key) == pp.get(key),
                f"doctor plan[{key}] {dp.get(key)} != pull plan[{key}] {pp.get(key)}",
                failures,
            )
        expected = {
            "would-heal": "healed",
            "would-fast-forward": "fast-forwarded",
            "up-to-date": "up-to-date",
        }.get(doc.outcome)
        _check(expected == rep.outcome, f"doctor {doc.outcome} but pull {rep.outcome}", failures)
        # The plan must describe what actually happened: what it removes is gone in git's
        # result, what it keeps is still there.
        after = snapshot(oracle)
        pre = snapshot(before_copy)
        for item in rep.plan["remove"]:
            p = item["path"].rstrip("/")
            _check(p in pre, f"plan removes {p!r}, which did not exist", failures)
            _check(p not in after, f"plan removes {p!r} but git kept it", failures)
        for item in rep.plan["keep"]:
            p = item["path"].rstrip("/")
            _check(p in after, f"plan keeps {p!r} but git removed it", failures)

    _events(rep.plan, rep.outcome)
    for op in sc.dirt:
        event(f"dirt op: {op[0]}")
    if sc.attributes:
        event("origin has .gitattributes")
    event(f"fresh stat: {sc.fresh_stat}")
    if sc.force_push:
        event("origin force-pushed")
    if sc.separate_gitdir:
        event("separate git directory")
    for key, value in sc.config:
        event(f"config {key}={value}")
    if failures:
        where = "A/deploy" if sc.fresh_stat else "gitsafe"
        how = (
            "the same commands again with A/ replaced by B/, then:\n"
            if sc.fresh_stat
            else "cp -a A/deploy gitsafe && cp -a A/deploy git\n"
        )
        note(
            "Reproduce (run in an empty directory, with the hermetic ~/.gitconfig):\n"
            + w.transcript().replace(str(base), "$PWD")
            + "\n# "
            + how
            + f'python -c \'import gitsafe; print(gitsafe.pull("{where}", "origin", "main", '
            + f"exclude={keeps!r}).as_json())'\n"
            + f"cd {'B/deploy' if sc.fresh_stat else 'git'} && git fetch origin main && "
            + "git reset --hard origin/main && git clean -fd"
            + "".join(f" -e {shlex.quote(k)}" for k in keeps)
            + " && git pull origin main"
        )
        note(f"keep patterns: {keeps}")
        note(f"gitsafe plan: {rep.plan}")
        note(f"kept for inspection: {base}")
        raise AssertionError("\n".join(failures))


def _events(plan: dict[str, Any] | None, outcome: str) -> None:
    """Coverage statistics (pytest --hypothesis-show-statistics)."""
    event(f"outcome: {outcome}")
    if not plan:
        return
    for key in ("restore", "remove", "keep", "overwrite_ignored", "incoming", "drop_commits"):
        if plan[key]:
            event(f"plan has {key}")
    for item in plan["keep"]:
        reason = item["reason"]
        event("keep: " + ("--exclude" if "--exclude" in reason else reason.split(" (")[0]))
    for item in plan["restore"]:
        for r in item["reason"].split(", "):
            event(f"restore: {r}")
    for item in plan["overwrite_ignored"]:
        event("overwrite: " + item["reason"].split(" (")[0].split(" replaced")[0])


@settings(_profile())
@given(sc=scenarios(), native=st.booleans())
def test_pull_matches_git_sequence(
    sc: Scenario, native: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``native`` picks the C scan (gitsafe._native) or its pure-Python reference for the
    example, so both are held to git (reproduce a False with GITSAFE_NATIVE=0)."""
    base = Path(tempfile.mkdtemp(prefix="ex-", dir=tmp_path_factory.getbasetemp()))
    built = accel.native
    accel.native = built if native else None
    try:
        run_example(base, sc)
    finally:
        accel.native = built
    shutil.rmtree(base, ignore_errors=True)
