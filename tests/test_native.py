"""gitsafe._native, the C scan, must answer exactly what its pure-Python reference answers.

The extension does two things: parse the index file (``index_stat._parse``) and run the stat
pass over every tracked path (``plan._Analysis.unchanged_elsewhere``), the latter in several
threads.  Both are compared here with the reference on generated repositories and work trees:
index versions 2-4, conflict stages, skip-worktree, intent-to-add and assume-unchanged entries,
damaged files, and work trees whose files were touched, edited, chmod-ed, replaced by symlinks
or directories, or hidden behind a symlinked or non-directory parent.  The property test of the
whole pull (test_property_differential.py) runs half its examples on each implementation.
``prescan``, the early reads in one call, is held to the separate calls it makes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pygit2
import pytest
from gitfixtures import WITHOUT_FOWNER, git, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitsafe import accel, ignore, index_stat
from gitsafe.plan import IndexFiles, _Analysis, index_files, tree_dirs
from gitsafe.worktree import TreeView

native = pytest.mark.skipif(accel.native is None, reason="gitsafe._native is not built here")


def _can_compile() -> bool:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")[:1]
    include = sysconfig.get_paths()["include"]
    return bool(cc) and shutil.which(cc[0]) is not None and (Path(include) / "Python.h").exists()


@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python.h: pure Python expected")
def test_the_extension_is_built_and_used_where_a_compiler_exists() -> None:
    """An install with a compiler that silently fell back to Python would be slow, not wrong;
    this is what notices it."""
    import gitsafe._native  # noqa: F401  (raises if the build skipped it)

    if os.environ.get("GITSAFE_NATIVE", "") != "0":
        assert accel.native is not None
        assert accel.describe() == "native scan"


def test_gitsafe_native_0_selects_the_pure_python_scan(tmp_path: Path) -> None:
    code = "from gitsafe import accel; print(accel.describe())"
    env = {**os.environ, "GITSAFE_NATIVE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "pure-Python scan"


# -- the index parser ----------------------------------------------------------------------


NAMES = st.sampled_from(["a", "b", "ab", "a.b", "é", "ü-x", "zz", "dir", "d i r", "x" * 90])


def file_paths(names: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[list[str]]:
    """Sorted file paths of up to four components, none a directory of another (git add
    would refuse the pair)."""
    return st.lists(
        st.lists(names, min_size=1, max_size=4).map("/".join),
        min_size=1,
        max_size=max_size,
        unique=True,
    ).map(lambda paths: sorted(p for p in paths if not any(q.startswith(p + "/") for q in paths)))


@st.composite
def index_repos(draw: st.DrawFn) -> dict[str, object]:
    paths = draw(file_paths(NAMES, 25))
    return {
        "paths": paths,
        "version": draw(st.sampled_from([2, 3, 4])),
        "skip": draw(st.lists(st.sampled_from(paths), max_size=2)),
        "assume": draw(st.lists(st.sampled_from(paths), max_size=2)),
        "ita": draw(st.booleans()),
        "conflict": draw(st.booleans()),
        "raw_name": draw(st.booleans()),
    }


def _git_with_input(cwd: Path, *args: str, input: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, input=input.encode(), capture_output=True, check=True
    )
    return proc.stdout.decode()


def _build_index(root: Path, spec: dict[str, object]) -> bytes:
    git(root.parent, "init", "-q", str(root))
    paths = list(spec["paths"])  # type: ignore[call-overload]
    for i, p in enumerate(paths):
        write(root, p, f"{i}\n" * i, mode=0o755 if i % 5 == 4 else None)
    git(root, "add", "-A")
    if spec["raw_name"]:
        # A name that is not UTF-8, as a work tree from another system can hold.
        blob = _git_with_input(root, "hash-object", "-w", "--stdin", input="raw\n").strip()
        git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},raw-\udcff-name")
    for p in spec["skip"]:  # type: ignore[attr-defined]
        git(root, "update-index", "--skip-worktree", p)
    for p in spec["assume"]:  # type: ignore[attr-defined]
        git(root, "update-index", "--assume-unchanged", p)
    if spec["ita"]:
        write(root, "intent-to-add.txt", "later\n")
        git(root, "add", "-N", "intent-to-add.txt")
    if spec["conflict"]:
        blob = _git_with_input(root, "hash-object", "-w", "--stdin", input="stage\n").strip()
        stages = "".join(f"100644 {blob} {n}\tconflicted\n" for n in (1, 2, 3))
        _git_with_input(root, "update-index", "--index-info", input=stages)
    git(root, "update-index", f"--index-version={spec['version']}")
    return (root / ".git" / "index").read_bytes()


@native
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=index_repos(), cut=st.integers(min_value=0), flip=st.integers(min_value=0))
def test_parse_index_equals_the_python_parser(
    spec: dict[str, object], cut: int, flip: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("idx") / "r"
    data = _build_index(root, spec)
    expected = index_stat._parse(data)
    assert expected is not None
    parsed = index_stat._parse_native(data)
    assert _as_dicts(parsed) == expected
    # What the plan asks of the stage-0 entries, straight from the Table's bytes.
    assert parsed is not None and accel.native is not None
    table, entries = parsed[0], expected[0]
    assert accel.native.tree_facts(table) == _python_facts(entries)
    assert accel.native.dir_sizes(table) == index_stat.dir_sizes(entries)
    for mode in (0o100644, 0o100755, 0o160000):
        assert accel.native.with_mode(table, mode) == [
            p for p, v in entries.items() if v[0] == mode
        ]
    # Damaged copies: both parsers give the same entries or both give up (None).
    truncated = data[: cut % (len(data) + 1)]
    assert _as_dicts(index_stat._parse_native(truncated)) == index_stat._parse(truncated)
    at = flip % len(data)
    flipped = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    assert _as_dicts(index_stat._parse_native(flipped)) == index_stat._parse(flipped)


def _python_facts(paths: object) -> tuple[set[str], list[str]]:
    from gitsafe.filters import attribute_paths

    built = accel.native
    accel.native = None
    try:
        return tree_dirs(paths), attribute_paths(paths)  # type: ignore[arg-type]
    finally:
        accel.native = built


@native
def test_a_path_listed_twice_keeps_its_first_place_and_its_last_value(tmp_path: Path) -> None:
    """As the Python parser's dict does; read_index then notices the short count and hands the
    file to libgit2, but the two parsers must still agree."""
    root = tmp_path / "r"
    git(tmp_path, "init", "-q", str(root))
    write(root, "a", "first\n")
    write(root, "b", "second\n")
    write(root, "c", "third\n")
    git(root, "add", "-A")
    git(root, "update-index", "--index-version=2")
    data = (root / ".git" / "index").read_bytes()
    # The third entry now names "a" again.  Version-2 entries of one-letter names are 64 bytes
    # (62 of stat data, id and flags, the name, padding), so its name is at 12 + 2 * 64 + 62;
    # searching for b"c\0" could hit the same bytes in the stat data instead.
    at = 12 + 2 * 64 + 62
    assert data[at : at + 2] == b"c\0"
    twice = data[:at] + b"a" + data[at + 1 :]
    expected = index_stat._parse(twice)
    parsed = index_stat._parse_native(twice)
    assert expected is not None and parsed is not None
    assert list(expected[0]) == ["a", "b"]
    assert list(parsed[0]) == list(expected[0]) and len(parsed[0]) == 2
    assert parsed[0]["a"] == expected[0]["a"] == parsed[0].get("a")
    assert parsed[0]["a"][1] != expected[0]["b"][1]


def _as_dicts(parsed: index_stat.Parsed | None) -> object:
    """The C parser's Table as the Python parser's dict, in its iteration order."""
    if parsed is None:
        return None
    table, *rest = parsed
    as_dict = {path: table[path] for path in table}
    assert len(as_dict) == len(table)
    assert all(path in table for path in as_dict)
    return (as_dict, *rest)


@native
def test_the_table_answers_as_the_dict_does(tmp_path: Path) -> None:
    spec = {"paths": ["a", "b/c", "\udcff"], "version": 4, "skip": [], "assume": []}
    data = _build_index(tmp_path / "r", {**spec, "ita": False, "conflict": True, "raw_name": True})
    table = index_stat._parse_native(data)
    expected = index_stat._parse(data)
    assert table is not None and expected is not None
    t, d = table[0], expected[0]
    assert list(t) == list(d) and len(t) == len(d)
    for path in [*d, "missing", "b", "b/c/", "", "raw-\udcfe-name"]:
        assert (path in t) == (path in d)
        assert t.get(path) == d.get(path)
    assert 3 not in t and None not in t  # not a str: just absent, as in a dict
    with pytest.raises(KeyError):
        t["missing"]


@native
def test_parse_index_rejects_what_the_python_parser_rejects() -> None:
    for data in (
        b"",
        b"DIRC",
        b"DIRC\0\0\0\x09\0\0\0\1",  # version 9
        b"DIRC\0\0\0\2\0\0\0\1" + b"\0" * 30,  # truncated entry
        b"XIRC\0\0\0\2\0\0\0\0",
    ):
        assert index_stat._parse(data) is None
        assert index_stat._parse_native(data) is None
    assert _as_dicts(index_stat._parse_native(b"DIRC\0\0\0\2\0\0\0\0")) == ({}, [], [], False, 12)
    # A header promising more entries than the file has bytes for.
    assert index_stat._parse_native(b"DIRC\0\0\0\2\xff\xff\xff\xff" + b"\0" * 80) is None


# -- the stat pass -------------------------------------------------------------------------

# What happens to a tracked file (or its parent directory) after the index was written.
MUTATIONS = [
    "none",
    "none",
    "none",
    "touch",  # new mtime, same bytes
    "edit-same-size",
    "edit-grow",
    "chmod",
    "to-symlink",
    "to-dir",
    "delete",
    "parent-to-symlink",
    "parent-to-file",
    "recreate",  # same bytes, new inode
]


@st.composite
def work_trees(draw: st.DrawFn) -> dict[str, object]:
    paths = draw(file_paths(st.sampled_from(["a", "b", "ab", "a.b", "bc", "é", "c"]), 40))
    return {
        "paths": paths,
        "mutations": draw(
            st.lists(st.sampled_from(MUTATIONS), min_size=len(paths), max_size=len(paths))
        ),
        "near": draw(st.lists(st.sampled_from(paths), max_size=3)),
        "racy": draw(st.booleans()),
        "filemode": draw(st.booleans()),
        "may_filter": draw(st.booleans()),
        "gitlink": draw(st.booleans()),
        "symlinks": draw(st.lists(st.booleans(), min_size=len(paths), max_size=len(paths))),
    }


def _mutate(root: Path, path: str, how: str) -> None:
    full = root / path
    if not full.exists() and not full.is_symlink():
        return
    parent = full.parent
    if how == "touch":
        os.utime(
            full, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789), follow_symlinks=False
        )
    elif how == "edit-same-size" and full.is_file() and not full.is_symlink():
        data = full.read_bytes()
        full.write_bytes(bytes(reversed(data)) if len(set(data)) > 1 else b"Z" * len(data))
    elif how == "edit-grow" and not full.is_symlink():
        with open(full, "ab") as f:
            f.write(b"more\n")
    elif how == "chmod" and not full.is_symlink():
        full.chmod(full.stat().st_mode ^ 0o111)
    elif how == "to-symlink":
        full.unlink()
        full.symlink_to("elsewhere")
    elif how == "to-dir":
        full.unlink()
        full.mkdir()
    elif how == "delete":
        full.unlink()
    elif how == "recreate" and not full.is_symlink():
        data = full.read_bytes()
        full.unlink()
        full.write_bytes(data)
    elif how in ("parent-to-symlink", "parent-to-file") and parent != root:
        moved = parent.with_name(parent.name + ".moved")
        if moved.exists():
            return
        parent.rename(moved)
        if how == "parent-to-symlink":
            parent.symlink_to(moved.name)  # the same files, reached through a symlink
        else:
            parent.write_bytes(b"not a directory\n")


def _analysis(root: Path, spec: dict[str, object]) -> _Analysis:
    repo = pygit2.Repository(str(root))
    snap = index_stat.read_index(repo, os.path.join(repo.path, "index"))
    files = index_files(snap)
    return _Analysis(
        repo,
        TreeView(str(root)),
        snap,
        files,
        files,
        ignore.ExcludeRules((), ()),
        bool(spec["filemode"]),
        bool(spec["may_filter"]),
        set(spec["near"]),  # type: ignore[call-overload]
    )


def _mutated_work_tree(root: Path, spec: dict[str, object]) -> Path:
    """A repository of work_trees' spec: its files added, their stat data racy or not, then
    mutated."""
    git(root.parent, "init", "-q", str(root))
    paths: list[str] = spec["paths"]  # type: ignore[assignment]
    for i, (p, link) in enumerate(zip(paths, spec["symlinks"], strict=True)):  # type: ignore[call-overload]
        if link and i % 3 == 0:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"target-{i}", root / p)
        else:
            write(root, p, f"content {i}\n" * (i % 4), mode=0o755 if i % 4 == 3 else None)
    git(root, "add", "-A")
    if spec["gitlink"]:
        git(root, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},sub/module")
    if not spec["racy"]:
        # Age every file's stat data a second behind the index's own mtime.
        index_file = root / ".git" / "index"
        old = index_file.stat().st_mtime_ns - 2_000_000_000
        for p in paths:
            os.utime(root / p, ns=(old, old), follow_symlinks=False)
        git(root, "update-index", "--refresh", "-q", check=False)
    for p, how in zip(paths, spec["mutations"], strict=True):  # type: ignore[call-overload]
        _mutate(root, p, how)
    return root


@native
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=work_trees(), threads=st.sampled_from([1, 2, 3, 7]))
def test_stat_pass_equals_the_python_loop(
    spec: dict[str, object], threads: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = _mutated_work_tree(tmp_path_factory.mktemp("wt") / "r", spec)
    built = accel.native
    accel.native = None
    try:  # the reference, from the Python parser's dict to the Python loop
        python = _analysis(root, spec)
        assert isinstance(python.index.entries.raw, dict)
        expected_rest = python.unchanged_elsewhere()
    finally:
        accel.native = built
    fast = _analysis(root, spec)
    assert isinstance(fast.index.entries.raw, built.Table)
    assert accel.native is not None
    rest_list, touched = accel.native.stat_pass(
        fast.index.entries.raw,
        fast.near,
        fast.view.root,
        fast.index.mtime_ns,
        fast.filemode,
        threads,
    )
    rest = set(rest_list)
    # A Table's touched files come hashed: only those holding their entry's blob, which
    # pygit2 must confirm; plain_hash still decides whether that proves them unchanged.
    for path, packed in accel.native.record_pairs(fast.index.entries.raw, touched):
        assert pygit2.hashfile(str(root / path)).raw == fast.index.entries.raw[path][1], path
        if fast.plain_hash(path):
            fast.changes.verified[path] = packed
        else:
            rest.add(path)
    assert rest == expected_rest
    assert fast.changes.verified == python.changes.verified  # the same packed stat data
    # And through the method the plan calls.
    again = _analysis(root, spec)
    assert again.unchanged_elsewhere() == expected_rest
    raw = again.index.entries.raw
    verified = dict(accel.native.record_pairs(raw, again.changes.verified_records))
    verified.update(again.changes.verified)
    assert verified == python.changes.verified


def _prescan(
    index: Path, root: Path, filemode: bool, threads: int, **lie: int
) -> tuple[bytes, index_stat.Parsed, list[str], bytes, list[str] | None] | None:
    """native.prescan on the index file, with what fstat said of it (or ``lie``)."""
    assert accel.native is not None
    fd = os.open(index, os.O_RDONLY)
    try:
        lst = os.fstat(fd)
        said = {"size": lst.st_size, "mtime_ns": lst.st_mtime_ns, "ctime_ns": lst.st_ctime_ns}
        said.update(lie)
        found = accel.native.prescan(
            fd, said["size"], said["mtime_ns"], said["ctime_ns"], str(root), filemode, threads
        )
        return found  # type: ignore[no-any-return]  # accel.native is typed as a module
    finally:
        os.close(fd)


@native
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    spec=work_trees(),
    threads=st.sampled_from([1, 2, 3, 7]),
    untracked=st.lists(st.sampled_from(["new", "a/new", "b/c/new", "a/b/new"]), max_size=3),
)
def test_prescan_answers_what_the_three_calls_answer(
    spec: dict[str, object],
    threads: int,
    untracked: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = _mutated_work_tree(tmp_path_factory.mktemp("wt") / "r", spec)
    for p in untracked:
        with contextlib.suppress(OSError):  # a parent may be a file or a symlink now
            write(root, p, "untracked\n")
    native_ = accel.native
    assert native_ is not None
    index = root / ".git" / "index"
    filemode = bool(spec["filemode"])
    found = _prescan(index, root, filemode, threads)
    data = index.read_bytes()
    parsed = native_.parse_index(data)
    assert found is not None and parsed is not None
    ends, got_parsed, rest, touched, holding = found
    assert ends == data[:12] + data[parsed[4] :]
    assert _as_dicts(got_parsed) == _as_dicts(parsed)
    mtime = index.stat().st_mtime_ns
    assert (rest, touched) == native_.stat_pass(
        parsed[0], None, str(root), mtime, filemode, threads
    )
    expected = native_.table_dirs_holding_others(str(root), parsed[0], threads)
    assert holding is not None and sorted(holding) == sorted(expected)


@native
def test_prescan_answers_none_for_a_file_it_cannot_trust(tmp_path: Path) -> None:
    root = tmp_path / "r"
    git(tmp_path, "init", "-q", str(root))
    write(root, "a/b", "b\n")
    git(root, "add", "-A")
    index = root / ".git" / "index"
    assert _prescan(index, root, True, 2) is not None
    size = index.stat().st_size
    assert _prescan(index, root, True, 2, size=size - 1) is None  # grew since fstat
    assert _prescan(index, root, True, 2, size=size + 1) is None  # shrank
    assert _prescan(index, root, True, 2, mtime_ns=1) is None  # rewritten in place
    assert _prescan(index, root, True, 2, ctime_ns=1) is None
    data = bytearray(index.read_bytes())
    data[-1] ^= 1
    index.write_bytes(bytes(data))  # the checksum no longer holds
    assert _prescan(index, root, True, 2) is None
    data[-1] ^= 1
    data[4:8] = (5).to_bytes(4, "big")  # a version no parser takes, under a checksum that holds
    data[-20:] = hashlib.sha1(bytes(data[:-20])).digest()
    index.write_bytes(bytes(data))
    assert accel.native is not None and accel.native.parse_index(bytes(data)) is None
    assert _prescan(index, root, True, 2) is None
    assert accel.native is not None
    with pytest.raises(ValueError):
        _prescan(index, root, True, 2, size=-1)


@native
def test_prescan_answers_none_when_the_last_name_runs_into_the_checksum(tmp_path: Path) -> None:
    """A damaged index whose only name ends on the checksum's last byte (a zero): the entries
    end past the file, which the parsers report and the snapshot refuses; prescan must give up
    too, not copy from beyond the file."""
    root = tmp_path / "r"
    root.mkdir()
    head = b"DIRC" + (2).to_bytes(4, "big") + (1).to_bytes(4, "big")
    entry = bytes(24) + (0o100644).to_bytes(4, "big") + bytes(12) + b"\x11" * 20
    for salt in range(1, 1_000_000):
        name = b"x" + salt.to_bytes(4, "big").replace(b"\0", b"\1")
        body = head + entry + len(name).to_bytes(2, "big") + name
        digest = hashlib.sha1(body).digest()
        if digest[-1] == 0 and b"\0" not in digest[:-1]:
            break
    data = body + digest
    index = tmp_path / "index"
    index.write_bytes(data)
    assert accel.native is not None
    parsed = accel.native.parse_index(data)
    assert parsed is not None and parsed[4] > len(data)
    assert _prescan(index, root, True, 1) is None


@native
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=index_repos())
def test_prescan_parses_conflicts_skip_worktree_and_every_version_as_parse_index(
    spec: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The records prescan keeps of conflict stages and skip-worktree entries outlive the
    file's bytes, which the stat pass's items then overwrite."""
    root = tmp_path_factory.mktemp("idx") / "r"
    data = _build_index(root, spec)
    found = _prescan(root / ".git" / "index", root, True, 2)
    expected = accel.native.parse_index(data) if accel.native is not None else None
    if expected is None:  # a name that does not decode: both hand the file to libgit2
        assert found is None
        return
    assert found is not None
    assert _as_dicts(found[1]) == _as_dicts(expected)
    assert found[0] == data[:12] + data[expected[4] :]


