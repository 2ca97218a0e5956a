"""Each test names a way a deploy base breaks, heals it with gitsafe, and checks the result
entry by entry against what git's fetch + reset --hard + clean -fd -e + pull leaves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitfixtures import (
    Origin,
    diff_snapshots,
    git,
    git_sequence,
    heal_and_compare,
    snapshot,
    write,
)

import gitsafe
from gitsafe.plan import deep_enough


def test_incident_local_edit_makes_git_pull_fail_and_gitsafe_heals(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(origin.work, "src/config.py", "DEBUG = False\nPORT = 8080\n")
    origin.push("upstream edits config")
    write(deploy, "src/config.py", "DEBUG = True\n")
    plain = subprocess.run(
        ["git", "pull", "origin", "main"], cwd=deploy, capture_output=True, text=True
    )
    assert plain.returncode != 0
    assert "would be overwritten by merge" in plain.stderr
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert report.outcome == "healed"
    assert [i["path"] for i in report.plan["restore"]] == ["src/config.py"]
    assert (healed / "src/config.py").read_text() == "DEBUG = False\nPORT = 8080\n"


def test_untracked_scratch_removed_while_ignored_and_kept_files_survive(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, "scratch/a.txt")
    write(deploy, "scratch/deep/b.txt")
    write(deploy, "notes.txt")
    write(deploy, ".env", "SECRET=1\n")
    write(deploy, "build/out.bin", b"\0\1")
    write(deploy, "deploy-hook.log")
    write(deploy, ".deploy-prev-image-3")
    write(deploy, "mixed/app.log")
    write(deploy, "mixed/drop.txt")
    report, healed, _ = heal_and_compare(
        deploy, tmp_path, ["deploy-hook.log", ".deploy-prev-image-*"]
    )
    removed = {i["path"] for i in report.plan["remove"]}
    assert removed == {"scratch/", "notes.txt", "mixed/drop.txt"}
    for kept in (
        ".env",
        "build/out.bin",
        "deploy-hook.log",
        ".deploy-prev-image-3",
        "mixed/app.log",
    ):
        assert (healed / kept).exists(), kept


@pytest.mark.parametrize(
    "pattern",
    ["/keep-top", "keepdir/", "**/deep/*.keep", "[kK]eep-[0-9]", "cache/**", "a/**/z", "*.k?p"],
)
def test_keep_patterns_have_exact_gitignore_semantics(
    deploy: Path, tmp_path: Path, pattern: str
) -> None:
    for rel in (
        "keep-top",
        "sub/keep-top",
        "keepdir/x",
        "sub/keepdir/y",
        "keepdir-file",
        "x/deep/a.keep",
        "deep/b.keep",
        "Keep-1",
        "sub/keep-2",
        "keep-x",
        "cache/a/b",
        "sub/cache/c",
        "a/z",
        "a/b/c/z",
        "b/a/z",
        "f.kep",
        "f.keep",
    ):
        write(deploy, rel)
    heal_and_compare(deploy, tmp_path, [pattern])


def test_empty_untracked_directories_are_removed(deploy: Path, tmp_path: Path) -> None:
    (deploy / "empty/a/b").mkdir(parents=True)
    (deploy / "src/emptysub").mkdir()
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert not (healed / "empty").exists()
    assert not (healed / "src/emptysub").exists()


def test_nested_repository_kept_but_lookalikes_removed(deploy: Path, tmp_path: Path) -> None:
    nested = deploy / "vendor/real"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    write(nested, "f.txt")
    git(nested, "add", "f.txt")
    git(nested, "commit", "-qm", "nested")
    write(deploy, "vendor/loose.txt")
    (deploy / "fake-empty/.git").mkdir(parents=True)
    write(deploy, "fake-empty/data.txt")
    write(deploy, "fake-file/.git", "gitdir: /nonexistent/path\n")
    write(deploy, "fake-file/data.txt")
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "vendor/real/f.txt").exists()
    assert not (healed / "vendor/loose.txt").exists()
    assert not (healed / "fake-empty").exists()
    assert not (healed / "fake-file").exists()
    assert {"path": "vendor/real/", "reason": "nested repository"} in report.plan["keep"]


def test_symlinks_are_unlinked_never_followed_out_of_the_work_tree(
    origin: Origin, tmp_path: Path
) -> None:
    write(origin.work, "assets/logo.txt", "logo\n")
    origin.push("assets dir")
    deploy = origin.clone(tmp_path / "deploy")
    outside = tmp_path / "outside"
    write(outside, "precious.txt", "do not touch\n")
    write(outside, "logo.txt", "outside logo\n")
    os.symlink(outside, deploy / "link-to-outside")
    os.symlink(outside / "precious.txt", deploy / "file-link")
    os.symlink("/nonexistent", deploy / "dangling")
    # a tracked directory replaced by a symlink to the outside directory
    for f in (deploy / "assets").iterdir():
        f.unlink()
    (deploy / "assets").rmdir()
    os.symlink(outside, deploy / "assets")
    before = snapshot(outside)
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert snapshot(outside) == before
    assert (healed / "assets").is_dir() and not (healed / "assets").is_symlink()


def test_type_and_mode_changes_are_restored(origin: Origin, tmp_path: Path) -> None:
    write(origin.work, "bin/run.sh", "#!/bin/sh\n", mode=0o755)
    write(origin.work, "data/a.txt", "a\n")
    write(origin.work, "link", "")
    (origin.work / "link").unlink()
    os.symlink("README.md", origin.work / "link")
    origin.push("modes and links")
    deploy = origin.clone(tmp_path / "deploy")
    (deploy / "bin/run.sh").chmod(0o644)
    (deploy / "README.md").chmod(0o755)
    (deploy / "data/a.txt").unlink()
    (deploy / "data").rmdir()
    write(deploy, "data", "now a file\n")
    (deploy / "link").unlink()
    write(deploy, "link", "now a regular file\n")
    (deploy / "src/config.py").unlink()
    os.symlink("../README.md", deploy / "src/config.py")
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert os.access(healed / "bin/run.sh", os.X_OK)
    assert not os.access(healed / "README.md", os.X_OK)
    assert os.readlink(healed / "link") == "README.md"
    reasons = {i["path"]: i["reason"] for i in report.plan["restore"]}
    assert reasons["README.md"] == "mode"
    assert reasons["link"] == "typechange"


def test_same_size_edit_with_restored_timestamps_is_still_restored(
    deploy: Path, tmp_path: Path
) -> None:
    target = deploy / "src/config.py"
    git(deploy, "status")  # refresh the index so its stat data is current
    info = os.stat(target)
    target.write_text("DEBUG = Frue\n")  # same size
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "src/config.py").read_text() == "DEBUG = False\n"
    assert [i["path"] for i in report.plan["restore"]] == ["src/config.py"]


def test_negation_below_an_ignored_directory_cannot_reinclude(
    origin: Origin, tmp_path: Path
) -> None:
    write(origin.work, ".gitignore", "build/\n!build/keep.txt\nlogs/*\n!logs/important.log\n")
    origin.push("ignore rules with negations")
    deploy = origin.clone(tmp_path / "deploy")
    write(deploy, "build/keep.txt")
    write(deploy, "logs/important.log")
    write(deploy, "logs/noise.log")
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "build/keep.txt").exists()
    assert not (healed / "logs/important.log").exists()
    assert (healed / "logs/noise.log").exists()


def test_ignore_rules_are_those_of_the_target_not_the_dirty_tree(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, "cache.tmp")  # untracked now; the target starts ignoring it
    write(deploy, "local.env")  # ignored now by a local edit of .gitignore
    write(deploy, ".gitignore", ".env\n*.log\nbuild/\nlocal.env\n")
    write(deploy, "sub/.gitignore", "*\n")  # untracked .gitignore ignoring its own directory
    write(deploy, "sub/data.bin")
    write(origin.work, ".gitignore", ".env\n*.log\nbuild/\n*.tmp\n")
    origin.push("ignore tmp files")
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "cache.tmp").exists()
    assert not (healed / "local.env").exists()
    assert (healed / "sub/data.bin").exists()


def test_ignored_file_the_target_now_tracks_is_overwritten_and_reported(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, ".env", "LOCAL=secret\n")
    write(origin.work, ".gitignore", "*.log\nbuild/\n")
    write(origin.work, ".env", "SHARED=1\n")
    origin.push("track .env")
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / ".env").read_text() == "SHARED=1\n"
    [item] = report.plan["overwrite_ignored"]
    assert item["path"] == ".env" and item["reason"].startswith("ignored file")


def test_untracked_directory_in_the_way_of_a_tracked_file(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, "newthing/inner.log")
    write(deploy, "newthing/x.txt")
    write(origin.work, "newthing", "now tracked as a file\n")
    origin.push("newthing is a file")
    heal_and_compare(deploy, tmp_path)


def test_force_pushed_remote_is_followed_even_with_a_plain_refspec(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    git(deploy, "config", "remote.origin.fetch", "refs/heads/*:refs/remotes/origin/*")
    write(origin.work, "history.txt", "rewritten\n")
    git(origin.work, "add", "-A")
    git(origin.work, "commit", "-q", "--amend", "-m", "rewritten history")
    git(origin.work, "push", "-q", "--force", "origin", "HEAD:main")
    a = tmp_path / "a"
    git(tmp_path, "clone", "-q", str(deploy), str(a))  # unused; keeps clone semantics honest
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    assert git(deploy, "rev-parse", "HEAD") == git(origin.work, "rev-parse", "HEAD")
    assert report.plan["drop_commits"] and report.outcome == "healed"
    assert (deploy / "history.txt").read_text() == "rewritten\n"


def test_local_commit_is_dropped_and_listed(origin: Origin, deploy: Path, tmp_path: Path) -> None:
    write(deploy, "hotfix.txt", "fix\n")
    git(deploy, "add", "hotfix.txt")
    git(deploy, "commit", "-qm", "hot-fix on the server")
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert [c["subject"] for c in report.plan["drop_commits"]] == ["hot-fix on the server"]
    assert not (healed / "hotfix.txt").exists()


def test_staged_changes_and_unmerged_paths_are_healed(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, "staged-new.txt")
    git(deploy, "add", "staged-new.txt")
    write(deploy, "README.md", "staged edit\n")
    git(deploy, "add", "README.md")
    git(deploy, "rm", "-q", "--cached", "src/config.py")
    report, _, _ = heal_and_compare(deploy, tmp_path)
    reasons = {i["path"]: i["reason"] for i in report.plan["restore"]}
    assert reasons["README.md"].startswith("staged")
    assert reasons["staged-new.txt"].startswith("staged")
    assert reasons["src/config.py"].startswith("staged")


def test_tracked_file_deleted_upstream_with_ignored_sibling(origin: Origin, tmp_path: Path) -> None:
    write(origin.work, "logs/keep.txt", "tracked\n")
    write(origin.work, "gone/only.txt", "tracked\n")
    origin.push("tracked files")
    write(origin.work, ".gitignore", ".env\n*.log\nbuild/\ngone/\n")
    origin.push("gone/ is ignored but still has a tracked file")
    deploy = origin.clone(tmp_path / "deploy")
    write(deploy, "logs/app.log")
    git(origin.work, "rm", "-q", "-r", "logs", "gone")
    origin.push("drop tracked files")
    heal_and_compare(deploy, tmp_path)


def test_odd_file_names(deploy: Path, tmp_path: Path) -> None:
    for name in (
        "with space.txt",
        "-leading-dash",
        "ünïcödé.txt",
        "tab\tname",
        "new\nline",
        "back\\slash",
        "*star*",
        "[brackets]",
        "#hash",
        "!bang",
    ):
        write(deploy, f"odd/{name}")
        write(deploy, name)
    heal_and_compare(deploy, tmp_path, ["\\#hash", "\\!bang"])


def test_non_utf8_file_names(deploy: Path, tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(deploy), b"latin1-\xe9.txt")
    with open(raw, "wb") as f:
        f.write(b"x")
    os.mkdir(os.path.join(os.fsencode(deploy), b"dir-\xff"))
    heal_and_compare(deploy, tmp_path)


def test_conflicted_and_intent_to_add_paths_absent_from_the_target_are_deleted(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    git(deploy, "checkout", "-q", "-b", "other")
    write(deploy, "both.ign", "other\n")
    git(deploy, "add", "-f", "both.ign")
    git(deploy, "commit", "-qm", "other")
    git(deploy, "checkout", "-q", "main")
    write(deploy, "both.ign", "main\n")
    git(deploy, "add", "-f", "both.ign")
    git(deploy, "commit", "-qm", "main side")
    git(deploy, "merge", "other", check=False)
    write(deploy, "ita.log", "intent to add\n")
    git(deploy, "add", "-N", "-f", "ita.log")
    report, healed, _ = heal_and_compare(deploy, tmp_path, ["*.ign"])
    assert not (healed / "both.ign").exists() and not (healed / "ita.log").exists()
    assert {"path": "both.ign", "reason": "unmerged"} in report.plan["restore"]


def test_chmod_with_core_filemode_false_is_undone_like_git(deploy: Path, tmp_path: Path) -> None:
    git(deploy, "config", "core.fileMode", "false")
    (deploy / "README.md").chmod(0o755)
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert not os.access(healed / "README.md", os.X_OK)


@pytest.mark.parametrize(
    "config",
    [
        {"core.fileMode": "false", "core.trustctime": "false"},
        {"core.fileMode": "false", "core.checkStat": "minimal"},
        {"core.fileMode": "false"},
    ],
)
def test_stat_data_git_is_told_to_ignore_is_ignored_like_git(
    deploy: Path, tmp_path: Path, config: dict[str, str]
) -> None:
    """git's reset rewrites what its stat comparison calls changed: with core.trustctime=false
    a new ctime (a chmod) does not count, with core.checkStat=minimal neither does it nor a
    new inode (every file of a copied checkout)."""
    for name, value in config.items():
        git(deploy, "config", name, value)
    (deploy / "README.md").chmod(0o755)  # content unchanged: only the ctime moves
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    # the copies' new inodes count for git unless core.checkStat=minimal
    assert os.access(healed / "README.md", os.X_OK) == ("core.checkStat" in config)


def test_a_new_ctime_is_ignored_with_trustctime_false_like_git(
    origin: Origin, tmp_path: Path
) -> None:
    """Two clones, not copies, so the inodes stay those the index recorded."""
    trees = [origin.clone(tmp_path / name) for name in ("with-gitsafe", "with-git")]
    time.sleep(1.1)  # git compares the ctime's seconds
    for clone in trees:
        git(clone, "config", "core.fileMode", "false")
        git(clone, "config", "core.trustctime", "false")
        (clone / "README.md").chmod(0o755)  # content and mtime unchanged: only the ctime moves
    report = gitsafe.pull(trees[0], "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    git_sequence(trees[1], "origin", "main")
    assert diff_snapshots(snapshot(trees[0]), snapshot(trees[1])) == []
    assert os.access(trees[0] / "README.md", os.X_OK)


def _clone_with_notes(origin: Origin, tmp_path: Path, *config: tuple[str, str]) -> Path:
    """A clone of origin with a two-line text file, and core.autocrlf=true (a rewrite would
    write that file with CRLF)."""
    write(origin.work, "notes.txt", "one\ntwo\n")
    origin.push("text file")
    deploy = origin.clone(tmp_path / "deploy")
    for name, value in (*config, ("core.autocrlf", "true")):
        git(deploy, "config", name, value)
    return deploy


def test_a_copied_checkout_with_minimal_stat_checks_is_not_rewritten(
    origin: Origin, tmp_path: Path
) -> None:
    deploy = _clone_with_notes(origin, tmp_path, ("core.checkStat", "minimal"))
    _, healed, _ = heal_and_compare(deploy, tmp_path)  # copies: every inode is new
    assert (healed / "notes.txt").read_bytes() == b"one\ntwo\n"


def test_checkout_conversion_enabled_after_checkout_is_applied_like_git(
    origin: Origin, tmp_path: Path
) -> None:
    deploy = _clone_with_notes(origin, tmp_path)
    os.utime(deploy / "notes.txt", (1, 1))  # stat-dirty: git's reset rewrites it, with CRLF
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "notes.txt").read_bytes() == b"one\r\ntwo\r\n"


@pytest.mark.parametrize("local", ["clean", "edited", "touched"])
def test_ident_expands_the_blob_id_like_git(origin: Origin, tmp_path: Path, local: str) -> None:
    """``ident`` writes the blob's id into ``$Id$``: the filter needs the blob, not only its
    bytes (it used to be left as ``$Id$``)."""
    write(origin.work, ".gitattributes", "*.txt ident\n")
    write(origin.work, "version.txt", "release $Id$ here\n")
    write(origin.work, "same.txt", "unchanged $Id$\n")
    origin.push("ident")
    deploy = origin.clone(tmp_path / "deploy")
    write(origin.work, "version.txt", "release $Id$ there\n")
    origin.push("upstream moves")
    if local == "edited":
        write(deploy, "same.txt", "edited $Id$\n")
    elif local == "touched":
        os.utime(deploy / "same.txt", (1, 1))
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    for name in ("version.txt", "same.txt"):
        text = (healed / name).read_text()
        oid = git(healed, "rev-parse", f"HEAD:{name}").strip()
        assert f"$Id: {oid} $" in text, text


def test_trees_deeper_than_pythons_recursion_limit_are_healed(
    origin: Origin, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A thousand untracked directories deep, a tracked file five hundred deep: git walks any
    depth, and so must every walk of the pull (it used to stop with RecursionError)."""

    def deep_write(root: Path, rel: str, text: str) -> None:  # pathlib's mkdir recurses too
        subprocess.run(["mkdir", "-p", rel.rpartition("/")[0]], cwd=root, check=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)

    # pytest's own clean-up of old temporary directories recurses too: leave none this deep
    request.addfinalizer(lambda: subprocess.run(["rm", "-rf", str(tmp_path), str(origin.work)]))
    deep_tracked = "t/" + "a/" * 499 + "f.txt"
    deep_write(origin.work, deep_tracked, "deep\n")
    origin.push("deep tracked file")
    deploy = origin.clone(tmp_path / "deploy")
    deep_write(deploy, "u/" + "a/" * 999 + "scratch.txt", "deep scratch\n")
    deep_write(deploy, deep_tracked, "edited\n")
    doctor = gitsafe.doctor(deploy)
    assert doctor.exit_code == 1, doctor.to_json_text()
    assert {"path": "u/", "reason": "untracked directory"} in doctor.plan["remove"]
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    with open(os.path.join(healed, deep_tracked)) as f:
        assert f.read() == "deep\n"
    assert not (healed / "u").exists()


