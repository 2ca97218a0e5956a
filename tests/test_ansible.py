"""The gitsafe.deploy Ansible collection, as users run it.

The collection is built with ``ansible-galaxy collection build``, installed into a temporary
collections path, and driven by real ``ansible-playbook`` runs against one inventory whose hosts
are local connections to separate deploy bases.  Scenarios are batched into two playbook runs
(check mode, then a real run) because each ansible-playbook start costs a second or two.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from gitfixtures import Origin, copy_checkout, git, git_sequence, snapshot, write

import gitsafe

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "ansible_collections" / "gitsafe" / "deploy"
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())
BIN = Path(sys.executable).parent
KEEP = "keep-me.txt"  # a keep-pattern passed through the module's exclude option

# ansible-core ships no JSON stdout callback (the json one lives in ansible.posix, which is not on
# PyPI), so the playbook runs report through this one: every task's result per host, then the
# per-host stats, as one JSON document on stdout.
CALLBACK = """
import json
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "results"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = {}

    def _record(self, result, status):
        host = getattr(result, "host", None) or result._host
        task = getattr(result, "task", None) or result._task
        data = dict(getattr(result, "result", None) or result._result)
        data["status"] = status
        self.tasks.setdefault(task.get_name(), {})[host.get_name()] = data

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed)
        summary = {h: stats.summarize(h) for h in hosts}
        print(json.dumps({"tasks": self.tasks, "stats": summary}, default=str))
"""


def _ansible_env(base: Path, collections: Path | None = None) -> dict[str, str]:
    """Everything Ansible writes goes under ``base``; no ansible.cfg or collection leaks in."""
    cfg = base / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    (base / "callback_plugins").mkdir(exist_ok=True)
    (base / "callback_plugins" / "results.py").write_text(CALLBACK)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_HOME": str(base / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(base / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(base / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_STDOUT_CALLBACK": "results",
        "ANSIBLE_CALLBACK_PLUGINS": str(base / "callback_plugins"),
        # An editable gitsafe puts the repository on sys.path, and with it the collection's
        # source tree: only the installed artifact may be found.
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
    }
    if collections is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built as an artifact and installed the way users install it."""
    base = tmp_path_factory.mktemp("collection")
    env = _ansible_env(base)
    dist = base / "dist"
    built = _run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "build",
            str(COLLECTION),
            "--output-path",
            str(dist),
        ],
        base,
        env,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (artifact,) = dist.glob("gitsafe-deploy-*.tar.gz")
    installed = base / "installed"
    done = _run(
        [str(BIN / "ansible-galaxy"), "collection", "install", str(artifact), "-p", str(installed)],
        base,
        env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        installed / "ansible_collections/gitsafe/deploy/plugins/modules/gitsafe_pull.py"
    ).is_file()
    return installed


