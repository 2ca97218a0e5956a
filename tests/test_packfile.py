"""The backup's pack: what gitsafe/packfile.py writes is what git writes and reads.

git is the oracle: ``git index-pack`` builds its own index for the pack gitsafe wrote, which
must equal gitsafe's byte for byte; ``git verify-pack``, ``git cat-file`` and ``git fsck``
read it; ``git hash-object`` says which blob a backed-up file must have become.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gitfixtures import Origin, git, write

import gitsafe
from gitsafe import packfile

SIZES = [0, 1, 15, 16, 17, 127, 128, 2047, 2048, 16383, 16384, 100_000, 1 << 20]


def _objects() -> list[tuple[int, bytes]]:
    out = []
    for n, size in enumerate(SIZES):
        out.append((packfile.BLOB, os.urandom(size) if n % 2 else b"a\n" * (size // 2)))
    out.append((packfile.BLOB, b""))  # a repeat: stored once
    return out


@pytest.mark.parametrize("large", [1 << 31, 1000], ids=["offsets-32bit", "offsets-64bit"])
def test_the_pack_and_index_are_gits_own(tmp_path: Path, large: int) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    pack_dir = repo / ".git" / "objects" / "pack"
    objects = _objects()
    with packfile.PackWriter(str(pack_dir), large=large) as writer:
        ids = [writer.add(kind, data) for kind, data in objects]
        assert len(writer) == len(SIZES)
        pack = writer.finish()
    assert pack is not None and os.path.basename(pack).startswith("pack-")
    assert sorted(os.listdir(pack_dir)) == sorted(
        [os.path.basename(pack), os.path.basename(pack)[:-5] + ".idx"]
    )
    ours = Path(pack[:-5] + ".idx").read_bytes()
    theirs = tmp_path / "git.idx"
    version = f"--index-version=2,{min(large, (1 << 31) - 1)}"
    subprocess.run(
        ["git", "index-pack", version, "-o", str(theirs), pack],
        check=True,
        capture_output=True,
    )
    assert ours == theirs.read_bytes()
    verify = git(repo, "verify-pack", "-v", pack[:-5] + ".idx")
    assert f"non delta: {len(SIZES)} objects" in verify
    for (_kind, data), oid in zip(objects, ids, strict=True):
        hashed = subprocess.run(
            ["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True
        )
        assert oid.hex() == hashed.stdout.decode().strip()
        shown = subprocess.run(
            ["git", "cat-file", "blob", oid.hex()], cwd=repo, capture_output=True, check=True
        )
        assert shown.stdout == data
    assert git(repo, "fsck", "--full", "--strict", "--no-dangling").strip() == ""


def test_a_missing_pack_directory_is_made_and_leftovers_are_not_reused(tmp_path: Path) -> None:
    """git and libgit2 make objects/pack when they first need it; a temporary file a killed
    run left (read-only, as packs are) never blocks the next one, whatever its pid."""
    pack_dir = tmp_path / "objects" / "pack"
    with packfile.PackWriter(str(pack_dir)) as writer:
        writer.add(packfile.BLOB, b"first")
        first = writer.finish()
    assert first is not None and os.stat(first).st_mode & 0o777 == 0o444
    for name in ("tmp_pack_gitsafe", "tmp_pack_x", f"tmp_pack_gitsafe_{os.getpid()}"):
        (pack_dir / name).write_bytes(b"left by a killed run")
        (pack_dir / name).chmod(0o444)
    with packfile.PackWriter(str(pack_dir)) as writer:
        writer.add(packfile.BLOB, b"second")
        assert writer.finish() is not None
    assert len([n for n in os.listdir(pack_dir) if n.startswith("pack-")]) == 4


def test_an_empty_or_abandoned_pack_leaves_nothing(tmp_path: Path) -> None:
    with packfile.PackWriter(str(tmp_path)) as writer:
        assert writer.finish() is None
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError), packfile.PackWriter(str(tmp_path)) as writer:
        writer.add(packfile.BLOB, b"x")
        raise RuntimeError("stopped")
    assert os.listdir(tmp_path) == []


def _loose_objects(repo: Path) -> set[str]:
    objects = repo / ".git" / "objects"
    return {
        d.name + f.name
        for d in objects.iterdir()
        if len(d.name) == 2 and d.is_dir()
        for f in d.iterdir()
    }


def _dirty(deploy: Path) -> dict[str, bytes]:
    """Untracked files worth saving; returns what git hash-object makes of each, read now."""
    files = {}
    for n in range(40):
        files[f"scratch/s{n % 4}/file-{n}.txt"] = f"line {n}\r\n".encode() * (n + 1)
    files["scratch/empty"] = b""
    files["scratch/big.bin"] = os.urandom((1 << 20) + 5)  # above the packed bound
    for path, data in files.items():
        write(deploy, path, data)
    return files


def _manifest(deploy: Path, ref: str) -> list[dict[str, object]]:
    text = git(deploy, "cat-file", "blob", f"{ref}:manifest.json")
    entries: list[dict[str, object]] = json.loads(text)["entries"]
    return entries


@pytest.mark.parametrize(
    "conversion",
    ["none", "autocrlf", "attributes-in-tree", "untracked-attributes", "info-attributes"],
)
def test_backed_up_files_become_the_blobs_git_add_would_make(
    origin: Origin, deploy: Path, conversion: str
) -> None:
    """The blob of each saved file is ``git hash-object``'s for it, conversions included:
    the backup must restore what git would have stored, whether libgit2 or gitsafe read it."""
    if conversion == "autocrlf":
        git(deploy, "config", "core.autocrlf", "true")
    elif conversion == "attributes-in-tree":
        write(deploy, "scratch/.gitattributes", "*.txt text\n")
    elif conversion == "untracked-attributes":
        write(deploy, "scratch/s1/.gitattributes", "*.txt text\n")
    elif conversion == "info-attributes":
        write(deploy / ".git", "info/attributes", "*.txt text\n")
    files = _dirty(deploy)
    expected = {
        path: git(deploy, "hash-object", path).strip()
        for path in files
        if not path.endswith(".gitattributes")
    }
    converted = sum(
        1 for p in expected if expected[p] != git(deploy, "hash-object", "--no-filters", p).strip()
    )
    assert converted == (0 if conversion == "none" else 10 if "untracked" in conversion else 40)
    loose_before = _loose_objects(deploy)
    report = gitsafe.pull(str(deploy), "origin", "main")
    assert report.outcome == "healed", report.error
    assert report.backup is not None
    ref = str(report.backup["ref"])
    saved = {str(e["path"]): str(e["oid"]) for e in _manifest(deploy, ref) if e.get("oid")}
    assert {p: saved[p] for p in expected} == expected
    # One pack holds the saved files; only the large file, the trees and the commit are loose.
    new_loose = _loose_objects(deploy) - loose_before
    assert expected["scratch/big.bin"] in new_loose
    assert len(new_loose) == 4, new_loose
    assert git(deploy, "fsck", "--full", "--strict", "--no-dangling").strip() == ""
    restored = deploy.parent / "restored"
    proc = subprocess.run(
        [sys.executable, "-m", "gitsafe", "restore", "--into", str(restored), "-C", str(deploy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (restored / "scratch/big.bin").read_bytes() == files["scratch/big.bin"]
    assert (restored / "scratch/empty").read_bytes() == b""


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="needs strace to see the order of the system calls")
def test_the_pack_is_flushed_before_the_first_file_is_deleted(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    for n in range(30):
        write(deploy, f"scratch/f{n}.txt", f"{n}\n")
    log = tmp_path / "strace.log"
    proc = subprocess.run(
        [
            *(
                "strace",
                "-f",
                "-qq",
                "-y",
                "-e",
                "trace=fsync,rename,renameat,renameat2,unlinkat,unlink",
            ),
            *("-o", str(log), sys.executable, "-m", "gitsafe", "pull", "-C", str(deploy)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()

    def first(pattern: str) -> int:
        return next(i for i, call in enumerate(calls) if re.search(pattern, call))

    removal = first(r'unlink\w*\(.*"f\d+\.txt"')
    pack_synced = first(r"fsync\(\d+<[^>]*/objects/pack/tmp_pack_\w+>\)")
    idx_synced = first(r"fsync\(\d+<[^>]*/objects/pack/tmp_idx_\w+>\)")
    pack_renamed = first(r"rename\w*\(.*/tmp_pack_\w+\".*pack-\w+\.pack")
    idx_renamed = first(r"rename\w*\(.*/tmp_idx_\w+\".*pack-\w+\.idx")
    dir_synced = first(r"fsync\(\d+<[^>]*/objects/pack>\)")
    ref_synced = first(r"fsync\(\d+<[^>]*refs/gitsafe/backups/[^>]*>\)")
    assert pack_synced < pack_renamed < idx_renamed < dir_synced < ref_synced < removal
    assert idx_synced < idx_renamed
    # 30 files cost three fsyncs, not sixty: the trees, the commit and the ref add a few
    assert sum(1 for call in calls[:removal] if call.startswith(("fsync", "[pid"))) < 20
