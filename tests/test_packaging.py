"""The distribution as users get it: sdist and wheel build and pass `twine check`, the wheel
installs with pip and with pipx into fresh environments, and `gitsafe --version` answers in
under 150 ms.

The install tests resolve pygit2, typer and rich from the package index, as any user's install
does; they take about 7 s each and are marked slow (CI runs them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pygit2
import pytest

from gitsafe._version import __version__

ROOT = Path(__file__).parent.parent
VERSION_LINE = re.compile(r"^gitsafe (\S+) \(pygit2 (\S+), libgit2 (\S+)\)\n$")


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # --no-isolation: hatchling comes from the test extra, so the build needs no network.
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("gitsafe-*.whl")
    return wheel


def sdist_of(dist: Path) -> Path:
    (sdist,) = dist.glob("gitsafe-*.tar.gz")
    return sdist


def installed_versions(python: Path) -> tuple[str, str, str]:
    """What the environment's own gitsafe and pygit2 say when imported: the oracle."""
    out = run(
        python,
        "-c",
        "import gitsafe, pygit2; print(gitsafe.__version__, pygit2.__version__, "
        "pygit2.LIBGIT2_VERSION)",
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
    assert wheel.name == f"gitsafe-{__version__}-py3-none-any.whl"  # one version source
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"gitsafe-{__version__}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    # Every module and data file (hook templates, py.typed) of the source package.
    package = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "gitsafe").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert package <= names, package - names
    assert "gitsafe/py.typed" in names
    assert f"{info}/licenses/LICENSE" in names
    assert "gitsafe = gitsafe.__main__:main" in entry_points
    assert f"\nVersion: {__version__}\n" in metadata
    assert "Requires-Dist: pygit2" in metadata
    assert "Typing :: Typed" in metadata


def test_sdist_carries_tests_docs_hooks_and_the_site_config(dist: Path) -> None:
    sdist = sdist_of(dist)
    top = f"gitsafe-{__version__}"
    with tarfile.open(sdist) as archive:
        members = {m.name.removeprefix(top + "/"): m for m in archive.getmembers()}
    for path in (
        "pyproject.toml",
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


@pytest.mark.slow
def test_wheel_installs_with_pip_into_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # This interpreter's pip installs into the new venv: no ensurepip, same resolver.
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel_of(dist))
    assert_version_line(run(venv / "bin" / "gitsafe", "--version"), python)
    site = run(python, "-c", "import gitsafe, os; print(os.path.dirname(gitsafe.__file__))")
    assert (Path(site.strip()) / "py.typed").is_file()
    # The README's first command, from the installed wheel: a whole doctor + heal.
    demo = subprocess.run(
        [venv / "bin" / "gitsafe", "demo"],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "healed" in demo.stderr


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
