"""Alerts: when a pull heals, refuses or fails, run a command and POST to a webhook.

Alerting is best effort by design: it runs under a timeout, never raises, never changes the
pull's exit code, and records its own result (and a warning when it failed) in the report.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from gitsafe._version import __version__
from gitsafe.errors import GitsafeError
from gitsafe.report import Report, redact_command, redact_webhook, write_atomic
from gitsafe.settings import Alerting, resolve_alerting

# Up-to-date and fast-forwarded pulls are the normal case and stay silent.  A disabled pull
# (kill-switch) alerts only when its plain `git pull` failed.
ALERT_OUTCOMES = ("healed", "refused", "failed")

_OUTPUT_LIMIT = 4000  # characters of command output / response body kept in the report
_SUMMARY_LIMIT = 1000


def wanted(report: Report) -> bool:
    if report.command != "pull":
        return False  # doctor changes nothing; it never alerts
    return report.outcome in ALERT_OUTCOMES or (
        report.outcome == "disabled" and report.exit_code != 0
    )


def summary(report: Report) -> str:
    """One line a human understands at a glance: host, repository, outcome and what happened."""
    where = report.repo or "(no work tree)"
    head = f"gitsafe on {socket.gethostname()}: {where}"
    branch = f"{report.remote.get('name') or '?'}/{report.branch}" if report.branch else None
    if report.outcome == "healed":
        plan = report.plan or {}
        counts = [
            f"{len(plan.get('restore', []))} restored",
            f"{len(plan.get('remove', []))} removed",
            f"{len(plan.get('keep', []))} kept",
        ]
        dropped = plan.get("drop_commits_total", 0)
        if dropped:
            counts.append(f"{dropped} local commit(s) dropped")
        moved = report.head_before != report.target
        was = f" (was {_short(report.head_before)})" if moved else ""
        text = f"{head}: healed, now at {branch} {_short(report.target)}{was}; {', '.join(counts)}"
        saved = report.backup or {}
        if saved.get("id"):
            text += f"; backup {saved['id']} (gitsafe restore {saved['id']} --into DIR)"
    else:
        message = (report.error or {}).get("message", "")
        what = "plain git pull failed" if report.outcome == "disabled" else f"pull {report.outcome}"
        text = f"{head}: {what}" + (f" ({branch})" if branch else "") + f": {message}"
    text = " ".join(text.split())  # one line, whatever the error message held
    return text if len(text) <= _SUMMARY_LIMIT else text[: _SUMMARY_LIMIT - 1] + "…"


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "?"


def fallback(path: str | os.PathLike[str], env: Mapping[str, str] | None, **flags: Any) -> Alerting:
    """Alert settings for a pull that failed before its settings were resolved.

    The repository's config is read only if the checkout opens (which refuses foreign-owned
    repositories: a config from someone else must never choose a command to run).
    """
    from gitsafe.repository import open_checkout

    config = None
    with contextlib.suppress(GitsafeError, OSError):
        config = open_checkout(os.fspath(path)).repo.config
    try:
        return resolve_alerting(config, env, **flags)
    except GitsafeError:
        # A bad alert setting in git config: still honour what the flags and environment say.
        return resolve_alerting(None, env, **flags)


def send(report: Report, alerting: Alerting) -> None:
    """Run the configured alerts for a finished pull and record their results in ``report``."""
    command, webhook = alerting.alert_command.value, alerting.webhook.value
    if not wanted(report) or not (command or webhook):
        return
    if report.report_path:
        # So that $GITSAFE_REPORT (and `gitsafe report`) already shows this run to the command;
        # the final write, with the alert results, follows.  A failure here is reported then.
        with contextlib.suppress(OSError):
            write_atomic(report.report_path, report.to_json_text())
    payload = report.to_json_text()
    line = summary(report)
    timeout = alerting.alert_timeout.value
    try:
        if command:
            _record(report, run_command(command, payload, _environment(report, line), timeout))
        if webhook:
            body = payload if alerting.webhook_format.value == "json" else _slack(line)
            _record(report, post_webhook(webhook, body, timeout))
    except KeyboardInterrupt:
        # A second Ctrl-C while alerting: stop alerting, but still save the report.
        report.warnings.append("alerting interrupted")


def _record(report: Report, result: dict[str, Any]) -> None:
    report.alerts.append(result)
    if not result["ok"]:
        report.warnings.append(
            f"alert {result['kind']} {result['target']} failed: {result['error']}"
        )


def _environment(report: Report, line: str) -> dict[str, str]:
    return {
        **os.environ,
        "GITSAFE_OUTCOME": report.outcome,
        "GITSAFE_EXIT_CODE": str(report.exit_code),
        "GITSAFE_REPORT": report.report_path or "",
        "GITSAFE_REPO": report.repo or "",
        "GITSAFE_BRANCH": report.branch or "",
        "GITSAFE_SUMMARY": line,
    }


def _slack(line: str) -> str:
    # Slack treats &, < and > as control characters in message text.
    text = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return json.dumps({"text": text}) + "\n"


def _result(kind: str, target: str, t0: float, **values: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "kind": kind,
        "target": target,
        "ok": False,
        "exit_code": None,
        "http_status": None,
        "duration_ms": int((time.monotonic() - t0) * 1000),
        "error": None,
        "output": None,
    }
    result.update(values)
    return result


def _tail(data: bytes) -> str | None:
    text = data.decode("utf-8", "replace")
    if not text:
        return None
    return text if len(text) <= _OUTPUT_LIMIT else "…" + text[-_OUTPUT_LIMIT:]


def run_command(
    command: str, payload: str, env: Mapping[str, str], timeout: float
) -> dict[str, Any]:
    """``/bin/sh -c COMMAND`` with the report on stdin, killed (its whole process group) at the
    timeout.  Output goes to a temporary file, not a pipe, so a background child that keeps the
    pipe open cannot hold the pull past the timeout."""
    target = redact_command(command) or ""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # its own process group, killed whole at the timeout
            )
        except OSError as e:
            return _result("command", target, t0, error=f"could not start /bin/sh: {e}")
        error = None
        try:
            proc.communicate(payload.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout:g} s; killed"
        finally:
            if proc.returncode is None:
                _kill_group(proc)
        code = proc.returncode
        if error is None and code != 0:
            error = f"exited {code}" if code >= 0 else f"killed by signal {-code}"
        out.seek(0)
        output = _tail(out.read())
    return _result(
        "command",
        target,
        t0,
        ok=error is None,
        exit_code=code if code >= 0 else None,
        error=error,
        output=output,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would be replayed as a GET, or sent to another host: neither."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _without_userinfo(url: str, headers: dict[str, str]) -> str:
    """``https://user:password@host/...`` as curl reads it: Basic auth, not part of the host."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url
    pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    hostport = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport))


