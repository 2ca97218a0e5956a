"""Beyond the git sequence: leftover operation state, locks, branches, refusals, outcomes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from gitfixtures import Origin, git, snapshot, write

import gitsafe
from gitsafe.render import lines


def _conflicting_history(origin: Origin, deploy: Path) -> None:
    write(origin.work, "README.md", "upstream\n")
    origin.push("upstream README")
    write(deploy, "README.md", "local\n")
    git(deploy, "commit", "-qam", "local README")
    git(deploy, "fetch", "-q", "origin")


def test_half_done_merge_is_cleared(origin: Origin, deploy: Path) -> None:
    _conflicting_history(origin, deploy)
    git(deploy, "merge", "origin/main", check=False)
    assert (deploy / ".git/MERGE_HEAD").exists()
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    assert "MERGE_HEAD" in report.plan["clear_state"]
    assert not (deploy / ".git/MERGE_HEAD").exists()
    assert git(deploy, "status", "--porcelain") == ""


def test_half_done_rebase_is_cleared(origin: Origin, deploy: Path) -> None:
    _conflicting_history(origin, deploy)
    git(deploy, "rebase", "origin/main", check=False)
    assert (deploy / ".git/rebase-merge").exists() or (deploy / ".git/rebase-apply").exists()
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    assert not (deploy / ".git/rebase-merge").exists()
    assert not (deploy / ".git/rebase-apply").exists()
    assert git(deploy, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(deploy, "status", "--porcelain") == ""


def test_half_done_cherry_pick_revert_and_bisect_are_cleared(origin: Origin, deploy: Path) -> None:
    _conflicting_history(origin, deploy)
    git(deploy, "cherry-pick", "origin/main", check=False)
    assert (deploy / ".git/CHERRY_PICK_HEAD").exists()
    git(deploy, "bisect", "start", check=False)
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    for leftover in ("CHERRY_PICK_HEAD", "BISECT_START", "BISECT_LOG", "sequencer"):
        assert not (deploy / ".git" / leftover).exists(), leftover
    assert "bisecting" not in git(deploy, "status")
    assert git(deploy, "status", "--porcelain") == ""


def _lock(path: Path, age: float) -> None:
    path.write_text("")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def test_stale_index_lock_is_removed_and_reported(deploy: Path) -> None:
    _lock(deploy / ".git/index.lock", 3600)
    write(deploy, "src/config.py", "dirty\n")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    assert not (deploy / ".git/index.lock").exists()
    assert [x["path"] for x in report.plan["stale_locks"]] == [str(deploy / ".git/index.lock")]
    assert report.outcome == "healed"


def test_fresh_index_lock_is_waited_for_then_the_pull_fails(deploy: Path) -> None:
    _lock(deploy / ".git/index.lock", 0)
    write(deploy, "src/config.py", "dirty\n")
    started = time.monotonic()
    report = gitsafe.pull(deploy, "origin", "main", lock_timeout=0.5)
    assert time.monotonic() - started >= 0.5
    assert report.exit_code == 1 and report.outcome == "failed"
    assert report.error["kind"] == "lock"
    assert (deploy / ".git/index.lock").exists()
    assert (deploy / "src/config.py").read_text() == "dirty\n"


def test_old_lock_held_open_by_a_process_is_not_stale(deploy: Path) -> None:
    lock = deploy / ".git/index.lock"
    _lock(lock, 3600)
    holder = subprocess.Popen(["sleep", "30"], stdin=open(lock))  # noqa: SIM115
    try:
        report = gitsafe.pull(deploy, "origin", "main", lock_timeout=0.3)
        assert report.exit_code == 1
        assert str(holder.pid) in report.error["message"]
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_released_while_waiting_lets_the_pull_go_on(deploy: Path) -> None:
    lock = deploy / ".git/index.lock"
    _lock(lock, 0)
    remover = subprocess.Popen(["sh", "-c", f"sleep 0.4; rm -f '{lock}'"])
    report = gitsafe.pull(deploy, "origin", "main", lock_timeout=10)
    remover.wait()
    assert report.exit_code == 0, report.to_json_text()


def test_detached_head_ends_on_the_branch_with_upstream(origin: Origin, deploy: Path) -> None:
    git(deploy, "checkout", "-q", "--detach", "HEAD")
    write(origin.work, "new.txt")
    origin.push()
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0 and report.outcome == "healed"
    assert git(deploy, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(deploy, "rev-parse", "--abbrev-ref", "main@{upstream}").strip() == "origin/main"
    assert git(deploy, "rev-parse", "HEAD") == git(origin.work, "rev-parse", "HEAD")


def test_other_branch_checked_out_ends_on_the_requested_branch(
    origin: Origin, deploy: Path
) -> None:
    git(deploy, "checkout", "-q", "-b", "feature")
    write(deploy, "feature.txt")
    git(deploy, "add", "feature.txt")
    git(deploy, "commit", "-qm", "feature work")
    git(deploy, "branch", "-q", "-D", "main")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.exit_code == 0, report.to_json_text()
    assert git(deploy, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(deploy, "rev-parse", "--abbrev-ref", "main@{upstream}").strip() == "origin/main"
    assert git(deploy, "rev-parse", "feature") != git(deploy, "rev-parse", "main")  # kept
    assert not (deploy / "feature.txt").exists()
    assert report.plan["drop_commits"] == []  # feature still holds its commit


def test_clean_checkout_is_only_fast_forwarded(origin: Origin, deploy: Path) -> None:
    git(deploy, "status")
    before = {p: os.stat(deploy / p) for p in ("README.md", "src/config.py", ".gitignore")}
    write(origin.work, "src/new.py", "new\n")
    origin.push("add a file")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.outcome == "fast-forwarded" and report.exit_code == 0
    for p, old in before.items():
        new = os.stat(deploy / p)
        assert (new.st_ino, new.st_mtime_ns) == (old.st_ino, old.st_mtime_ns), p
    assert (deploy / "src/new.py").read_text() == "new\n"
    assert git(deploy, "status", "--porcelain") == ""


def test_up_to_date_checkout_reports_up_to_date(deploy: Path) -> None:
    report = gitsafe.pull(deploy)
    assert (report.outcome, report.exit_code) == ("up-to-date", 0)
    assert report.remote["name"] == "origin" and report.branch == "main"
    again = gitsafe.pull(deploy)
    assert again.outcome == "up-to-date"


def test_remote_and_branch_default_to_the_upstream(origin: Origin, deploy: Path) -> None:
    git(origin.work, "push", "-q", "origin", "HEAD:release")
    git(deploy, "fetch", "-q", "origin")
    git(deploy, "checkout", "-q", "-b", "local-name", "--track", "origin/release")
    report = gitsafe.pull(deploy)
    assert (report.remote["name"], report.branch) == ("origin", "release")


def test_unknown_branch_on_the_remote_fails_with_exit_1_and_touches_nothing(deploy: Path) -> None:
    write(deploy, "src/config.py", "dirty\n")
    before = snapshot(deploy, skip_git=False)
    report = gitsafe.pull(deploy, "origin", "no-such-branch")
    assert (report.outcome, report.exit_code) == ("failed", 1)
    assert "no-such-branch" in report.error["message"]
    after = snapshot(deploy, skip_git=False)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert all(k.startswith(".git/") for k in changed), changed
    assert (deploy / "src/config.py").read_text() == "dirty\n"


def test_unknown_remote_is_a_configuration_error(deploy: Path) -> None:
    report = gitsafe.pull(deploy, "nope", "main")
    assert (report.outcome, report.exit_code, report.error["kind"]) == ("failed", 2, "usage")


def test_not_a_work_tree_and_bare_repository_exit_2(tmp_path: Path, origin: Origin) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in (plain, origin.bare, tmp_path / "missing"):
        report = gitsafe.pull(path, "origin", "main")
        assert report.exit_code == 2, (path, report.to_json_text())
        assert report.outcome == "failed"


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda d: git(d, "config", "core.sparseCheckout", "true"), "sparse checkout"),
        (lambda d: git(d, "config", "core.splitIndex", "true"), "split"),
        (lambda d: git(d, "config", "index.sparse", "true"), "sparse index"),
        (lambda d: git(d, "config", "core.ignoreCase", "true"), "ignoreCase"),
        (lambda d: git(d, "config", "core.symlinks", "false"), "core.symlinks"),
        (lambda d: git(d, "update-index", "--skip-worktree", "README.md"), "skip-worktree"),
    ],
)
def test_unsupported_repository_is_refused_before_anything_is_touched(
    deploy: Path, setup: object, needle: str
) -> None:
    setup(deploy)  # type: ignore[operator]
    write(deploy, "src/config.py", "dirty\n")
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, "origin", "main")
    assert (report.outcome, report.exit_code) == ("refused", 2)
    assert needle in report.error["message"]
    assert (deploy / "scratch.txt").exists()
    assert (deploy / "src/config.py").read_text() == "dirty\n"


@pytest.mark.parametrize(
    ("attributes", "needle"),
    [
        ("*.bin filter=lfs diff=lfs merge=lfs -text\n", "filter=lfs"),
        ("*.txt working-tree-encoding=UTF-16LE\n", "working-tree-encoding"),
    ],
)
def test_paths_libgit2_cannot_check_out_faithfully_are_refused(
    origin: Origin, deploy: Path, attributes: str, needle: str
) -> None:
    write(origin.work, ".gitattributes", attributes)
    write(origin.work, "asset.bin", "version https://git-lfs.github.com/spec/v1\n")
    write(origin.work, "doc.txt", "text\n".encode("utf-16-le"))
    origin.push("attributes")
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, "origin", "main")
    assert (report.outcome, report.exit_code) == ("refused", 2), report.to_json_text()
    assert needle in report.error["message"]
    assert (deploy / "scratch.txt").exists()
    assert not (deploy / ".gitattributes").exists()
    # the plan says what it would have done, and the report for people says so too
    assert report.plan is not None and report.plan["applied"] is False
    assert [i["path"] for i in report.plan["remove"]] == ["scratch.txt"]
    shown = "\n".join("".join(text for text, _ in line) for line in lines(report))
    assert "\nremove (1)\n" in shown and "removed" not in shown


def test_a_pull_that_changed_the_checkout_says_its_plan_was_applied(deploy: Path) -> None:
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, "origin", "main")
    assert report.outcome == "healed" and report.plan is not None
    assert report.plan["applied"] is True
    shown = "\n".join("".join(text for text, _ in line) for line in lines(report))
    assert "\nremoved (1)\n" in shown
    clean = gitsafe.pull(deploy, "origin", "main")
    assert clean.plan is not None and clean.plan["applied"] is True
    assert gitsafe.doctor(deploy).plan["applied"] is False  # type: ignore[index]


def test_credentials_in_the_remote_url_are_redacted(deploy: Path) -> None:
    git(deploy, "remote", "set-url", "origin", "https://user:s3cret@127.0.0.1:9/repo.git")
    report = gitsafe.pull(deploy, "origin", "main", lock_timeout=0)
    text = report.to_json_text()
    assert "s3cret" not in text
    assert report.remote["url"] == "https://user:***@127.0.0.1:9/repo.git"
    assert report.exit_code == 1


def test_operational_failures_are_reports_and_misuse_raises(deploy: Path) -> None:
    with pytest.raises(TypeError):
        gitsafe.pull(deploy, exclude="*.log")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gitsafe.doctor(123)  # type: ignore[arg-type]
    report = gitsafe.pull(deploy, "origin", "main", exclude=["!x"])
    assert (report.exit_code, report.error["kind"]) == (2, "usage")


@pytest.mark.parametrize(
    "bad",
    [
        {"lock_timeout": "5"},
        {"stale_lock_age": "10"},
        {"alert_timeout": "1"},
        {"backup": "no"},
        {"retries": 1.5},
        {"depth": True},
        {"accept_new_host_key": 1},
        {"report_path": b"/tmp/r.json"},
        {"metrics_file": 7},
        {"webhook": 7},
        {"env": ["GITSAFE_BACKUP=0"]},
        {"env": {"GITSAFE_LOCK_TIMEOUT": 5}},
    ],
)
def test_a_keyword_of_the_wrong_type_raises_before_anything_is_touched(
    deploy: Path, bad: dict[str, object]
) -> None:
    write(deploy, "scratch.txt", "only copy\n")
    head = git(deploy, "rev-parse", "HEAD")
    with pytest.raises(TypeError, match=next(iter(bad))):
        gitsafe.pull(deploy, "origin", "main", **bad)  # type: ignore[arg-type]
    if set(bad) <= {"report_path", "env", "retries", "depth", "accept_new_host_key"}:
        with pytest.raises(TypeError, match=next(iter(bad))):
            gitsafe.doctor(deploy, **bad)  # type: ignore[arg-type]
    assert (deploy / "scratch.txt").read_text() == "only copy\n"
    assert git(deploy, "rev-parse", "HEAD") == head
    assert not (deploy / ".git/gitsafe/last-report.json").exists()


def test_paths_may_be_path_objects(deploy: Path, tmp_path: Path) -> None:
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, report_path=tmp_path / "r.json", metrics_file=tmp_path / "m.prom")
    assert report.exit_code == 0, report.to_json_text()
    assert report.report_path == str(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == 0
    assert "gitsafe_last_exit_code" in (tmp_path / "m.prom").read_text()
    report = gitsafe.doctor(deploy, report_path=tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text())["command"] == "doctor"


def test_fresh_lock_left_by_a_killed_gitsafe_run_is_removed_at_once(deploy: Path) -> None:
    lock = deploy / ".git/index.lock"
    _lock(lock, 0)
    (deploy / ".git/gitsafe").mkdir(exist_ok=True)
    (deploy / ".git/gitsafe/inflight.json").write_text(
        json.dumps({"pid": 999999, "locks": [str(lock)]})
    )
    write(deploy, "src/config.py", "dirty\n")
    report = gitsafe.pull(deploy, "origin", "main", lock_timeout=0)
    assert report.exit_code == 0, report.to_json_text()
    assert not lock.exists()
    assert [x["path"] for x in report.plan["stale_locks"]] == [str(lock)]
    assert not (deploy / ".git/gitsafe/inflight.json").exists()


def test_sha256_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "sha256"
    git(tmp_path, "init", "-q", "--object-format=sha256", str(repo))
    write(repo, "a.txt")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-qm", "one")
    git(repo, "remote", "add", "origin", str(tmp_path / "nowhere"))
    write(repo, "scratch.txt")
    report = gitsafe.pull(repo, "origin", "main")
    assert (report.outcome, report.exit_code) == ("refused", 2)
    assert "sha256" in report.error["message"]
    assert (repo / "scratch.txt").exists()


def test_linked_worktree_heals_and_a_branch_checked_out_elsewhere_is_refused(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    git(origin.work, "push", "-q", "origin", "HEAD:release")
    git(deploy, "fetch", "-q", "origin")
    linked = tmp_path / "linked"
    git(deploy, "worktree", "add", "-q", "-b", "release", str(linked), "origin/release")
    write(linked, "src/config.py", "dirty\n")
    write(linked, "scratch/x")
    report = gitsafe.pull(linked / "src", "origin", "release")  # -C a subdirectory
    assert (report.exit_code, report.outcome) == (0, "healed"), report.to_json_text()
    assert git(linked, "status", "--porcelain") == ""
    assert report.report_path == str(deploy / ".git/worktrees/linked/gitsafe/last-report.json")
    busy = gitsafe.pull(linked, "origin", "main")
    assert (busy.exit_code, busy.outcome) == (2, "refused")
    assert "checked out in another work tree" in busy.error["message"]
    assert git(linked, "symbolic-ref", "HEAD").strip() == "refs/heads/release"
    preview = gitsafe.doctor(deploy, "origin", "release")
    assert preview.exit_code == 2 and preview.plan["refusals"]


def test_separate_git_dir_checkout_heals_its_own_work_tree_only(
    origin: Origin, tmp_path: Path
) -> None:
    gitdirs = tmp_path / "gitdirs"
    gitdirs.mkdir()
    deploy = tmp_path / "deploy"
    git(
        tmp_path,
        "clone",
        "-q",
        f"--separate-git-dir={gitdirs / 'd.git'}",
        str(origin.bare),
        str(deploy),
    )
    write(gitdirs, "precious.txt", "next to the git directory\n")
    write(deploy, "src/config.py", "dirty\n")
    write(deploy, "junk.txt")
    report = gitsafe.pull(deploy / "src", "origin", "main")
    assert (report.exit_code, report.outcome) == (0, "healed"), report.to_json_text()
    assert report.repo == str(deploy)
    assert (gitdirs / "precious.txt").read_text() == "next to the git directory\n"
    assert not (deploy / "junk.txt").exists()
    assert git(deploy, "status", "--porcelain") == ""
