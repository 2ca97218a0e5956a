"""Wheel build hook: compile the optional C extension gitsafe._native.

gitsafe works without it (pure-Python scan), so a machine with no C compiler or no Python
headers still gets a working pure wheel; with them the wheel is tagged for this interpreter and
platform. The compile goes through setuptools' build_ext, so CC, CFLAGS, LDFLAGS and the
interpreter's sysconfig flags apply exactly as for any other extension.

GITSAFE_BUILD_NATIVE: 0 skips the extension (to build and test the fallback), 1 makes a failed
compile a build error, unset builds it when it can.

An editable install (`pip install -e .`) builds the module into gitsafe/ once; after changing
gitsafe/_native.c, run it again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.builders.wheel import WheelBuilderConfig

MODULE = "gitsafe._native"
SOURCE = "gitsafe/_native.c"
# Both the compile and the link: the scan starts threads.
PTHREAD = ["-pthread"]
# The stat pass hashes touched files with OpenSSL's SHA-1 (libcrypto; on Debian, libssl-dev).
LIBRARIES = ["crypto"]
ENV = "GITSAFE_BUILD_NATIVE"
SKIP, REQUIRE = ("0", "false", "no", "off"), ("1", "true", "yes", "on")


class NativeBuildError(Exception):
    """The extension could not be built; the message says why in a few words."""


class NativeBuildHook(BuildHookInterface[WheelBuilderConfig]):
    PLUGIN_NAME = "custom"

    _scratch: tempfile.TemporaryDirectory[str] | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        mode = os.environ.get(ENV, "").strip().lower()
        if mode not in (*SKIP, *REQUIRE, "", "auto"):
            raise ValueError(f"{ENV}={mode!r}: use 0 (skip), 1 (required) or leave it unset")
        in_tree = Path(self.root) / "gitsafe" / f"_native{_ext_suffix()}"
        if mode in SKIP:
            if version == "editable":
                # The install would otherwise keep importing a module built earlier.
                in_tree.unlink(missing_ok=True)
            return
        self._scratch = tempfile.TemporaryDirectory(prefix="gitsafe-native-")
        try:
            built = compile_extension(Path(self.root), Path(self._scratch.name))
        except NativeBuildError as error:
            if mode in REQUIRE:
                raise RuntimeError(
                    f"gitsafe: the C extension could not be built ({error})"
                ) from None
            if version == "editable":
                # A stale module from an earlier build must not shadow the pure-Python scan.
                in_tree.unlink(missing_ok=True)
            print(
                f"gitsafe: the C extension could not be built ({error}); "
                "using the pure-Python scan",
                file=sys.stderr,
            )
            return
        if version == "editable":
            # Next to the sources, where the editable install's path entry finds it; the editable
            # wheel itself stays pure. Replaced by rename, never overwritten in place: a running
            # gitsafe has the old file mapped.
            partial = in_tree.with_name(f".{in_tree.name}.{os.getpid()}.tmp")
            try:
                shutil.copyfile(built, partial)
                os.chmod(partial, 0o755)
                os.replace(partial, in_tree)
            finally:
                partial.unlink(missing_ok=True)
            return
        build_data["force_include"][str(built)] = f"gitsafe/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def clean(self, versions: list[str]) -> None:
        for built in (Path(self.root) / "gitsafe").glob("_native*.so"):
            built.unlink()


def compile_extension(root: Path, scratch: Path) -> Path:
    """Build the extension into scratch with setuptools and return the module file's path."""
    try:
        # Older setuptools ship no type information.
        from setuptools import (  # type: ignore[import-untyped, unused-ignore]
            Distribution,
            Extension,
        )
        from setuptools.command.build_ext import (  # type: ignore[import-untyped, unused-ignore]
            build_ext,
        )
    except ImportError:
        raise NativeBuildError("setuptools is not installed") from None
    extension = Extension(
        MODULE,
        sources=[str(root / SOURCE)],
        extra_compile_args=list(PTHREAD),
        extra_link_args=list(PTHREAD),
        libraries=list(LIBRARIES),
    )
    command = build_ext(Distribution({"name": "gitsafe", "ext_modules": [extension]}))
    command.build_lib = str(scratch / "lib")
    command.build_temp = str(scratch / "temp")
    try:
        command.ensure_finalized()
        command.run()
    # The extension is optional: whatever stops it (the compiler missing or failing, headers
    # missing, a setuptools that cannot configure a compiler here) leaves the pure-Python scan.
    except Exception as error:
        raise NativeBuildError(_diagnosis(error)) from error
    return Path(command.get_ext_fullpath(MODULE))


def _diagnosis(error: Exception) -> str:
    """The likely cause in words a user can act on; the compiler's own output precedes it."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    program = shlex.split(compiler)[0]
    if shutil.which(program) is None:
        return f"no C compiler: {program!r} not found; on Debian: apt-get install gcc"
    headers = Path(sysconfig.get_paths()["include"])
    if not (headers / "Python.h").is_file():
        return f"no Python.h in {headers}; on Debian: apt-get install python3-dev"
    if not any(
        (Path(d) / "openssl" / "evp.h").is_file()
        for d in (headers, "/usr/include", "/usr/local/include")
    ):
        return "no OpenSSL headers (openssl/evp.h); on Debian: apt-get install libssl-dev"
    return f"{type(error).__name__}: {error}"


def _ext_suffix() -> str:
    return str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")
