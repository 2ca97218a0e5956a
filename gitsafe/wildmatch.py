"""git's wildmatch, compiled to Python regular expressions.

git matches ignore patterns with its own ``wildmatch`` (wildmatch.c), not fnmatch: ``**`` is
special only between slashes, ``[!...]`` and ``[^...]`` negate, POSIX classes such as
``[[:alpha:]]`` exist, and an unterminated bracket or unknown class makes the pattern match
nothing.  Each pattern is translated once into an equivalent regex over bytes, so matching a path
is a single C call; brackets become explicit byte sets, which reproduces git's byte-wise ranges
exactly (file names need not be UTF-8).
"""

from __future__ import annotations

import re
from collections.abc import Callable

Matcher = Callable[[bytes], bool]

_SLASH = 0x2F
_BACKSLASH = 0x5C

# The C-locale ctype classes wildmatch knows; any other name aborts the match.
_CLASSES: dict[bytes, Callable[[int], bool]] = {
    b"alnum": lambda c: chr(c).isalnum() and c < 128,
    b"alpha": lambda c: chr(c).isalpha() and c < 128,
    b"blank": lambda c: c in (0x20, 0x09),
    b"cntrl": lambda c: c < 0x20 or c == 0x7F,
    b"digit": lambda c: 0x30 <= c <= 0x39,
    b"graph": lambda c: 0x21 <= c <= 0x7E,
    b"lower": lambda c: 0x61 <= c <= 0x7A,
    b"print": lambda c: 0x20 <= c <= 0x7E,
    b"punct": lambda c: 0x21 <= c <= 0x7E and not chr(c).isalnum(),
    # git's own isspace (sane_ctype): no \v, no \f.
    b"space": lambda c: c in (0x20, 0x09, 0x0A, 0x0D),
    b"upper": lambda c: 0x41 <= c <= 0x5A,
    b"xdigit": lambda c: chr(c) in "0123456789abcdefABCDEF",
}


class _Abort(Exception):
    """The pattern can never match (git's WM_ABORT_ALL at compile time)."""


def _bracket(pat: bytes, i: int, pathname: bool) -> tuple[str, int]:
    """Translate the bracket expression starting after '[' at ``i``; return (regex, next index)."""
    n = len(pat)
    if i >= n:
        raise _Abort
    negated = False
    if pat[i] in (ord("!"), ord("^")):
        negated = True
        i += 1
    members: set[int] = set()
    prev: int | None = None
    first = True
    while True:
        if i >= n:
            raise _Abort
        c = pat[i]
        if c == ord("]") and not first:
            i += 1
            break
        first = False
        if c == _BACKSLASH:
            i += 1
            if i >= n:
                raise _Abort
            c = pat[i]
            members.add(c)
            prev = c
        elif c == ord("-") and prev is not None and i + 1 < n and pat[i + 1] != ord("]"):
            i += 1
            hi = pat[i]
            if hi == _BACKSLASH:
                i += 1
                if i >= n:
                    raise _Abort
                hi = pat[i]
            members.update(range(prev, hi + 1))
            prev = None
        elif c == ord("[") and i + 1 < n and pat[i + 1] == ord(":"):
            end = pat.find(b"]", i + 2)
            if end < 0:
                raise _Abort
            if end - 1 < i + 2 or pat[end - 1] != ord(":"):
                # No ":]": the '[' is an ordinary member and scanning resumes after it.
                members.add(c)
                prev = c
            else:
                name = pat[i + 2 : end - 1]
                test = _CLASSES.get(name)
                if test is None:
                    raise _Abort
                members.update(b for b in range(256) if test(b))
                prev = None
                i = end
        else:
            members.add(c)
            prev = c
        i += 1
    allowed = set(range(256)) - members if negated else members
    if pathname:
        allowed.discard(_SLASH)
    if not allowed:
        return "(?!)", i
    return "[" + "".join(f"\\x{b:02x}" for b in sorted(allowed)) + "]", i


def translate(pat: bytes, pathname: bool) -> str | None:
    """Return a regex (for bytes, DOTALL) equivalent to ``wildmatch(pat, text, flags)``.

    ``pathname`` is git's WM_PATHNAME: wildcards do not cross '/'.  None means the pattern can
    never match anything.
    """
    out: list[str] = []
    i, n = 0, len(pat)
    try:
        while i < n:
            c = pat[i]
            if c == _BACKSLASH:
                i += 1
                if i >= n:
                    return None  # a trailing backslash matches nothing
                out.append(re.escape(chr(pat[i])) if pat[i] < 128 else f"\\x{pat[i]:02x}")
                i += 1
            elif c == ord("?"):
                out.append("[^/]" if pathname else ".")
                i += 1
            elif c == ord("["):
                regex, i = _bracket(pat, i + 1, pathname)
                out.append(regex)
            elif c == ord("*"):
                start = i
                while i < n and pat[i] == ord("*"):
                    i += 1
                double = i - start >= 2
                delimited_before = start == 0 or pat[start - 1] == _SLASH
                after = pat[i : i + 1]
                delimited_after = (
                    i >= n or after == b"/" or (after == b"\\" and pat[i + 1 : i + 2] == b"/")
                )
                if not pathname:
                    out.append(".*")
                elif double and delimited_before and delimited_after:
                    if after == b"/":
                        # "**/" matches zero or more leading directories.
                        i += 1
                        out.append("(?:.*/)?")
                    else:
                        # At the end, or before an escaped slash (where git does not try
                        # the zero-directory shortcut), "**" crosses slashes freely.
                        out.append(".*")
                else:
                    out.append("[^/]*")
            else:
                out.append(re.escape(chr(c)) if c < 128 else f"\\x{c:02x}")
                i += 1
    except _Abort:
        return None
    return "".join(out)


_SPECIAL = re.compile(rb"[*?\[\\]")


def compile_pattern(pat: bytes, pathname: bool) -> Matcher:
    """A predicate telling whether a whole text matches ``pat`` under wildmatch rules."""
    # The common shapes of ignore lines ("build", "*.pyc") as plain byte comparisons, as git's
    # own fast paths do (PATTERN_FLAG_NODIR, PATTERN_FLAG_ENDSWITH): a directory walk asks
    # every pattern about every directory.
    if not _SPECIAL.search(pat):
        return pat.__eq__
    if not pathname and pat.startswith(b"*") and not _SPECIAL.search(pat, 1):
        suffix = pat[1:]
        return lambda text: text.endswith(suffix)
    regex = translate(pat, pathname)
    if regex is None:
        return lambda _text: False
    compiled = re.compile(regex.encode("latin-1"), re.DOTALL)

    def match(text: bytes) -> bool:
        return compiled.fullmatch(text) is not None

    return match