@native
def test_prescan_leaves_holding_to_the_plan_where_the_listing_fails(tmp_path: Path) -> None:
    """As Prescan did with table_dirs_holding_others' OSError (here EMFILE: not one more file
    may be opened): holding None, the rest of the answer kept (the stat pass, unable to open
    the top, vouches for nothing)."""
    root = tmp_path / "r"
    git(tmp_path, "init", "-q", str(root))
    write(root, "d/e/f", "f\n")
    git(root, "add", "-A")
    code = f"""
import os, resource
from gitsafe import accel
def prescan():
    fd = os.open({str(root / ".git" / "index")!r}, os.O_RDONLY)
    lst = os.fstat(fd)
    first_free = os.open(os.devnull, os.O_RDONLY)
    os.close(first_free)
    if limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (first_free, first_free))
    return accel.native.prescan(
        fd, lst.st_size, lst.st_mtime_ns, lst.st_ctime_ns, {str(root)!r}, True, 1
    )
limit = False
print(prescan()[4])
limit = True
print(prescan()[2:])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # (the first call may find d/e/f racily clean, so hashed, as touched: not checked here)
    assert out.stdout == "[]\n(['d/e/f'], b'', None)\n", out.stderr


@native
def test_stat_pass_hashes_touched_files_as_git_does(tmp_path: Path) -> None:
    """A Table's touched files are hashed in C: kept as touched only when their bytes are the
    entry's blob (``git hash-object`` decides), at every size around the read buffer's."""
    root = tmp_path / "r"
    git(tmp_path, "init", "-q", str(root))
    rng = random.Random(11)
    sizes = [0, 1, 4095, 65535, 65536, 65537, 131072, (1 << 20) + 3]
    for i, n in enumerate(sizes):
        write(root, f"same{i}", rng.randbytes(n))
        write(root, f"last{i}", rng.randbytes(n))
        write(root, f"grown{i}", rng.randbytes(n))
        write(root, f"exec{i}", rng.randbytes(n), mode=0o755)
    git(root, "add", "-A")
    for i, n in enumerate(sizes):
        if n:
            data = bytearray((root / f"last{i}").read_bytes())
            data[-1] ^= 1  # the same size, the last byte changed
            (root / f"last{i}").write_bytes(bytes(data))
        with open(root / f"grown{i}", "ab") as f:
            f.write(b"\0")
    index_path = root / ".git" / "index"
    now = time.time_ns()
    os.utime(index_path, ns=(now - 20 * 10**9, now - 20 * 10**9))
    names = git(root, "ls-files", "-z").split("\0")[:-1]
    for name in names:
        os.utime(root / name, ns=(now - 10**10, now - 10**10))
    data = index_path.read_bytes()
    assert accel.native is not None
    parsed = accel.native.parse_index(data)
    assert parsed is not None
    table = parsed[0]
    listed = (line.split("\t") for line in git(root, "ls-files", "-s").splitlines())
    blob = {name: info.split()[1] for info, name in listed}
    expected = {name for name in names if git(root, "hash-object", name).strip() == blob[name]}
    assert {f"same{i}" for i in range(len(sizes))} <= expected
    for threads in (1, 2, 3):
        rest, records = accel.native.stat_pass(
            table, None, str(root), os.stat(index_path).st_mtime_ns, True, threads
        )
        touched = dict(accel.native.record_pairs(table, records))
        assert set(touched) == expected, threads
        assert set(rest) == set(names) - expected, threads
        for name, packed in touched.items():
            assert packed == index_stat.pack_stat(os.lstat(root / name), table[name][0])


@native
def test_every_thread_reports_its_touched_files_with_their_own_stat_data(tmp_path: Path) -> None:
    """Past 500 entries a thread, the stat pass splits the entries between threads; each
    touched file's stat data must come back with that file, from every thread's share, through
    stat_pass on a Table or a dict and through prescan."""
    root = tmp_path / "r"
    git(tmp_path, "init", "-q", str(root))
    for i in range(1600):
        write(root, f"d{i // 100:02d}/f{i:04d}", f"{i}\n")
    git(root, "add", "-A")
    index_path = root / ".git" / "index"
    now = time.time_ns()
    os.utime(index_path, ns=(now - 20 * 10**9, now - 20 * 10**9))
    names = git(root, "ls-files", "-z").split("\0")[:-1]
    for k, name in enumerate(names):  # a different mtime each: no file's data fits another
        os.utime(root / name, ns=(now - 10**10 + k, now - 10**10 + k))
    truth = {name: index_stat.pack_stat(os.lstat(root / name), 0o100644) for name in names}
    mtime = index_path.stat().st_mtime_ns
    assert accel.native is not None
    parsed = accel.native.parse_index(index_path.read_bytes())
    assert parsed is not None
    table = parsed[0]
    as_dict = {path: table[path] for path in names}
    for threads in (1, 2, 3, 4):
        rest, records = accel.native.stat_pass(table, None, str(root), mtime, True, threads)
        assert rest == [] and dict(accel.native.record_pairs(table, records)) == truth, threads
        rest, pairs = accel.native.stat_pass(as_dict, None, str(root), mtime, True, threads)
        assert rest == [] and dict(pairs) == truth, threads
        found = _prescan(index_path, root, True, threads)
        assert found is not None
        assert found[2] == [] and dict(accel.native.record_pairs(found[1][0], found[3])) == truth


@native
def test_stat_pass_parent_checks_share_prefixes_correctly(tmp_path: Path) -> None:
    """The C loop remembers the last parent it proved a directory and checks only the components
    after the longest shared one; names that share characters but not components ("a.b" then
    "a/b", "a/b" then "a/bc") must not borrow each other's proof."""
    root = tmp_path / "r"
    git(tmp_path, "init", "-q", str(root))
    # In index order "a-b/f" and "a.b/f" come right before "a/b/f": the last parent proved
    # ("a.b") shares the character "a" with "a/b", but not the component.
    paths = ["a-b/f", "a.b/f", "a/b/f", "a/bc/f", "a/f", "ab/c/f", "ab/f", "b/f", "ba/f"]
    for p in paths:
        write(root, p, p)
    git(root, "add", "-A")
    index_file = root / ".git" / "index"
    old = index_file.stat().st_mtime_ns - 2_000_000_000
    for p in paths:
        os.utime(root / p, ns=(old, old))
    git(root, "update-index", "--refresh", "-q", check=False)
    rng = random.Random(7)
    for hidden in ("a", "a/b", "ab", "b"):
        moved = root / (hidden + ".real")
        (root / hidden).rename(moved)
        (root / hidden).symlink_to(moved.name)
        spec = {"filemode": True, "may_filter": True, "near": []}
        a = _analysis(root, spec)
        assert accel.native is not None
        for threads in (1, 2, rng.randint(3, 5)):
            rest, touched = accel.native.stat_pass(
                a.index.entries.raw, set(), a.view.root, a.index.mtime_ns, True, threads
            )
            expected = {p for p in paths if p.startswith(hidden + "/")}
            assert set(rest) == expected, (hidden, threads)
            assert touched == b""
        (root / hidden).unlink()
        moved.rename(root / hidden)


