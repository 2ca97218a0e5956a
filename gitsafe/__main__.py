"""The ``gitsafe`` command's entry point (also ``python -m gitsafe``).

``gitsafe --version`` is answered here, before typer, rich and pygit2 are imported: the full
CLI costs about 140 ms to start, the answer alone about 40 ms (docs/performance.md, "Startup").
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from gitsafe.versions import version_line

        sys.stdout.write(version_line() + "\n")
        return
    from gitsafe.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
