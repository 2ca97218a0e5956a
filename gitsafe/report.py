"""The report (the JSON "sentinel" other tools read) and its atomic write."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gitsafe._version import __version__

SCHEMA = "gitsafe.report/1"

OUTCOMES_PULL = ("up-to-date", "fast-forwarded", "healed", "refused", "failed", "disabled")
OUTCOMES_DOCTOR = ("up-to-date", "would-fast-forward", "would-heal", "refused", "failed")

_SCP_LIKE = re.compile(r"^(?P<user>[^@/]+)@(?P<host>[^:/]+):(?P<path>.*)$")


def redact_url(url: str | None) -> str | None:
    """A remote URL safe to print: passwords and tokens in the user part become ``***``, and so
    do the values of its query string and its fragment.

    ``https://token@host`` carries a secret in the user name, so for http(s) any user info is
    hidden; ssh user names (``git@host``) are not secrets and stay.  Some hosts take an access
    token in the query (``?private_token=...``, a signed ``?X-Amz-Signature=...``): the names
    stay, to say which parameter was given, the values go.
    """
    if url is None:
        return None
    scp = _SCP_LIKE.match(url)
    if scp and "://" not in url:
        # "user:password@proxy:port" (git's schemeless proxy form) looks scp-like too
        user, has_password, _ = scp["user"].partition(":")
        return f"{user}:***@{url[scp.end('user') + 1 :]}" if has_password else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            userinfo = f"{user}:***"
        elif parts.scheme in ("http", "https", "ftp", "ftps"):
            userinfo = "***"
        netloc = f"{userinfo}@{hostport}"
    elif not parts.query and not parts.fragment:
        return url
    query = "&".join(_redact_parameter(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, "***" if parts.fragment else ""))


def _redact_parameter(parameter: str) -> str:
    name, has_value, _ = parameter.partition("=")
    return f"{name}=***" if has_value else ("***" if parameter else "")


def redact_webhook(url: str | None) -> str | None:
    """``scheme://host[:port]/***``: webhook URLs (Slack, Telegram, ...) keep their token in the
    path or query, and user info is a credential, so only where it goes is shown."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    hostport = parts.netloc.rpartition("@")[2]
    if not parts.scheme or not hostport:
        return "***"
    secret = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{hostport}/{'***' if secret else ''}"


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def redact_command(command: str | None) -> str | None:
    """A command line with every URL in it redacted like a webhook (tokens live there)."""
    if command is None:
        return None
    return _URL_IN_TEXT.sub(lambda m: redact_webhook(m.group()) or "***", command)


@dataclass
class Report:
    """What a pull or doctor did or would do; ``as_json`` is the documented report object."""

    command: str
    outcome: str = "failed"
    exit_code: int = 1
    repo: str | None = None
    remote: dict[str, str | None] = field(default_factory=lambda: {"name": None, "url": None})
    branch: str | None = None
    head_before: str | None = None
    head_after: str | None = None
    target: str | None = None
    started_at: str = ""
    duration_ms: int = 0
    plan: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    report_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    backup: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    fetch: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """The report a previous run wrote (fields this version does not know are dropped)."""
        known = {f for f in cls.__dataclass_fields__ if f in data}
        return cls(**{name: data[name] for name in known})

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "tool_version": __version__,
            "command": self.command,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "repo": self.repo,
            "remote": self.remote,
            "branch": self.branch,
            "head_before": self.head_before,
            "head_after": self.head_after,
            "target": self.target,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "plan": self.plan,
            "error": self.error,
            "settings": self.settings,
            "report_path": self.report_path,
            "warnings": self.warnings,
            "backup": self.backup,
            "alerts": self.alerts,
            "metrics": self.metrics,
            "fetch": self.fetch,
        }

    def to_json_text(self) -> str:
        import json  # here: a doctor that prints for people never needs it

        # ASCII escapes keep non-UTF-8 file names (surrogate escapes) valid JSON everywhere.
        return json.dumps(self.as_json(), indent=2, ensure_ascii=True) + "\n"


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory, fsync and rename.

    The rename replaces a symlink at ``path`` rather than writing through it.
    """
    import tempfile  # here: a doctor that writes no report never needs it

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gitsafe-report-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
