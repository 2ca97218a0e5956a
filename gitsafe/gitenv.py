"""The environment for the git binary when gitsafe names the repository itself.

git exports ``GIT_DIR``, ``GIT_INDEX_FILE`` and friends to its hooks; a ``git`` started from a
hook inherits them and acts on the repository (or index, or object store) they name instead of
the one it was pointed at with ``cwd``. libgit2 opens repositories by path and ignores them, but
the kill-switch's ``git pull`` would not.
"""

from __future__ import annotations

from collections.abc import Mapping

# `git rev-parse --local-env-vars` (git 2.39) plus what git sets for hooks and pushes.
REPOSITORY_VARIABLES = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
        "GIT_QUARANTINE_PATH",
        "GIT_NAMESPACE",
    }
)


def without_repository_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without the variables that would redirect git to another repository.

    ``GIT_CONFIG_COUNT`` / ``GIT_CONFIG_KEY_n`` stay: they are how CI systems hand git
    credentials, not something git sets for hooks.
    """
    return {k: v for k, v in environ.items() if k not in REPOSITORY_VARIABLES}