def test_overlapping_walks_keep_the_deeper_limit_until_the_last_ends() -> None:
    """Two pulls in threads of one program: the first to end must not lower the limit under
    the other's walk, and the last puts it back."""
    before = sys.getrecursionlimit()
    first, second = deep_enough(), deep_enough()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert sys.getrecursionlimit() > before + 4000
    second.__exit__(None, None, None)
    assert sys.getrecursionlimit() == before


def test_staged_embedded_repository_is_healed(deploy: Path, tmp_path: Path) -> None:
    inner = deploy / "embedded"
    inner.mkdir()
    git(inner, "init", "-q")
    write(inner, "f.txt")
    git(inner, "add", "f.txt")
    git(inner, "commit", "-qm", "inner")
    git(deploy, "add", "embedded")  # stages a gitlink
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "embedded/f.txt").exists()  # kept as a nested repository
    assert report.backup is not None


def test_staged_embedded_repository_where_the_target_tracks_a_directory(
    origin: Origin, tmp_path: Path
) -> None:
    deploy = origin.clone(tmp_path / "deploy")
    write(origin.work, "embedded/a.txt", "tracked upstream\n")
    origin.push("a directory where the deploy base has a nested repository")
    inner = deploy / "embedded"
    inner.mkdir()
    git(inner, "init", "-q")
    write(inner, "inner.txt", "nested work\n")
    git(inner, "add", "inner.txt")
    git(inner, "commit", "-qm", "inner")
    git(deploy, "add", "embedded")  # stages a gitlink where the target has a tree
    report, healed, _ = heal_and_compare(deploy, tmp_path)
    assert report.exit_code == 0, report.to_json_text()
    assert (healed / "embedded/a.txt").read_text() == "tracked upstream\n"


