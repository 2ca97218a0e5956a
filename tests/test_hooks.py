"""hooks/: deploy-pull, post-receive (through real pushes), `gitsafe hooks install`, the systemd
units and the cron line, each run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from gitfixtures import Origin, commit_all, git, write

from gitsafe import hooks_install

ROOT = Path(__file__).parent.parent
HOOKS = ROOT / "hooks"
BIN = Path(sys.executable).parent
ZERO = "0" * 40


def run(
    cmd: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def gitsafe(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, in-process (`gitsafe hooks` needs no fresh interpreter per call)."""
    from typer.testing import CliRunner

    from gitsafe.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def push(
    work: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run(["git", "push", *args], cwd=work, env=env)


@pytest.fixture
def hooks_on(hermetic_git: Path) -> None:
    """The hermetic fixture disables hooks globally (core.hooksPath=/dev/null); these tests
    need git to run them."""
    config = hermetic_git / ".gitconfig"
    config.write_text(config.read_text().replace("\thooksPath = /dev/null\n", ""))


def recorder(path: Path, record: Path, then: str = "exit 0") -> Path:
    """An executable that saves its environment (NUL-separated) and stdin, then runs ``then``."""
    path.write_text(
        "#!/usr/bin/env bash\n"
        f"env -0 > {shlex.quote(str(record))}.env\n"
        f"cat > {shlex.quote(str(record))}.stdin\n"
        f"{then}\n"
    )
    path.chmod(0o755)
    return path


def recorded_env(record: Path) -> dict[str, str]:
    pairs = Path(f"{record}.env").read_text().split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


# --- shellcheck, and the shipped hook is the installed one -------------------------------------


def test_every_script_in_hooks_and_the_installed_hook_are_shellcheck_clean(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (CI installs it: apt-get install shellcheck)")
    scripts = [p for p in sorted(HOOKS.rglob("*")) if p.is_file() and p.read_bytes()[:2] == b"#!"]
    assert {p.name for p in scripts} >= {"deploy-pull", "post-receive"}
    rendered = tmp_path / "post-receive"
    rendered.write_text(
        hooks_install.render(
            hooks_install.HookSettings(
                ("/opt/py thon/bin/python", "-P", "-m", "gitsafe"),
                "/srv/it's a tree",
                "main",
                "up stream",
                True,
            )
        )
    )
    proc = run(["shellcheck", "--severity=style", *map(str, scripts), str(rendered)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hooks_post_receive_is_the_template_gitsafe_installs() -> None:
    shipped = HOOKS / "post-receive"
    assert shipped.read_text() == hooks_install.template(), (
        "hooks/post-receive and gitsafe/hook_templates/post-receive differ; copy one to the other"
    )
    assert shipped.stat().st_mode & stat.S_IXUSR
    assert hooks_install.MARKER in shipped.read_text().splitlines()[:5]


# --- hooks/deploy-pull ------------------------------------------------------------------------


def deploy_pull(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run([str(HOOKS / "deploy-pull"), *args], cwd=cwd, env=env)


def reported(proc: subprocess.CompletedProcess[str]) -> Path:
    last = proc.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"gitsafe: (\S+) \(exit (\d+)\); report: (.+)", last)
    assert match, last
    assert int(match[2]) == proc.returncode
    path = Path(match[3])
    assert path.is_absolute(), last
    assert json.loads(path.read_text())["outcome"] == match[1]
    return path


def test_deploy_pull_heals_and_keeps_the_exit_code_contract(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    write(deploy, "src/config.py", "dirty\n")
    write(deploy, "deploy-hook.log")
    ok = deploy_pull(str(deploy), "origin", "main", "--", "-e", "deploy-hook.log", "-q")
    assert ok.returncode == 0, ok.stderr
    assert reported(ok) == deploy / ".git/gitsafe/last-report.json"
    assert (deploy / "deploy-hook.log").exists()
    assert (deploy / "src/config.py").read_text() == "DEBUG = False\n"
    failed = deploy_pull(str(deploy), "origin", "no-such-branch", "--", "-q")
    assert failed.returncode == 1
    assert json.loads(reported(failed).read_text())["error"]["kind"] == "fetch"
    refused = deploy_pull(str(tmp_path))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == "gitsafe: failed (exit 2); no report written"


def test_deploy_pull_names_the_report_wherever_it_went(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    # A relative DEPLOY_DIR and a relative --report are both relative to the caller's directory.
    (tmp_path / "reports").mkdir()
    flag = deploy_pull("deploy", "--", "-q", "--report", "reports/flag.json", cwd=tmp_path)
    assert reported(flag) == tmp_path / "reports/flag.json"
    env = deploy_pull("deploy", cwd=tmp_path, env={"GITSAFE_REPORT": "reports/env.json"})
    assert reported(env) == tmp_path / "reports/env.json"
    git(deploy, "config", "gitsafe.report", str(tmp_path / "reports/config.json"))
    config = deploy_pull(str(deploy), "--", "-q")
    assert reported(config) == tmp_path / "reports/config.json"
    # Without any of them: the git directory, found from a relative path inside the work tree.
    git(deploy, "config", "--unset", "gitsafe.report")
    inside = deploy_pull("src", "--", "-q", cwd=deploy)
    assert reported(inside) == deploy / ".git/gitsafe/last-report.json"


def test_deploy_pull_passes_json_through_and_reports_a_missing_gitsafe(deploy: Path) -> None:
    proc = deploy_pull(str(deploy), "--", "-q", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["outcome"] == "up-to-date"
    quiet = deploy_pull(str(deploy), "--", "-q")
    assert quiet.stdout == ""
    missing = deploy_pull(str(deploy), env={"GITSAFE_BIN": "/nonexistent/gitsafe"})
    assert missing.returncode == 2 and "GITSAFE_BIN" in missing.stderr


def test_deploy_pull_inside_a_git_hook_hides_gits_variables_from_gitsafe(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    # What a deploy script called from a git hook inherits. gitsafe opens the checkout by path,
    # but whatever it starts (the kill-switch's `git pull`) would act on another repository.
    wrapper = recorder(
        tmp_path / "gitsafe-wrapper",
        tmp_path / "gitsafe",
        then=f'exec {shlex.quote(sys.executable)} -m gitsafe "$@"',
    )
    sha = origin.push("next")
    env = {
        "GITSAFE_BIN": str(wrapper),
        "GITSAFE_ENABLED": "0",
        "GIT_DIR": str(origin.bare),
        "GIT_WORK_TREE": str(origin.work),
        "GIT_INDEX_FILE": str(tmp_path / "index"),
    }
    proc = deploy_pull(str(deploy), "origin", "main", "--", "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    assert git(deploy, "rev-parse", "HEAD").strip() == sha
    seen = recorded_env(tmp_path / "gitsafe")
    assert not {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"} & set(seen)
    assert seen["GITSAFE_ENABLED"] == "0"  # GITSAFE_* settings pass through


# --- gitsafe hooks install: the post-receive hook through real pushes -------------------------


@pytest.fixture
def site(origin: Origin, deploy: Path, hooks_on: None) -> Origin:
    """origin.bare is the repository developers push to; deploy is the work tree it deploys."""
    return origin


def install(site: Origin, deploy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return gitsafe(
        "-C", str(site.bare), "hooks", "install", "post-receive", "--work-tree", str(deploy), *args
    )


def test_a_push_to_the_deploy_branch_heals_the_work_tree_and_tells_the_pusher(
    site: Origin, deploy: Path
) -> None:
    installed = install(site, deploy)
    assert installed.returncode == 0, installed.stderr
    hook = site.bare / "hooks/post-receive"
    assert hook.stat().st_mode & 0o777 == 0o755
    write(deploy, "src/config.py", "edited on the server\n")
    write(deploy, "scratch.txt")
    write(site.work, "README.md", "v2\n")
    # The pusher's PATH lacks gitsafe's virtualenv, as under sshd: the hook must not need it.
    sha = commit_all(site.work, "v2")
    proc = push(site.work, "origin", "main", env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert git(deploy, "rev-parse", "HEAD").strip() == sha
    assert git(deploy, "status", "--porcelain") == ""
    assert (deploy / "README.md").read_text() == "v2\n"
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.startswith("remote: ")]
    assert f"remote: gitsafe: healed: {deploy} is at origin/main {sha[:12]}" in lines
    assert f"remote: gitsafe: report {deploy}/.git/gitsafe/last-report.json" in lines
    assert any("gitsafe -C" in ln and "restore" in ln for ln in lines), lines
    assert len(lines) == 3, lines  # concise: outcome, backup, report


def test_pushes_that_do_not_update_the_deploy_branch_leave_the_work_tree_alone(
    site: Origin, deploy: Path
) -> None:
    assert install(site, deploy, "--branch", "release").returncode == 0
    assert "is at origin/release" in push(site.work, "origin", "HEAD:release").stderr
    before = git(deploy, "rev-parse", "HEAD").strip()
    write(deploy, "scratch.txt")
    write(site.work, "README.md", "feature\n")
    git(site.work, "commit", "-qam", "feature")
    other = push(site.work, "origin", "HEAD:feature", "HEAD:main")
    assert other.returncode == 0 and "gitsafe" not in other.stderr
    deleted = push(site.work, "origin", "--delete", "release")
    assert deleted.returncode == 0
    assert "remote: gitsafe: release was deleted" in deleted.stderr
    assert git(deploy, "rev-parse", "HEAD").strip() == before
    assert (deploy / "scratch.txt").exists()


def test_post_receive_scrubs_what_git_exports_to_hooks_and_chains_the_old_hook(
    site: Origin, deploy: Path, tmp_path: Path
) -> None:
    git(site.bare, "config", "receive.advertisePushOptions", "true")
    recorder(site.bare / "hooks/post-receive", tmp_path / "legacy", then="exit 3")
    wrapper = recorder(
        tmp_path / "gitsafe-wrapper",
        tmp_path / "gitsafe",
        then=f'exec {shlex.quote(sys.executable)} -m gitsafe "$@"',
    )
    hooks_install.install(str(site.bare), str(deploy), chain=True, command=(str(wrapper),))
    sha = commit_all(site.work, "pushed with an option")
    proc = push(site.work, "-o", "deploy=now", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    # The moved-aside hook ran first, in git's environment, with the same input...
    legacy_env = recorded_env(tmp_path / "legacy")
    assert legacy_env["GIT_DIR"] == "."
    assert legacy_env["GIT_PUSH_OPTION_0"] == "deploy=now"
    assert Path(f"{tmp_path}/legacy.stdin").read_text().split()[1:] == [sha, "refs/heads/main"]
    assert "gitsafe: hooks/post-receive.legacy exited 3" in proc.stderr
    # ...and gitsafe ran without any of git's hook variables.
    added_by_git = {k for k in legacy_env if k.startswith("GIT_") and k not in os.environ}
    assert {"GIT_DIR", "GIT_PUSH_OPTION_COUNT", "GIT_PUSH_OPTION_0"} <= added_by_git
    gitsafe_env = recorded_env(tmp_path / "gitsafe")
    assert {k for k in added_by_git if k in gitsafe_env} <= {"GIT_EXEC_PATH"}
    assert git(deploy, "rev-parse", "HEAD").strip() == sha


def test_a_git_pull_in_a_hooks_environment_goes_astray_but_gitsafe_does_not(
    site: Origin, deploy: Path, tmp_path: Path
) -> None:
    """Why the scrub matters: the exact environment git gives post-receive, captured from a real
    push, breaks `git pull` in the deploy work tree; gitsafe's kill-switch `git pull` drops it."""
    recorder(site.bare / "hooks/post-receive", tmp_path / "hook")
    sha = site.push("next")
    hook_env = recorded_env(tmp_path / "hook")
    plain = subprocess.run(
        ["git", "-C", str(deploy), "pull", "-q", "origin", "main"],
        cwd=site.bare,  # where git runs the hook
        env=hook_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode != 0 and "not a git repository" in plain.stderr
    disabled = subprocess.run(
        [sys.executable, "-m", "gitsafe", "pull", "-q", "-C", str(deploy)],
        cwd=site.bare,
        env={**hook_env, "GITSAFE_ENABLED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert disabled.returncode == 0, disabled.stderr
    assert git(deploy, "rev-parse", "HEAD").strip() == sha


def test_the_shipped_hook_reads_its_settings_from_git_config(
    site: Origin, deploy: Path, tmp_path: Path
) -> None:
    hook = site.bare / "hooks/post-receive"
    shutil.copy2(HOOKS / "post-receive", hook)
    commit_all(site.work, "before configuration")
    unconfigured = push(site.work, "origin", "main")
    assert unconfigured.returncode == 0  # git ignores a post-receive's exit status
    assert "remote: gitsafe: no deploy work tree or branch configured" in unconfigured.stderr
    git(site.bare, "config", "gitsafe.deployWorkTree", str(deploy))
    git(site.bare, "config", "gitsafe.deployBranch", "release")
    git(site.bare, "config", "gitsafe.deployRemote", "upstream")
    git(deploy, "remote", "rename", "origin", "upstream")
    sha = commit_all(site.work, "release")
    proc = push(site.work, "origin", "HEAD:release")
    assert proc.returncode == 0, proc.stderr
    assert f"is at upstream/release {sha[:12]}" in proc.stderr
    assert git(deploy, "rev-parse", "HEAD").strip() == sha
    assert git(deploy, "symbolic-ref", "--short", "HEAD").strip() == "release"


def test_the_hook_exit_code_follows_the_contract_when_run_by_hand(
    site: Origin, deploy: Path
) -> None:
    assert install(site, deploy, "--branch", "main").returncode == 0
    hook = site.bare / "hooks/post-receive"
    head = git(site.bare, "rev-parse", "main").strip()
    ok = run([str(hook)], cwd=site.bare, stdin=f"{ZERO} {head} refs/heads/main\n")
    assert ok.returncode == 0, ok.stderr
    git(deploy, "config", "gitsafe.lockTimeout", "soon")  # a configuration error: exit 2
    bad = run([str(hook)], cwd=site.bare, stdin=f"{ZERO} {head} refs/heads/main\n")
    assert bad.returncode == 2
    assert "gitsafe pull: gitsafe.lockTimeout" in bad.stderr
    assert "(exit 2)" in bad.stderr and "the push itself succeeded" in bad.stderr


# --- gitsafe hooks install / uninstall: never replace a foreign hook silently -----------------


def test_install_refuses_a_foreign_hook_and_names_chain_and_force(
    site: Origin, deploy: Path
) -> None:
    hook = site.bare / "hooks/post-receive"
    hook.write_text("#!/bin/sh\necho mine\n")
    proc = install(site, deploy)
    assert proc.returncode == 2
    assert "--chain" in proc.stderr and "--force" in proc.stderr
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    assert not (site.bare / "hooks/post-receive.legacy").exists()


def test_force_moves_the_foreign_hook_aside_without_running_it(
    site: Origin, deploy: Path, tmp_path: Path
) -> None:
    recorder(site.bare / "hooks/post-receive", tmp_path / "foreign")
    proc = install(site, deploy, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "post-receive.legacy" in proc.stderr
    assert "env -0" in (site.bare / "hooks/post-receive.legacy").read_text()
    site.push("next")
    assert not Path(f"{tmp_path}/foreign.env").exists()
    # Another foreign hook now cannot be moved aside: the .legacy place is taken.
    (site.bare / "hooks/post-receive").unlink()
    (site.bare / "hooks/post-receive").write_text("#!/bin/sh\n")
    taken = install(site, deploy, "--force")
    assert taken.returncode == 2 and "already exists" in taken.stderr


def test_reinstall_is_idempotent_updates_in_place_and_keeps_chaining(
    site: Origin, deploy: Path
) -> None:
    (site.bare / "hooks/post-receive").write_text("#!/bin/sh\ncat >/dev/null\n")
    assert install(site, deploy, "--chain").returncode == 0
    hook = site.bare / "hooks/post-receive"
    first = hook.read_text()
    assert "run_legacy=1" in first
    again = install(site, deploy)
    assert again.returncode == 0 and "unchanged" in again.stderr
    assert hook.read_text() == first
    inode = hook.stat().st_ino
    updated = install(site, deploy, "--branch", "main")
    assert updated.returncode == 0 and "updated" in updated.stderr
    text = hook.read_text()
    assert "deploy_branch=main" in text and "run_legacy=1" in text
    assert hook.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert install(site, deploy, "--no-chain").returncode == 0
    assert "run_legacy=0" in hook.read_text()
    assert sorted(p.name for p in (site.bare / "hooks").glob("*post-receive*")) == [
        "post-receive",
        "post-receive.legacy",
    ]


def test_a_symlinked_hook_is_foreign_and_moved_aside_as_a_link(
    site: Origin, deploy: Path, tmp_path: Path
) -> None:
    target = tmp_path / "shared-hook"
    target.write_text(f"#!/bin/sh\n{hooks_install.MARKER}\n")  # even with the marker
    target.chmod(0o755)
    hook = site.bare / "hooks/post-receive"
    hook.symlink_to(target)
    assert install(site, deploy).returncode == 2
    assert install(site, deploy, "--chain").returncode == 0
    legacy = site.bare / "hooks/post-receive.legacy"
    assert legacy.is_symlink() and os.readlink(legacy) == str(target)
    assert target.read_text() == f"#!/bin/sh\n{hooks_install.MARKER}\n"
    assert not hook.is_symlink() and "run_legacy=1" in hook.read_text()


def test_install_respects_core_hooks_path(site: Origin, deploy: Path) -> None:
    git(site.bare, "config", "core.hooksPath", "custom-hooks")
    assert install(site, deploy).returncode == 2  # not a directory: git would run nothing
    (site.bare / "custom-hooks").mkdir()
    proc = install(site, deploy)
    assert proc.returncode == 0, proc.stderr
    assert (site.bare / "custom-hooks/post-receive").exists()
    assert not (site.bare / "hooks/post-receive").exists()
    write(deploy, "scratch.txt")
    site.push("next")
    assert not (deploy / "scratch.txt").exists()


def test_install_refuses_work_trees_the_hook_could_not_deploy(
    site: Origin, deploy: Path, tmp_path: Path
) -> None:
    missing = install(site, tmp_path / "nowhere")
    assert missing.returncode == 2 and "git clone" in missing.stderr
    own = gitsafe(
        "hooks", "install", "post-receive", "--repo", str(deploy), "--work-tree", str(deploy)
    )
    assert own.returncode == 2 and "separate clone" in own.stderr
    git(deploy, "remote", "rename", "origin", "upstream")
    no_remote = install(site, deploy)
    assert no_remote.returncode == 2 and "--remote" in no_remote.stderr
    assert install(site, deploy, "--remote", "upstream").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "clone", "-q", str(site.bare), str(elsewhere))
    git(deploy, "remote", "set-url", "upstream", str(elsewhere))
    warned = install(site, deploy, "--remote", "upstream")
    assert warned.returncode == 0 and "warning: remote upstream" in warned.stderr
    assert not list((site.bare / "hooks").glob(".post-receive.*.tmp"))


def test_uninstall_restores_the_moved_aside_hook_and_never_removes_a_foreign_one(
    site: Origin, deploy: Path
) -> None:
    hook = site.bare / "hooks/post-receive"
    hook.write_text("#!/bin/sh\necho mine\n")
    assert install(site, deploy, "--chain").returncode == 0
    restored = gitsafe("hooks", "uninstall", "post-receive", "--repo", str(site.bare))
    assert restored.returncode == 0, restored.stderr
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    assert not (site.bare / "hooks/post-receive.legacy").exists()
    foreign = gitsafe("-C", str(site.bare), "hooks", "uninstall", "post-receive")
    assert foreign.returncode == 2 and hook.read_text() == "#!/bin/sh\necho mine\n"
    hook.unlink()
    assert install(site, deploy).returncode == 0
    assert gitsafe("-C", str(site.bare), "hooks", "uninstall", "post-receive").returncode == 0
    assert not hook.exists()
    absent = gitsafe("-C", str(site.bare), "hooks", "uninstall", "post-receive")
    assert absent.returncode == 0 and "nothing to do" in absent.stderr


# --- systemd and cron -------------------------------------------------------------------------


def unit(name: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (continuation lines are not used in ours)."""
    values: dict[str, list[str]] = {}
    for line in (HOOKS / "systemd" / name).read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def systemd_words(command: str, env: dict[str, str]) -> list[str]:
    """systemd's expansion: ${VAR} is one word, a lone $VAR splits at whitespace."""
    words: list[str] = []
    for word in shlex.split(command):
        alone = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if alone:
            words.extend(env.get(alone[1], "").split())
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m[1], ""), word))
    return words


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # An instance of each template, ExecStart pointed at this gitsafe as the docs' drop-in does.
    service = (HOOKS / "systemd/gitsafe-sync@.service").read_text()
    (tmp_path / "gitsafe-sync@shop.service").write_text(
        service.replace("/usr/local/bin/gitsafe", str(BIN / "gitsafe"))
    )
    shutil.copy(HOOKS / "systemd/gitsafe-sync@.timer", tmp_path / "gitsafe-sync@shop.timer")
    proc = run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(tmp_path / "gitsafe-sync@shop.service"),
            str(tmp_path / "gitsafe-sync@shop.timer"),
        ],
        env={"SYSTEMD_LOG_COLOR": "0"},
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_the_systemd_service_command_heals_a_deploy_base(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    service = unit("gitsafe-sync@.service")
    assert service["Type"] == ["oneshot"]
    assert service["EnvironmentFile"] == ["/etc/gitsafe/sync/%i.env"]
    assert unit("gitsafe-sync@.timer")["WantedBy"] == ["timers.target"]
    # The environment file as docs/integrations/systemd.md writes it.
    env_file = (ROOT / "docs/integrations/systemd.md").read_text()
    block = re.search(r"/etc/gitsafe/sync/shop.env <<'EOF'\n(.*?)\nEOF", env_file, re.S)
    assert block, "docs/integrations/systemd.md lost its environment file example"
    env = dict(line.split("=", 1) for line in block[1].splitlines() if "=" in line)
    env["DEPLOY_DIR"] = str(deploy)
    words = systemd_words(service["ExecStart"][0], env)
    assert words[0] == "/usr/local/bin/gitsafe"
    write(deploy, "src/config.py", "dirty\n")
    write(deploy, "deploy-hook.log")
    sha = origin.push("next")
    passed = {k: v for k, v in env.items() if k.startswith("GITSAFE_")}
    proc = run([str(BIN / "gitsafe"), *words[1:]], env=passed)
    assert proc.returncode == 0, proc.stderr
    assert git(deploy, "rev-parse", "HEAD").strip() == sha
    assert (deploy / "deploy-hook.log").exists()  # GITSAFE_EXCLUDE from the file passed through


def test_the_cron_line_in_the_docs_heals_a_deploy_base(origin: Origin, deploy: Path) -> None:
    doc = (ROOT / "docs/integrations/cron.md").read_text()
    line = next(ln for ln in doc.splitlines() if ln.startswith("*/5 "))
    fields = line.split(None, 6)  # five time fields, the user (/etc/cron.d), the command
    assert fields[5] == "deploy"
    command = fields[6].replace("/usr/local/bin/gitsafe", str(BIN / "gitsafe"))
    command = command.replace("/srv/shop", str(deploy))
    write(deploy, "scratch.txt")
    sha = origin.push("next")
    # cron's environment: sh, a short PATH, HOME of the user.
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"], "SHELL": "/bin/sh"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")  # cron mails only failures
    assert git(deploy, "rev-parse", "HEAD").strip() == sha
    assert not (deploy / "scratch.txt").exists()


def test_uninstall_that_cannot_put_the_old_hook_back_exits_2_without_a_traceback(
    site: Origin, deploy: Path
) -> None:
    hook = site.bare / "hooks/post-receive"
    assert install(site, deploy).returncode == 0
    blocker = site.bare / "hooks/post-receive.legacy"
    blocker.mkdir()
    (blocker / "inside").write_text("not a hook\n")
    failed = gitsafe("hooks", "uninstall", "post-receive", "--repo", str(site.bare))
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr
    assert (blocker / "inside").read_text() == "not a hook\n"
    assert hook.exists() or blocker.exists()
