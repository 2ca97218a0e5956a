#!/usr/bin/python
# Copyright: gitsafe developers
# MIT License (see https://opensource.org/licenses/MIT)

from __future__ import annotations

DOCUMENTATION = r"""
module: gitsafe_pull
short_description: Converge a deploy checkout to a clean, current REMOTE/BRANCH with gitsafe
version_added: "0.1.0"
description:
  - Runs gitsafe's C(pull) on the managed host. It fetches REMOTE/BRANCH, then leaves the work tree
    exactly as C(git reset --hard REMOTE/BRANCH && git clean -fd -e PATTERN...) would, clears
    leftover merge/rebase state and stale lock files, and ends on local BRANCH. Everything
    discarded (edited files, untracked files, local commits) is backed up in the repository
    first; C(gitsafe restore) gives it back.
  - Unlike M(ansible.builtin.git), untracked files are cleaned, local commits are backed up
    rather than silently dropped, and check mode does not fetch.
  - In check mode the module runs gitsafe's C(doctor) instead, which computes the same plan and
    changes nothing. It uses the remote-tracking ref as last fetched unless
    O(fetch_in_check_mode=true).
  - Calls gitsafe's Python API, so gitsafe must be installed for the Python interpreter that runs
    the module on the managed host (see O(ignore:ansible_python_interpreter) and the examples).
# ansible-test wants "Name (@github-handle)"; gitsafe is written by a team without one.
author:
  - gitsafe developers (!UNKNOWN)
requirements:
  - gitsafe (and Python 3.11 or newer) on the managed host, for the interpreter that runs this
    module
options:
  dest:
    description:
      - The deploy checkout (its work tree, or any directory inside it).
    type: path
    required: true
  remote:
    description:
      - Remote to pull from.
      - Default is the current branch's upstream remote, else C(origin).
    type: str
  branch:
    description:
      - Branch to converge to.
      - Default is the upstream's branch, else the current branch.
    type: str
  exclude:
    description:
      - Keep-patterns (C(git clean -e) syntax); untracked paths matching one are never removed.
      - They add to the host's C(GITSAFE_EXCLUDE) and git config C(gitsafe.exclude) patterns.
    type: list
    elements: str
    default: []
  report:
    description:
      - Where to write the JSON report on the managed host.
      - Default is the host's C(GITSAFE_REPORT), else git config C(gitsafe.report), else
        C(<gitdir>/gitsafe/last-report.json).
      - Not written in check mode.
    type: path
  lock_timeout:
    description:
      - Seconds to wait for a live lock (another gitsafe or git) before failing.
      - Default is the host's setting, else 30.
    type: float
  stale_lock_age:
    description:
      - Age in seconds after which a lock file no process holds counts as stale and is removed.
      - Default is the host's setting, else 600.
    type: float
  backup:
    description:
      - Whether to back up what the pull discards. V(false) is C(--no-backup).
      - Default is the host's C(GITSAFE_BACKUP) / C(gitsafe.backup) setting, else V(true).
    type: bool
  enabled:
    description:
      - The kill-switch. V(false) makes the pull run plain C(git pull REMOTE BRANCH) instead of
        converging; the report then has outcome C(disabled).
      - It is passed to gitsafe as C(GITSAFE_ENABLED), so the report records the source
        C(env:GITSAFE_ENABLED), and it overrides the host's git config C(gitsafe.enabled).
      - When unset, the host decides (C(GITSAFE_ENABLED) in the task's environment, else git
        config C(gitsafe.enabled), else enabled). Leave it unset to let an operator switch
        gitsafe off on one host.
    type: bool
  fetch_in_check_mode:
    description:
      - In check mode, fetch REMOTE/BRANCH before planning (C(gitsafe doctor --fetch)).
      - The fetch moves only the remote-tracking ref (C(refs/remotes/REMOTE/BRANCH)); the work
        tree, index, HEAD and local branches are untouched, but it is still a change to C(.git).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs C(gitsafe doctor), which changes nothing (without a fetch unless
      O(fetch_in_check_mode=true)).
  diff_mode:
    support: full
    details: The diff lists the paths restored, removed and kept, the local commits dropped and
      the state cleared, as before/after text.
  platform:
    platforms: posix
notes:
  - C(changed) is true when the checkout was healed or fast-forwarded (in check mode, when it
    would be). With the kill-switch off it is true when HEAD moved.
  - A failed or refused pull fails the task with the report's error message; the report is still
    returned.
  - A second run on a clean, current checkout reports C(changed=false).
seealso:
  - module: ansible.builtin.git
"""

