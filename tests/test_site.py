"""The documentation site builds with `mkdocs build --strict`, and the getting-started page works
when a newcomer runs it block by block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)


def test_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    # mkdocs.yml turns broken links, missing anchors and pages left out of the nav into
    # warnings, which --strict makes fatal.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    assert (tmp_path / "site" / "getting-started" / "index.html").is_file()


def test_changelog_page_is_the_changelog() -> None:
    assert (DOCS / "changelog.md").resolve() == (ROOT / "CHANGELOG.md").resolve()


def tour_blocks(text: str) -> list[str]:
    """The page's ```sh blocks, minus those marked `<!-- tour: skip ... -->` just above."""
    blocks = []
    for match in SH_BLOCK.finditer(text):
        preceding = text[: match.start()].rstrip().splitlines()[-1]
        if not preceding.startswith("<!-- tour: skip"):
            blocks.append(match.group(1))
    return blocks


def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    blocks = tour_blocks((DOCS / "getting-started.md").read_text())
    assert len(blocks) >= 8, "the tour lost its steps"
    # A newcomer's account: an empty home (no git identity, no global config), gitsafe on PATH.
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    assert "git pull failed with exit code 1" in out  # the incident is real
    assert "doctor exit code: 1" in out
    assert 'print("v2")\nSECRET=1\n' in out  # healed, ignored secret kept
    assert 'print("hotfix on the server")' in out  # restored from the backup
    assert "remote: gitsafe: healed" in proc.stderr  # the post-receive hook ran on push
    assert out.rstrip().endswith('print("v3")')  # and deployed the pushed release
    assert not (home / "gitsafe-tour").exists()  # the clean-up step ran
