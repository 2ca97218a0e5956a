"""libgit2's store of trusted certificates, loaded when an https fetch needs it.

Importing pygit2 sets libgit2's certificate locations to Python's defaults
(``pygit2.settings``): it imports Python's ``ssl`` module for
``ssl.get_default_verify_paths()``, and OpenSSL then reads and parses the whole system CA
bundle.  That costs about 15 ms of CPU (``ssl`` about 6, the bundle about 9), an eighth of what
the main thread of a no-op pull spends at 50,000 files, for a store that only an https fetch
reads; a local, ``git://`` or ``ssh://`` remote and ``gitsafe doctor`` never do.

So the command line imports pygit2 through :func:`import_pygit2`.  For the length of that
import, ``ssl`` is a stand-in that answers ``get_default_verify_paths()`` with no CA file and a
CA directory that cannot exist (a path below this module's own file); every other name
loads the real ``ssl``.  libgit2 then records a directory to search later instead of parsing a
bundle now.  :func:`system_store`, which the fetch calls before it connects over https, sets the
locations pygit2 would have set, from the real ``ssl.get_default_verify_paths()`` (for
``http://`` remotes too, which libgit2 follows when they redirect to ``https://``); libgit2
keeps the first directory too, which never holds a certificate.  The trust an https fetch
works with is the one a plain ``import pygit2`` gives, plus any ``http.sslCAInfo`` the fetch adds.

The Python API imports pygit2 as it is: its caller owns the process, and may have imported
pygit2 or ``ssl`` first.
"""

from __future__ import annotations

import os
import sys
import types

# Not typing's (mypy reads it as typing's): this module loads before pygit2, which imports typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Set by import_pygit2 when it deferred the store; system_store then loads it once.
_deferred = False


class _NoStore:
    """What the stand-in's get_default_verify_paths() answers: no file, a directory that
    cannot exist (a path below a regular file)."""

    def __init__(self, capath: str) -> None:
        self.cafile: str | None = None
        self.capath = capath


def import_pygit2() -> None:
    """Import pygit2 with libgit2's certificate store left for :func:`system_store`."""
    global _deferred
    if "pygit2" in sys.modules or "ssl" in sys.modules:
        return  # too late to stand in: the store is as pygit2 set it
    impossible = os.path.join(__file__, "no-certificates")  # below this module's own file

    stand_in = types.ModuleType("ssl", "gitsafe's stand-in while pygit2 imports")

    def load_real(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # what the import system asks of any module
        if sys.modules.get("ssl") is stand_in:
            del sys.modules["ssl"]
        import ssl  # the real one, also for whoever kept the stand-in past the import

        return getattr(ssl, name)

    stand_in.DefaultVerifyPaths = _NoStore  # type: ignore[attr-defined]
    stand_in.get_default_verify_paths = lambda: _NoStore(impossible)  # type: ignore[attr-defined]
    stand_in.__getattr__ = load_real  # type: ignore[method-assign]  # any other name: real ssl
    sys.modules["ssl"] = stand_in
    try:
        import pygit2
    finally:
        if sys.modules.get("ssl") is stand_in:
            del sys.modules["ssl"]
    _deferred = pygit2.settings.ssl_cert_file is None and pygit2.settings.ssl_cert_dir == impossible


def system_store() -> None:
    """Give libgit2 the certificate locations a plain ``import pygit2`` gives it, if
    :func:`import_pygit2` left them out; before the first https connection."""
    global _deferred
    if not _deferred:
        return
    _deferred = False
    import ssl

    import pygit2

    paths = ssl.get_default_verify_paths()
    # What pygit2's Settings() keeps, for `del pygit2.settings.ssl_cert_file` and the like
    pygit2.settings._default_tls_verify_paths = paths
    if paths.cafile is not None or paths.capath is not None:
        pygit2.settings.set_ssl_cert_locations(paths.cafile, paths.capath)
