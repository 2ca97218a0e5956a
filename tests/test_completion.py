"""Shell completion as docs/completion.md tells users to set it up, run in a real bash; zsh and
fish through the same completion protocol their scripts call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = str(Path(sys.executable).parent)


def shell(script: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# Calls the completion function bash would call for the words typed so far.
COMPLETE = """
complete_words() {
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    COMPREPLY=(); _gitsafe_completion gitsafe; printf '%s\\n' "${COMPREPLY[@]}"
}
"""


def test_show_completion_in_bash_prints_a_script_that_completes_commands_and_options() -> None:
    # gitsafe detects the shell it is called from; $(...) keeps bash its parent process
    # (a lone `bash -c CMD` would exec CMD in bash's place).
    script = shell('out=$(gitsafe --show-completion); printf "%s\\n" "$out"')
    assert "complete -o default -F _gitsafe_completion gitsafe" in script
    out = shell(
        'eval "$(gitsafe --show-completion)"\n'
        + COMPLETE
        + "complete_words gitsafe do; echo --; complete_words gitsafe pull --no-b"
    )
    assert out.split("--\n") == ["doctor\n", "--no-backup\n"]


def test_install_completion_wires_bash_so_a_new_shell_completes(tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])  # the tests' temporary home
    out = shell('out=$(gitsafe --install-completion); printf "%s\\n" "$out"')
    assert "bash completion installed" in out
    assert (home / ".bash_completions" / "gitsafe.sh").is_file()
    assert "gitsafe.sh" in (home / ".bashrc").read_text()
    completed = shell("source ~/.bashrc\n" + COMPLETE + "complete_words gitsafe rest")
    assert completed.split() == ["restore"]


def test_the_source_protocol_gives_each_shell_its_script() -> None:
    for name, marker in (
        ("bash", "complete -o default -F _gitsafe_completion gitsafe"),
        ("zsh", "compdef _gitsafe_completion gitsafe"),
        ("fish", "complete --command gitsafe"),
    ):
        script = shell("gitsafe", env={"_GITSAFE_COMPLETE": f"source_{name}"})
        assert marker in script, (name, script)


def test_zsh_and_fish_completion_answers_name_the_subcommand() -> None:
    zsh = shell(
        "gitsafe",
        env={"_GITSAFE_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "gitsafe do"},
    )
    assert '"doctor":"Show what a pull would do, changing nothing."' in zsh
    fish = shell(
        "gitsafe",
        env={
            "_GITSAFE_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_ARGS": "gitsafe ba",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        },
    )
    assert fish.split("\t")[0] == "backups"
