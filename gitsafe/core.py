"""``pull`` and ``doctor``: the Python API, returning reports rather than raising.

Both build the same :class:`Plan`; ``doctor`` stops there, ``pull`` executes it.  Operational
failures become reports with outcome ``failed`` (or ``refused``), so a caller's deploy hook never
crashes on them; only misuse (wrong argument types) raises.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pygit2

from gitsafe import ignore, locks, prescan, runlock
from gitsafe.errors import GitsafeError, Refused, UsageError
from gitsafe.index_stat import MODE_GITLINK, IndexSnapshot, read_index
from gitsafe.plan import (
    Commit,
    Lock,
    TreeFiles,
    WorkTreeChanges,
    deep_enough,
    files_near_index,
    flatten_tree,
    gitlink_paths,
    plan_worktree,
)
from gitsafe.prescan import Scanned
from gitsafe.records import field, record
from gitsafe.remote import Source, choose, current_branch, fetch, fetch_options, tracking_tip
from gitsafe.report import Report, redact_url, write_atomic
from gitsafe.repository import (
    Checkout,
    checked_out_elsewhere,
    excludes_file,
    filemode,
    leftover_state,
    may_convert,
    open_checkout,
    refusals,
    stat_checks,
)
from gitsafe.settings import Settings, report_setting, resolve
from gitsafe.worktree import TreeView

_MAX_LISTED_COMMITS = 1000


@record
class Plan:
    """Everything a pull would do to one checkout; ``as_json`` is what ``doctor --json`` prints."""

    source: Source
    head: pygit2.Oid | None
    target: pygit2.Oid
    on_branch: str | None
    changes: WorkTreeChanges
    target_tree: pygit2.Tree
    target_files: TreeFiles
    drop_commits: list[Commit] = field(default_factory=list)
    drop_commits_total: int = 0
    clear_state: list[str] = field(default_factory=list)
    stale_locks: list[Lock] = field(default_factory=list)
    busy_locks: list[Lock] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    index: IndexSnapshot | None = None
    head_files: TreeFiles = field(default_factory=dict)
    dropped_tips: list[pygit2.Oid] = field(default_factory=list)  # tips of drop_commits
    fetched: bool = True  # False: the target is the remote-tracking ref as last fetched

    @property
    def switch_branch(self) -> bool:
        return self.on_branch != self.source.branch

    @property
    def needs_heal(self) -> bool:
        c = self.changes
        return bool(
            c.restore
            or c.remove
            or c.overwrite
            or self.drop_commits
            or self.clear_state
            or self.stale_locks
            or self.switch_branch
        )

    @property
    def moves(self) -> bool:
        return self.head != self.target

    def as_json(self) -> dict[str, Any]:
        c = self.changes
        return {
            "remote": self.source.remote,
            "branch": self.source.branch,
            "head": str(self.head) if self.head else None,
            "target": str(self.target),
            "fetched": self.fetched,
            "on_branch": self.on_branch,
            "switch_branch": self.switch_branch,
            "restore": [i.as_json() for i in c.restore],
            "remove": [i.as_json() for i in c.remove],
            "keep": [i.as_json() for i in c.keep],
            "overwrite_ignored": [i.as_json() for i in c.overwrite],
            "incoming": [i.as_json() for i in c.incoming],
            "drop_commits": [x.as_json() for x in self.drop_commits],
            "drop_commits_total": self.drop_commits_total,
            "clear_state": list(self.clear_state),
            "stale_locks": [x.as_json() for x in self.stale_locks],
            "busy_locks": [x.as_json() for x in self.busy_locks],
            "refusals": list(self.refusals),
            # False until a pull starts changing the checkout: the lists are then what it would
            # have done (always so for doctor, and for a pull refused or stopped before)
            "applied": False,
        }


def _commit_tree(repo: pygit2.Repository, oid: pygit2.Oid | None) -> pygit2.Tree | None:
    if oid is None:
        return None
    commit = repo[oid].peel(pygit2.Commit)
    return commit.tree


def _dropped_commits(
    repo: pygit2.Repository, tips: list[pygit2.Oid], target: pygit2.Oid
) -> tuple[list[Commit], int]:
    if not tips:
        return [], 0
    walker = repo.walk(tips[0], pygit2.enums.SortMode.TOPOLOGICAL)
    for tip in tips[1:]:
        walker.push(tip)
    walker.hide(target)
    listed: list[Commit] = []
    total = 0
    for commit in walker:
        total += 1
        if len(listed) < _MAX_LISTED_COMMITS:
            listed.append(Commit(str(commit.id), commit.message.split("\n", 1)[0]))
    return listed, total


def _rules(co: Checkout, settings: Settings) -> ignore.ExcludeRules:
    info_exclude = os.path.join(co.commondir, "info", "exclude")
    files = [ignore.read_exclude_file(info_exclude, "info/exclude")]
    xfile = excludes_file(co)
    if xfile:
        files.append(ignore.read_exclude_file(xfile, "core.excludesFile"))
    return ignore.ExcludeRules(ignore.cmdline_patterns(list(settings.excludes.value)), tuple(files))


def build_plan(
    co: Checkout,
    source: Source,
    target: pygit2.Oid,
    settings: Settings,
    lock_survey: bool = True,
    scanned: Scanned | None = None,
) -> Plan:
    """The read-only plan for converging ``co`` onto ``target``.

    A corrupt index or a missing object refuses the repository (exit 2) before anything is
    touched: healing on top of a damaged object store could discard what cannot be recovered.
    """
    try:
        return _build_plan(co, source, target, settings, lock_survey, scanned)
    except (KeyError, pygit2.GitError) as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        if "invalid path" in text.lower():
            raise Refused(f"refusing a tree with an unsafe path: {text}") from None
        if "index" in text.lower():
            raise Refused(
                f"the index is unreadable ({text}); inspect it, or move .git/index aside and "
                "run 'git reset' to rebuild it"
            ) from None
        raise Refused(
            f"the repository is missing objects or is damaged ({text}); run 'git fsck'"
        ) from None


def _build_plan(
    co: Checkout,
    source: Source,
    target: pygit2.Oid,
    settings: Settings,
    lock_survey: bool,
    scanned: Scanned | None = None,
) -> Plan:
    repo = co.repo
    head = None if repo.head_is_unborn else repo.head.peel(pygit2.Commit).id
    target_tree = _commit_tree(repo, target)
    assert target_tree is not None
    head_tree = _commit_tree(repo, head)
    index = (
        scanned.index if scanned is not None else read_index(repo, os.path.join(co.gitdir, "index"))
    )
    near: set[str] | None = None
    if index.conflicted or index.marked:
        target_files, head_files = flatten_tree(target_tree), flatten_tree(head_tree, False)
    else:
        gitlinks = gitlink_paths(index)
        target_files, target_changed = files_near_index(repo, index, target_tree, gitlinks)
        if head_tree is not None and head_tree.id == target_tree.id:
            head_files, head_changed = target_files, target_changed
        else:
            head_files, head_changed = files_near_index(repo, index, head_tree, gitlinks, False)
        near = target_changed | head_changed
    reasons = refusals(co, target_files, target)
    elsewhere = checked_out_elsewhere(co, source.branch)
    if elsewhere is not None:
        reasons.append(f"branch {source.branch!r} is checked out in another work tree, {elsewhere}")
    if index.skip_worktree:
        shown = ", ".join(index.skip_worktree[:5])
        reasons.append(
            f"index entries are marked skip-worktree ({shown}); git's reset would leave those "
            "files alone: clear the bit (git update-index --no-skip-worktree) or keep such "
            "files untracked and name them with -e"
        )
    changes = plan_worktree(
        repo,
        TreeView(co.workdir),
        index,
        head_files,
        target_files,
        _rules(co, settings),
        filemode(co),
        may_convert(co, target_files),
        near,
        scanned,
        stat_checks(co),
    )
    missing = _missing_objects(repo, changes, index, head_files, target_files)
    if missing:
        raise Refused(
            f"the repository is missing {len(missing)} object(s) the pull would need "
            f"({', '.join(missing[:5])}); run 'git fsck'"
        )
    on_branch = current_branch(repo)
    tips = []
    if head is not None and on_branch != source.branch and repo.head_is_detached:
        tips.append(head)
    local = repo.references.get(f"refs/heads/{source.branch}")
    local_tip = local.target if local is not None else None
    if isinstance(local_tip, pygit2.Oid):
        tips.append(local_tip)
    elif head is not None and on_branch == source.branch:
        tips.append(head)
    dropped, total = _dropped_commits(repo, tips, target)
    dropped_tips = [
        t for t in dict.fromkeys(tips) if t != target and not repo.descendant_of(target, t)
    ]
    all_locks = (
        locks.survey(co.gitdir, co.commondir, settings.stale_lock_age.value) if lock_survey else []
    )
    return Plan(
        source=source,
        head=head,
        target=target,
        on_branch=on_branch,
        changes=changes,
        target_tree=target_tree,
        target_files=target_files,
        drop_commits=dropped,
        drop_commits_total=total,
        clear_state=leftover_state(co),
        stale_locks=[x for x in all_locks if x.stale],
        busy_locks=[x for x in all_locks if not x.stale],
        refusals=reasons,
        index=index,
        head_files=head_files,
        dropped_tips=dropped_tips,
    )


def _missing_objects(
    repo: pygit2.Repository,
    changes: WorkTreeChanges,
    index: IndexSnapshot,
    head: TreeFiles,
    target: TreeFiles,
) -> list[str]:
    """Blobs the pull relies on that the object store lacks.

    A tracked file the reset deletes or rewrites is backed up only when it differs from HEAD,
    because HEAD holds it; if HEAD's blob is gone, the work tree is the only copy left.
    """
    needed: list[tuple[str, pygit2.Oid]] = []
    for path in (*changes.deletes, *changes.writes):
        for spec in (head.get(path), target.get(path)):
            if spec is not None and spec[0] != MODE_GITLINK:
                needed.append((path, spec[1]))
        entry = index.entries.get(path)
        if entry is not None and entry.mode != MODE_GITLINK:
            needed.append((path, entry.oid))
    for path, stages in index.conflicted.items():
        needed.extend((path, e.oid) for e in stages if e.mode != MODE_GITLINK)
    return sorted({f"{path} ({oid})" for path, oid in needed if oid not in repo})


def _now() -> str:
    """UTC now to the millisecond, ``2026-01-31T12:00:00.123Z``; with time, not datetime (about
    1 ms to import)."""
    seconds, ns = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1_000_000:03d}Z"


def _default_report_path(co: Checkout) -> str:
    return os.path.join(co.gitdir, "gitsafe", "last-report.json")


def _prepare(
    path: str | os.PathLike[str],
    remote: str | None,
    branch: str | None,
    env: Mapping[str, str] | None,
    out: Report,
    **flags: Any,
) -> tuple[Checkout, Settings, Source]:
    report = out
    co = open_checkout(os.fspath(path))
    report.repo = co.workdir
    if report.command == "pull":
        # Decided before the other settings, so that a run that fails on one of them still
        # leaves its report where the next `gitsafe report` looks.
        report.report_path = _pull_report_path(co, flags.get("report"), env)
    settings = resolve(co.repo.config, env, **flags)
    report.settings = settings.as_json()
    if co.repo.head_is_unborn:
        raise Refused(f"{co.workdir}: HEAD is unborn (no commit yet); clone the deploy base first")
    source = choose(co.repo, remote, branch)
    report.remote = {"name": source.remote, "url": redact_url(source.url)}
    report.branch = source.branch
    report.head_before = str(co.repo.head.target)
    return co, settings, source


def _pull_report_path(co: Checkout, explicit: str | None, env: Mapping[str, str] | None) -> str:
    """Where a pull writes its report: ``--report``, else ``GITSAFE_REPORT`` or
    ``gitsafe.report`` (that setting alone, as ``gitsafe report`` reads it), else the sentinel
    in the git directory; refused here if it cannot be written safely."""
    if explicit is not None:  # checked before the repository was opened; "" is the default
        return explicit or _default_report_path(co)
    chosen = report_setting(co.repo.config, env).value
    if not chosen:
        return _default_report_path(co)
    check_report_path(chosen)
    return chosen


def check_report_path(path: str) -> None:
    """Refuse, before anything is touched, a report path that cannot be written safely."""
    full = os.path.abspath(path)
    parent = os.path.dirname(full)
    if os.path.islink(full):
        raise UsageError(f"report path {path} is a symlink; gitsafe never writes through one")
    if not os.path.isdir(parent):
        raise UsageError(f"report path {path}: directory {parent} does not exist")
    if os.path.isdir(full):
        raise UsageError(f"report path {path} is a directory")
    try:
        mode = os.lstat(full).st_mode
    except FileNotFoundError:
        mode = stat.S_IFREG  # a new file
    if not stat.S_ISREG(mode):
        # The report replaces the file by a rename: a device (/dev/null), a fifo or a socket
        # would be replaced by a plain file.
        raise UsageError(f"report path {path} is not a regular file; gitsafe replaces the file")
    from gitsafe.execute import read_only_mount

    if not os.access(parent, os.W_OK | os.X_OK) or read_only_mount(parent):
        raise UsageError(f"report path {path}: directory {parent} is not writable")


def _check_options(**options: object) -> None:
    """The keyword arguments' types, before anything is touched (a wrong one used to surface
    only where it was used, part way through a pull)."""
    for name, value in options.items():
        if value is None:
            continue
        if name in ("lock_timeout", "stale_lock_age", "alert_timeout"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            kind = "a number of seconds"
        elif name in ("retries", "depth"):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an int"
        elif name in ("backup", "accept_new_host_key", "quiet_git", "progress", "fetch_first"):
            ok, kind = isinstance(value, bool), "a bool"
        elif name == "env":
            ok = isinstance(value, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            )
            kind = "a mapping of str to str"
        elif name in ("report_path", "metrics_file"):
            ok = isinstance(value, (str, os.PathLike))
            kind = "a str or os.PathLike"
        else:
            ok, kind = isinstance(value, str), "a str"
        if not ok:
            raise TypeError(f"{name} must be {kind} or None, not {type(value).__name__}")


def _fspath(value: str | os.PathLike[str] | None) -> str | None:
    """A path argument as text (a ``pathlib.Path`` is welcome where a str is)."""
    if value is None:
        return None
    text = os.fspath(value)
    if not isinstance(text, str):
        raise TypeError("a path must be a str or an os.PathLike of str, not bytes")
    return text


def _check_types(path: object, remote: object, branch: object, exclude: object) -> list[str]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError("path must be a str or os.PathLike")
    for name, value in (("remote", remote), ("branch", branch)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None")
    if isinstance(exclude, str) or not isinstance(exclude, Sequence):
        raise TypeError("exclude must be a sequence of str")
    if not all(isinstance(p, str) for p in exclude):
        raise TypeError("exclude must be a sequence of str")
    return list(exclude)


def _fail(report: Report, error: GitsafeError) -> None:
    report.outcome = "refused" if isinstance(error, Refused) else "failed"
    report.exit_code = error.exit_code
    report.error = {"kind": error.kind, "message": error.message}


def doctor(
    path: str | os.PathLike[str] = ".",
    remote: str | None = None,
    branch: str | None = None,
    *,
    exclude: Sequence[str] = (),
    fetch_first: bool = False,
    report_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    retries: int | None = None,
    depth: int | None = None,
    accept_new_host_key: bool | None = None,
    progress: bool = False,
) -> Report:
    """Compute what ``pull`` would do, changing nothing (exit code 0 clean, 1 would heal).

    ``progress=True`` shows a progress bar for ``fetch_first`` when stderr is a terminal.
    """
    patterns = _check_types(path, remote, branch, exclude)
    _check_options(
        fetch_first=fetch_first,
        report_path=report_path,
        env=env,
        retries=retries,
        depth=depth,
        accept_new_host_key=accept_new_host_key,
        progress=progress,
    )
    report_path = _fspath(report_path)
    started, t0 = _now(), time.monotonic()
    report = Report("doctor", started_at=started)
    try:
        if report_path:  # doctor writes a report only when asked, never to the default path
            check_report_path(report_path)
            report.report_path = report_path
        co, settings, source = _prepare(
            path,
            remote,
            branch,
            env,
            report,
            exclude=patterns,
            retries=retries,
            depth=depth,
            accept_new_host_key=accept_new_host_key,
        )
        if fetch_first:
            target = _fetch(co, settings, source, report, env, progress, keep_fetch_head=False)
        else:
            tip = tracking_tip(co.repo, source)
            if tip is None:
                raise GitsafeError(
                    f"no {source.tracking_ref} yet: run 'gitsafe doctor --fetch' to fetch it"
                )
            target = tip
        report.target = str(target)
        early = prescan.claim(co.workdir, os.path.join(co.gitdir, "index"))
        scanned = early.result() if early is not None else None
        plan = build_plan(co, source, target, settings, scanned=scanned)
        plan.fetched = fetch_first
        report.plan = plan.as_json()
        if plan.refusals:
            raise Refused("refusing: " + "; ".join(plan.refusals))
        if plan.needs_heal:
            report.outcome, report.exit_code = "would-heal", 1
        elif plan.moves:
            report.outcome, report.exit_code = "would-fast-forward", 0
        else:
            report.outcome, report.exit_code = "up-to-date", 0
    except GitsafeError as e:
        _fail(report, e)
        report.exit_code = 2  # doctor: 2 whenever no plan could be given
    report.duration_ms = int((time.monotonic() - t0) * 1000)
    if report.report_path:
        _save(report, report.report_path)
    return report


def pull(
    path: str | os.PathLike[str] = ".",
    remote: str | None = None,
    branch: str | None = None,
    *,
    exclude: Sequence[str] = (),
    report_path: str | os.PathLike[str] | None = None,
    lock_timeout: float | None = None,
    stale_lock_age: float | None = None,
    backup: bool | None = None,
    env: Mapping[str, str] | None = None,
    quiet_git: bool = False,
    alert_command: str | None = None,
    webhook: str | None = None,
    webhook_format: str | None = None,
    alert_timeout: float | None = None,
    metrics_file: str | os.PathLike[str] | None = None,
    retries: int | None = None,
    depth: int | None = None,
    accept_new_host_key: bool | None = None,
    progress: bool = False,
) -> Report:
    """Converge the checkout to REMOTE/BRANCH and report what was done.

    ``backup=False`` is ``--no-backup``: nothing discarded is saved (the report says so).
    The alert and metrics arguments are the ``--alert-command`` ... ``--metrics-file`` flags;
    ``retries``, ``depth`` and ``accept_new_host_key`` the fetch's flags; ``progress=True``
    shows a progress bar for the fetch when stderr is a terminal.
    """
    patterns = _check_types(path, remote, branch, exclude)
    _check_options(
        report_path=report_path,
        lock_timeout=lock_timeout,
        stale_lock_age=stale_lock_age,
        backup=backup,
        env=env,
        quiet_git=quiet_git,
        alert_command=alert_command,
        webhook=webhook,
        webhook_format=webhook_format,
        alert_timeout=alert_timeout,
        metrics_file=metrics_file,
        retries=retries,
        depth=depth,
        accept_new_host_key=accept_new_host_key,
        progress=progress,
    )
    report_path, metrics_file = _fspath(report_path), _fspath(metrics_file)
    started, t0 = _now(), time.monotonic()
    report = Report("pull", started_at=started)
    co: Checkout | None = None
    settings: Settings | None = None
    alerting_flags: dict[str, Any] = {
        "alert_command": alert_command,
        "webhook": webhook,
        "webhook_format": webhook_format,
        "alert_timeout": alert_timeout,
        "metrics_file": metrics_file,
    }
    try:
        if report_path:  # first: a run that finds no repository still reports there
            check_report_path(report_path)
            report.report_path = report_path
        co, settings, source = _prepare(
            path,
            remote,
            branch,
            env,
            report,
            exclude=patterns,
            report=report_path,
            lock_timeout=lock_timeout,
            stale_lock_age=stale_lock_age,
            backup=backup,
            retries=retries,
            depth=depth,
            accept_new_host_key=accept_new_host_key,
            **alerting_flags,
        )
        if not settings.enabled.value:
            _disabled_pull(co, source, report, quiet_git)
        else:
            with (
                runlock.Interrupts() as interrupts,
                runlock.exclusive(
                    co.gitdir, settings.lock_timeout.value, checkpoint=interrupts.check
                ) as lock_seen,
            ):
                try:
                    with deep_enough():  # the walks below recurse once a directory level
                        _converge(
                            co,
                            settings,
                            source,
                            report,
                            interrupts.check,
                            env=env,
                            progress=progress,
                            lock_seen=lock_seen,
                        )
                finally:
                    locks.clear_journal(co.gitdir)
    except GitsafeError as e:
        _fail(report, e)
    except OSError as e:
        why = "no space left on the device" if e.errno == errno.ENOSPC else "I/O error"
        _fail(report, GitsafeError(f"{why}: {e}; a rerun converges once it is fixed"))
    if co is not None and not co.repo.head_is_unborn:
        report.head_after = str(co.repo.head.target)
    report.duration_ms = int((time.monotonic() - t0) * 1000)
    _alert_and_measure(report, settings, path, env, alerting_flags)
    if report.report_path:
        _save(report, report.report_path)
    return report


def _alert_and_measure(
    report: Report,
    settings: Settings | None,
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None,
    flags: dict[str, Any],
) -> None:
    """Alerts and metrics once the outcome is final, before the report is saved (so the saved
    report holds their results).  Neither can change the outcome or the exit code."""
    # alerts and metrics are imported only when configured: urllib and http cost ~25 ms
    if settings is not None:
        alerting = settings.alerting
    else:  # failed before settings were resolved: the alert matters all the more
        from gitsafe import alerts

        try:
            alerting = alerts.fallback(path, env, **flags)
        except GitsafeError as e:
            report.warnings.append(f"no alert sent: {e.message}")
            return
        for name, value in alerting.as_json().items():
            report.settings.setdefault(name, value)
    if alerting.alert_command.value or alerting.webhook.value:
        from gitsafe import alerts

        alerts.send(report, alerting)
    if alerting.metrics_file.value:
        from gitsafe import metrics

        metrics.write(report, alerting.metrics_file.value, os.path.abspath(path))


def _save(report: Report, path: str) -> None:
    try:
        if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
            # checked before the run; this is what took its place since
            raise OSError(errno.EEXIST, "not a regular file; gitsafe replaces only a file")
        write_atomic(path, report.to_json_text())
    except OSError as e:
        report.warnings.append(f"could not write the report to {path}: {e.strerror or e}")


def _converge(
    co: Checkout,
    settings: Settings,
    source: Source,
    report: Report,
    checkpoint: Callable[[], None],
    env: Mapping[str, str] | None = None,
    progress: bool = False,
    lock_seen: runlock.Seen = runlock.UNSEEN,
) -> None:
    """Fetch, plan, back up, then act; ``checkpoint`` raises at a safe point after a signal.

    Nothing in the work tree is touched before the backup is on disk, and every step is
    recomputed from disk on the next run, so a run stopped anywhere (SIGKILL included) leaves a
    checkout from which the next pull converges.
    """
    # Here, not at the top: a doctor never needs them (about 2 ms of imports).
    from gitsafe import backup, execute

    repo = co.repo
    early = refusals(co)
    elsewhere = checked_out_elsewhere(co, source.branch)
    if elsewhere is not None:
        early.append(f"branch {source.branch!r} is checked out in another work tree, {elsewhere}")
    if early:
        raise Refused("refusing: " + "; ".join(early))
    removed_locks = locks.recover_journal(co.gitdir)
    removed_locks += locks.settle(
        co.gitdir,
        co.commondir,
        settings.stale_lock_age.value,
        settings.lock_timeout.value,
        checkpoint=checkpoint,
    )
    backup_id = backup.new_id()
    locks.write_journal(co.gitdir, _our_locks(co, source, backup_id))
    checkpoint()
    # The plan's reads of the work tree do not depend on what the fetch brings: they run
    # beside it, if the command line did not start them already (gitsafe/prescan.py).
    index_path = os.path.join(co.gitdir, "index")
    reads = prescan.claim(co.workdir, index_path) or prescan.Prescan(
        co.workdir, index_path, filemode(co)
    )
    try:
        target = _fetch(co, settings, source, report, env, progress, checkpoint)
    finally:
        reads.join()
    report.target = str(target)
    checkpoint()
    plan = build_plan(co, source, target, settings, False, reads.result(lock_seen))
    plan.stale_locks = removed_locks
    report.plan = plan.as_json()
    if plan.refusals:
        raise Refused("refusing: " + "; ".join(plan.refusals))
    blocked = execute.preflight(co.workdir, plan.changes)
    if blocked:
        raise GitsafeError(
            f"permission denied: cannot change {len(blocked)} path(s): {', '.join(blocked[:5])}; "
            "nothing was changed",
            paths=blocked,
        )
    checkpoint()
    heal = plan.needs_heal
    if not settings.backup.value:
        report.backup = {"skipped": True, "reason": f"--no-backup ({settings.backup.source})"}
    elif heal:
        assert plan.index is not None
        info = backup.create(
            repo,
            co.workdir,
            co.gitdir,
            co.commondir,
            plan.changes,
            plan.index,
            plan.head_files,
            plan.clear_state,
            plan.dropped_tips,
            source.branch,
            settings.backup_max_file_size.value,
            backup_id,
        )
        if info is not None:
            info.pruned = backup.prune(
                repo,
                co.gitdir,
                settings.backup_keep.value,
                settings.backup_keep_days.value,
                made_now=backup_id,
            )
            report.backup = info.as_json()
    checkpoint()
    assert report.plan is not None
    report.plan["applied"] = True  # from here on, the checkout changes
    if plan.clear_state:
        execute.clear_state(co.gitdir, co.commondir, plan.clear_state)
    execute.reset_worktree(
        repo, co.workdir, plan.target_tree, plan.target_files, plan.changes, checkpoint, plan.index
    )
    execute.move_branch(repo, source.remote, source.branch, target, plan.head)
    failed = execute.clean_worktree(co.workdir, plan.changes.clean, checkpoint)
    if failed:
        shown = ", ".join(f"{path} ({why})" for path, why in failed[:5])
        raise GitsafeError(
            f"could not remove {len(failed)} untracked path(s): {shown}",
            paths=[path for path, _ in failed],
        )
    if heal:
        report.outcome = "healed"
    elif plan.moves:
        report.outcome = "fast-forwarded"
    else:
        report.outcome = "up-to-date"
    report.exit_code = 0


def _fetch(
    co: Checkout,
    settings: Settings,
    source: Source,
    report: Report,
    env: Mapping[str, str] | None,
    progress: bool,
    checkpoint: Callable[[], None] = lambda: None,
    keep_fetch_head: bool = True,
) -> pygit2.Oid:
    """Fetch with the resolved network settings; the report's ``fetch`` records every try."""
    from gitsafe.transport import FetchInfo

    info = FetchInfo()
    options = fetch_options(co.repo, source, settings.network, env, progress, checkpoint)
    try:
        return fetch(co.repo, source, keep_fetch_head, options, info)
    finally:
        report.fetch = info.as_json()