def _playbook(
    tmp: Path,
    collections: Path,
    inventory: dict[str, Any],
    play: list[dict[str, Any]] | str,
    *args: str,
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    run_dir = tmp / f"run-{len(list(tmp.glob('run-*')))}"
    run_dir.mkdir()
    (run_dir / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (run_dir / "play.yml").write_text(play if isinstance(play, str) else yaml.safe_dump(play))
    proc = _run(
        [str(BIN / "ansible-playbook"), "-i", "inventory.yml", "play.yml", *args],
        run_dir,
        _ansible_env(run_dir, collections),
    )
    try:
        return json.loads(proc.stdout), proc
    except json.JSONDecodeError:
        raise AssertionError(
            f"no JSON from ansible-playbook:\n{proc.stdout}\n{proc.stderr}"
        ) from None


def _results(output: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    results = output["tasks"].get(task)
    assert results is not None, f"task {task!r} not in the playbook output"
    return {host: r for host, r in results.items() if r["status"] != "skipped"}


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


class Fleet:
    """Deploy bases for one inventory, each in its own state, all cloned from one origin."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.origin = Origin(
            tmp,
            {
                "README.md": "hello\n",
                "src/config.py": "DEBUG = False\n",
                ".gitignore": ".env\n*.log\n",
            },
        )
        self.old = _head(self.origin.work)
        # Cloned before the origin moves on.
        self.dirty = self._clone("dirty")
        self.behind = self._clone("behind")
        self.broken = self._clone("broken")
        self.disabled = self._clone("disabled")
        self.nolib = self._clone("nolib")
        write(self.origin.work, "src/feature.py", "FEATURE = True\n")
        self.new = self.origin.push("feature")
        self.clean = self._clone("clean")
        git(self.behind, "fetch", "-q", "origin")  # knows the new commit, HEAD is still old
        for repo in (self.dirty, self.broken):
            write(repo, "src/config.py", "DEBUG = True  # hotfix on the box\n")
            write(repo, "scratch.txt", "left behind by a cancelled job\n")
            write(repo, "tmp/cache/blob", "x\n")
            write(repo, ".env", "SECRET=1\n")
            write(repo, KEEP, "keep\n")
            write(repo, "name-\udcff.bin", "not UTF-8 by name\n")  # the byte 0xff
        self.report = tmp / "dirty-report.json"
        # The same Python with site-packages skipped (-S): an interpreter without gitsafe.
        self.bare_python = tmp / "python-without-gitsafe"
        self.bare_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
        self.bare_python.chmod(0o755)

    def _clone(self, name: str) -> Path:
        return self.origin.clone(self.tmp / name)

    def inventory(self) -> dict[str, Any]:
        def host(repo: Path, **extra: Any) -> dict[str, Any]:
            return {"dest": str(repo), "deploy_branch": "main", **extra}

        return {
            "deploy": {
                "vars": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                },
                "hosts": {
                    "dirty": host(self.dirty, report_path=str(self.report)),
                    "clean": host(self.clean),
                    "behind": host(self.behind),
                    "broken": host(self.broken, deploy_branch="no-such-branch"),
                    "disabled": host(self.disabled, gitsafe_enabled=False),
                    "nolib": host(self.nolib, ansible_python_interpreter=str(self.bare_python)),
                },
            }
        }

    def repos(self) -> list[Path]:
        return [self.dirty, self.clean, self.behind, self.broken, self.disabled, self.nolib]


def _pull_task(name: str, **extra: Any) -> dict[str, Any]:
    args = {
        "dest": "{{ dest }}",
        "branch": "{{ deploy_branch }}",
        "exclude": [KEEP],
        "report": "{{ report_path | default(omit) }}",
        "enabled": "{{ gitsafe_enabled | default(omit) }}",
        **extra.pop("args", {}),
    }
    return {"name": name, "gitsafe.deploy.gitsafe_pull": args, **extra}


def _play(*tasks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"hosts": "deploy", "gather_facts": False, "tasks": list(tasks)}]


def _assert_schema(results: dict[str, dict[str, Any]]) -> None:
    for name, result in results.items():
        if "report" in result:
            jsonschema.validate(result["report"], SCHEMA)
            assert result["outcome"] == result["report"]["outcome"], name


def _assert_missing_library(result: dict[str, Any]) -> None:
    assert result["status"] == "failed"
    assert "Failed to import the required Python library (gitsafe)" in result["msg"]
    assert "ansible.builtin.pip" in result["msg"]


def test_galaxy_version_matches_gitsafe() -> None:
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("gitsafe", "deploy")
    assert galaxy["version"] == gitsafe.__version__


def test_check_mode_changes_no_byte_and_diff_shows_the_plan(
    tmp_path: Path, collections: Path
) -> None:
    fleet = Fleet(tmp_path)
    before = {repo: snapshot(repo, skip_git=False) for repo in fleet.repos()}
    output, proc = _playbook(
        tmp_path, collections, fleet.inventory(), _play(_pull_task("pull")), "--check", "--diff"
    )
    for repo, snap in before.items():
        assert snapshot(repo, skip_git=False) == snap, f"check mode changed {repo.name}"
    assert not fleet.report.exists(), "check mode wrote the report"
    results = _results(output, "pull")
    _assert_schema(results)

    dirty = results["dirty"]
    assert (dirty["changed"], dirty["outcome"]) == (True, "would-heal")
    assert dirty["report"]["command"] == "doctor"
    # No fetch: the plan aims at origin/main as last fetched, not at the origin's new commit.
    assert dirty["report"]["plan"]["fetched"] is False
    assert dirty["after"] == fleet.old
    before_text, after_text = dirty["diff"]["before"], dirty["diff"]["after"]
    assert "src/config.py: modified" in before_text
    assert "src/config.py: as in origin/main" in after_text
    assert "scratch.txt: untracked, removed" in before_text
    assert "tmp/: untracked directory, removed" in before_text
    assert "scratch.txt" not in after_text and "tmp/" not in after_text
    # Ansible takes only UTF-8 from a module: a non-UTF-8 name arrives as Python prints it.
    assert "name-\\xff.bin: untracked, removed" in before_text
    for kept in (".env: kept, ignored", f"{KEEP}: kept, excluded by --exclude {KEEP}"):
        assert kept in before_text and kept in after_text

    assert (results["clean"]["changed"], results["clean"]["outcome"]) == (False, "up-to-date")
    behind = results["behind"]
    assert (behind["changed"], behind["outcome"]) == (True, "would-fast-forward")
    assert (behind["before"], behind["after"]) == (fleet.old, fleet.new)
    assert results["broken"]["status"] == "failed"
    assert "no-such-branch" in results["broken"]["msg"]
    _assert_missing_library(results["nolib"])
    assert proc.returncode == 2  # some hosts failed
    stats = output["stats"]
    assert {h for h, s in stats.items() if s["failures"]} == {"broken", "nolib"}


def test_playbook_heals_dirty_hosts_and_a_failing_host_fails_alone(
    tmp_path: Path, collections: Path
) -> None:
    fleet = Fleet(tmp_path)
    expected = copy_checkout(fleet.dirty, tmp_path / "oracle")
    git_sequence(expected, "origin", "main", [KEEP])
    broken_before = snapshot(fleet.broken, skip_git=True)
    play = _play(
        _pull_task(
            "preview",
            args={"fetch_in_check_mode": True},
            check_mode=True,
            when="inventory_hostname == 'dirty'",
        ),
        _pull_task("pull", register="first"),
        _pull_task("again"),
    )
    output, proc = _playbook(tmp_path, collections, fleet.inventory(), play)
    preview, first, again = (_results(output, t) for t in ("preview", "pull", "again"))
    _assert_schema({**first, **again, "preview": preview["dirty"]})

    # fetch_in_check_mode fetched (the target is the new commit) but healed nothing.
    assert preview["dirty"]["report"]["plan"]["fetched"] is True
    assert preview["dirty"]["after"] == fleet.new
    assert first["dirty"]["report"]["plan"]["restore"] == [
        {"path": "src/config.py", "reason": "modified"}
    ]

    dirty = first["dirty"]
    assert (dirty["changed"], dirty["outcome"]) == (True, "healed")
    assert (dirty["before"], dirty["after"]) == (fleet.old, fleet.new)
    assert snapshot(fleet.dirty) == snapshot(expected), "not healed as git would"
    assert _head(fleet.dirty) == fleet.new
    backup_ref = dirty["report"]["backup"]["ref"]
    assert git(fleet.dirty, "rev-parse", "--verify", backup_ref).strip()
    assert backup_ref in dirty["msg"]
    # The report option: the file holds the last run's report, the one the task returned.
    assert json.loads(fleet.report.read_text()) == again["dirty"]["report"]
    assert again["dirty"]["report"]["report_path"] == str(fleet.report)

    assert (first["clean"]["changed"], first["clean"]["outcome"]) == (False, "up-to-date")
    behind = first["behind"]
    assert (behind["changed"], behind["outcome"]) == (True, "fast-forwarded")
    assert _head(fleet.behind) == fleet.new

    disabled = first["disabled"]
    assert (disabled["changed"], disabled["outcome"]) == (True, "disabled")
    assert disabled["report"]["settings"]["enabled"] == {
        "value": False,
        "source": "env:GITSAFE_ENABLED",
    }
    assert _head(fleet.disabled) == fleet.new

    broken = first["broken"]
    assert broken["status"] == "failed"
    assert broken["msg"] == broken["report"]["error"]["message"]
    assert "no-such-branch" in broken["msg"]
    assert broken["report"]["outcome"] == "failed"
    assert snapshot(fleet.broken, skip_git=True) == broken_before
    _assert_missing_library(first["nolib"])

    # Idempotent: the second run changes nothing anywhere.
    assert set(again) == {"dirty", "clean", "behind", "disabled"}
    for name, result in again.items():
        assert result["changed"] is False, name
    assert again["dirty"]["outcome"] == "up-to-date"
    assert again["dirty"]["report"]["backup"] is None

    assert proc.returncode == 2
    failures = {h for h, s in output["stats"].items() if s["failures"]}
    assert failures == {"broken", "nolib"}


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook on 127.0.0.1 that records every JSON body posted to it."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def _fleet_page_playbook() -> str:
    page = (ROOT / "docs" / "fleet.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.S)
    (playbook,) = [b for b in blocks if "hosts: deploy" in b and "Alert on a heal" in b]
    return playbook


def test_fleet_page_playbook_heals_and_alerts_on_heals_and_failures(
    tmp_path: Path, collections: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    fleet = Fleet(tmp_path)
    inventory = {
        "deploy": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "gitsafe_python": sys.executable,
                "alert_webhook": url,
            },
            "hosts": {
                "dirty": {"deploy_dir": str(fleet.dirty)},
                "clean": {"deploy_dir": str(fleet.clean)},
                "broken": {"deploy_dir": str(fleet.broken), "deploy_branch": "no-such-branch"},
            },
        }
    }
    play = _fleet_page_playbook()
    output, proc = _playbook(tmp_path, collections, inventory, play, "--skip-tags", "setup")
    assert _head(fleet.dirty) == fleet.new
    assert not (fleet.dirty / "scratch.txt").exists()
    assert (fleet.dirty / ".env").read_text() == "SECRET=1\n"
    texts = sorted(body["text"] for body in received)
    assert len(texts) == 2, texts
    failed, healed = texts
    assert failed.startswith(f"gitsafe FAILED on broken ({fleet.broken}): ")
    assert "no-such-branch" in failed
    assert healed.startswith(f"gitsafe healed {fleet.dirty} on dirty: 1 restored, ")
    assert "restore with: gitsafe restore " in healed
    stats = output["stats"]
    assert {h for h, s in stats.items() if s["failures"]} == {"broken"}
    assert stats["broken"]["rescued"] == 1
    assert proc.returncode == 2

    # The preview changes nothing and alerts nobody.
    received.clear()
    write(fleet.clean, "scratch.txt", "new dirt\n")
    before = snapshot(fleet.clean, skip_git=False)
    output, _ = _playbook(tmp_path, collections, inventory, play, "--skip-tags", "setup", "--check")
    assert snapshot(fleet.clean, skip_git=False) == before
    assert received == []
    assert output["tasks"]["gitsafe pull"]["clean"]["outcome"] == "would-heal"
