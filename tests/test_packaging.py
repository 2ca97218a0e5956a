"""The distribution as users get it: sdist and wheel build and pass `twine check`, the wheel
installs with pip and with pipx into fresh environments, and `gitsafe --version` answers in
under 150 ms.

The optional C extension gitsafe._native (hatch_build.py): with a C compiler and Python.h the
wheel carries it and is tagged for this interpreter and platform; without them, or with
GITSAFE_BUILD_NATIVE=0, the wheel is pure and gitsafe runs on its pure-Python scan. A missing
compiler is real here: CC names a program that does not exist, which setuptools honours.

The install tests resolve pygit2, typer and rich from the package index, as any user's install
does; they take about 7 s each and are marked slow (CI runs them).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import pygit2
import pytest

from gitsafe._version import __version__

ROOT = Path(__file__).parent.parent
VERSION_LINE = re.compile(r"^gitsafe (\S+) \(pygit2 (\S+), libgit2 (\S+)\)\n$")
NATIVE = f"gitsafe/_native{sysconfig.get_config_var('EXT_SUFFIX')}"
PURE_TAG = "py3-none-any"
# What hatchling infers for a platform wheel: this interpreter, its ABI, the plain platform tag.
PLATFORM_TAG = "cp{0}{1}-cp{0}{1}-{2}".format(
    *sys.version_info[:2], re.sub(r"[-.]", "_", sysconfig.get_platform())
)
WARNING = re.compile(
    r"^gitsafe: the C extension could not be built \(.+\); using the pure-Python scan$", re.M
)


def native_toolchain() -> bool:
    """Whether this interpreter can build C extensions: the compiler setuptools would run
    (CC, else the one Python was built with) and the interpreter's Python.h both exist."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(shlex.split(compiler)[0]) is not None and headers.is_file()


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def copy_project(dest: Path) -> Path:
    """What a wheel is built from, copied without the tree's own built modules or .gitignore
    (as in an unpacked sdist), so a test can build in it without touching the tree."""
    dest.mkdir()
    for name in ("pyproject.toml", "hatch_build.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("*.so", "__pycache__")
    shutil.copytree(ROOT / "gitsafe", dest / "gitsafe", ignore=ignore)
    return dest


def build_wheel(
    out: Path, env: dict[str, str], source: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """A wheel straight from a source tree, as `pip install .` builds it."""
    return subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out, source],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # --no-isolation: hatchling comes from the test extra, so the build needs no network.
    out = tmp_path_factory.mktemp("dist")
    # The default: the extension when it can be built, whatever the calling shell exported.
    env = {"GITSAFE_BUILD_NATIVE": ""}
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, env=env)
    return out


@pytest.fixture(scope="module")
def pure_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built with the extension switched off, as on a machine without a compiler, from a
    tree where an earlier editable install left a built module."""
    out = tmp_path_factory.mktemp("pure-dist")
    source = copy_project(out / "source")
    stale = source / NATIVE
    stale.write_bytes(b"an earlier build")
    proc = build_wheel(out, {"GITSAFE_BUILD_NATIVE": "0"}, source)
    assert proc.returncode == 0, proc.stderr
    assert not WARNING.search(proc.stderr), "a deliberate skip is not a failure to warn about"
    # Building a wheel leaves the tree alone (the editable install's module stays).
    assert stale.read_bytes() == b"an earlier build"
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("gitsafe-*.whl")
    return wheel


def sdist_of(dist: Path) -> Path:
    (sdist,) = dist.glob("gitsafe-*.tar.gz")
    return sdist


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def installed_versions(python: Path) -> tuple[str, str, str]:
    """What the environment's own gitsafe and pygit2 say when imported: the oracle."""
    # From the venv's directory, never the source tree, whose gitsafe/ `-c` would import.
    out = run(
        python,
        "-c",
        "import gitsafe, pygit2; print(gitsafe.__version__, pygit2.__version__, "
        "pygit2.LIBGIT2_VERSION)",
        cwd=python.parent,
    )
    gitsafe_version, pygit2_version, libgit2_version = out.split()
    return gitsafe_version, pygit2_version, libgit2_version


def assert_version_line(out: str, python: Path) -> None:
    match = VERSION_LINE.match(out)
    assert match, out
    assert match.groups() == installed_versions(python)


def test_sdist_and_wheel_pass_twine_check_strict(dist: Path) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert out.count("PASSED") == 2, out


def test_wheel_ships_every_module_py_typed_license_and_the_entry_point(dist: Path) -> None:
    wheel = wheel_of(dist)
    tag = PLATFORM_TAG if native_toolchain() else PURE_TAG
    assert wheel.name == f"gitsafe-{__version__}-{tag}.whl"  # one version source
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"gitsafe-{__version__}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    # Every module and data file (hook templates, py.typed, the extension's stub) of the source
    # package; the C source and modules an editable install built in place are not shipped.
    package = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "gitsafe").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".c", ".so")
    }
    assert package <= names, package - names
    assert "gitsafe/py.typed" in names
    assert f"{info}/licenses/LICENSE" in names
    assert "gitsafe = gitsafe.__main__:run" in entry_points
    assert f"\nVersion: {__version__}\n" in metadata
    assert "Requires-Dist: pygit2" in metadata
    assert "Typing :: Typed" in metadata


