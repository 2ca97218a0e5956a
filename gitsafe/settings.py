"""Settings with one precedence: flag > ``GITSAFE_*`` variable > git config ``gitsafe.*`` > default.

Every resolved value remembers where it came from; the report records it, so a surprising value
can be traced to the layer that set it.  Keep-patterns are the exception: they accumulate from
every layer, because each layer names things someone asked to keep.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gitsafe.errors import UsageError
from gitsafe.records import record

if TYPE_CHECKING:  # the CLI imports this module for --help; libgit2 loads only when used
    import pygit2

T = TypeVar("T")

DEFAULT_LOCK_TIMEOUT = 30.0
DEFAULT_STALE_LOCK_AGE = 600.0
DEFAULT_BACKUP_MAX_FILE_SIZE = 100 * 1024 * 1024
DEFAULT_BACKUP_KEEP = 20
DEFAULT_BACKUP_KEEP_DAYS = 30.0
DEFAULT_ALERT_TIMEOUT = 10.0
WEBHOOK_FORMATS = ("json", "slack")

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
ENV_ALERT_COMMAND = "GITSAFE_ALERT_COMMAND"
ENV_WEBHOOK = "GITSAFE_WEBHOOK"
ENV_WEBHOOK_FORMAT = "GITSAFE_WEBHOOK_FORMAT"
ENV_ALERT_TIMEOUT = "GITSAFE_ALERT_TIMEOUT"
ENV_METRICS_FILE = "GITSAFE_METRICS_FILE"
ENV_KNOWN_HOSTS = "GITSAFE_KNOWN_HOSTS"
ENV_ACCEPT_NEW_HOST_KEY = "GITSAFE_ACCEPT_NEW_HOST_KEY"
ENV_RETRIES = "GITSAFE_RETRIES"
ENV_RETRY_DELAY = "GITSAFE_RETRY_DELAY"
ENV_TIMEOUT = "GITSAFE_TIMEOUT"
ENV_DEPTH = "GITSAFE_DEPTH"
ENV_SSH_KEY = "GITSAFE_SSH_KEY"
DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 1.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# The secrets themselves are only ever read from the environment; git config may rename the
# variables (a committed config must not hold a password).
DEFAULT_SSH_PASSPHRASE_ENV = "GITSAFE_SSH_PASSPHRASE"
DEFAULT_HTTP_USER_ENV = "GITSAFE_HTTP_USER"
DEFAULT_HTTP_PASSWORD_ENV = "GITSAFE_HTTP_PASSWORD"

_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}


@record(frozen=True)
class Setting(Generic[T]):
    value: T
    source: str  # "flag", "env:NAME", "git-config:NAME", "default"

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source}


@record(frozen=True)
class Alerting:
    """Where a pull reports itself when it heals, refuses or fails, and where its metrics go."""

    alert_command: Setting[str | None]
    webhook: Setting[str | None]
    webhook_format: Setting[str]
    alert_timeout: Setting[float]
    metrics_file: Setting[str | None]

    def as_json(self) -> dict[str, Any]:
        # Webhook URLs carry their token in the path; commands may embed such URLs.
        from gitsafe.report import redact_command, redact_webhook

        return {
            "alert_command": {
                "value": redact_command(self.alert_command.value),
                "source": self.alert_command.source,
            },
            "webhook": {
                "value": redact_webhook(self.webhook.value),
                "source": self.webhook.source,
            },
            "webhook_format": self.webhook_format.as_json(),
            "alert_timeout": self.alert_timeout.as_json(),
            "metrics_file": self.metrics_file.as_json(),
        }


@record(frozen=True)
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
    alerting: Alerting
    network: Network

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
            **self.alerting.as_json(),
            **self.network.as_json(),
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
        if not text.isascii() or "_" in text:  # float() reads "٣" and "1_0" too
            raise ValueError(text)
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
    # ASCII only: isdigit() alone takes other scripts' digits and superscripts, as git never would
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
        raise UsageError(f"{what}: expected a size such as 100m, got {text!r}")
    return int(digits) * factor


def parse_count(text: str, what: str) -> int:
    digits = text.strip()
    # ASCII digits, as for sizes; int() refuses 4,300 digits and more
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
        raise UsageError(f"{what}: expected a non-negative whole number, got {text!r}")
    return int(digits)


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
    alert_command: str | None = None,
    webhook: str | None = None,
    webhook_format: str | None = None,
    alert_timeout: float | None = None,
    metrics_file: str | None = None,
    retries: int | None = None,
    depth: int | None = None,
    accept_new_host_key: bool | None = None,
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
        alerting=resolve_alerting(
            config,
            env,
            alert_command=alert_command,
            webhook=webhook,
            webhook_format=webhook_format,
            alert_timeout=alert_timeout,
            metrics_file=metrics_file,
        ),
        network=resolve_network(
            config, env, retries=retries, depth=depth, accept_new_host_key=accept_new_host_key
        ),
    )


def parse_webhook(text: str, what: str) -> str | None:
    """An http(s) URL, or None for "" (an empty value switches a configured webhook off)."""
    from urllib.parse import urlsplit

    url = text.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        # The value may hold a token: name the setting, never echo it.
        raise UsageError(f"{what}: expected an http:// or https:// URL")
    return url


def parse_webhook_format(text: str, what: str) -> str:
    lowered = text.strip().lower()
    if lowered not in WEBHOOK_FORMATS:
        raise UsageError(f"{what}: expected one of {', '.join(WEBHOOK_FORMATS)}, got {text!r}")
    return lowered


def _optional_text(text: str, _what: str) -> str | None:
    return text or None


def report_setting(
    config: pygit2.Config | None, env: Mapping[str, str] | None = None
) -> Setting[str | None]:
    """The report path alone (``gitsafe report`` needs nothing else)."""
    env = os.environ if env is None else env
    return _pick(None, env, ENV_REPORT, config, "gitsafe.report", _optional_text, None)


def resolve_alerting(
    config: pygit2.Config | None,
    env: Mapping[str, str] | None = None,
    *,
    alert_command: str | None = None,
    webhook: str | None = None,
    webhook_format: str | None = None,
    alert_timeout: float | None = None,
    metrics_file: str | None = None,
) -> Alerting:
    """The alert and metrics settings alone, so a pull that failed before its other settings
    were resolved (not a work tree, a bad setting elsewhere) can still raise its alert."""
    env = os.environ if env is None else env

    def pick(
        flag: str | float | None,
        name: str,
        env_name: str,
        config_name: str,
        parse: Callable[[str, str], T],
        default: T,
    ) -> Setting[T]:
        if flag is not None:  # "" on the command line switches the setting off, like the env
            return Setting(parse(str(flag), name), "flag")
        return _pick(None, env, env_name, config, config_name, parse, default)

    return Alerting(
        alert_command=pick(
            alert_command,
            "--alert-command",
            ENV_ALERT_COMMAND,
            "gitsafe.alertCommand",
            _optional_text,
            None,
        ),
        webhook=pick(webhook, "--webhook", ENV_WEBHOOK, "gitsafe.webhook", parse_webhook, None),
        webhook_format=pick(
            webhook_format,
            "--webhook-format",
            ENV_WEBHOOK_FORMAT,
            "gitsafe.webhookFormat",
            parse_webhook_format,
            "json",
        ),
        alert_timeout=pick(
            alert_timeout,
            "--alert-timeout",
            ENV_ALERT_TIMEOUT,
            "gitsafe.alertTimeout",
            _parse_timeout,
            DEFAULT_ALERT_TIMEOUT,
        ),
        metrics_file=pick(
            metrics_file,
            "--metrics-file",
            ENV_METRICS_FILE,
            "gitsafe.metricsFile",
            _optional_text,
            None,
        ),
    )


def _parse_timeout(text: str, what: str) -> float:
    value = parse_seconds(text, what)
    if value == 0:  # no timeout would let a hung alert hold the deploy forever
        raise UsageError(f"{what}: expected a positive number of seconds, got {text!r}")
    return value


@record(frozen=True)
class Network:
    """How the fetch reaches the remote: host keys, credentials' sources, retries, depth."""

    known_hosts: Setting[str]
    accept_new_host_key: Setting[bool]
    retries: Setting[int]
    retry_delay: Setting[float]
    timeout: Setting[float]
    depth: Setting[int]
    ssh_key: Setting[str | None]
    ssh_passphrase_env: Setting[str]
    http_user_env: Setting[str]
    http_password_env: Setting[str]

    def as_json(self) -> dict[str, Any]:
        # Paths and variable names only: no setting ever holds a secret.
        return {
            "known_hosts": self.known_hosts.as_json(),
            "accept_new_host_key": self.accept_new_host_key.as_json(),
            "retries": self.retries.as_json(),
            "retry_delay": self.retry_delay.as_json(),
            "timeout": self.timeout.as_json(),
            "depth": self.depth.as_json(),
            "ssh_key": self.ssh_key.as_json(),
            "ssh_passphrase_env": self.ssh_passphrase_env.as_json(),
            "http_user_env": self.http_user_env.as_json(),
            "http_password_env": self.http_password_env.as_json(),
        }


