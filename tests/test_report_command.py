"""`gitsafe report`: what a human who logs in after an alert sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gitfixtures import git, write


def gitsafe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsafe", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_report_shows_the_last_pull_as_pull_rendered_it(deploy: Path) -> None:
    write(deploy, "src/config.py", "DEBUG = True\n")
    write(deploy, "scratch.txt")
    pull = gitsafe("pull", "-C", str(deploy))
    assert pull.returncode == 0, pull.stderr
    shown = gitsafe("-C", str(deploy), "report")
    assert shown.returncode == 0 and shown.stderr == ""
    header, *body = shown.stdout.splitlines()
    assert header.startswith(f"gitsafe pull in {deploy} at ")
    assert "exit 0" in header
    assert body == pull.stderr.splitlines()  # the very lines pull printed
    assert "healed" in body[0] and any("scratch.txt" in line for line in body)


def test_report_json_prints_the_stored_report_byte_for_byte(deploy: Path) -> None:
    gitsafe("pull", "-C", str(deploy))
    shown = gitsafe("report", "-C", str(deploy), "--json")
    assert shown.returncode == 0
    assert shown.stdout == (deploy / ".git/gitsafe/last-report.json").read_text()


def test_report_finds_the_path_pull_used_from_env_and_git_config(
    deploy: Path, tmp_path: Path
) -> None:
    git(deploy, "config", "gitsafe.report", str(tmp_path / "config.json"))
    gitsafe("pull", "-C", str(deploy))
    shown = gitsafe("report", "-C", str(deploy), "--json")
    assert json.loads(shown.stdout)["report_path"] == str(tmp_path / "config.json")
    env = {"GITSAFE_REPORT": str(tmp_path / "env.json")}
    gitsafe("pull", "-C", str(deploy), env=env)
    shown = gitsafe("report", "-C", str(deploy), "--json", env=env)
    assert json.loads(shown.stdout)["report_path"] == str(tmp_path / "env.json")


def test_a_bad_unrelated_setting_does_not_hide_the_report(deploy: Path) -> None:
    gitsafe("pull", "-C", str(deploy))
    git(deploy, "config", "gitsafe.lockTimeout", "soon")
    assert gitsafe("pull", "-C", str(deploy)).returncode == 2
    shown = gitsafe("report", "-C", str(deploy))  # resolves only the report path
    assert shown.returncode == 0, shown.stderr
    # the failed pull's own report, which names the bad setting; not the one before it
    assert "lockTimeout" in shown.stdout and "up to date" not in shown.stdout
    assert gitsafe("report", "-C", str(deploy), "--exit-code").returncode == 2


def test_exit_code_flag_mirrors_the_reported_run(deploy: Path, tmp_path: Path) -> None:
    git(deploy, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    assert gitsafe("pull", "-C", str(deploy)).returncode == 1
    assert gitsafe("report", "-C", str(deploy)).returncode == 0
    mirrored = gitsafe("report", "-C", str(deploy), "--exit-code")
    assert mirrored.returncode == 1
    assert "failed" in mirrored.stdout


def test_exit_code_flag_gives_only_an_exit_code_a_run_can_have(
    deploy: Path, tmp_path: Path
) -> None:
    gitsafe("pull", "-C", str(deploy), "--report", str(tmp_path / "r.json"))
    data = json.loads((tmp_path / "r.json").read_text())
    for code in (300, -1, True, "1", None):
        (tmp_path / "r.json").write_text(json.dumps({**data, "exit_code": code}))
        mirrored = gitsafe("report", str(tmp_path / "r.json"), "--exit-code")
        assert mirrored.returncode == 2, (code, mirrored.stderr)
        assert "holds no exit code" in mirrored.stderr or "malformed" in mirrored.stderr


def test_a_report_path_works_outside_any_repository(deploy: Path, tmp_path: Path) -> None:
    saved = tmp_path / "copy.json"
    gitsafe("pull", "-C", str(deploy), "--report", str(saved))
    shown = gitsafe("-C", str(tmp_path), "report", str(saved))
    assert shown.returncode == 0
    assert "up to date" in shown.stdout


def test_missing_corrupt_and_foreign_reports_exit_2_with_one_line(
    deploy: Path, tmp_path: Path
) -> None:
    cases = {
        "missing": (None, "no report at"),
        "corrupt": ("{ not json", "is not a gitsafe report (invalid JSON"),
        "foreign": (
            '{"schema": "other/1"}',
            "is not a gitsafe.report/1 report (schema: 'other/1')",
        ),
        "partial": ('{"schema": "gitsafe.report/1"}', "is not a complete gitsafe.report/1 report"),
        "deep": ("[" * 100_000, "JSON nested too deep"),
        "malformed": (
            '{"schema": "gitsafe.report/1", "command": "pull", "outcome": "healed", "plan": 3}',
            "is a malformed gitsafe.report/1 report",
        ),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.json"
        if content is not None:
            path.write_text(content)
        shown = gitsafe("report", str(path))
        assert shown.returncode == 2, name
        assert shown.stdout == ""
        assert shown.stderr.count("\n") == 1 and message in shown.stderr, (name, shown.stderr)
    fresh = gitsafe("report", "-C", str(deploy))  # a clone no pull has run in
    assert fresh.returncode == 2 and "no pull has written one yet" in fresh.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    outside = gitsafe("report", "-C", str(plain))
    assert outside.returncode == 2 and "not a git repository" in outside.stderr