def post_webhook(url: str, body: str, timeout: float) -> dict[str, Any]:
    """POST ``body`` as JSON; proxies come from the environment (https_proxy, no_proxy) and
    https certificates are verified, both urllib's defaults."""
    target = redact_webhook(url) or ""
    t0 = time.monotonic()
    headers = {"Content-Type": "application/json", "User-Agent": f"gitsafe/{__version__}"}
    request = urllib.request.Request(
        _without_userinfo(url, headers), data=body.encode(), method="POST", headers=headers
    )
    done: dict[str, Any] = {}

    def attempt() -> None:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=timeout) as response:
                done["status"] = response.status
                response.read(_OUTPUT_LIMIT)
        except urllib.error.HTTPError as e:
            done["status"] = e.code
            with contextlib.suppress(OSError):
                done["output"] = _tail(e.read(_OUTPUT_LIMIT))
            e.close()
        except urllib.error.URLError as e:
            done["error"] = str(e.reason)
        except Exception as e:  # http.client and socket errors of every kind
            done["error"] = str(e) or type(e).__name__

    # The socket timeout bounds each operation, not the whole exchange; a thread bounds the
    # total.  One left behind dies at its own socket timeout.
    worker = threading.Thread(target=attempt, name="gitsafe-webhook", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return _result("webhook", target, t0, error=f"timed out after {timeout:g} s")
    status = done.get("status")
    error = done.get("error")
    if error is not None:
        # Exceptions may quote the URL, or only its path or query: token and all.
        parts = urllib.parse.urlsplit(url)
        for secret in (url, parts.path, parts.query, parts.password or ""):
            if len(secret) > 1:
                error = error.replace(secret, "***")
    if error is None and status is not None and not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    if error is not None and "timed out" in error:
        error = f"timed out after {timeout:g} s"
    return _result(
        "webhook",
        target,
        t0,
        ok=error is None,
        http_status=status,
        error=error,
        output=done.get("output"),
    )
