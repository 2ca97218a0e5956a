"""The CLI reference in docs/ is generated from the typer app; this fails when it is stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "typer",
            "gitsafe.cli",
            "utils",
            "docs",
            "--name",
            "gitsafe",
            "--title",
            "CLI reference",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == (ROOT / "docs/cli.md").read_text(), (
        "docs/cli.md is stale: regenerate it with\n"
        "python -m typer gitsafe.cli utils docs --name gitsafe --title 'CLI reference' "
        "--output docs/cli.md"
    )


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    blocks = readme.split("```")
    first, second = blocks[1].strip(), blocks[3].strip()
    assert "gitsafe demo" in first
    assert "pytest" in second
    test_command = second.splitlines()[-1].strip()
    assert test_command in ci, "CI must run the README's test command"
