"""doctor is read-only and its plan is what pull does; every report matches the schema."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from gitfixtures import Origin, git, snapshot, write

import gitsafe
from gitsafe import accel

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())


def validate(report: gitsafe.Report) -> dict[str, object]:
    data = report.as_json()
    jsonschema.validate(data, SCHEMA)
    return data


def _dirty(origin: Origin, deploy: Path) -> None:
    write(origin.work, "src/new.py", "new\n")
    origin.push("upstream moves")
    write(deploy, "src/config.py", "DEBUG = True\n")
    write(deploy, "scratch/x.txt")
    write(deploy, ".env", "SECRET=1\n")
    write(deploy, "deploy-hook.log")
    write(deploy, "hotfix.txt")
    git(deploy, "add", "hotfix.txt")
    git(deploy, "commit", "-qm", "hotfix")
    (deploy / ".git/index.lock").write_text("")
    os.utime(deploy / ".git/index.lock", (1, 1))


def _state(root: Path) -> dict[str, object]:
    """Content and mtime of every entry, the git directory included."""
    snap = snapshot(root, skip_git=False)
    return {p: (v, os.lstat(root / p).st_mtime_ns) for p, v in snap.items()} | {
        "": os.lstat(root).st_mtime_ns
    }


def test_doctor_changes_no_byte_in_the_work_tree_or_git_directory(
    origin: Origin, deploy: Path
) -> None:
    _dirty(origin, deploy)
    before = _state(deploy)
    report = gitsafe.doctor(deploy, "origin", "main", exclude=["deploy-hook.log"])
    validate(report)
    assert report.exit_code == 1 and report.outcome == "would-heal"
    assert _state(deploy) == before


def _age_access_times(root: Path) -> dict[str, int]:
    """Set every work-tree entry's access time a day before its modification time, so that a
    read under relatime updates it, and return them by path.  utime also gives each entry a new
    ctime: every tracked file looks touched, and the stat pass hashes them all."""
    times = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in ["", *dirs, *files]:
            full = os.path.join(dirpath, name) if name else dirpath
            mtime = os.lstat(full).st_mtime_ns
            os.utime(full, ns=(mtime - 86_400 * 10**9, mtime), follow_symlinks=False)
            times[os.path.relpath(full, root)] = os.lstat(full).st_atime_ns
    return times


@pytest.mark.skipif(accel.native is None, reason="the pure-Python scan hashes through libgit2")
def test_doctor_reads_leave_access_times_alone(origin: Origin, deploy: Path) -> None:
    """Directory listings and the stat pass's hashing open with O_NOATIME (the kernel allows it
    to the owner and to root)."""
    control = deploy.parent / "control"
    control.mkdir()
    mtime = control.stat().st_mtime_ns
    os.utime(control, ns=(mtime - 86_400 * 10**9, mtime))
    before_control = control.stat().st_atime_ns
    os.listdir(control)
    if control.stat().st_atime_ns == before_control:
        pytest.skip("this file system does not update access times on reads (noatime)")
    # A local commit's file in a directory of its own: the reset's emptied directories are
    # listed too (plan._reset_removed_dirs).
    write(deploy, "notes/local.md", "local\n")
    git(deploy, "add", "notes")
    git(deploy, "commit", "-qm", "local notes")
    _dirty(origin, deploy)
    before = _age_access_times(deploy)
    report = gitsafe.doctor(deploy, "origin", "main", exclude=["deploy-hook.log"])
    assert report.outcome == "would-heal"
    # Compared with other content through libgit2, as git compares them: the edited file, and
    # the local commit's file that the target does not have.
    compared = {"src/config.py", "hotfix.txt", "notes/local.md"}
    after = {p: os.lstat(deploy / p).st_atime_ns for p in before}
    assert sorted(p for p in before if after[p] != before[p] and p not in compared) == []
    assert len(before) - len(compared) >= 8  # the top, src/, scratch/, README.md, ...


def test_doctor_fetch_only_moves_the_remote_tracking_ref(origin: Origin, deploy: Path) -> None:
    _dirty(origin, deploy)
    before = snapshot(deploy, skip_git=False)
    report = gitsafe.doctor(deploy, "origin", "main", fetch_first=True)
    validate(report)
    assert report.exit_code == 1
    after = snapshot(deploy, skip_git=False)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    allowed = (
        ".git/refs/remotes/origin/main",
        ".git/logs/refs/remotes/origin/main",
        ".git/objects/",
    )
    assert all(k.startswith(allowed) for k in changed), sorted(changed)
    assert git(deploy, "rev-parse", "origin/main") == git(origin.work, "rev-parse", "HEAD")


def test_doctor_plan_is_what_pull_then_does(origin: Origin, deploy: Path) -> None:
    _dirty(origin, deploy)
    preview = gitsafe.doctor(
        deploy, "origin", "main", exclude=["deploy-hook.log"], fetch_first=True
    )
    result = gitsafe.pull(deploy, "origin", "main", exclude=["deploy-hook.log"])
    validate(result)
    assert result.exit_code == 0 and result.outcome == "healed"
    assert preview.plan is not None and result.plan is not None
    for key in (
        "restore",
        "remove",
        "keep",
        "overwrite_ignored",
        "drop_commits",
        "incoming",
        "clear_state",
        "switch_branch",
        "target",
    ):
        assert preview.plan[key] == result.plan[key], key
    assert [x["path"] for x in preview.plan["stale_locks"]] == [
        x["path"] for x in result.plan["stale_locks"]
    ]
    assert [c["subject"] for c in result.plan["drop_commits"]] == ["hotfix"]


def test_doctor_exit_codes(origin: Origin, deploy: Path, tmp_path: Path) -> None:
    assert gitsafe.doctor(deploy).exit_code == 0
    write(origin.work, "src/new.py", "new\n")
    origin.push()
    moved = gitsafe.doctor(deploy, fetch_first=True)
    assert (moved.outcome, moved.exit_code) == ("would-fast-forward", 0)
    write(deploy, "junk")
    assert gitsafe.doctor(deploy).exit_code == 1
    assert gitsafe.doctor(tmp_path / "nowhere").exit_code == 2


def test_report_is_written_atomically_to_the_default_sentinel(deploy: Path) -> None:
    report = gitsafe.pull(deploy)
    sentinel = deploy / ".git/gitsafe/last-report.json"
    assert report.report_path == str(sentinel)
    data = json.loads(sentinel.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["outcome"] == "up-to-date"
    assert not [p for p in sentinel.parent.iterdir() if p.name.startswith(".gitsafe-report-")]


def test_report_path_precedence_flag_env_config(
    deploy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(deploy, "config", "gitsafe.report", str(tmp_path / "from-config.json"))
    gitsafe.pull(deploy)
    assert (tmp_path / "from-config.json").exists()
    monkeypatch.setenv("GITSAFE_REPORT", str(tmp_path / "from-env.json"))
    report = gitsafe.pull(deploy)
    assert (tmp_path / "from-env.json").exists()
    assert report.settings["report"]["source"] == "env:GITSAFE_REPORT"
    report = gitsafe.pull(deploy, report_path=str(tmp_path / "from-flag.json"))
    assert (tmp_path / "from-flag.json").exists()
    assert report.settings["report"]["source"] == "flag"


def test_report_path_through_a_symlink_is_refused_before_anything_is_touched(
    deploy: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    link = tmp_path / "report.json"
    os.symlink(victim, link)
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, report_path=str(link))
    assert (report.exit_code, report.error["kind"]) == (2, "usage")
    assert "symlink" in report.error["message"]
    assert victim.read_text() == "untouched\n" and link.is_symlink()
    assert (deploy / "scratch.txt").exists()


@pytest.mark.parametrize("failure", [None, "unknown-remote", "missing-directory", "bad-setting"])
def test_doctor_never_writes_through_a_symlinked_report_path(
    deploy: Path, tmp_path: Path, failure: str | None
) -> None:
    """The report path is refused first, whatever else would fail later (a run that failed
    before its check used to save its report through the link)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    link = tmp_path / "report.json"
    os.symlink(victim, link)
    where, remote, env = deploy, None, None
    if failure == "unknown-remote":
        remote = "upstraem"
    elif failure == "missing-directory":
        where = tmp_path / "missing"
    elif failure == "bad-setting":
        env = {"GITSAFE_LOCK_TIMEOUT": "soon"}
    report = gitsafe.doctor(where, remote, report_path=str(link), env=env)
    assert (report.exit_code, report.error["kind"]) == (2, "usage")
    assert "symlink" in report.error["message"] and report.report_path is None
    assert victim.read_text() == "untouched\n" and link.is_symlink()


