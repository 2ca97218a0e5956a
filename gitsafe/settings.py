"""Settings with one precedence: flag > ``GITSAFE_*`` variable > git config ``gitsafe.*`` > default.

Every resolved value remembers where it came from; the report records it, so a surprising value
can be traced to the layer that set it.  Keep-patterns are the exception: they accumulate from
every layer, because each layer names things someone asked to keep.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gitsafe.errors import UsageError

if TYPE_CHECKING:  # the CLI imports this module for --help; libgit2 loads only when used
    import pygit2

T = TypeVar("T")

DEFAULT_LOCK_TIMEOUT = 30.0
DEFAULT_STALE_LOCK_AGE = 600.0
DEFAULT_BACKUP_MAX_FILE_SIZE = 100 * 1024 * 1024
DEFAULT_BACKUP_KEEP = 20
DEFAULT_BACKUP_KEEP_DAYS = 30.0

# Names of the environment variables, shown in --help and the docs.
ENV_ENABLED = "GITSAFE_ENABLED"
ENV_EXCLUDE = "GITSAFE_EXCLUDE"
ENV_REPORT = "GITSAFE_REPORT"
ENV_LOCK_TIMEOUT = "GITSAFE_LOCK_TIMEOUT"
ENV_STALE_LOCK_AGE = "GITSAFE_STALE_LOCK_AGE"
ENV_BACKUP = "GITSAFE_BACKUP"
ENV_BACKUP_MAX_FILE_SIZE = "GITSAFE_BACKUP_MAX_FILE_SIZE"
ENV_BACKUP_KEEP = "GITSAFE_BACKUP_KEEP"
ENV_BACKUP_KEEP_DAYS = "GITSAFE_BACKUP_KEEP_DAYS"

_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Setting(Generic[T]):
    value: T
    source: str  # "flag", "env:NAME", "git-config:NAME", "default"

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source}


@dataclass(frozen=True)
class Settings:
    enabled: Setting[bool]
    excludes: Setting[tuple[str, ...]]
    report: Setting[str | None]
    lock_timeout: Setting[float]
    stale_lock_age: Setting[float]
    backup: Setting[bool]
    backup_max_file_size: Setting[int]
    backup_keep: Setting[int]
    backup_keep_days: Setting[float]

    def as_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled.as_json(),
            "exclude": {"value": list(self.excludes.value), "source": self.excludes.source},
            "report": self.report.as_json(),
            "lock_timeout": self.lock_timeout.as_json(),
            "stale_lock_age": self.stale_lock_age.as_json(),
            "backup": self.backup.as_json(),
            "backup_max_file_size": self.backup_max_file_size.as_json(),
            "backup_keep": self.backup_keep.as_json(),
            "backup_keep_days": self.backup_keep_days.as_json(),
        }


def parse_bool(text: str, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _FALSE:
        return False
    if lowered in _TRUE or lowered == "":
        return True
    raise UsageError(f"{what}: expected one of true/false/yes/no/on/off/1/0, got {text!r}")


def parse_seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what}: expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"{what}: expected a non-negative number of seconds, got {text!r}")
    return value


def parse_size(text: str, what: str) -> int:
    """A byte count with git's optional k/m/g suffix (powers of 1024)."""
    raw = text.strip().lower()
    factor = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(raw[-1:], 1)
    digits = raw[:-1] if factor > 1 else raw
    if not digits.isdigit():
        raise UsageError(f"{what}: expected a size such as 100m, got {text!r}")
    return int(digits) * factor


