"""git's exclude rules (dir.c), reproduced exactly.

libgit2's ignore engine differs from git's (negations nested below an excluded directory, among
others), and ``git clean`` decides on git's rules, so gitsafe carries its own.  The semantics are
those of ``git clean -e P``: the command-line patterns are consulted first and win outright, then
every ``.gitignore`` from the deepest directory up, then ``.git/info/exclude``, then
``core.excludesFile``; inside one list the last matching line wins; and once a directory is
excluded nothing below it can be re-included, because git never reads further down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from gitsafe.records import field, record
from gitsafe.wildmatch import Matcher, compile_pattern, translate

_BOM = b"\xef\xbb\xbf"


@record(frozen=True)
class Pattern:
    """One parsed line of an exclude list."""

    text: bytes  # the line as written (after trailing-space trimming)
    negative: bool
    must_be_dir: bool
    basename_only: bool  # no slash: matched against the last path component at any depth
    base: bytes  # directory holding the list, b"" or b"a/b/"
    matcher: Matcher = field(compare=False, repr=False)
    source: str = ""
    lineno: int = 0

    def matches(self, path: bytes, basename: bytes, is_dir: bool) -> bool:
        if self.must_be_dir and not is_dir:
            return False
        if self.basename_only:
            return self.matcher(basename)
        base = self.base
        if base:
            if not path.startswith(base) or len(path) == len(base):
                return False
            path = path[len(base) :]
        return self.matcher(path)

    def describe(self) -> str:
        where = f"{self.source}:{self.lineno}: " if self.lineno else f"{self.source}: "
        return where + os.fsdecode(self.text)


def parse_pattern(line: bytes, base: bytes, source: str, lineno: int) -> Pattern | None:
    """Parse one pattern the way git's parse_path_pattern does; None if it can match nothing."""
    text = line
    negative = line.startswith(b"!")
    if negative:
        line = line[1:]
    must_be_dir = line.endswith(b"/")
    if must_be_dir:
        line = line[:-1]
    if not line:
        return None
    basename_only = b"/" not in line
    if basename_only:
        matcher = compile_pattern(line, pathname=False)
    else:
        matcher = _pathname_matcher(line[1:] if line.startswith(b"/") else line)
    return Pattern(text, negative, must_be_dir, basename_only, base, matcher, source, lineno)


def _pathname_matcher(pat: bytes) -> Matcher:
    """git's match_pathname: the literal prefix (up to the first of ``*?[\\``) is compared as
    bytes and only the rest is wildmatched, as a pattern of its own.  So a ``**`` right after the
    prefix counts as leading: ``x/a**/b`` matches ``x/ab`` and ``x/aQ/R/b``."""
    k = next((i for i, c in enumerate(pat) if c in b"*?[\\"), len(pat))
    regex = translate(pat[k:], pathname=True)
    if regex is None:
        return lambda _text: False
    compiled = re.compile(re.escape(pat[:k]) + regex.encode("latin-1"), re.DOTALL)
    return lambda text: compiled.fullmatch(text) is not None


def _trim_trailing_spaces(line: bytes) -> bytes:
    """Drop trailing unescaped spaces (not tabs), as git's trim_trailing_spaces."""
    last_space = -1
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == 0x20:
            if last_space < 0:
                last_space = i
        elif c == 0x5C:
            i += 1
            if i >= n:
                return line
            last_space = -1
        else:
            last_space = -1
        i += 1
    return line[:last_space] if last_space >= 0 else line


def parse_lines(buf: bytes, base: bytes, source: str) -> list[Pattern]:
    """Parse an exclude file's content (comments, blank lines, CRLF, BOM as git does)."""
    if buf.startswith(_BOM):
        buf = buf[len(_BOM) :]
    patterns: list[Pattern] = []
    for lineno, raw in enumerate(buf.split(b"\n"), start=1):
        if not raw or raw.startswith(b"#"):
            continue
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        raw = raw.split(b"\0", 1)[0]  # git handles each line as a C string
        pattern = parse_pattern(_trim_trailing_spaces(raw), base, source, lineno)
        if pattern is not None:
            patterns.append(pattern)
    return patterns


PatternList = tuple[Pattern, ...]


@record(frozen=True)
class ExcludeRules:
    """The lists that do not depend on the directory: ``-e`` patterns and the exclude files."""

    cmdline: PatternList
    files: tuple[PatternList, ...]  # highest precedence first: info/exclude, core.excludesFile

    def match(
        self, dir_lists: tuple[PatternList, ...], path: bytes, is_dir: bool
    ) -> Pattern | None:
        """The deciding pattern for ``path``, git's last_matching_pattern_from_lists.

        ``dir_lists`` are the per-directory lists from the top level down to the path's parent.
        A returned negative pattern means "not excluded".
        """
        basename = path.rsplit(b"/", 1)[-1]
        for pattern in reversed(self.cmdline):
            if pattern.matches(path, basename, is_dir):
                return pattern
        for plist in reversed(dir_lists):
            for pattern in reversed(plist):
                if pattern.matches(path, basename, is_dir):
                    return pattern
        for plist in self.files:
            for pattern in reversed(plist):
                if pattern.matches(path, basename, is_dir):
                    return pattern
        return None


def cmdline_patterns(patterns: list[str]) -> PatternList:
    """``-e`` patterns: taken verbatim (no comment or trailing-space handling), base the top."""
    parsed = (parse_pattern(os.fsencode(text), b"", "--exclude", 0) for text in patterns)
    return tuple(p for p in parsed if p is not None)


def read_exclude_file(path: str, source: str) -> PatternList:
    """An exclude file outside the work tree (info/exclude, core.excludesFile); absent is empty."""
    try:
        with open(path, "rb") as f:
            return tuple(parse_lines(f.read(), b"", source))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return ()


def read_dir_list(content: bytes | None, base: bytes) -> PatternList:
    """The pattern list of the ``.gitignore`` in directory ``base`` (b"" or b"a/b/")."""
    if content is None:
        return ()
    return tuple(parse_lines(content, base, os.fsdecode(base + b".gitignore")))


def read_worktree_gitignore(root: bytes, base: bytes) -> bytes | None:
    """Content of ``base/.gitignore`` in the work tree; git never follows a symlinked one."""
    path = os.path.join(root, base, b".gitignore")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            return f.read()
    except OSError:  # a directory named .gitignore, say
        return None


def decide(
    rules: ExcludeRules,
    path: bytes,
    is_dir: bool,
    gitignore_of: Callable[[bytes], bytes | None],
) -> Pattern | None:
    """The pattern that excludes ``path``, or None when it is not excluded.

    The full git algorithm for one path (prep_exclude + last_matching_pattern): each leading
    directory is checked first, and an excluded one decides for everything below it.
    ``gitignore_of(base)`` supplies the ``.gitignore`` content of a directory.
    """
    parts = path.split(b"/")
    lists: list[PatternList] = [read_dir_list(gitignore_of(b""), b"")]
    base = b""
    for part in parts[:-1]:
        base += part
        hit = rules.match(tuple(lists), base, True)
        if hit is not None and not hit.negative:
            return hit
        base += b"/"
        lists.append(read_dir_list(gitignore_of(base), base))
    hit = rules.match(tuple(lists), path, is_dir)
    return hit if hit is not None and not hit.negative else None
