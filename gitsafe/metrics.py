"""Prometheus metrics of the last pull, for node_exporter's textfile collector.

One file per deploy base, every series labelled with the repository, so several deploy bases
can share one textfile directory.  Totals carry across runs by reading the previous file back
(a tiny reader of the text format gitsafe itself writes: no runtime dependency).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from gitsafe.report import OUTCOMES_PULL, Report, write_atomic

# (name, help); the order is the order in the file.
_GAUGES = (
    ("gitsafe_last_run_timestamp_seconds", "Unix time the last gitsafe pull finished."),
    ("gitsafe_last_run_duration_seconds", "Wall time of the last gitsafe pull."),
    (
        "gitsafe_last_exit_code",
        "Exit code of the last gitsafe pull (0 converged, 1 failed, 2 refused or misconfigured).",
    ),
    ("gitsafe_last_outcome", "1 for the outcome of the last gitsafe pull, 0 for the others."),
    (
        "gitsafe_last_run_paths",
        "Paths the last gitsafe pull restored, removed, kept or brought in.",
    ),
    (
        "gitsafe_last_run_dropped_commits",
        "Local commits the last gitsafe pull dropped (backed up).",
    ),
    (
        "gitsafe_last_success_timestamp_seconds",
        "Unix time of the last gitsafe pull that converged (0: none recorded).",
    ),
)
_COUNTERS = (
    ("gitsafe_runs_total", "gitsafe pulls run."),
    ("gitsafe_heals_total", "gitsafe pulls that healed the checkout."),
    ("gitsafe_failures_total", "gitsafe pulls that did not converge (exit code not 0)."),
    ("gitsafe_alert_failures_total", "Alerts (command or webhook) that failed."),
)
_CARRIED = (*(name for name, _ in _COUNTERS), "gitsafe_last_success_timestamp_seconds")

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
_MAX_PREVIOUS = 1 << 20  # a metrics file is a few KiB; never slurp a huge foreign file


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _labels(text: str) -> dict[str, str]:
    return {m.group("key"): _unescape(m.group("value")) for m in _LABEL.finditer(text)}


def read_previous(path: str) -> tuple[str | None, dict[str, float]]:
    """The repository label and carried values of a previous file (nothing if unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(_MAX_PREVIOUS)
    except OSError:
        return None, {}
    repo: str | None = None
    values: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = _labels(m.group("labels"))
        repo = labels.get("repo", repo)
        if m.group("name") in _CARRIED:
            try:
                values[m.group("name")] = float(m.group("value"))
            except ValueError:
                continue
    return repo, values


def render(report: Report, repo: str, previous: dict[str, float], now: float) -> str:
    plan = report.plan or {}
    ok = report.exit_code == 0
    alert_failures = sum(1 for a in report.alerts if not a.get("ok"))
    runs = previous.get("gitsafe_runs_total", 0) + 1
    values: dict[str, list[tuple[dict[str, str], float]]] = {
        "gitsafe_last_run_timestamp_seconds": [({}, round(now, 3))],
        "gitsafe_last_run_duration_seconds": [({}, report.duration_ms / 1000)],
        "gitsafe_last_exit_code": [({}, report.exit_code)],
        "gitsafe_last_outcome": [
            ({"outcome": o}, 1 if report.outcome == o else 0) for o in OUTCOMES_PULL
        ],
        "gitsafe_last_run_paths": [
            ({"kind": kind}, len(plan.get(key, [])))
            for kind, key in (
                ("restored", "restore"),
                ("removed", "remove"),
                ("kept", "keep"),
                ("incoming", "incoming"),
            )
        ],
        "gitsafe_last_run_dropped_commits": [({}, plan.get("drop_commits_total", 0))],
        "gitsafe_last_success_timestamp_seconds": [
            ({}, round(now, 3) if ok else previous.get("gitsafe_last_success_timestamp_seconds", 0))
        ],
        "gitsafe_runs_total": [({}, runs)],
        "gitsafe_heals_total": [
            ({}, previous.get("gitsafe_heals_total", 0) + (report.outcome == "healed"))
        ],
        "gitsafe_failures_total": [({}, previous.get("gitsafe_failures_total", 0) + (not ok))],
        "gitsafe_alert_failures_total": [
            ({}, previous.get("gitsafe_alert_failures_total", 0) + alert_failures)
        ],
    }
    lines: list[str] = []
    for kind, family in (("gauge", _GAUGES), ("counter", _COUNTERS)):
        for name, help_text in family:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for extra, value in values[name]:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in {"repo": repo, **extra}.items())
                lines.append(f"{name}{{{labels}}} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write(report: Report, path: str, fallback_repo: str) -> None:
    """Write the metrics of a finished pull to ``path`` (atomically, mode 0644) and record the
    result in ``report.metrics``; a failure is a warning, never a failed pull."""
    full = os.path.abspath(path)
    # The exposition format is UTF-8: a path that is not (surrogate escapes) is labelled with
    # backslash escapes, the same way every run, so its totals still carry over.
    repo = (
        (report.repo or fallback_repo)
        .encode("utf-8", "surrogateescape")
        .decode("utf-8", "backslashreplace")
    )
    result: dict[str, Any] = {"path": full, "written": False, "error": None}
    report.metrics = result
    previous_repo, previous = read_previous(full)
    if previous_repo is not None and previous_repo != repo:
        report.warnings.append(
            f"metrics file {full} held the metrics of {previous_repo}; its totals start again "
            "(give each deploy base its own metrics file)"
        )
        previous = {}
    if os.path.islink(full):
        result["error"] = "the path is a symlink; gitsafe never writes through one"
    elif not os.path.isdir(os.path.dirname(full)):
        # Not created on the fly: a mistyped textfile directory would never be scraped.
        result["error"] = f"directory {os.path.dirname(full)} does not exist"
    else:
        try:
            write_atomic(full, render(report, repo, previous, time.time()))
            result["written"] = True
        except (OSError, ValueError) as e:  # ValueError: text the file cannot hold
            result["error"] = str(getattr(e, "strerror", None) or e)
    if result["error"]:
        report.warnings.append(f"could not write the metrics to {full}: {result['error']}")
