"""``gitsafe demo``: the incident from the README, staged and healed in a temporary directory.

Everything is built with pygit2, so the demo runs on a machine without the git binary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pygit2
from rich.console import Console

from gitsafe.core import doctor, pull
from gitsafe.render import render

_SIGNATURE = pygit2.Signature("gitsafe demo", "demo@gitsafe.invalid")
_KEEP = ["deploy-hook.log", ".deploy-prev-image-*"]


def _commit(repo: pygit2.Repository, files: dict[str, str], message: str) -> pygit2.Oid:
    """Commit ``files`` (path -> content) on top of HEAD in the scratch repository."""
    index = repo.index
    for path, content in files.items():
        full = os.path.join(repo.workdir, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)
        index.add(path)
    index.write()
    tree = index.write_tree()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return repo.create_commit("HEAD", _SIGNATURE, _SIGNATURE, message, tree, parents)


def _write(path: str, content: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)


def stage(base: str) -> str:
    """Build origin + a deploy base left dirty by a failed job; return the deploy path."""
    bare = os.path.join(base, "origin.git")
    pygit2.init_repository(bare, bare=True, initial_head="main")
    upstream = pygit2.init_repository(os.path.join(base, "upstream"), initial_head="main")
    upstream.remotes.create("origin", bare)
    _commit(
        upstream,
        {
            "README.md": "# shop\n",
            "src/config.py": "DEBUG = False\n",
            "src/app.py": "print('v1')\n",
            ".gitignore": ".env\n*.sqlite3\nbuild/\n",
        },
        "v1",
    )
    upstream.remotes["origin"].push(["refs/heads/main:refs/heads/main"])
    deploy = os.path.join(base, "deploy")
    pygit2.clone_repository(bare, deploy)
    # origin moves on while the deploy base sits dirty
    _commit(upstream, {"src/app.py": "print('v2')\n"}, "v2")
    upstream.remotes["origin"].push(["refs/heads/main:refs/heads/main"])
    # what the failed job left behind
    _write(os.path.join(deploy, "src/config.py"), "DEBUG = True  # hot-fix on the server\n")
    _write(os.path.join(deploy, "scratch/dump.sql"), "-- half a dump\n")
    _write(os.path.join(deploy, "tmp-upload.bin"), "partial\n")
    _write(os.path.join(deploy, ".env"), "SECRET_KEY=keep-me\n")
    _write(os.path.join(deploy, "deploy-hook.log"), "previous deploy log\n")
    _write(os.path.join(deploy, ".deploy-prev-image-1"), "sha256:abc\n")
    return deploy


def run_demo(keep: bool = False) -> int:
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    base = tempfile.mkdtemp(prefix="gitsafe-demo-")
    try:
        deploy = stage(base)
        console.rule("the deploy base a failed job left behind")
        console.print(f"{deploy}: src/config.py edited, scratch files, .env, deploy-hook.log")
        console.print(f"keep-patterns: {' '.join('-e ' + p for p in _KEEP)}\n")
        console.rule("gitsafe doctor --fetch origin main  (changes nothing but origin/main)")
        render(doctor(deploy, "origin", "main", exclude=_KEEP, fetch_first=True), console)
        console.print()
        console.rule("gitsafe pull origin main")
        started = time.monotonic()
        result = pull(deploy, "origin", "main", exclude=_KEEP)
        render(result, console)
        console.print(f"[dim]took {1000 * (time.monotonic() - started):.0f} ms[/dim]\n")
        console.rule("afterwards")
        survived = all(
            os.path.exists(os.path.join(deploy, p))
            for p in (".env", "deploy-hook.log", ".deploy-prev-image-1")
        )
        with open(os.path.join(deploy, "src/app.py")) as f:
            current = f.read().strip()
        console.print(f"src/app.py is now: {current}")
        console.print(f".env, deploy-hook.log and .deploy-prev-image-1 kept: {survived}")
        if keep:
            console.print(f"report (the JSON sentinel): {result.report_path}")
            console.print(f"demo directory kept: {base}")
        else:
            console.print("the demo directory is removed; --keep leaves it to look around")
        return 0 if result.exit_code == 0 and survived else 1
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