def test_empty_shallow_file_left_by_a_killed_fetch_is_cleared(deploy: Path) -> None:
    (deploy / ".git/shallow").write_bytes(b"")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    assert "shallow" in report.plan["clear_state"]
    assert git(deploy, "rev-parse", "--is-shallow-repository").strip() == "false"


def test_directory_emptied_by_a_local_delete_that_upstream_also_deletes_goes(
    origin: Origin, tmp_path: Path
) -> None:
    write(origin.work, "b/a/a.txt", "")
    origin.push("nested file")
    deploy = origin.clone(tmp_path / "deploy")
    git(origin.work, "rm", "-q", "b/a/a.txt")
    origin.push("upstream deletes it")
    (deploy / "b/a/a.txt").unlink()  # already gone locally; git's reset still prunes b/a
    with open(deploy / ".git/info/exclude", "a") as f:
        f.write("*\n!.gitignore\n")  # so the clean would keep an empty b/a
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert not (healed / "b").exists()


def test_files_are_converted_by_the_targets_attributes_not_the_old_ones(
    origin: Origin, tmp_path: Path
) -> None:
    write(origin.work, ".gitattributes", "*.md eol=lf\n")
    origin.push("eol attribute")
    deploy = origin.clone(tmp_path / "deploy")
    git(deploy, "config", "core.autocrlf", "true")
    git(origin.work, "rm", "-q", ".gitattributes")
    origin.push("drop the eol attribute")
    write(deploy, "README.md", "")  # dirty: rewritten under the target's (absent) attributes
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "README.md").read_bytes() == b"hello\r\n"