def parse_count(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise UsageError(f"{what}: expected a non-negative whole number, got {text!r}")
    return int(text)


def _config_value(config: pygit2.Config | None, name: str) -> str | None:
    if config is None:
        return None
    import pygit2

    try:
        value = config[name]
    except (KeyError, pygit2.GitError):
        return None
    return str(value)


def _config_multi(config: pygit2.Config | None, name: str) -> list[str]:
    if config is None:
        return []
    import pygit2

    try:
        return [str(v) for v in config.get_multivar(name)]
    except (KeyError, pygit2.GitError):
        return []


def _pick(
    flag: T | None,
    env: Mapping[str, str],
    env_name: str,
    config: pygit2.Config | None,
    config_name: str,
    parse: Callable[[str, str], T],
    default: T,
) -> Setting[T]:
    if flag is not None:
        return Setting(flag, "flag")
    if env_name in env:
        return Setting(parse(env[env_name], env_name), f"env:{env_name}")
    raw = _config_value(config, config_name)
    if raw is not None:
        return Setting(parse(raw, config_name), f"git-config:{config_name}")
    return Setting(default, "default")


def validate_exclude(pattern: str) -> str:
    """Reject keep-patterns that git would read differently from what the user meant.

    ``git clean -e '!x'`` turns ``x`` into something to delete and ``-e '#x'`` is no comment:
    neither can express "keep this", so both are refused rather than guessed at.
    """
    if not pattern:
        raise UsageError("empty --exclude pattern")
    if pattern.startswith("!"):
        raise UsageError(
            f"--exclude {pattern!r}: a leading '!' would make git delete what it matches; "
            "keep-patterns only add things to keep (write '\\!' for a literal '!')"
        )
    if pattern.startswith("#"):
        raise UsageError(
            f"--exclude {pattern!r}: a leading '#' reads as a comment in ignore files; "
            "write '\\#' for a literal '#'"
        )
    return pattern


def resolve(
    config: pygit2.Config | None,
    env: Mapping[str, str] | None = None,
    *,
    exclude: list[str] | tuple[str, ...] = (),
    report: str | None = None,
    lock_timeout: float | None = None,
    stale_lock_age: float | None = None,
    backup: bool | None = None,
) -> Settings:
    env = os.environ if env is None else env
    sources = []
    patterns: list[str] = []
    if exclude:
        sources.append("flag")
        patterns.extend(exclude)
    env_patterns = [p for p in env.get(ENV_EXCLUDE, "").split(":") if p]
    if env_patterns:
        sources.append(f"env:{ENV_EXCLUDE}")
        patterns.extend(env_patterns)
    config_patterns = _config_multi(config, "gitsafe.exclude")
    if config_patterns:
        sources.append("git-config:gitsafe.exclude")
        patterns.extend(config_patterns)
    for p in patterns:
        validate_exclude(p)
    if lock_timeout is not None:
        parse_seconds(str(lock_timeout), "--lock-timeout")
    if stale_lock_age is not None:
        parse_seconds(str(stale_lock_age), "--stale-lock-age")

    def as_str(text: str, _what: str) -> str | None:
        return text or None

    return Settings(
        enabled=_pick(None, env, ENV_ENABLED, config, "gitsafe.enabled", parse_bool, True),
        excludes=Setting(tuple(patterns), "+".join(sources) or "default"),
        report=_pick(report, env, ENV_REPORT, config, "gitsafe.report", as_str, None),
        lock_timeout=_pick(
            lock_timeout,
            env,
            ENV_LOCK_TIMEOUT,
            config,
            "gitsafe.lockTimeout",
            parse_seconds,
            DEFAULT_LOCK_TIMEOUT,
        ),
        stale_lock_age=_pick(
            stale_lock_age,
            env,
            ENV_STALE_LOCK_AGE,
            config,
            "gitsafe.staleLockAge",
            parse_seconds,
            DEFAULT_STALE_LOCK_AGE,
        ),
        backup=_pick(backup, env, ENV_BACKUP, config, "gitsafe.backup", parse_bool, True),
        backup_max_file_size=_pick(
            None,
            env,
            ENV_BACKUP_MAX_FILE_SIZE,
            config,
            "gitsafe.backupMaxFileSize",
            parse_size,
            DEFAULT_BACKUP_MAX_FILE_SIZE,
        ),
        backup_keep=_pick(
            None,
            env,
            ENV_BACKUP_KEEP,
            config,
            "gitsafe.backupKeep",
            parse_count,
            DEFAULT_BACKUP_KEEP,
        ),
        backup_keep_days=_pick(
            None,
            env,
            ENV_BACKUP_KEEP_DAYS,
            config,
            "gitsafe.backupKeepDays",
            parse_seconds,
            DEFAULT_BACKUP_KEEP_DAYS,
        ),
    )
