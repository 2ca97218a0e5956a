"""Checkout conversions (eol, ident, and libgit2's other built-in filters) applied to blobs.

pygit2's ``FilterList.apply_to_buffer`` stops at the first NUL byte and ``BlobIO`` can hang on
a filtered blob, so the conversion goes through libgit2's C call directly and keeps every byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pygit2
from pygit2.enums import FilterMode
from pygit2.errors import check_error
from pygit2.ffi import C, ffi


def smudge(repo: pygit2.Repository, path: str, blob: pygit2.Blob) -> bytes | None:
    """``blob`` as a checkout writes it at ``path``; None when no conversion applies.

    The blob itself goes to libgit2, not only its bytes: the ``ident`` filter writes the blob's
    id into ``$Id$``, and a filter list applied to bare bytes has no id to write.
    """
    filters = repo.load_filter_list(os.fsencode(path), FilterMode.TO_WORKTREE)  # type: ignore[arg-type]
    if filters is None:
        return None
    c_blob = ffi.new("git_blob **")
    ffi.buffer(c_blob)[:] = blob._pointer[:]  # blob stays referenced, so the pointer lives
    buf = ffi.new("git_buf *")
    check_error(C.git_filter_list_apply_to_blob(buf, filters._pointer, c_blob[0]))
    return _taken(buf)


def to_odb(repo: pygit2.Repository, path: str, data: bytes) -> bytes:
    """``data``, read from the work tree at ``path``, as libgit2's ``git_blob_create_from_disk``
    stores it (git add's conversions, as libgit2 implements them)."""
    converted = _apply(repo, path, data, FilterMode.TO_ODB)
    return data if converted is None else converted


def _apply(repo: pygit2.Repository, path: str, data: bytes, mode: FilterMode) -> bytes | None:
    filters = repo.load_filter_list(os.fsencode(path), mode)  # type: ignore[arg-type]
    if filters is None:
        return None
    buf = ffi.new("git_buf *")
    check_error(C.git_filter_list_apply_to_buffer(buf, filters._pointer, data, len(data)))
    return _taken(buf)


def _taken(buf: Any) -> bytes:
    """The bytes libgit2 filtered into ``buf``, which is then freed."""
    try:
        return bytes(ffi.buffer(buf.ptr, buf.size))
    finally:
        C.git_buf_dispose(buf)


def attribute_paths(paths: Iterable[str]) -> list[str]:
    """The ``.gitattributes`` files among ``paths`` (one cheap pass over the names).

    A collection that already knows its own (the index's entries, a tree laid over them)
    answers through its ``attribute_paths()`` method, without a pass over every name.
    """
    known = getattr(paths, "attribute_paths", None)
    if known is not None:
        return list(known())
    return [
        p
        for p in paths
        if p.endswith(".gitattributes") and (p == ".gitattributes" or p.endswith("/.gitattributes"))
    ]