def test_tracked_directory_turned_into_a_submodule_upstream(origin: Origin, tmp_path: Path) -> None:
    write(origin.work, "vendor/f.txt", "vendored\n")
    origin.push("vendored directory")
    deploy = origin.clone(tmp_path / "deploy")
    sha = git(origin.work, "rev-parse", "HEAD").strip()
    git(origin.work, "rm", "-q", "-r", "vendor")
    git(origin.work, "update-index", "--add", "--cacheinfo", f"160000,{sha},vendor")
    git(origin.work, "commit", "-qm", "vendor becomes a submodule")
    git(origin.work, "push", "-q", "origin", "HEAD:main")
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "vendor").is_dir() and list((healed / "vendor").iterdir()) == []


def test_eol_attributes_deleted_by_the_target_convert_untouched_files_like_git(
    origin: Origin, tmp_path: Path
) -> None:
    """With core.autocrlf, a target that drops ``*.md eol=lf`` makes git's reset rewrite every
    stat-dirty .md file with CRLF; gitsafe must not keep the LF bytes because they matched
    under the attributes in force before the reset."""
    write(origin.work, ".gitattributes", "*.md eol=lf\n")
    origin.push("lf for markdown")
    deploy = origin.clone(tmp_path / "deploy")
    git(deploy, "config", "core.autocrlf", "true")
    os.remove(origin.work / ".gitattributes")
    origin.push("drop the attributes")
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "README.md").read_bytes() == b"hello\r\n"


def test_eol_attributes_emptied_by_the_target_rewrite_converted_files_like_git(
    origin: Origin, tmp_path: Path
) -> None:
    """The target converts nothing, but README.md's CRLF bytes came from the old eol=crlf:
    they hash equal to the blob only through that conversion, and git's rewrite writes LF."""
    write(origin.work, ".gitattributes", "* text=auto eol=crlf\n")
    origin.push("crlf everywhere")
    deploy = origin.clone(tmp_path / "deploy")
    assert (deploy / "README.md").read_bytes() == b"hello\r\n"
    write(origin.work, ".gitattributes", "")
    origin.push("no attributes")
    _, healed, _ = heal_and_compare(deploy, tmp_path)
    assert (healed / "README.md").read_bytes() == b"hello\n"
