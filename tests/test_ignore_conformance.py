"""Conformance of gitsafe's exclude engine (wildmatch.py, ignore.py) with the real git CLI.

git itself is the oracle.  Every test builds a throw-away repository, asks git, asks
``gitsafe.ignore.decide`` and compares:

* ``git check-ignore --no-index --stdin -z -v -n`` for ``.gitignore`` files, ``info/exclude`` and
  ``core.excludesFile`` (it runs git's own prep_exclude + last_matching_pattern, and reports the
  deciding line, which is compared too);
* ``git ls-files -z -o -i --exclude-standard --exclude=P`` for command-line patterns: ls-files
  ``--exclude`` feeds the same EXC_CMDL list as ``git clean -e`` (check-ignore has no ``-e``), and
  without ``--directory`` it lists every ignored untracked *file*, also inside ignored directories.

Directories with command-line patterns need one more step, because no git command prints a plain
"is this directory excluded" answer for ``-e``.  Since the generated ``-e`` patterns are never
negative, git's rule "at each leading directory and at the path, the first list that has a match
decides, command line first" reduces to: excluded with ``-e`` = excluded without ``-e`` OR some
``-e`` pattern matches the path or one of its leading directories.  The second half is asked of
git by a sibling repository whose only exclude source is ``info/exclude`` holding the ``-e``
patterns (same base, the top level; the patterns are generated so that file parsing keeps them
verbatim).  The reduction is itself checked against the real ``--exclude`` listing for every file.

Every git call is hermetic: private HOME, ``GIT_CONFIG_GLOBAL=/dev/null``,
``GIT_CONFIG_NOSYSTEM=1``, no inherited ``GIT_*`` variables, ``core.excludesFile`` set explicitly.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gitsafe.ignore import (
    ExcludeRules,
    Pattern,
    cmdline_patterns,
    decide,
    read_exclude_file,
    read_worktree_gitignore,
)

if shutil.which("git") is None:  # pragma: no cover
    pytest.skip("the git CLI is the oracle of these tests", allow_module_level=True)

INFO_EXCLUDE = ".git/info/exclude"  # the source name git prints for it (relative to the top)
EXCLUDES = "EXCLUDES"  # key of core.excludesFile in the file maps below


class Symlink(str):
    """A file-map value: make a symbolic link to this target instead of a regular file."""


# --------------------------------------------------------------------------------------------
# A sandbox repository and the git oracle
# --------------------------------------------------------------------------------------------


class Sandbox:
    """A fresh repository at ``top/work`` with a private HOME and its own core.excludesFile."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.work = top / "work"
        self.home = top / "home"
        self.excludes_file = top / "excludes"
        self.home.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        self.env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_CONFIG_NOSYSTEM="1",
            LC_ALL="C",
        )
        self.run(["init", "-q", "--template=", str(self.work)], cwd=self.top)
        (self.work / ".git" / "info").mkdir()

    def run(
        self,
        args: list[str],
        cwd: Path | None = None,
        stdin: bytes = b"",
        ok: tuple[int, ...] = (0,),
        tolerated_stderr: tuple[bytes, ...] = (),
    ) -> bytes:
        proc = subprocess.run(
            [
                "git",
                "-c",
                f"core.excludesFile={self.excludes_file}",
                "-c",
                "core.ignoreCase=false",
                "-c",
                "init.defaultBranch=main",
                *args,
            ],
            cwd=cwd or self.work,
            input=stdin,
            capture_output=True,
            env=self.env,
            check=False,
        )
        unexpected = [
            line
            for line in proc.stderr.splitlines()
            if not any(line.startswith(t) for t in tolerated_stderr)
        ]
        assert proc.returncode in ok and not unexpected, (
            f"git {args} -> {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
        return proc.stdout

    def populate(
        self,
        files: Mapping[str | bytes, bytes | Symlink],
        dirs: Iterable[bytes] = (),
        empty_files: Iterable[bytes] = (),
    ) -> None:
        """Create directories, empty files, and files with content.

        ``files`` keys are paths relative to the work tree (``.git/info/exclude`` included) or
        EXCLUDES for core.excludesFile.
        """
        work = bytes(self.work)
        for d in dirs:
            os.makedirs(os.path.join(work, d), exist_ok=True)
        for f in empty_files:
            os.makedirs(os.path.dirname(os.path.join(work, f)), exist_ok=True)
            open(os.path.join(work, f), "wb").close()
        for key, content in files.items():
            if key == EXCLUDES:
                target = bytes(self.excludes_file)
            else:
                target = os.path.join(work, os.fsencode(key))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if isinstance(content, Symlink):
                os.symlink(content, target)
            else:
                with open(target, "wb") as f:
                    f.write(content)

    def check_ignore(self, paths: Iterable[bytes]) -> dict[bytes, tuple[bytes, int, bytes] | None]:
        """git's deciding line (source, line number, pattern) per path; None if none matched.

        A negative pattern (printed with its "!") means: matched, not excluded.
        """
        paths = list(paths)
        out = self.run(
            ["check-ignore", "--no-index", "--stdin", "-z", "-v", "-n"],
            stdin=b"".join(p + b"\0" for p in paths),
            ok=(0, 1),
            # git opens a symlinked .gitignore with O_NOFOLLOW, fails and says so
            tolerated_stderr=(b"warning: unable to access ",),
        )
        fields = out.split(b"\0")
        assert fields[-1] == b"" and (len(fields) - 1) % 4 == 0, out
        result: dict[bytes, tuple[bytes, int, bytes] | None] = {}
        for i in range(0, len(fields) - 1, 4):
            source, lineno, pattern, path = fields[i : i + 4]
            result[path] = (source, int(lineno), pattern) if source else None
        assert set(result) == set(paths), (sorted(result), sorted(paths))
        return result

    def ls_files_ignored(self, cmdline: Iterable[str] = ()) -> set[bytes]:
        """Every untracked file git ignores, with ``cmdline`` as ``--exclude`` (== clean -e)."""
        out = self.run(
            [
                "ls-files",
                "-z",
                "-o",
                "-i",
                "--exclude-standard",
                *(f"--exclude={p}" for p in cmdline),
            ]
        )
        return set(out.split(b"\0")[:-1])

    def rules(self, cmdline: Iterable[str] = ()) -> ExcludeRules:
        """gitsafe's view of the same repository."""
        return ExcludeRules(
            cmdline_patterns(list(cmdline)),
            (
                read_exclude_file(str(self.work / INFO_EXCLUDE), INFO_EXCLUDE),
                read_exclude_file(str(self.excludes_file), str(self.excludes_file)),
            ),
        )

    def gitignore_of(self) -> functools.partial[bytes | None]:
        return functools.partial(read_worktree_gitignore, bytes(self.work))


def git_excluded(hit: tuple[bytes, int, bytes] | None) -> bool:
    return hit is not None and not hit[2].startswith(b"!")


def as_git_hit(pattern: Pattern | None) -> tuple[bytes, int, bytes] | None:
    """gitsafe's deciding pattern in check-ignore's (source, line, pattern) form."""
    if pattern is None:
        return None
    return (os.fsencode(pattern.source), pattern.lineno, pattern.text)


# --------------------------------------------------------------------------------------------
# 1. Hand-picked vectors: facts about git 2.39, each re-checked against git and gitsafe
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    files: dict[str | bytes, bytes | Symlink]
    checks: dict[bytes, bool]  # path -> excluded?; a trailing "/" makes the path a directory
    cmdline: tuple[str, ...] = ()


def gi(id: str, content: bytes, checks: dict[bytes, bool]) -> Case:
    """A case with a top-level .gitignore; a content without newline gets one."""
    if not content.endswith(b"\n"):
        content += b"\n"
    return Case(id, {".gitignore": content}, checks)


CASES: list[Case] = [
    # --- plain names, '*', '?', anchoring, directories -----------------------------------
    gi(
        "literal-any-depth",
        b"foo",
        {b"foo": True, b"x/foo": True, b"foobar": False, b"y/foo/": True, b"xfoo": False},
    ),
    gi("star-suffix", b"*.o", {b"y.o": True, b"x/y.o": True, b"y.oo": False, b".o": True}),
    gi("star-matches-leading-dot", b"*", {b".hidden": True}),
    gi("question-one-char", b"?", {b"a": True, b"ab": False, b"x/b": True}),
    gi("question-middle", b"a?c", {b"a.c": True, b"ac": False, b"a..c": False}),
    gi("anchored", b"/foo", {b"foo": True, b"d/foo": False}),
    gi("slash-in-middle-anchors", b"d/foo", {b"d/foo": True, b"e/d/foo": False}),
    gi("dir-only", b"foo/", {b"foo/": True, b"bar/foo": False, b"x/foo/": True, b"foo/bar": True}),
    gi("dir-only-file-not-matched", b"foo/", {b"foo": False}),
    gi("star-does-not-cross-slash", b"x/*.c", {b"x/y.c": True, b"x/y/z.c": False}),
    gi("star-excludes-leading-dir", b"x/*", {b"x/y/z": True, b"x/y/": True, b"x/": False}),
    gi("star-slash-star", b"a/*/b", {b"a/x/b": True, b"a/x/y/b": False, b"a/b": False}),
    gi("empty-negation-and-slash-are-nothing", b"!\n/\n", {b"x": False, b"y/": False}),
    gi("leading-space-significant", b" foo", {b"foo": False, b" foo": True}),
    gi("trailing-tab-kept", b"a\t", {b"a\t": True, b"a": False}),
    # --- negation -------------------------------------------------------------------------
    gi("negation-last-wins", b"*\n!foo", {b"foo": False, b"bar": True}),
    gi("negation-then-again", b"foo\n!foo\nfoo", {b"foo": True}),
    gi("negation-of-nothing", b"!foo", {b"foo": False}),
    gi("no-reinclude-below-excluded-dir", b"d/\n!d/keep", {b"d/keep": True, b"d/": True}),
    gi("reinclude-below-dir-star", b"d/*\n!d/keep", {b"d/keep": False, b"d/other": True}),
    gi(
        "reinclude-dir-below-excluded",
        b"d/*\n!d/sub/\nd/sub/x",
        {b"d/sub/": False, b"d/sub/x": True, b"d/sub/y": False, b"d/z": True},
    ),
    # --- '**' ------------------------------------------------------------------------------
    gi("starstar-slash-prefix", b"**/foo", {b"foo": True, b"x/y/foo": True, b"foox": False}),
    gi(
        "starstar-slash-mid-anchor",
        b"**/x/foo",
        {b"x/foo": True, b"a/x/foo": True, b"x/a/foo": False},
    ),
    gi("slash-starstar-suffix", b"x/**", {b"x/w": True, b"x/y/z/": True, b"x/": False}),
    gi(
        "slash-starstar-slash",
        b"a/**/b",
        {b"a/b": True, b"a/x/y/b": True, b"a/xb": False, b"ab": False},
    ),
    gi("starstar-no-slash-is-star", b"a**b", {b"axyb": True, b"a/b": False, b"ab": True}),
    gi("anchored-starstar-glued-both-sides", b"/a**b", {b"axb": True, b"ax/yb": False}),
    gi("slash-starstar-glued-after", b"x/**b", {b"x/ab": True, b"x/a/b": False}),
    # match_pathname compares the literal prefix "x/a" first and wildmatches "**/b" on its
    # own, so that "**" counts as the start of the pattern: it is a real "**/".
    gi(
        "literal-prefix-then-starstar-slash",
        b"x/a**/b",
        {b"x/ab": True, b"x/aQ/R/b": True, b"x/a/b": True, b"x/b": False},
    ),
    gi("prefix-starstar-slash-top", b"a**/b", {b"ab": True, b"aX/Y/b": True, b"b": False}),
    gi("escaped-slash-after-starstar", b"**\\/x", {b"y/x": True, b"y/z/x": True, b"x": False}),
    gi("starstar-alone", b"**", {b"x": True, b"y/z": True}),
    gi("triple-star-is-double", b"***/x", {b"x": True, b"y/x": True}),
    gi(
        "starstar-dir-only",
        b"foo/**/",
        {b"foo/bar/": True, b"foo/baz": False, b"foo/bar/baz/": True},
    ),
    gi(
        "starstar-middle-not-delimited",
        b"/a/b**c/d",
        {b"a/bc/d": True, b"a/bxc/d": True, b"a/bx/yc/d": False},
    ),
    # --- brackets --------------------------------------------------------------------------
    gi("bracket-set", b"[ab]", {b"a": True, b"b": True, b"c": False}),
    gi("bracket-bang", b"[!a]x", {b"bx": True, b"ax": False}),
    gi("bracket-caret", b"[^a]x", {b"bx": True, b"ax": False}),
    gi("bracket-close-first", b"[]]", {b"]": True, b"a": False}),
    gi("bracket-close-first-set", b"[]a]", {b"a": True, b"]": True, b"b": False}),
    gi("bracket-negated-close", b"[!]]", {b"a": True, b"]": False}),
    gi("bracket-range", b"[a-c]", {b"b": True, b"d": False}),
    # The first bound is a member on its own before the '-' is seen.
    gi("bracket-reversed-range", b"[c-a]", {b"b": False, b"a": False, b"c": True}),
    gi("bracket-dash-last", b"[a-]", {b"-": True, b"a": True, b"b": False}),
    gi("bracket-dash-first", b"[-a]", {b"-": True}),
    gi("bracket-range-from-close", b"[]-a]", {b"^": True, b"a": True, b"b": False}),
    gi("bracket-escaped-close", b"[\\]]", {b"]": True, b"\\": False}),
    gi("bracket-escaped-backslash", b"[\\\\]", {b"\\": True, b"]": False}),
    gi("class-alpha", b"[[:alpha:]]", {b"Q": True, b"q": True, b"1": False}),
    gi("class-with-literal", b"[[:digit:]x]", {b"x": True, b"7": True, b"y": False}),
    gi("two-classes", b"[[:digit:][:upper:]]", {b"Q": True, b"3": True, b"q": False}),
    gi("negated-class", b"[![:alnum:]]", {b"_": True, b"a": False}),
    gi("class-unknown-aborts", b"[[:foo:]]", {b"f": False, b":": False, b"[": False}),
    gi("class-unknown-in-alternatives", b"[[:foo:]]\nf", {b"f": True}),
    # (a name starting with ':' would be pathspec magic to check-ignore, hence the "x")
    gi("class-no-colon-bracket", b"x[[:]", {b"x[": True, b"x:": True, b"x]": False}),
    gi("class-not-closed-by-colon", b"[[:alpha]", {b"[": True, b"a": True, b"p": True}),
    gi(
        "class-space-no-vt-ff",
        b"a[[:space:]]b",
        {b"a b": True, b"a\tb": True, b"a\x0bb": False, b"a\x0cb": False},
    ),
    gi("unterminated-bracket", b"[ab", {b"[ab": False, b"a": False}),
    gi("unterminated-after-bang", b"x[!", {b"x[!": False, b"xa": False}),
    gi("escaped-open-bracket", b"\\[ab]", {b"[ab]": True, b"a": False}),
    gi(
        "bracket-never-matches-slash",
        b"/a[/]b\n/c[!x]d\n/e?f",
        {b"a/b": False, b"c/d": False, b"e/f": False},
    ),
    gi("bracket-high-bytes", b"[\xc0-\xff]x", {b"\xc3x": True, b"\x7fx": False}),
    # --- escapes, comments, trailing spaces, line endings -------------------------------------
    gi("comment", b"#foo", {b"#foo": False}),
    gi("escaped-hash", b"\\#foo", {b"#foo": True}),
    gi("escaped-bang", b"\\!foo", {b"!foo": True, b"foo": False}),
    gi("trailing-backslash-matches-nothing", b"foo\\", {b"foo": False, b"foo\\": False}),
    gi("escaped-ordinary-char", b"f\\oo", {b"foo": True}),
    gi("escaped-star", b"\\*", {b"*": True, b"a": False}),
    gi("escaped-question", b"\\?", {b"?": True, b"a": False}),
    gi("trailing-spaces-trimmed", b"a  ", {b"a": True, b"a ": False}),
    gi("escaped-trailing-space", b"a\\ ", {b"a ": True, b"a": False}),
    gi("escaped-space-then-spaces", b"a\\   ", {b"a ": True, b"a  ": False}),
    gi("space-before-escaped-space", b"a \\ ", {b"a  ": True, b"a ": False}),
    gi("crlf", b"foo\r\nbar \r\n", {b"foo": True, b"bar": True, b"foo\r": False}),
    gi("lone-cr-line", b"\r\nfoo", {b"foo": True, b"x": False}),
    gi("cr-not-at-end-kept", b"a\rb", {b"a\rb": True, b"ab": False}),
    gi("no-final-newline-crlf", b"foo\r", {b"foo": True}),  # gi() adds the "\n"
    gi("bom-at-start", b"\xef\xbb\xbffoo", {b"foo": True}),
    gi("bom-not-at-start", b"bar\n\xef\xbb\xbffoo", {b"foo": False, b"bar": True}),
    gi(
        "nul-truncates-line",
        b"foo\x00bar\nba\x00\r\n\x00qux",
        {b"foo": True, b"bar": False, b"ba": True, b"qux": False},
    ),
    # --- precedence and where lists live ----------------------------------------------------
    Case(
        "deeper-gitignore-wins",
        {".gitignore": b"*.log\n", "a/.gitignore": b"!keep.log\n"},
        {b"a/keep.log": False, b"keep.log": True, b"a/b/keep.log": False},
    ),
    Case(
        "deeper-gitignore-wins-positive",
        {".gitignore": b"!a/x.log\n", "a/.gitignore": b"*.log\n"},
        {b"a/x.log": True},
    ),
    Case(
        "subdir-anchored-relative",
        {"a/.gitignore": b"/x\nb/y\n**/z\n"},
        {
            b"a/x": True,
            b"x": False,
            b"a/b/x": False,
            b"a/b/y": True,
            b"b/y": False,
            b"a/c/z": True,
            b"z": False,
            b"a/z": True,
        },
    ),
    Case(
        "gitignore-in-excluded-dir-unread",
        {".gitignore": b"a\n", "a/.gitignore": b"!x\n"},
        {b"a/x": True},
    ),
    Case(
        "gitignore-over-info-exclude",
        {INFO_EXCLUDE: b"foo\n", ".gitignore": b"!foo\n"},
        {b"foo": False},
    ),
    Case(
        "info-exclude-over-excludesfile",
        {INFO_EXCLUDE: b"!foo\n", EXCLUDES: b"foo\nbar\n"},
        {b"foo": False, b"bar": True},
    ),
    Case(
        "info-exclude-leading-dir", {INFO_EXCLUDE: b"d/\n", ".gitignore": b"!d/x\n"}, {b"d/x": True}
    ),
    Case(
        "symlinked-gitignore-not-followed",
        {"real": b"foo\n", ".gitignore": Symlink("real")},
        {b"foo": False},
    ),
    Case(
        "symlinked-sub-gitignore-not-followed",
        {"a/real": b"foo\n", "a/.gitignore": Symlink("real")},
        {b"a/foo": False},
    ),
    # --- command-line patterns (git ls-files --exclude == git clean -e; files only) -----------
    Case("cmdline-verbatim-trailing-space", {}, {b"foo ": True, b"foo": False}, cmdline=("foo ",)),
    Case("cmdline-hash-is-pattern", {}, {b"#foo": True}, cmdline=("#foo",)),
    Case("cmdline-dir-only", {}, {b"d/x": True, b"e": False}, cmdline=("d/",)),
    Case(
        "cmdline-beats-gitignore-negation",
        {".gitignore": b"!keep\n"},
        {b"keep": True},
        cmdline=("keep",),
    ),
    Case(
        "cmdline-negation-beats-gitignore",
        {".gitignore": b"*\n"},
        {b"keep": False, b"other": True},
        cmdline=("!keep",),
    ),
    Case(
        "cmdline-beats-deeper-gitignore",
        {"a/.gitignore": b"!x.o\n"},
        {b"a/x.o": True},
        cmdline=("*.o",),
    ),
    Case("cmdline-anchored-at-top", {}, {b"a/b": True, b"x/a/b": False}, cmdline=("a/b",)),
    Case("cmdline-last-wins", {}, {b"x.o": False, b"y.o": True}, cmdline=("*.o", "!x.o")),
    Case("cmdline-leading-dir", {".gitignore": b"!d/x\n"}, {b"d/x": True}, cmdline=("d",)),
]


def _case_tree(case: Case) -> tuple[set[bytes], set[bytes]]:
    dirs: set[bytes] = set()
    files: set[bytes] = set()
    for path in case.checks:
        parts = path.rstrip(b"/").split(b"/")
        dirs.update(b"/".join(parts[:i]) for i in range(1, len(parts)))
        (dirs if path.endswith(b"/") else files).add(path.rstrip(b"/"))
    return dirs, files


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vector(case: Case, tmp_path: Path) -> None:
    sb = Sandbox(tmp_path)
    dirs, files = _case_tree(case)
    sb.populate(case.files, dirs, files - {os.fsencode(k) for k in case.files if k != EXCLUDES})
    rules = sb.rules(case.cmdline)
    gitignore_of = sb.gitignore_of()

    if case.cmdline:
        assert not any(p.endswith(b"/") for p in case.checks), "ls-files lists files only"
        listed = sb.ls_files_ignored(case.cmdline)
        git_says = {p: p in listed for p in case.checks}
    else:
        hits = sb.check_ignore(p.rstrip(b"/") for p in case.checks)
        git_says = {p: git_excluded(hits[p.rstrip(b"/")]) for p in case.checks}
    ours = {
        p: decide(rules, p.rstrip(b"/"), p.endswith(b"/"), gitignore_of) is not None
        for p in case.checks
    }
    assert git_says == case.checks, "the recorded fact does not hold for this git"
    assert ours == git_says


_CLASSES = [
    "alnum",
    "alpha",
    "blank",
    "cntrl",
    "digit",
    "graph",
    "lower",
    "print",
    "punct",
    "space",
    "upper",
    "xdigit",
]
_SWEEPS = [f"c[[:{name}:]]".encode() for name in _CLASSES] + [
    b"c[![:alpha:]]",
    b"c[^[:punct:][:space:]]",
    b"c[!a-z]",
    b"c[]-a]",
    b"c[\\\\-^]",
    b"c?",
    b"c*",
    b"c[\x80-\xbf]",
    b"/c[!a]",
    b"c[[:digit:]-z]",
]


@pytest.mark.parametrize("pattern", _SWEEPS, ids=[p.decode("latin-1") for p in _SWEEPS])
def test_one_char_pattern_over_every_byte(pattern: bytes, tmp_path: Path) -> None:
    """Every byte a file name can hold (all but NUL and '/'), in a name "c<byte>"."""
    sb = Sandbox(tmp_path)
    names = [b"c" + bytes([b]) for b in range(1, 256) if b != 0x2F]
    content = pattern + b"\n"
    sb.populate({".gitignore": content}, (), names)
    hits = sb.check_ignore(names)
    git_set = {n for n in names if git_excluded(hits[n])}
    rules, gitignore_of = sb.rules(), sb.gitignore_of()
    our_set = {n for n in names if decide(rules, n, False, gitignore_of) is not None}
    assert git_set, "the sweep must match something"
    assert (sorted(our_set - git_set), sorted(git_set - our_set)) == ([], [])


# --------------------------------------------------------------------------------------------
# 2. Property: random layered exclude files, random trees, every path compared with git
# --------------------------------------------------------------------------------------------

_NAME_CHARS = ["a", "b", "B", ".", " ", "#", "!", "*", "\\", "é", "o"]
_FIXED_NAMES = [
    "a",
    "b",
    "ab",
    "a.b",
    ".a",
    "a ",
    " a",
    "#a",
    "!a",
    "a b",
    "b.o",
    "B",
    "*",
    "a\\b",
    "ba",
    "x y",
]
_GITIGNORE_DIRS = ["", "a/", "a/b/"]

_random_names = st.text(st.sampled_from(_NAME_CHARS), min_size=1, max_size=3)
names = st.one_of(  # mostly from a small pool, so that patterns and names meet
    st.sampled_from(_FIXED_NAMES), st.sampled_from(_FIXED_NAMES), _random_names
).map(lambda n: n + "b" if n in (".", "..") else n)

_LITERALS = st.sampled_from(["a", "b", "B", ".", " ", "é", "o", "x"])
_ESCAPES = st.sampled_from(["\\#", "\\!", "\\ ", "\\*", "\\[", "\\\\", "\\a", "\\?", "\\]"])
_BRACKETS = st.sampled_from(
    [
        "[ab]",
        "[!a]",
        "[^a.]",
        "[]a]",
        "[a-b]",
        "[b-a]",
        "[a-]",
        "[!]]",
        "[[:alpha:]]",
        "[[:space:]]",
        "[[:punct:]]",
        "[[:upper:][:digit:]]",
        "[![:lower:]]",
        "[[:foo:]]",
        "[\\]a]",
        "[[:]",
        "[ab",
        "[é]",
        "[!.]",
        "[ -.]",
    ]
)
_atom = st.one_of(
    _LITERALS, _LITERALS, st.just("*"), st.just("?"), st.just("**"), _BRACKETS, _ESCAPES
)
_WILD_SEGMENTS = st.sampled_from(
    [
        "**",
        "**",
        "*",
        "*",
        "a*",
        "*a",
        "*.o",
        ".*",
        "?",
        "b?",
        "[ab]",
        "[!a]*",
        "a**",
        "a**",
        "b**",
        "**b",
        "[^a]*",
        "a?*",
        "*[[:space:]]*",
    ]
)
_segment = st.one_of(
    st.sampled_from(_FIXED_NAMES),
    _WILD_SEGMENTS,
    _WILD_SEGMENTS,
    st.lists(_atom, min_size=1, max_size=3).map("".join),
)
_body = st.one_of(  # mostly one component (a basename pattern), sometimes a path
    _segment, _segment, st.lists(_segment, min_size=2, max_size=3).map("/".join)
)
_UNUSUAL_ENDINGS = st.sampled_from([" ", "  ", "\\ ", "\t", " \\ ", "\\"])


@st.composite
def pattern_lines(draw: st.DrawFn, cmdline: bool = False) -> str:
    body = draw(_body)
    anchor = "/" if draw(st.integers(0, 3)) == 0 else ""
    dir_only = "/" if draw(st.integers(0, 3)) == 0 else ""
    trailing = draw(_UNUSUAL_ENDINGS) if draw(st.integers(0, 3)) == 0 else ""
    if cmdline:
        # -e patterns reach git verbatim; keep them such that a file line parses identically
        # (no leading "!" or "#", no trailing space to trim).
        line = (anchor + body + dir_only + trailing).rstrip(" ")
        return "\\" + line if line[:1] in ("!", "#") else line or "a"
    negate = "!" if draw(st.integers(0, 3)) == 0 else ""
    return negate + anchor + body + dir_only + trailing


_other_lines = st.sampled_from(
    [
        "",
        "   ",
        "# comment",
        "#a",
        "\\#a",
        "\\!a",
        "!",
        "/",
        "*",
        "!*/",
        "!a",
        "a/",
        "!b/",
        "*.o",
        "a*",
        "b",
        ".*",
        "a b",
        "**/b",
        "a/**",
        "!.gitignore",
    ]
)


@st.composite
def exclude_files(draw: st.DrawFn) -> bytes:
    lines = draw(
        st.lists(st.one_of(pattern_lines(), pattern_lines(), _other_lines), min_size=2, max_size=6)
    )
    out = b"\xef\xbb\xbf" if draw(st.integers(0, 9)) == 0 else b""
    for i, line in enumerate(lines):
        out += line.encode()
        if i < len(lines) - 1 or draw(st.booleans()):
            out += draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    return out


@dataclass
class Scenario:
    files: set[bytes]
    dirs: set[bytes]
    gitignores: dict[str, bytes]  # base ("" / "a/" / "a/b/") -> content
    info_exclude: bytes | None
    excludes_file: bytes | None
    cmdline: list[str]

    def describe(self) -> str:
        lines = [f"cmdline -e: {self.cmdline!r}"]
        for base, content in self.gitignores.items():
            lines.append(f"{base}.gitignore: {content!r}")
        lines.append(f"info/exclude: {self.info_exclude!r}")
        lines.append(f"core.excludesFile: {self.excludes_file!r}")
        lines.append(f"files: {sorted(self.files)!r}")
        lines.append(f"dirs: {sorted(self.dirs)!r}")
        return "\n".join(lines)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    leaves = []
    for _ in range(draw(st.integers(2, 12))):
        prefix = draw(st.sampled_from([(), (), ("a",), ("a", "b")]))
        leaves.append(prefix + tuple(draw(st.lists(names, min_size=1, max_size=2))))
    dirs = {b"a", b"a/b"}
    for leaf in leaves:
        dirs.update("/".join(leaf[:i]).encode() for i in range(1, len(leaf)))
    files: set[bytes] = set()
    for leaf in leaves:
        path = "/".join(leaf).encode()
        if path not in dirs and path not in files:
            (dirs if draw(st.integers(0, 4)) == 0 else files).add(path)
    gitignores = {  # the top-level one always, a/ and a/b/ sometimes
        base: draw(exclude_files()) for base in _GITIGNORE_DIRS if not base or draw(st.booleans())
    }
    info_exclude = draw(st.one_of(st.none(), exclude_files()))
    excludes_file = draw(st.one_of(st.none(), exclude_files()))
    cmdline = draw(
        st.lists(
            pattern_lines(cmdline=True),
            min_size=1,
            max_size=2,
        )
        if draw(st.booleans())
        else st.just([])
    )
    files.update(base.encode() + b".gitignore" for base in gitignores)
    return Scenario(files, dirs, gitignores, info_exclude, excludes_file, cmdline)


_EXAMPLES = int(os.environ.get("GITSAFE_CONFORMANCE_EXAMPLES", "150"))


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(scenario=scenarios())
def test_random_exclude_rules_agree_with_git(scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory(prefix="gitsafe-conformance-") as tmp:
        sb = Sandbox(Path(tmp) / "main")
        files: dict[str | bytes, bytes | Symlink] = {
            base + ".gitignore": content for base, content in scenario.gitignores.items()
        }
        if scenario.info_exclude is not None:
            files[INFO_EXCLUDE] = scenario.info_exclude
        if scenario.excludes_file is not None:
            files[EXCLUDES] = scenario.excludes_file
        sb.populate(
            files,
            scenario.dirs,
            scenario.files - {b.encode() + b".gitignore" for b in scenario.gitignores},
        )

        kinds = {p: False for p in scenario.files} | {d: True for d in scenario.dirs}
        paths = sorted(kinds)
        gitignore_of = sb.gitignore_of()
        context = scenario.describe()

        # .gitignore at every level + info/exclude + core.excludesFile: the deciding line.
        hits = sb.check_ignore(paths)
        rules = sb.rules()
        for path in paths:
            ours = as_git_hit(decide(rules, path, kinds[path], gitignore_of))
            theirs = hits[path] if git_excluded(hits[path]) else None
            assert ours == theirs, f"{path!r} (dir={kinds[path]}):\n{context}"
        excluded = sum(git_excluded(h) for h in hits.values())
        event(
            "excluded: " + ("none" if not excluded else "all" if excluded == len(paths) else "some")
        )
        if any(h is not None and not git_excluded(h) for h in hits.values()):
            event("a negative pattern decides some path")

        # The same plus command-line patterns.
        listed = sb.ls_files_ignored(scenario.cmdline)
        if scenario.cmdline:
            event("with -e")
            cmd = Sandbox(Path(tmp) / "cmdline-only")
            cmd.populate(
                {INFO_EXCLUDE: "\n".join(scenario.cmdline).encode() + b"\n"},
                scenario.dirs,
                scenario.files,
            )
            cmd_hits = cmd.check_ignore(paths)
        else:
            cmd_hits = {}
        rules_e = sb.rules(scenario.cmdline)
        for path in paths:
            expected = git_excluded(hits[path]) or git_excluded(cmd_hits.get(path))
            if not kinds[path]:
                assert expected == (path in listed), (
                    f"oracle self-check failed for {path!r}:\n{context}"
                )
            ours_e = decide(rules_e, path, kinds[path], gitignore_of) is not None
            assert ours_e == expected, (
                f"with -e {scenario.cmdline!r}: {path!r} (dir={kinds[path]}):\n{context}"
            )
        assert listed <= scenario.files, listed - scenario.files