# -- facts about many paths ----------------------------------------------------------------

PATHS = st.lists(
    st.lists(
        st.sampled_from(["a", "b", "ab", ".gitattributes", "x.gitattributes", "\udcff", "é"]),
        min_size=1,
        max_size=4,
    ).map("/".join),
    max_size=30,
)


@native
@given(paths=PATHS)
def test_tree_facts_equal_tree_dirs_and_attribute_paths(paths: list[str]) -> None:
    from gitsafe.filters import attribute_paths

    built = accel.native
    assert built is not None
    accel.native = None
    try:
        expected = (tree_dirs(paths), attribute_paths(paths))
    finally:
        accel.native = built
    assert built.tree_facts(paths) == expected
    assert built.tree_facts(iter(sorted(paths))) == (expected[0], sorted(expected[1]))


@native
@given(
    modes=st.dictionaries(
        PATHS.map(lambda p: "/".join(p) or "f"), st.sampled_from([0o100644, 0o160000, 0o120000])
    )
)
def test_with_mode_selects_the_entries_of_one_mode(modes: dict[str, int]) -> None:
    assert accel.native is not None
    raw = {p: (m, b"\0" * 20, (0, 0, 0, 0, 0, 0)) for p, m in modes.items()}
    assert accel.native.with_mode(raw, 0o160000) == [p for p, m in modes.items() if m == 0o160000]