def test_wheel_carries_the_c_extension_exactly_when_a_compiler_and_headers_exist(
    dist: Path,
) -> None:
    with zipfile.ZipFile(wheel_of(dist)) as archive:
        names = set(archive.namelist())
        wheel_info = archive.read(f"gitsafe-{__version__}.dist-info/WHEEL").decode()
    built = sorted(n for n in names if n.endswith(".so"))
    # One copy, the one compiled for this build; never the C source.
    assert built == ([NATIVE] if native_toolchain() else []), built
    assert "gitsafe/_native.c" not in names
    purelib = "false" if native_toolchain() else "true"
    assert f"Root-Is-Purelib: {purelib}\n" in wheel_info


def test_build_native_0_builds_a_pure_wheel_without_the_extension(pure_dist: Path) -> None:
    wheel = wheel_of(pure_dist)
    assert wheel.name == f"gitsafe-{__version__}-{PURE_TAG}.whl"
    names = wheel_files(wheel)
    # The module an editable install left in the tree is not picked up.
    assert not [n for n in names if n.endswith(".so")], names
    assert "gitsafe/__main__.py" in names


def test_missing_compiler_warns_once_and_builds_a_pure_wheel(tmp_path: Path) -> None:
    proc = build_wheel(tmp_path, {"CC": str(tmp_path / "no-such-cc"), "GITSAFE_BUILD_NATIVE": ""})
    assert proc.returncode == 0, proc.stderr
    assert len(WARNING.findall(proc.stderr)) == 1, proc.stderr
    assert "no C compiler" in proc.stderr
    wheel = wheel_of(tmp_path)
    assert wheel.name == f"gitsafe-{__version__}-{PURE_TAG}.whl"
    assert not [n for n in wheel_files(wheel) if n.endswith(".so")]


def test_build_native_1_turns_a_missing_compiler_into_a_build_error(tmp_path: Path) -> None:
    env = {"CC": str(tmp_path / "no-such-cc"), "GITSAFE_BUILD_NATIVE": "1"}
    proc = build_wheel(tmp_path / "out", env)
    assert proc.returncode != 0
    assert "gitsafe: the C extension could not be built (no C compiler" in proc.stderr
    assert not list((tmp_path / "out").glob("*.whl"))


def test_build_native_rejects_a_value_it_does_not_know(tmp_path: Path) -> None:
    proc = build_wheel(tmp_path, {"GITSAFE_BUILD_NATIVE": "maybe"})
    assert proc.returncode != 0
    assert "GITSAFE_BUILD_NATIVE='maybe'" in proc.stderr


def test_editable_build_puts_the_extension_beside_the_sources(tmp_path: Path) -> None:
    # A copy of the project, so the real tree's module (the dev install's) is left alone.
    src = copy_project(tmp_path / "src")
    in_tree = src / NATIVE

    def build_editable(build_native: str) -> set[str]:
        out = tmp_path / f"editable-{build_native or 'auto'}"
        # The PEP 660 hook pip calls for `pip install -e .`.
        run(
            sys.executable,
            "-c",
            "import sys, hatchling.build as backend; backend.build_editable(sys.argv[1])",
            out,
            cwd=src,
            env={"GITSAFE_BUILD_NATIVE": build_native},
        )
        (wheel,) = out.glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            assert archive.read("_gitsafe.pth").decode() == str(src)
            return set(archive.namelist())

    names = build_editable("")
    assert not [n for n in names if n.endswith(".so")], "the editable wheel stays pure"
    if not native_toolchain():
        assert not in_tree.exists()
        return
    assert in_tree.is_file()
    # What the editable install's path entry imports: the module built in the copy.
    where = run(
        sys.executable,
        "-c",
        "import gitsafe._native as n; print(n.__file__)",
        cwd=tmp_path,
        env={"PYTHONPATH": str(src)},
    )
    assert Path(where.strip()) == in_tree
    # Switched off, the module built before must go: it would shadow the pure-Python scan.
    build_editable("0")
    assert not in_tree.exists()


def test_sdist_carries_tests_docs_hooks_and_the_site_config(dist: Path) -> None:
    sdist = sdist_of(dist)
    top = f"gitsafe-{__version__}"
    with tarfile.open(sdist) as archive:
        members = {m.name.removeprefix(top + "/"): m for m in archive.getmembers()}
    # The C source and the build hook, so the wheel built from the sdist gets the extension; never
    # a module built in the tree.
    assert not [m for m in members if m.endswith(".so")], sorted(members)
    for path in (
        "pyproject.toml",
        "hatch_build.py",
        "gitsafe/_native.c",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "mkdocs.yml",
        "gitsafe/py.typed",
        "tests/conftest.py",
        "tests/test_packaging.py",
        "docs/index.md",
        "docs/getting-started.md",
        "docs/cli.md",
        "docs/report.schema.json",
        "hooks/deploy-pull",
    ):
        assert path in members, path
    assert members["hooks/deploy-pull"].mode & 0o111, "hooks must stay executable"
    # The changelog page is a link to CHANGELOG.md, so the two can never differ.
    assert members["docs/changelog.md"].issym()
    assert members["docs/changelog.md"].linkname == "../CHANGELOG.md"