EXAMPLES = r"""
- name: Install gitsafe for the interpreter that runs the module
  ansible.builtin.pip:
    name: /tmp/gitsafe-0.1.0-py3-none-any.whl
    virtualenv: /opt/gitsafe
    virtualenv_command: python3 -m venv

- name: Heal and update the deploy base
  gitsafe.deploy.gitsafe_pull:
    dest: /srv/shop
    remote: origin
    branch: main
    exclude:
      - deploy-hook.log
      - .deploy-prev-image-*
  vars:
    ansible_python_interpreter: /opt/gitsafe/bin/python
  register: pulled

- name: Preview what a pull would do (same as running the playbook with --check --diff)
  gitsafe.deploy.gitsafe_pull:
    dest: /srv/shop
    branch: main
    fetch_in_check_mode: true
  check_mode: true
  diff: true
  vars:
    ansible_python_interpreter: /opt/gitsafe/bin/python

- name: Switch gitsafe off for one run (plain git pull)
  gitsafe.deploy.gitsafe_pull:
    dest: /srv/shop
    branch: main
    enabled: false
  vars:
    ansible_python_interpreter: /opt/gitsafe/bin/python
"""

RETURN = r"""
outcome:
  description:
    - The report's outcome. Pull C(up-to-date), C(fast-forwarded), C(healed), C(refused),
      C(failed), C(disabled); check mode C(up-to-date), C(would-fast-forward), C(would-heal),
      C(refused), C(failed).
  returned: always
  type: str
  sample: healed
before:
  description: The commit HEAD pointed at before the run.
  returned: when the checkout could be opened
  type: str
  sample: 67c04ebe40a003bda0efb34eacfb93b0cafdf628
after:
  description:
    - The commit HEAD points at after the run; in check mode, the commit it would point at.
  returned: when the checkout could be opened
  type: str
  sample: 4c020102a9cd6fe908c9a4a326a38f972f63a903
report:
  description:
    - gitsafe's JSON report (schema C(gitsafe.report/1), documented in gitsafe's
      docs/report.md), the same object C(gitsafe pull --json) prints. In check mode it is the
      C(doctor) report.
  returned: always
  type: dict
  contains:
    schema:
      description: Always C(gitsafe.report/1).
      type: str
      returned: always
    command:
      description: C(pull), or C(doctor) in check mode.
      type: str
      returned: always
    outcome:
      description: Same as RV(outcome).
      type: str
      returned: always
    exit_code:
      description: The exit code C(gitsafe pull) or C(gitsafe doctor) would have exited with.
      type: int
      returned: always
    plan:
      description:
        - What was (or would be) done, with lists C(restore), C(remove), C(keep),
          C(overwrite_ignored), C(incoming), C(drop_commits), C(clear_state), C(stale_locks).
        - Null when no plan could be made.
      type: dict
      returned: always
    error:
      description: Null, or C(kind) and C(message) of the failure.
      type: dict
      returned: always
    backup:
      description: Where the discarded content was saved (C(ref), C(id), C(restore) command).
      type: dict
      returned: always
  sample:
    schema: gitsafe.report/1
    command: pull
    outcome: healed
    exit_code: 0
    plan:
      restore:
        - path: src/config.py
          reason: modified
      remove:
        - path: scratch.txt
          reason: untracked
    error: null
    backup:
      ref: refs/gitsafe/backups/20250101T000000Z-1a2b3c
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import gitsafe
except ImportError:
    GITSAFE_IMPORT_ERROR = traceback.format_exc()
else:
    GITSAFE_IMPORT_ERROR = None

INSTALL_HINT = (
    " Install gitsafe for that interpreter, e.g. with ansible.builtin.pip into a virtualenv, and "
    "point ansible_python_interpreter at it (gitsafe needs Python 3.11 or newer)."
)

MOVED = ("healed", "fast-forwarded")
WOULD_MOVE = ("would-heal", "would-fast-forward")


def _environment(enabled):
    """The settings environment for gitsafe: the module's own, plus the kill-switch if given.

    gitsafe has no flag for the kill-switch (it is an operator's switch, set by environment or
    git config), so the option travels the way ``environment: {GITSAFE_ENABLED: ...}`` would,
    and the report names that variable as its source.
    """
    if enabled is None:
        return None
    env = dict(os.environ)
    env["GITSAFE_ENABLED"] = "1" if enabled else "0"
    return env


def _utf8_safe(value):
    """``value`` with every string valid UTF-8, which is all Ansible accepts from a module.

    gitsafe keeps file names that are not UTF-8 as ``surrogateescape`` code points; here each
    such byte becomes the text ``\\xNN``, as Python would print it.
    """
    if isinstance(value, str):
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return dict((_utf8_safe(k), _utf8_safe(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_utf8_safe(v) for v in value]
    return value


def _short(sha):
    return sha[:7] if sha else "(none)"


def _diff(report):
    """Before/after text of the plan, one line per path, so that a unified diff shows each
    restored path changing, each removed path going, and each kept path staying."""
    plan = report.get("plan")
    if not plan:
        return None
    upstream = "%s/%s" % (plan["remote"], plan["branch"])
    where = plan.get("on_branch") or "detached HEAD"
    before = ["HEAD %s on %s" % (_short(plan.get("head")), where)]
    after = [
        "HEAD %s on %s (%s, %d path(s) changed)"
        % (_short(plan["target"]), plan["branch"], upstream, len(plan.get("incoming", [])))
    ]
    rows = []
    for item in plan.get("restore", []) + plan.get("overwrite_ignored", []):
        rows.append((item["path"], item["reason"], "as in %s" % upstream))
    for item in plan.get("remove", []):
        rows.append((item["path"], "%s, removed" % item["reason"], None))
    for item in plan.get("keep", []):
        line = "kept, %s" % item["reason"]
        rows.append((item["path"], line, line))
    for path, was, now in sorted(rows, key=lambda row: row[0]):
        before.append("%s: %s" % (path, was))
        if now is not None:
            after.append("%s: %s" % (path, now))
    for commit in plan.get("drop_commits", []):
        before.append("local commit %s %s" % (_short(commit["sha"]), commit["subject"]))
    for state in plan.get("clear_state", []):
        before.append("leftover state %s" % state)
    for lock in plan.get("stale_locks", []):
        before.append("stale lock %s" % lock["path"])
    backup = report.get("backup") or {}
    if backup.get("ref"):
        after.append("backup %s" % backup["ref"])
    return {
        "before_header": "%s (before)" % report.get("repo"),
        "after_header": "%s (%s)" % (report.get("repo"), upstream),
        "before": "\n".join(before) + "\n",
        "after": "\n".join(after) + "\n",
    }


def _summary(report):
    plan = report.get("plan") or {}
    counts = ", ".join(
        "%d %s" % (len(plan.get(key, [])), label)
        for key, label in (
            ("restore", "restored"),
            ("remove", "removed"),
            ("keep", "kept"),
            ("drop_commits", "local commit(s) dropped"),
        )
    )
    target = "%s/%s %s" % (
        (report.get("remote") or {}).get("name"),
        report.get("branch"),
        _short(report.get("target")),
    )
    text = "%s: %s at %s" % (report["outcome"], report.get("repo"), target)
    if plan:
        text += " (%s)" % counts
    backup = report.get("backup") or {}
    if backup.get("ref"):
        text += "; backup %s" % backup["ref"]
    return text


def _changed(report, check_mode):
    outcome = report["outcome"]
    if check_mode:
        if not report["settings"].get("enabled", {}).get("value", True):
            # A real run would be plain `git pull`, which moves HEAD only if the target is new.
            return bool(report.get("target")) and report["target"] != report.get("head_before")
        return outcome in WOULD_MOVE
    if outcome in MOVED:
        return True
    # The kill-switch's git pull, and a failure late in a pull, changed what HEAD moved.
    return bool(report.get("head_after")) and report["head_after"] != report.get("head_before")


def run(module):
    p = module.params
    env = _environment(p["enabled"])
    if module.check_mode:
        # doctor reads settings but never writes, so the report path is not used here.
        result = gitsafe.doctor(
            p["dest"],
            p["remote"],
            p["branch"],
            exclude=p["exclude"],
            fetch_first=p["fetch_in_check_mode"],
            env=env,
        )
    else:
        result = gitsafe.pull(
            p["dest"],
            p["remote"],
            p["branch"],
            exclude=p["exclude"],
            report_path=p["report"],
            lock_timeout=p["lock_timeout"],
            stale_lock_age=p["stale_lock_age"],
            backup=p["backup"],
            env=env,
            quiet_git=True,
        )
    report = _utf8_safe(result.as_json())
    for warning in report.get("warnings", []):
        module.warn(warning)
    if module.check_mode and report.get("settings", {}).get("enabled", {}).get("value") is False:
        module.warn(
            "gitsafe is disabled on this host (%s): a real run runs plain 'git pull', not this "
            "plan" % report["settings"]["enabled"]["source"]
        )
    after = report.get("head_after")
    if module.check_mode:
        after = report.get("target") if report["outcome"] in WOULD_MOVE else report["head_before"]
    out = {
        "changed": _changed(report, module.check_mode),
        "outcome": report["outcome"],
        "before": report.get("head_before"),
        "after": after,
        "report": report,
    }
    if module._diff:
        diff = _diff(report)
        if diff is not None:
            out["diff"] = diff
    # doctor exits 1 for "would heal", which is a prediction, not a failure.
    failed = report["outcome"] in ("refused", "failed") if module.check_mode else not result.ok
    if failed:
        error = report.get("error") or {}
        module.fail_json(msg=error.get("message") or report["outcome"], **out)
    module.exit_json(msg=_summary(report), **out)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            remote=dict(type="str"),
            branch=dict(type="str"),
            exclude=dict(type="list", elements="str", default=[]),
            report=dict(type="path"),
            lock_timeout=dict(type="float"),
            stale_lock_age=dict(type="float"),
            backup=dict(type="bool"),
            enabled=dict(type="bool"),
            fetch_in_check_mode=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if GITSAFE_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("gitsafe") + INSTALL_HINT, exception=GITSAFE_IMPORT_ERROR
        )
    run(module)


if __name__ == "__main__":
    main()