def test_an_empty_report_flag_means_the_default_report(deploy: Path, tmp_path: Path) -> None:
    env = {"GITSAFE_REPORT": str(tmp_path / "env.json")}
    report = gitsafe.pull(deploy, report_path="", env=env)
    assert report.report_path == str(deploy / ".git/gitsafe/last-report.json")
    assert report.settings["report"]["source"] == "flag"
    assert not (tmp_path / "env.json").exists()


def test_a_pull_that_finds_no_repository_still_writes_an_explicit_report(
    tmp_path: Path,
) -> None:
    """Only the sentinel needs a repository; a deploy system that reads its own report file
    must not find the last run's success there."""
    path = tmp_path / "r.json"
    path.write_text('{"exit_code": 0}')
    report = gitsafe.pull(tmp_path / "missing", report_path=str(path))
    assert report.exit_code == 2
    saved = json.loads(path.read_text())
    assert (saved["exit_code"], saved["outcome"]) == (2, "failed")
    validate(report)


@pytest.mark.parametrize("failure", ["unknown-remote", "bad-setting", "bad-pattern"])
@pytest.mark.parametrize("where", ["default", "flag", "env"])
def test_a_pull_that_fails_on_its_settings_still_replaces_the_last_report(
    deploy: Path, tmp_path: Path, failure: str, where: str
) -> None:
    """Once the repository is open, a failed pull writes its report where the next
    ``gitsafe report`` looks, so the previous run's success cannot stand for it."""
    path = {
        "default": deploy / ".git" / "gitsafe" / "last-report.json",
        "flag": tmp_path / "flag.json",
        "env": tmp_path / "env.json",
    }[where]
    flag = str(path) if where == "flag" else None
    env = {"GITSAFE_REPORT": str(path)} if where == "env" else {}
    assert gitsafe.pull(deploy, report_path=flag, env=env).exit_code == 0
    assert json.loads(path.read_text())["exit_code"] == 0
    remote, exclude = "origin", ["deploy-hook.log"]
    if failure == "unknown-remote":
        remote = "upstraem"
    elif failure == "bad-setting":
        env = {**env, "GITSAFE_LOCK_TIMEOUT": "soon"}
    else:
        exclude = ["!keep.txt"]
    report = gitsafe.pull(deploy, remote, "main", report_path=flag, env=env, exclude=exclude)
    assert report.exit_code == 2 and report.report_path == str(path)
    saved = json.loads(path.read_text())
    assert (saved["exit_code"], saved["outcome"]) == (2, report.outcome)
    validate(report)