def install_and_run(wheel: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Install the wheel with pip into a fresh venv, check `gitsafe --version` and run the
    README's first command; return the venv's python and its site-packages."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # This interpreter's pip installs into the new venv: no ensurepip, same resolver.
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel)
    assert_version_line(run(venv / "bin" / "gitsafe", "--version"), python)
    package = run(
        python, "-c", "import gitsafe, os; print(os.path.dirname(gitsafe.__file__))", cwd=tmp_path
    )
    assert (Path(package.strip()) / "py.typed").is_file()
    # The README's first command, from the installed wheel: a whole doctor + heal.
    demo = subprocess.run(
        [venv / "bin" / "gitsafe", "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "healed" in demo.stderr
    return python, Path(package.strip()).parent


def import_native(python: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", "import gitsafe._native as n; print(n.__file__)"],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


@pytest.mark.slow
def test_wheel_installs_with_pip_into_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    python, site = install_and_run(wheel_of(dist), tmp_path)
    native = import_native(python, tmp_path)
    if native_toolchain():
        assert native.returncode == 0, native.stderr
        assert Path(native.stdout.strip()) == site / NATIVE
    else:
        assert "No module named 'gitsafe._native'" in native.stderr


@pytest.mark.slow
def test_pure_wheel_installs_and_runs_on_the_pure_python_scan(
    pure_dist: Path, tmp_path: Path
) -> None:
    python, _ = install_and_run(wheel_of(pure_dist), tmp_path)
    native = import_native(python, tmp_path)
    assert native.returncode != 0
    assert "No module named 'gitsafe._native'" in native.stderr


@pytest.mark.slow
def test_wheel_installs_with_pipx_and_runs(dist: Path, tmp_path: Path) -> None:
    env = {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    run(
        sys.executable,
        "-m",
        "pipx",
        "install",
        "--python",
        sys.executable,
        wheel_of(dist),
        env=env,
    )
    command = tmp_path / "bin" / "gitsafe"
    assert command.exists()
    python = tmp_path / "pipx" / "venvs" / "gitsafe" / "bin" / "python"
    assert_version_line(run(command, "--version"), python)


def test_version_names_the_pygit2_and_libgit2_in_use() -> None:
    # The quick read (metadata + ctypes) must agree with what pygit2 itself reports.
    from gitsafe.versions import versions

    expected = (__version__, pygit2.__version__, pygit2.LIBGIT2_VERSION)
    assert versions() == expected
    match = VERSION_LINE.match(run(sys.executable, "-m", "gitsafe", "--version"))
    assert match and match.groups() == expected


def test_version_after_other_options_prints_the_same_line() -> None:
    fast = run(sys.executable, "-m", "gitsafe", "--version")
    via_typer = run(sys.executable, "-m", "gitsafe", "-C", str(ROOT), "--version")
    assert fast == via_typer


def test_version_imports_neither_typer_nor_pygit2() -> None:
    out = run(
        sys.executable,
        "-c",
        "import sys\n"
        "sys.argv = ['gitsafe', '--version']\n"
        "from gitsafe.__main__ import main\n"
        "main()\n"
        "print(sorted(m for m in ('typer', 'click', 'rich', 'pygit2') if m in sys.modules))\n",
    )
    assert out.splitlines()[-1] == "[]", out


def test_version_answers_in_under_150_ms() -> None:
    script = Path(sys.executable).parent / "gitsafe"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gitsafe"]
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        subprocess.run([*command, "--version"], capture_output=True, check=True)
        timings.append(time.perf_counter() - start)
    # The best of several runs: the budget is the command's cost, not a busy machine's noise.
    assert min(timings) < 0.150, f"{command} --version: {[round(t * 1000) for t in timings]} ms"


def test_version_falls_back_to_importing_pygit2_without_its_metadata(tmp_path: Path) -> None:
    # pygit2 found on PYTHONPATH with no dist-info beside it, as in a source checkout of pygit2:
    # the quick read does not apply, and the answer must still be right.
    package = Path(pygit2.__file__).parent
    for entry in package.parent.iterdir():
        if entry.name in ("pygit2", "pygit2.libs"):
            (tmp_path / entry.name).symlink_to(entry)
    out = run(
        sys.executable,
        "-c",
        "from gitsafe.versions import _pygit2_dir, _pygit2_version, versions\n"
        "try:\n"
        "    _pygit2_version(_pygit2_dir())\n"
        "except Exception as error:\n"
        "    print(type(error).__name__)\n"
        "print(*versions())\n",
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )
    assert out.split("\n")[:2] == [
        "_Unreadable",
        f"{__version__} {pygit2.__version__} {pygit2.LIBGIT2_VERSION}",
    ]