def _our_locks(co: Checkout, source: Source, backup_id: str) -> list[str]:
    """Every lock file the libgit2 calls of one pull may create."""
    from gitsafe.backup import REF_PREFIX

    g, c = co.gitdir, co.commondir
    return [
        os.path.join(g, "index.lock"),
        os.path.join(g, "HEAD.lock"),
        os.path.join(g, "ORIG_HEAD.lock"),
        os.path.join(g, "FETCH_HEAD.lock"),
        os.path.join(c, "config.lock"),
        os.path.join(c, "packed-refs.lock"),
        os.path.join(c, "shallow.lock"),
        os.path.join(c, f"refs/heads/{source.branch}.lock"),
        os.path.join(c, f"{source.tracking_ref}.lock"),
        os.path.join(c, f"{REF_PREFIX}{backup_id}.lock"),
    ]


def _disabled_pull(co: Checkout, source: Source, report: Report, quiet: bool) -> None:
    """The kill-switch: plain ``git pull REMOTE BRANCH``, the one place gitsafe runs git."""
    cmd = ["git", "pull", *(["--quiet"] if quiet else []), source.remote, source.branch]
    try:
        # git's own output goes to stderr so that stdout stays machine-readable (--json).
        # A hook's GIT_DIR/GIT_WORK_TREE would send git to another repository: drop them.
        import subprocess

        from gitsafe.gitenv import without_repository_variables

        env = without_repository_variables(os.environ)
        proc = subprocess.run(cmd, cwd=co.workdir, stdout=sys.stderr, env=env, check=False)
    except FileNotFoundError:
        raise UsageError("gitsafe is disabled and no git binary is on PATH") from None
    report.outcome = "disabled"
    report.exit_code = 0 if proc.returncode == 0 else 1
    if proc.returncode != 0:
        report.error = {"kind": "git-pull", "message": f"git pull exited {proc.returncode}"}
