"""Hermetic git for every test: a temporary HOME, no system config, fixed identity."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import ConfigLevel

sys.path.insert(0, os.path.dirname(__file__))

from gitfixtures import Origin

_SCRUB = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "XDG_CONFIG_HOME",
    "GITSAFE_ENABLED",
    "GITSAFE_EXCLUDE",
    "GITSAFE_REPORT",
    "GITSAFE_LOCK_TIMEOUT",
    "GITSAFE_STALE_LOCK_AGE",
    "GITSAFE_ALERT_COMMAND",
    "GITSAFE_WEBHOOK",
    "GITSAFE_WEBHOOK_FORMAT",
    "GITSAFE_ALERT_TIMEOUT",
    "GITSAFE_METRICS_FILE",
)


@pytest.fixture(autouse=True)
def hermetic_git(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = gitsafe tests\n\temail = tests@gitsafe.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
        '[protocol "file"]\n\tallow = always\n'
        "[advice]\n\tdetachedHead = false\n"
        "[pull]\n\trebase = false\n"
        "[core]\n\thooksPath = /dev/null\n"
    )
    for name in _SCRUB:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TZ", "UTC")
    # libgit2 finds global config through these search paths, not through HOME alone.
    empty = home / "empty-system"
    empty.mkdir()
    saved = {
        level: pygit2.settings.search_path[level]
        for level in (ConfigLevel.SYSTEM, ConfigLevel.GLOBAL, ConfigLevel.XDG)
    }
    pygit2.settings.search_path[ConfigLevel.SYSTEM] = str(empty)
    pygit2.settings.search_path[ConfigLevel.GLOBAL] = str(home)
    pygit2.settings.search_path[ConfigLevel.XDG] = str(home / ".config")
    yield home
    for level, value in saved.items():
        pygit2.settings.search_path[level] = value


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(
        tmp_path,
        {
            "README.md": "hello\n",
            "src/config.py": "DEBUG = False\n",
            ".gitignore": ".env\n*.log\nbuild/\n",
        },
    )


@pytest.fixture
def deploy(origin: Origin, tmp_path: Path) -> Path:
    return origin.clone(tmp_path / "deploy")