def test_report_path_in_a_missing_directory_is_refused(deploy: Path, tmp_path: Path) -> None:
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, report_path=str(tmp_path / "nope" / "r.json"))
    assert (report.exit_code, report.error["kind"]) == (2, "usage")
    assert "does not exist" in report.error["message"]
    assert (deploy / "scratch.txt").exists()


def test_keep_patterns_accumulate_from_flag_env_and_config(
    deploy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.flag", "b.env", "c.env", "d.config", "e.config", "f.other"):
        write(deploy, name)
    git(deploy, "config", "--add", "gitsafe.exclude", "d.config")
    git(deploy, "config", "--add", "gitsafe.exclude", "*.config")
    monkeypatch.setenv("GITSAFE_EXCLUDE", "b.env:c.env")
    report = gitsafe.pull(deploy, exclude=["a.flag"])
    validate(report)
    assert report.settings["exclude"]["value"] == [
        "a.flag",
        "b.env",
        "c.env",
        "d.config",
        "*.config",
    ]
    assert report.settings["exclude"]["source"] == (
        "flag+env:GITSAFE_EXCLUDE+git-config:gitsafe.exclude"
    )
    for kept in ("a.flag", "b.env", "c.env", "d.config", "e.config"):
        assert (deploy / kept).exists(), kept
    assert not (deploy / "f.other").exists()


def test_lock_timeout_precedence_and_bad_values(
    deploy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(deploy, "config", "gitsafe.lockTimeout", "7")
    assert gitsafe.pull(deploy).settings["lock_timeout"] == {
        "value": 7.0,
        "source": "git-config:gitsafe.lockTimeout",
    }
    monkeypatch.setenv("GITSAFE_LOCK_TIMEOUT", "3")
    assert gitsafe.pull(deploy).settings["lock_timeout"]["value"] == 3.0
    assert gitsafe.pull(deploy, lock_timeout=1).settings["lock_timeout"]["source"] == "flag"
    monkeypatch.setenv("GITSAFE_LOCK_TIMEOUT", "soon")
    bad = gitsafe.pull(deploy)
    assert (bad.exit_code, bad.error["kind"]) == (2, "usage")


@pytest.mark.parametrize(
    "name", ["GITSAFE_BACKUP_KEEP", "GITSAFE_RETRIES", "GITSAFE_DEPTH", "GITSAFE_LOCK_TIMEOUT"]
)
@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1_0", "9" * 5000, " "])
def test_numbers_in_settings_are_ascii_digits_or_a_configuration_error(
    deploy: Path, name: str, value: str
) -> None:
    """``str.isdigit`` takes superscripts and other scripts' digits, which ``int`` refuses or
    reads; every one is a configuration error, as git would have it, never a traceback."""
    write(deploy, "scratch.txt")
    report = gitsafe.pull(deploy, "origin", "main", env={name: value})
    assert (report.exit_code, report.error["kind"]) == (2, "usage"), report.to_json_text()
    assert (deploy / "scratch.txt").exists()


def test_a_size_setting_of_other_digits_is_a_configuration_error(deploy: Path) -> None:
    git(deploy, "config", "gitsafe.backupMaxFileSize", "\u00b2m")
    report = gitsafe.doctor(deploy)
    assert (report.exit_code, report.error["kind"]) == (2, "usage"), report.to_json_text()


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "OFF"])
def test_kill_switch_runs_plain_git_pull(
    origin: Origin, deploy: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GITSAFE_ENABLED", value)
    write(deploy, "scratch.txt")
    write(origin.work, "new.txt")
    origin.push()
    report = gitsafe.pull(deploy, "origin", "main")
    validate(report)
    assert (report.outcome, report.exit_code) == ("disabled", 0)
    assert (deploy / "scratch.txt").exists()  # no hygiene
    assert (deploy / "new.txt").exists()
    assert (
        json.loads((deploy / ".git/gitsafe/last-report.json").read_text())["outcome"] == "disabled"
    )


def test_kill_switch_in_git_config_and_a_failing_git_pull(origin: Origin, deploy: Path) -> None:
    git(deploy, "config", "gitsafe.enabled", "false")
    write(origin.work, "src/config.py", "upstream\n")
    origin.push()
    write(deploy, "src/config.py", "local\n")
    report = gitsafe.pull(deploy, "origin", "main")
    assert (report.outcome, report.exit_code) == ("disabled", 1)
    assert report.settings["enabled"]["source"] == "git-config:gitsafe.enabled"
    assert (deploy / "src/config.py").read_text() == "local\n"