@st.composite
def clean_walks(draw: st.DrawFn) -> dict[str, object]:
    names = st.sampled_from(["a", "b", "ab", "a.b", "c", ".git", "é"])
    tracked = draw(
        st.lists(st.lists(names, min_size=1, max_size=3).map("/".join), min_size=1, max_size=25)
    )
    tracked = sorted(
        {p for p in tracked if ".git" not in p.split("/")}
        - {q for p in tracked for q in [p.rpartition("/")[0]] if q}
    )
    tracked = [p for p in tracked if not any(q.startswith(p + "/") for q in tracked)]
    return {
        "tracked": tracked,
        "extra": draw(st.lists(st.lists(names, min_size=1, max_size=3).map("/".join), max_size=4)),
        "hide": draw(st.lists(st.sampled_from(tracked), max_size=2)) if tracked else [],
    }


@native
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=clean_walks())
def test_dirs_holding_others_equals_the_python_listing(
    spec: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Untracked files and directories, empty directories, a ``.git`` anywhere, tracked
    directories turned into symlinks or files: the same directories need the walk."""
    root = tmp_path_factory.mktemp("walk") / "r"
    git(root.parent, "init", "-q", str(root))
    tracked: list[str] = spec["tracked"]  # type: ignore[assignment]
    for p in tracked:
        write(root, p, p)
    git(root, "add", "-A")
    git(root, "update-index", "--refresh", "-q", check=False)  # writes an index even if empty
    index_file = root / ".git" / "index"
    data = index_file.read_bytes() if index_file.exists() else b"DIRC\0\0\0\2\0\0\0\0"
    parsed = index_stat._parse_native(data)
    assert parsed is not None
    table = parsed[0]
    assert sorted(table) == sorted(tracked)
    for p in spec["extra"]:  # type: ignore[attr-defined]
        full = root / p
        if full.exists():
            continue
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
            if p.endswith("b"):
                full.mkdir(exist_ok=True)  # an empty untracked directory
            else:
                full.write_text("untracked\n")
        except (NotADirectoryError, FileExistsError):
            continue  # a file stands where this needs a directory
    for p in spec["hide"]:  # type: ignore[attr-defined]
        parent = (root / p).parent
        if parent != root and parent.is_dir() and not parent.is_symlink():
            moved = parent.with_name(parent.name + ".real")
            if not moved.exists():
                parent.rename(moved)
                parent.symlink_to(moved.name)
    built = accel.native
    accel.native = None
    try:
        expected = _analysis_over(root, tracked)._dirs_holding_others()
    finally:
        accel.native = built
    assert _analysis_over(root, tracked)._dirs_holding_others() == expected
    over_table = _analysis_over(root, tracked)
    over_table.target = IndexFiles(index_stat.Entries(table), {})  # looked up by bytes
    assert over_table._dirs_holding_others() == expected  # (the threaded scan)
    assert accel.native is not None
    for threads in (1, 2, 3):
        found = accel.native.table_dirs_holding_others(str(root), table, threads)
        assert len(found) == len(set(found))
        assert set(found) | _ancestors(found) == expected, threads
    assert (
        set(accel.native.dirs_holding_others(str(root), table, tree_dirs(tracked)))
        | _ancestors(accel.native.dirs_holding_others(str(root), table, tree_dirs(tracked)))
        == expected
    )


def _ancestors(dirs: list[str]) -> set[str]:
    out = set()
    for d in dirs:
        while d:
            d = d.rpartition("/")[0]
            if d:
                out.add(d)
    return out


def _analysis_over(root: Path, tracked: list[str]) -> _Analysis:
    """An analysis whose target is ``tracked`` (no repository needed for the walk's listing)."""
    files = {p: (0o100644, pygit2.Oid(raw=b"\1" * 20)) for p in tracked}
    a = _Analysis.__new__(_Analysis)
    a.scanned = None
    a.view = TreeView(str(root))
    a.target = files
    a.target_paths = files.keys()
    a.target_dirs = tree_dirs(files)
    return a


# -- what a review found -------------------------------------------------------------------


def _index_bytes(paths: list[str]) -> bytes:
    """A version-2 index naming ``paths`` (as given, even where git would refuse them)."""
    out = b"DIRC" + (2).to_bytes(4, "big") + len(paths).to_bytes(4, "big")
    for path in paths:
        name = os.fsencode(path)
        entry = b"\0" * 24 + (0o100644).to_bytes(4, "big") + b"\0" * 12 + b"\1" * 20
        entry += min(len(name), 0xFFF).to_bytes(2, "big") + name
        out += entry + b"\0" * (8 - (len(entry) % 8))
    return out + hashlib.sha1(out).digest()


@native
def test_odd_paths_give_the_same_facts_from_the_table_and_from_python() -> None:
    paths = ["/x", "a//b", "a/./c", "a/../d", "e/", "\udcff/f", "g"]
    parsed = index_stat._parse_native(_index_bytes(paths))
    assert parsed is not None and accel.native is not None
    table = parsed[0]
    assert sorted(table) == sorted(paths)
    assert accel.native.tree_facts(table) == _python_facts(paths)
    assert accel.native.dir_sizes(table) == index_stat.dir_sizes(paths)
    assert "\ud800" not in table and table.get("\ud800") is None  # no file name: not a key


@native
def test_a_name_both_tracked_and_a_tracked_directory_is_entered(tmp_path: Path) -> None:
    """A crafted index can hold "a" and "a/b"; the Python listing enters every tracked
    directory, so the C scans must too."""
    root = tmp_path / "r"
    write(root, "a/b", "b\n")
    write(root, "a/junk", "untracked\n")
    parsed = index_stat._parse_native(_index_bytes(["a", "a/b"]))
    assert parsed is not None and accel.native is not None
    table = parsed[0]
    dirs = tree_dirs(["a", "a/b"])
    assert accel.native.dirs_holding_others(str(root), table, dirs) == ["a"]
    assert accel.native.dirs_holding_others(str(root), {"a": 1, "a/b": 1}, dirs) == ["a"]
    assert accel.native.table_dirs_holding_others(str(root), table, 2) == ["a"]


@native
@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_a_sorted_table_is_searched_by_runs_and_any_other_by_hash(
    tmp_path: Path, order: str
) -> None:
    """An index file keeps its paths in byte order, and the threaded scan looks each listed
    name up in its directory's run of them; a crafted index out of order takes the hash
    look-up.  Names that sort between a directory's own name and its contents ("a-b" and
    "a.c" come before "a/") must confuse neither."""
    tracked = ["a-b", "a.c", "a/b", "a/c/d", "a0", "ab/x", "z"]
    root = tmp_path / "r"
    for p in tracked:
        write(root, p, p)
    write(root, "a/c/untracked", "u\n")
    write(root, "ab/y", "u\n")
    (root / "a" / "e").mkdir()  # an empty untracked directory: git clean removes it too
    write(root, "a-b.new", "u\n")
    paths = sorted(tracked) if order == "sorted" else sorted(tracked, reverse=True)
    parsed = index_stat._parse_native(_index_bytes(paths))
    assert parsed is not None and accel.native is not None
    expected = accel.native.dirs_holding_others(
        str(root), dict.fromkeys(tracked, 1), tree_dirs(tracked)
    )
    assert sorted(expected) == ["", "a", "a/c", "ab"]
    for threads in (1, 2):
        found = accel.native.table_dirs_holding_others(str(root), parsed[0], threads)
        assert sorted(found) == sorted(expected), threads


@native
def test_running_out_of_file_descriptors_falls_back_to_the_python_listing(
    tmp_path: Path,
) -> None:
    """A failure the C scan cannot judge (here EMFILE, a hundred directories deep) must not
    hide a directory: it raises, and the plan lists in Python instead."""
    root = tmp_path / "r"
    deep = "/".join(f"d{i}" for i in range(100))
    write(root, f"{deep}/tracked", "t\n")
    write(root, f"{deep}/junk", "untracked\n")
    code = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_native import _analysis_over
from gitsafe import accel
tracked = [{deep + "/tracked"!r}]
resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
fast = _analysis_over(__import__("pathlib").Path({str(root)!r}), tracked)
assert accel.native is not None
try:
    accel.native.dirs_holding_others({str(root)!r}, fast.target_paths, fast.target_dirs)
except OSError as e:
    print("raised", e.errno)
got = fast._dirs_holding_others()
print(sorted(got) == sorted({{"/".join(f"d{{i}}" for i in range(k)) for k in range(1, 101)}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "raised 24"  # EMFILE
    assert out[1] == "True"


@native
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_the_scans_read_directories_they_may_not_open_with_o_noatime(tmp_path: Path) -> None:
    """The scans ask for O_NOATIME, which the kernel refuses (EPERM) to a reader who neither
    owns the directory nor has CAP_FOWNER (here root without it): they must read it without,
    not give up (a give-up is correct, through the Python listing, but slow)."""
    import pwd

    root = tmp_path / "r"
    tracked = ["a/b", "a/c/d", "top"]
    for p in tracked:
        write(root, p, p)
    write(root, "a/c/junk", "untracked\n")
    for dirpath, _dirs, _files in os.walk(root):
        os.chown(dirpath, pwd.getpwnam("nobody").pw_uid, -1)
    (tmp_path / "index").write_bytes(_index_bytes(tracked))
    code = f"""
from gitsafe import accel, index_stat
from gitsafe.plan import tree_dirs
parsed = index_stat._parse_native(open({str(tmp_path / "index")!r}, "rb").read())
print(sorted(accel.native.dirs_holding_others({str(root)!r}, parsed[0], tree_dirs({tracked!r}))))
print(sorted(accel.native.table_dirs_holding_others({str(root)!r}, parsed[0], 2)))
"""
    proc = subprocess.run(
        [*WITHOUT_FOWNER, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["['a/c']", "['a/c']"]


# -- a target laid over the index ----------------------------------------------------------


@st.composite
def overlays(draw: st.DrawFn) -> dict[str, object]:
    """Index paths, and a target that adds, takes away and changes some of them (a file may
    become a directory and back)."""
    names = st.sampled_from(["a", "b", "ab", "a.b", "c", "é"])
    some = st.lists(st.lists(names, min_size=1, max_size=3).map("/".join), max_size=20)
    indexed = sorted(set(draw(some)))
    indexed = [p for p in indexed if not any(q.startswith(p + "/") for q in indexed)]
    target = set(indexed) - set(
        draw(st.lists(st.sampled_from(indexed), max_size=8)) if indexed else []
    )
    for p in draw(some):
        if not any(q.startswith(p + "/") or p.startswith(q + "/") for q in target):
            target.add(p)
    changed = draw(st.lists(st.sampled_from(sorted(target)), max_size=3)) if target else []
    return {"indexed": indexed, "target": sorted(target), "changed": changed}


def _over(spec: dict[str, object], as_dict: bool = False) -> tuple[IndexFiles, set[str]]:
    indexed: list[str] = spec["indexed"]  # type: ignore[assignment]
    target: list[str] = spec["target"]  # type: ignore[assignment]
    changed: list[str] = spec["changed"]  # type: ignore[assignment]
    parsed = index_stat._parse_native(_index_bytes(indexed))
    assert parsed is not None
    entries = index_stat.Entries(dict(parsed[0].items()) if as_dict else parsed[0])
    blob, other = pygit2.Oid(raw=b"\1" * 20), pygit2.Oid(raw=b"\2" * 20)
    overlay: dict[str, tuple[int, pygit2.Oid] | None] = dict.fromkeys(set(indexed) - set(target))
    overlay.update({p: (0o100644, blob) for p in target if p not in indexed})
    overlay.update({p: (0o100644, other) for p in changed})
    return IndexFiles(entries, overlay), set(target)


@native
@given(spec=overlays(), as_dict=st.booleans())
def test_a_tree_laid_over_the_index_has_the_paths_and_directories_of_the_tree(
    spec: dict[str, object], as_dict: bool
) -> None:
    files, target = _over(spec, as_dict)  # over the C parser's Table or the Python one's dict
    assert set(files) == target and len(files) == len(target)
    assert files.dirs() == tree_dirs(target)
    paths = files.paths()
    names = target | set(spec["indexed"]) | tree_dirs(target) | {"zz", "a/zz"}  # type: ignore[arg-type]
    assert {p for p in names if p in paths} == target
    # Only below the changed directories do the tree's names or subdirectories differ from
    # the index's.
    indexed = set(spec["indexed"])  # type: ignore[call-overload]
    kept = tree_dirs(target) & tree_dirs(indexed)
    for d in kept - files.changed_dirs():
        assert _names_below(d, target) == _names_below(d, indexed), d


def _names_below(d: str, paths: set[str]) -> set[str]:
    prefix = d + "/"
    return {p[len(prefix) :].partition("/")[0] for p in paths if p.startswith(prefix)}


@native
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    spec=overlays(),
    extra=st.lists(st.sampled_from(["a/x", "b/x", "a/b/x", "c/x", "x"]), max_size=3),
)
def test_the_threaded_scan_with_a_target_over_the_index_finds_every_directory_to_walk(
    spec: dict[str, object], extra: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The work tree holds the index's files plus untracked ones; the directories the threaded
    scan (against the index) and the overlay name together must include every one the Python
    listing against the target finds."""
    root = tmp_path_factory.mktemp("over") / "r"
    root.mkdir()
    indexed: list[str] = spec["indexed"]  # type: ignore[assignment]
    for p in indexed:
        write(root, p, p)
    for p in extra:
        if not (root / p).exists():
            with contextlib.suppress(NotADirectoryError, FileExistsError):
                write(root, p, "untracked\n")
    files, target = _over(spec)
    built = accel.native
    accel.native = None
    try:
        expected = _analysis_over(root, sorted(target))._dirs_holding_others()
    finally:
        accel.native = built
    a = _analysis_over(root, sorted(target))
    a.target, a.target_paths, a.target_dirs = files, files.paths(), files.dirs()
    assert a._dirs_holding_others() >= expected