def _parse_env_name(text: str, what: str) -> str:
    name = text.strip()
    if not name or not all(c.isalnum() or c == "_" for c in name) or name[0].isdigit():
        raise UsageError(f"{what}: expected an environment variable name, got {text!r}")
    return name


def _parse_positive_seconds(text: str, what: str) -> float:
    value = parse_seconds(text, what)
    if value == 0:  # 0 would mean "no timeout": a hung server would hold the deploy forever
        raise UsageError(f"{what}: expected a positive number of seconds, got {text!r}")
    return value


def resolve_network(
    config: pygit2.Config | None,
    env: Mapping[str, str] | None = None,
    *,
    retries: int | None = None,
    depth: int | None = None,
    accept_new_host_key: bool | None = None,
) -> Network:
    env = os.environ if env is None else env
    for value, name in ((retries, "--retries"), (depth, "--depth")):
        if value is not None and value < 0:
            raise UsageError(f"{name}: expected a non-negative whole number, got {value}")
    no_env: Mapping[str, str] = {}

    def config_only(config_name: str, default: str) -> Setting[str]:
        return _pick(None, no_env, "", config, config_name, _parse_env_name, default)

    return Network(
        known_hosts=_pick(
            None,
            env,
            ENV_KNOWN_HOSTS,
            config,
            "gitsafe.knownHostsFile",
            lambda text, _what: text,
            DEFAULT_KNOWN_HOSTS,
        ),
        accept_new_host_key=_pick(
            accept_new_host_key,
            env,
            ENV_ACCEPT_NEW_HOST_KEY,
            config,
            "gitsafe.acceptNewHostKey",
            parse_bool,
            False,
        ),
        retries=_pick(
            retries, env, ENV_RETRIES, config, "gitsafe.retries", parse_count, DEFAULT_RETRIES
        ),
        retry_delay=_pick(
            None,
            env,
            ENV_RETRY_DELAY,
            config,
            "gitsafe.retryDelay",
            parse_seconds,
            DEFAULT_RETRY_DELAY,
        ),
        timeout=_pick(
            None,
            env,
            ENV_TIMEOUT,
            config,
            "gitsafe.timeout",
            _parse_positive_seconds,
            DEFAULT_TIMEOUT,
        ),
        depth=_pick(depth, env, ENV_DEPTH, config, "gitsafe.depth", parse_count, 0),
        ssh_key=_pick(None, env, ENV_SSH_KEY, config, "gitsafe.sshKey", _optional_text, None),
        ssh_passphrase_env=config_only("gitsafe.sshPassphraseEnv", DEFAULT_SSH_PASSPHRASE_ENV),
        http_user_env=config_only("gitsafe.httpUserEnv", DEFAULT_HTTP_USER_ENV),
        http_password_env=config_only("gitsafe.httpPasswordEnv", DEFAULT_HTTP_PASSWORD_ENV),
    )
