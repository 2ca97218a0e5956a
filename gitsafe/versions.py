"""The versions `gitsafe --version` prints: gitsafe's, pygit2's and libgit2's.

Importing pygit2 costs about 90 ms (its Python layer, not libgit2), most of a 150 ms budget, so
both versions are read without importing it: pygit2's from its installed metadata, libgit2's by
asking the very library pygit2's extension module links (``git_libgit2_version`` through
ctypes), which is also the library every pull runs on. Anything unexpected (an unusual install
layout) falls back to importing pygit2, slower but never wrong.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import os

from gitsafe._version import __version__


class _Unreadable(Exception):
    """The quick way does not apply to this installation."""


def versions() -> tuple[str, str, str]:
    """(gitsafe, pygit2, libgit2) versions."""
    try:
        package_dir = _pygit2_dir()
        return __version__, _pygit2_version(package_dir), _libgit2_version(package_dir)
    except (_Unreadable, OSError, AttributeError, ValueError):
        import pygit2

        return __version__, str(getattr(pygit2, "__version__", "?")), pygit2.LIBGIT2_VERSION


def version_line() -> str:
    gitsafe, pygit2, libgit2 = versions()
    return f"gitsafe {gitsafe} (pygit2 {pygit2}, libgit2 {libgit2})"


def _pygit2_dir() -> str:
    # find_spec of a top-level package locates it without importing it.
    spec = importlib.util.find_spec("pygit2")
    if spec is None or not spec.submodule_search_locations:
        raise _Unreadable("pygit2 is not an installed package")
    return str(next(iter(spec.submodule_search_locations)))


def _pygit2_version(package_dir: str) -> str:
    site = os.path.dirname(package_dir)
    infos = [
        name
        for name in os.listdir(site)
        if name.lower().startswith("pygit2-") and name.endswith(".dist-info")
    ]
    if len(infos) != 1:  # none (a source checkout) or stale leftovers: ask pygit2 itself
        raise _Unreadable(f"{len(infos)} pygit2 dist-info directories")
    with open(os.path.join(site, infos[0], "METADATA"), encoding="utf-8") as metadata:
        for line in metadata:
            if line.startswith("Version:"):
                return line.partition(":")[2].strip()
            if not line.strip():  # end of the headers
                break
    raise _Unreadable("no Version header")


def _libgit2_version(package_dir: str) -> str:
    # The file name the interpreter itself would load for `pygit2._pygit2`.
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(package_dir, "_pygit2" + suffix)
        if os.path.exists(path):
            break
    else:
        raise _Unreadable("no pygit2._pygit2 extension module")
    # dlsym on this handle also searches the libraries it links, i.e. pygit2's libgit2.
    library = ctypes.CDLL(path)
    major, minor, revision = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    status = library.git_libgit2_version(
        ctypes.byref(major), ctypes.byref(minor), ctypes.byref(revision)
    )
    if status != 0:
        raise _Unreadable(f"git_libgit2_version returned {status}")
    return f"{major.value}.{minor.value}.{revision.value}"
