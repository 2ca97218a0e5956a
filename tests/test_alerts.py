"""Alerts run for real: a shell command, and webhooks POSTed to an HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gitfixtures import Origin, git, write

import gitsafe
from gitsafe.report import redact_command, redact_webhook

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())

Received = list[dict[str, Any]]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours proxy variables; the loopback servers must be reached directly.
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


@contextmanager
def http_server(
    respond: Callable[[BaseHTTPRequestHandler], None] | None = None,
) -> Iterator[tuple[str, Received]]:
    """A real HTTP server on a free loopback port; yields its base URL and the requests."""
    received: Received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if respond is not None:
                respond(self)
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self) -> None:
            received.append({"path": self.path, "headers": dict(self.headers), "body": b""})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def dirty(deploy: Path) -> None:
    write(deploy, "src/config.py", "DEBUG = True\n")
    write(deploy, "scratch.txt")


def validate(report: gitsafe.Report) -> dict[str, Any]:
    data = report.as_json()
    jsonschema.validate(data, SCHEMA)
    saved = json.loads(Path(str(report.report_path)).read_text())
    jsonschema.validate(saved, SCHEMA)
    assert saved == data
    return data


def recorder(tmp_path: Path) -> str:
    """A command that saves its stdin, environment and the sentinel it can see."""
    script = tmp_path / "alert.sh"
    script.write_text(
        f'cat > "{tmp_path}/stdin.json"\n'
        f'env | grep ^GITSAFE_ | sort > "{tmp_path}/env.txt"\n'
        f'cp "$GITSAFE_REPORT" "{tmp_path}/sentinel.json"\n'
        "echo sent\n"
    )
    return f"sh {script}"


def test_alert_command_gets_the_report_on_stdin_and_the_outcome_in_its_environment(
    deploy: Path, tmp_path: Path
) -> None:
    dirty(deploy)
    report = gitsafe.pull(deploy, alert_command=recorder(tmp_path))
    assert (report.outcome, report.exit_code) == ("healed", 0)
    data = validate(report)
    stdin = json.loads((tmp_path / "stdin.json").read_text())
    jsonschema.validate(stdin, SCHEMA)
    assert stdin["outcome"] == "healed" and stdin["alerts"] == []  # its own result comes later
    assert [i["path"] for i in stdin["plan"]["restore"]] == ["src/config.py"]
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert env["GITSAFE_OUTCOME"] == "healed"
    assert env["GITSAFE_EXIT_CODE"] == "0"
    assert env["GITSAFE_REPO"] == str(deploy)
    assert env["GITSAFE_REPORT"] == str(deploy / ".git/gitsafe/last-report.json")
    assert env["GITSAFE_BRANCH"] == "main"
    assert "healed" in env["GITSAFE_SUMMARY"] and "1 restored, 1 removed" in env["GITSAFE_SUMMARY"]
    # The file at $GITSAFE_REPORT already describes this run while the command runs.
    assert json.loads((tmp_path / "sentinel.json").read_text())["started_at"] == report.started_at
    [alert] = data["alerts"]
    assert alert["kind"] == "command" and alert["ok"] and alert["exit_code"] == 0
    assert alert["output"] == "sent\n" and alert["error"] is None
    assert report.warnings == []


@pytest.mark.parametrize(
    ("setup", "outcome", "alerted"),
    [
        (lambda origin, deploy: None, "up-to-date", False),
        (
            lambda origin, deploy: (write(origin.work, "new.txt"), origin.push()),
            "fast-forwarded",
            False,
        ),
        (lambda origin, deploy: dirty(deploy), "healed", True),
        (lambda origin, deploy: git(deploy, "config", "core.ignoreCase", "true"), "refused", True),
        (
            lambda origin, deploy: git(deploy, "remote", "set-url", "origin", "/nowhere"),
            "failed",
            True,
        ),
    ],
    ids=["up-to-date", "fast-forwarded", "healed", "refused", "failed"],
)
def test_only_heals_refusals_and_failures_alert(
    origin: Origin,
    deploy: Path,
    tmp_path: Path,
    setup: Callable[[Origin, Path], object],
    outcome: str,
    alerted: bool,
) -> None:
    setup(origin, deploy)
    marker = tmp_path / "alerted"
    report = gitsafe.pull(deploy, alert_command=f'echo "$GITSAFE_OUTCOME" > {marker}')
    assert report.outcome == outcome
    assert marker.exists() == alerted
    if alerted:
        assert marker.read_text() == f"{outcome}\n"
    assert len(report.alerts) == int(alerted)
    validate(report)


def test_doctor_never_alerts(deploy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirty(deploy)
    marker = tmp_path / "alerted"
    monkeypatch.setenv("GITSAFE_ALERT_COMMAND", f"touch {marker}")
    report = gitsafe.doctor(deploy)
    assert report.outcome == "would-heal" and report.alerts == []
    assert not marker.exists()
    assert report.settings["alert_command"]["source"] == "env:GITSAFE_ALERT_COMMAND"


def test_kill_switch_alerts_only_when_plain_git_pull_fails(
    origin: Origin, deploy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITSAFE_ENABLED", "0")
    marker = tmp_path / "alerted"
    command = f'echo "$GITSAFE_OUTCOME $GITSAFE_EXIT_CODE" > {marker}'
    assert gitsafe.pull(deploy, "origin", "main", alert_command=command).exit_code == 0
    assert not marker.exists()
    write(origin.work, "src/config.py", "upstream\n")
    origin.push()
    write(deploy, "src/config.py", "local\n")  # plain git pull refuses to overwrite it
    report = gitsafe.pull(deploy, "origin", "main", alert_command=command)
    assert (report.outcome, report.exit_code) == ("disabled", 1)
    assert marker.read_text() == "disabled 1\n"


def test_a_failing_alert_command_is_a_warning_and_never_changes_the_exit_code(
    deploy: Path,
) -> None:
    dirty(deploy)
    report = gitsafe.pull(deploy, alert_command="echo 'no mail server' >&2; exit 3")
    assert (report.outcome, report.exit_code) == ("healed", 0)
    [alert] = validate(report)["alerts"]
    assert (alert["ok"], alert["exit_code"], alert["error"]) == (False, 3, "exited 3")
    assert alert["output"] == "no mail server\n"
    assert report.warnings == ["alert command echo 'no mail server' >&2; exit 3 failed: exited 3"]


def test_a_hung_alert_command_is_killed_with_its_process_group_at_the_timeout(
    deploy: Path, tmp_path: Path
) -> None:
    dirty(deploy)
    pidfile = tmp_path / "child.pid"
    t0 = time.monotonic()
    report = gitsafe.pull(
        deploy,
        alert_command=f"sleep 60 & echo $! > {pidfile}; echo started; wait",
        alert_timeout=0.5,
    )
    assert time.monotonic() - t0 < 10
    assert (report.outcome, report.exit_code) == ("healed", 0)
    [alert] = validate(report)["alerts"]
    assert (alert["ok"], alert["exit_code"]) == (False, None)
    assert alert["error"] == "timed out after 0.5 s; killed"
    assert alert["output"] == "started\n"
    assert 500 <= alert["duration_ms"] < 10_000
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the command's background child survived the timeout"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_pull_that_fails_before_it_finds_a_repository_still_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "alerted"
    monkeypatch.setenv("GITSAFE_ALERT_COMMAND", f'echo "$GITSAFE_OUTCOME" > {marker}')
    (tmp_path / "plain").mkdir()
    report = gitsafe.pull(tmp_path / "plain")
    assert (report.outcome, report.exit_code, report.error["kind"]) == (
        "failed",
        2,
        "not-a-work-tree",
    )
    assert marker.read_text() == "failed\n"
    assert report.settings["alert_command"]["source"] == "env:GITSAFE_ALERT_COMMAND"
    jsonschema.validate(report.as_json(), SCHEMA)


def test_webhook_posts_the_report_json(deploy: Path) -> None:
    dirty(deploy)
    with http_server() as (base, received):
        report = gitsafe.pull(deploy, webhook=f"{base}/hooks/T0KEN-SECRET")
    [request] = received
    assert request["path"] == "/hooks/T0KEN-SECRET"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("gitsafe/")
    posted = json.loads(request["body"])
    jsonschema.validate(posted, SCHEMA)
    assert posted["outcome"] == "healed" and posted["started_at"] == report.started_at
    [alert] = validate(report)["alerts"]
    assert (alert["kind"], alert["ok"], alert["http_status"]) == ("webhook", True, 200)
    assert alert["target"] == f"{base}/***"
    assert "T0KEN-SECRET" not in Path(str(report.report_path)).read_text()


def test_slack_format_posts_a_one_line_text(origin: Origin, deploy: Path) -> None:
    git(deploy, "config", "gitsafe.webhookFormat", "slack")
    git(deploy, "remote", "set-url", "origin", str(origin.bare.parent / "gone.git"))
    with http_server() as (base, received):
        git(deploy, "config", "gitsafe.webhook", f"{base}/services/T1/B2/XYZ")
        report = gitsafe.pull(deploy)
    assert report.outcome == "failed"
    [request] = received
    body = json.loads(request["body"])
    assert list(body) == ["text"]
    text = body["text"]
    assert "\n" not in text
    assert f"{deploy}: pull failed (origin/main):" in text
    assert report.settings["webhook"] == {
        "value": f"{base}/***",
        "source": "git-config:gitsafe.webhook",
    }
    assert report.settings["webhook_format"]["value"] == "slack"
    assert report.alerts[0]["ok"]


def test_a_hung_webhook_is_abandoned_at_the_timeout_and_the_exit_code_stands(
    deploy: Path,
) -> None:
    dirty(deploy)
    release = threading.Event()
    try:
        with http_server(lambda handler: release.wait(30)) as (base, received):
            t0 = time.monotonic()
            report = gitsafe.pull(deploy, webhook=f"{base}/hook", alert_timeout=0.5)
            elapsed = time.monotonic() - t0
            release.set()
    finally:
        release.set()
    assert elapsed < 10
    assert len(received) == 1
    assert (report.outcome, report.exit_code) == ("healed", 0)
    [alert] = validate(report)["alerts"]
    assert (alert["ok"], alert["http_status"]) == (False, None)
    assert alert["error"] == "timed out after 0.5 s"
    assert report.warnings == [f"alert webhook {base}/*** failed: timed out after 0.5 s"]


def _status(code: int, body: bytes = b"", location: str | None = None) -> Callable[..., None]:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        if location:
            handler.send_header("Location", location)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def test_a_webhook_answering_500_is_recorded_with_its_body(deploy: Path) -> None:
    dirty(deploy)
    with http_server(_status(500, b"invalid_payload")) as (base, _):
        report = gitsafe.pull(deploy, webhook=f"{base}/hook")
    assert (report.outcome, report.exit_code) == ("healed", 0)
    [alert] = validate(report)["alerts"]
    assert (alert["ok"], alert["http_status"], alert["error"]) == (False, 500, "HTTP 500")
    assert alert["output"] == "invalid_payload"
    assert report.warnings == [f"alert webhook {base}/*** failed: HTTP 500"]


def test_a_redirected_webhook_is_not_followed(deploy: Path) -> None:
    dirty(deploy)
    with (
        http_server() as (elsewhere, seen_elsewhere),
        http_server(_status(302, location=f"{elsewhere}/stolen")) as (base, received),
    ):
        report = gitsafe.pull(deploy, webhook=f"{base}/hook")
    assert len(received) == 1 and seen_elsewhere == []
    assert report.alerts[0]["http_status"] == 302
    assert report.alerts[0]["error"] == "HTTP 302 (redirects are not followed)"


def test_an_unreachable_webhook_is_a_warning(deploy: Path) -> None:
    dirty(deploy)
    with http_server() as (base, _):
        pass  # the port is now closed
    report = gitsafe.pull(deploy, webhook=f"{base}/hook")
    assert (report.outcome, report.exit_code) == ("healed", 0)
    [alert] = validate(report)["alerts"]
    assert not alert["ok"] and "refused" in alert["error"].lower()


def test_command_then_webhook_both_run_and_both_are_recorded(deploy: Path, tmp_path: Path) -> None:
    dirty(deploy)
    with http_server() as (base, received):
        report = gitsafe.pull(deploy, alert_command="true", webhook=f"{base}/hook")
    assert [a["kind"] for a in report.alerts] == ["command", "webhook"]
    assert all(a["ok"] for a in report.alerts) and len(received) == 1


def test_cli_flags_alert_and_never_print_the_webhook_secret(deploy: Path) -> None:
    dirty(deploy)
    with http_server() as (base, received):
        secret_url = base.replace("http://", "http://bot:pa55word@") + "/bot123:SECRET/send?x=1"
        proc = subprocess.run(
            [sys.executable, "-m", "gitsafe", "pull", "-C", str(deploy), "--json",
             "--webhook", secret_url, "--webhook-format", "slack",
             "--alert-command", f"echo {secret_url} >/dev/null; exit 4"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [request] = received
    assert request["headers"]["Authorization"] == "Basic Ym90OnBhNTV3b3Jk"  # bot:pa55word
    assert request["path"] == "/bot123:SECRET/send?x=1"
    output = proc.stdout + proc.stderr + (deploy / ".git/gitsafe/last-report.json").read_text()
    for secret in ("SECRET", "pa55word", "bot123"):
        assert secret not in output
    data = json.loads(proc.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["settings"]["alert_command"]["value"] == f"echo {base}/*** >/dev/null; exit 4"
    assert f"alert webhook {base}/***: sent (HTTP 200)" in proc.stderr
    assert "alert command" in proc.stderr and "failed: exited 4" in proc.stderr


def test_alert_settings_precedence_flag_env_config(
    deploy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirty(deploy)
    git(deploy, "config", "gitsafe.alertCommand", f"echo config > {tmp_path}/who")
    git(deploy, "config", "gitsafe.alertTimeout", "7")
    report = gitsafe.pull(deploy)
    assert (tmp_path / "who").read_text() == "config\n"
    assert report.settings["alert_timeout"] == {
        "value": 7.0,
        "source": "git-config:gitsafe.alertTimeout",
    }
    dirty(deploy)
    monkeypatch.setenv("GITSAFE_ALERT_COMMAND", f"echo env > {tmp_path}/who")
    gitsafe.pull(deploy)
    assert (tmp_path / "who").read_text() == "env\n"
    dirty(deploy)
    report = gitsafe.pull(deploy, alert_command=f"echo flag > {tmp_path}/who")
    assert (tmp_path / "who").read_text() == "flag\n"
    assert report.settings["alert_command"]["source"] == "flag"
    dirty(deploy)
    monkeypatch.setenv("GITSAFE_ALERT_COMMAND", "")  # empty switches the configured one off
    report = gitsafe.pull(deploy)
    assert report.alerts == [] and report.settings["alert_command"]["value"] is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("gitsafe.webhook", "ftp://example.invalid/SECRET"),
        ("gitsafe.webhook", "not a url"),
        ("gitsafe.webhookFormat", "teams"),
        ("gitsafe.alertTimeout", "0"),
        ("gitsafe.alertTimeout", "soon"),
    ],
)
def test_bad_alert_settings_are_configuration_errors_and_touch_nothing(
    deploy: Path, name: str, value: str
) -> None:
    dirty(deploy)
    git(deploy, "config", name, value)
    report = gitsafe.pull(deploy)
    assert (report.exit_code, report.error["kind"]) == (2, "usage")
    assert name in report.error["message"]
    assert "SECRET" not in report.error["message"]
    assert (deploy / "scratch.txt").exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/***"),
        ("https://api.telegram.org/bot12:AA/sendMessage?chat_id=1", "https://api.telegram.org/***"),
        ("https://user:pw@example.com:8443/x", "https://example.com:8443/***"),
        ("https://token@example.com/", "https://example.com/"),
        ("http://[::1]:8080/hook", "http://[::1]:8080/***"),
        ("https://example.com?token=1", "https://example.com/***"),
        ("http://example.com", "http://example.com/"),
    ],
)
def test_webhook_urls_are_shown_without_path_query_or_credentials(url: str, shown: str) -> None:
    assert redact_webhook(url) == shown


def test_urls_inside_an_alert_command_are_redacted() -> None:
    command = "curl -d @- 'https://hooks.example.com/T/SECRET' && mail -s x ops@example.com"
    assert redact_command(command) == (
        "curl -d @- 'https://hooks.example.com/***' && mail -s x ops@example.com"
    )


def test_a_webhook_error_that_quotes_only_the_url_path_never_shows_the_token(
    deploy: Path,
) -> None:
    dirty(deploy)
    report = gitsafe.pull(deploy, webhook="http://127.0.0.1:9/services/T0/B0/SECRETTOKEN x")
    assert (report.outcome, report.exit_code) == ("healed", 0)
    [alert] = validate(report)["alerts"]
    assert alert["ok"] is False and alert["error"]
    assert "SECRETTOKEN" not in report.to_json_text()
