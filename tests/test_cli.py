"""The command line as hooks use it: exit codes, stdout JSON, stderr messages, -C, -q."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
from gitfixtures import Origin, write

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())


def gitsafe(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsafe", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_pull_json_goes_to_stdout_and_the_verdict_to_stderr(origin: Origin, deploy: Path) -> None:
    write(deploy, "src/config.py", "dirty\n")
    write(deploy, "deploy-hook.log")
    proc = gitsafe("pull", "origin", "main", "-C", str(deploy), "-e", "deploy-hook.log", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["outcome"] == "healed"
    assert "healed" in proc.stderr and "src/config.py" in proc.stderr
    assert "\x1b[" not in proc.stderr  # NO_COLOR / not a terminal: plain text


def test_global_dash_c_and_quiet(deploy: Path) -> None:
    proc = gitsafe("-C", str(deploy), "pull", "-q")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_exit_2_for_usage_errors_and_non_repositories(tmp_path: Path, deploy: Path) -> None:
    assert gitsafe("pull", "-C", str(tmp_path)).returncode == 2
    assert gitsafe("pull", "-C", str(tmp_path / "missing")).returncode == 2
    assert gitsafe("pull", "--lock-timeout", "soon", "-C", str(deploy)).returncode == 2
    bad = gitsafe("pull", "-C", str(deploy), "-e", "!keep")
    assert bad.returncode == 2 and "leading '!'" in bad.stderr
    quiet = gitsafe("pull", "-q", "-C", str(tmp_path))
    assert quiet.returncode == 2 and "not a git repository" in quiet.stderr


def test_exit_1_when_the_fetch_fails(deploy: Path) -> None:
    proc = gitsafe("pull", "origin", "nope", "-C", str(deploy), "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["kind"] == "fetch"


def test_doctor_exit_codes_and_json(origin: Origin, deploy: Path) -> None:
    assert gitsafe("doctor", "-C", str(deploy)).returncode == 0
    write(deploy, "junk.txt")
    proc = gitsafe("doctor", "-C", str(deploy), "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["plan"]["remove"] == [{"path": "junk.txt", "reason": "untracked"}]
    assert (deploy / "junk.txt").exists()


def test_version_names_pygit2_and_libgit2() -> None:
    proc = gitsafe("--version")
    assert proc.returncode == 0
    assert "gitsafe" in proc.stdout and "pygit2" in proc.stdout and "libgit2" in proc.stdout


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}
    proc = gitsafe("demo", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "healed" in proc.stderr and "kept: True" in proc.stderr
    assert list(tmp_path.iterdir()) == []
    kept = gitsafe("demo", "--keep", env=env)
    assert kept.returncode == 0
    assert len(list(tmp_path.iterdir())) == 1
