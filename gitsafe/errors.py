"""Typed errors of the core; only the CLI turns them into exit codes."""

from __future__ import annotations


class GitsafeError(Exception):
    """An operational failure: the pull did not happen; a rerun may converge (exit 1)."""

    kind = "failed"
    exit_code = 1

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class UsageError(GitsafeError):
    """Bad arguments or configuration (exit 2)."""

    kind = "usage"
    exit_code = 2


class NotARepository(GitsafeError):
    """The path is not a git work tree (exit 2)."""

    kind = "not-a-work-tree"
    exit_code = 2


class Refused(GitsafeError):
    """A repository gitsafe cannot heal faithfully; nothing was touched (exit 2)."""

    kind = "refused"
    exit_code = 2


class FetchFailed(GitsafeError):
    kind = "fetch"


class LockBusy(GitsafeError):
    kind = "lock"


class Interrupted(GitsafeError):
    """SIGINT/SIGTERM arrived; the pull stopped at a safe point."""

    kind = "interrupted"

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message, signal=signum)
        self.exit_code = 128 + signum
