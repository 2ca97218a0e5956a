"""The metrics file, read back with prometheus_client's own parser (as node_exporter would)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import jsonschema
import pytest
from gitfixtures import Origin, git, write
from prometheus_client.parser import text_string_to_metric_families

import gitsafe

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())


def parse(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {labels: value}}, after checking every family has HELP and TYPE."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.documentation, family.name
        assert family.type in ("gauge", "counter"), family.name
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    for key, found in samples[name].items():
        if all(dict(key).get(k) == v for k, v in labels.items()):
            return found
    raise KeyError((name, labels))


def dirty(deploy: Path) -> None:
    write(deploy, "src/config.py", "DEBUG = True\n")
    write(deploy, "scratch.txt")
    write(deploy, "app.log")  # ignored: kept


def test_metrics_file_parses_with_prometheus_client_and_tells_the_last_run(
    deploy: Path, tmp_path: Path
) -> None:
    dirty(deploy)
    prom = tmp_path / "gitsafe-shop.prom"
    before = time.time()
    report = gitsafe.pull(deploy, metrics_file=str(prom))
    assert report.outcome == "healed"
    assert report.metrics == {"path": str(prom), "written": True, "error": None}
    jsonschema.validate(report.as_json(), SCHEMA)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # node_exporter runs as another user
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    m = parse(prom)
    assert {dict(k)["repo"] for samples in m.values() for k in samples} == {str(deploy)}
    assert before <= value(m, "gitsafe_last_run_timestamp_seconds") <= time.time()
    assert value(m, "gitsafe_last_run_duration_seconds") == report.duration_ms / 1000
    assert value(m, "gitsafe_last_exit_code") == 0
    outcomes = {dict(k)["outcome"]: v for k, v in m["gitsafe_last_outcome"].items()}
    assert outcomes == {
        "up-to-date": 0,
        "fast-forwarded": 0,
        "healed": 1,
        "refused": 0,
        "failed": 0,
        "disabled": 0,
    }
    paths = {dict(k)["kind"]: v for k, v in m["gitsafe_last_run_paths"].items()}
    assert paths == {"restored": 1, "removed": 1, "kept": 1, "incoming": 0}
    assert value(m, "gitsafe_runs_total") == 1
    assert value(m, "gitsafe_heals_total") == 1
    assert value(m, "gitsafe_failures_total") == 0
    assert value(m, "gitsafe_last_success_timestamp_seconds") == value(
        m, "gitsafe_last_run_timestamp_seconds"
    )


def test_totals_carry_across_runs_and_a_failure_keeps_the_last_success_time(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    prom = tmp_path / "shop.prom"
    dirty(deploy)
    gitsafe.pull(deploy, metrics_file=str(prom))  # healed
    write(origin.work, "new.txt")
    origin.push()
    gitsafe.pull(deploy, metrics_file=str(prom))  # fast-forwarded
    success = value(parse(prom), "gitsafe_last_success_timestamp_seconds")
    git(deploy, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    failed = gitsafe.pull(deploy, metrics_file=str(prom))
    assert (failed.outcome, failed.exit_code) == ("failed", 1)
    m = parse(prom)
    assert value(m, "gitsafe_runs_total") == 3
    assert value(m, "gitsafe_heals_total") == 1
    assert value(m, "gitsafe_failures_total") == 1
    assert value(m, "gitsafe_last_exit_code") == 1
    assert value(m, "gitsafe_last_outcome", outcome="failed") == 1
    assert value(m, "gitsafe_last_success_timestamp_seconds") == success
    assert value(m, "gitsafe_last_run_timestamp_seconds") > success


def test_a_failed_first_run_reports_no_success_yet_and_counts_failed_alerts(
    deploy: Path, tmp_path: Path
) -> None:
    prom = tmp_path / "shop.prom"
    git(deploy, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    report = gitsafe.pull(deploy, metrics_file=str(prom), alert_command="exit 1")
    assert report.exit_code == 1 and not report.alerts[0]["ok"]
    m = parse(prom)
    assert value(m, "gitsafe_last_success_timestamp_seconds") == 0
    assert value(m, "gitsafe_alert_failures_total") == 1


def test_repository_paths_with_quotes_backslashes_and_newlines_survive_as_labels(
    origin: Origin, tmp_path: Path
) -> None:
    deploy = origin.clone(tmp_path / 'de"p\\lo\ny')
    prom = tmp_path / "odd.prom"
    gitsafe.pull(deploy, metrics_file=str(prom))
    gitsafe.pull(deploy, metrics_file=str(prom))
    m = parse(prom)
    assert {dict(k)["repo"] for k in m["gitsafe_runs_total"]} == {str(deploy)}
    assert value(m, "gitsafe_runs_total") == 2  # read back through the escapes


def test_metrics_file_precedence_and_doctor_writes_none(
    deploy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(deploy, "config", "gitsafe.metricsFile", str(tmp_path / "config.prom"))
    report = gitsafe.pull(deploy)
    assert report.settings["metrics_file"]["source"] == "git-config:gitsafe.metricsFile"
    assert (tmp_path / "config.prom").exists()
    monkeypatch.setenv("GITSAFE_METRICS_FILE", str(tmp_path / "env.prom"))
    gitsafe.pull(deploy)
    assert (tmp_path / "env.prom").exists()
    gitsafe.pull(deploy, metrics_file=str(tmp_path / "flag.prom"))
    assert (tmp_path / "flag.prom").exists()
    (tmp_path / "env.prom").unlink()
    doctor = gitsafe.doctor(deploy)
    assert doctor.metrics is None
    assert not (tmp_path / "env.prom").exists()


def test_a_metrics_file_of_another_repository_restarts_the_totals_with_a_warning(
    origin: Origin, deploy: Path, tmp_path: Path
) -> None:
    other = origin.clone(tmp_path / "other")
    prom = tmp_path / "shared.prom"
    gitsafe.pull(other, metrics_file=str(prom))
    gitsafe.pull(other, metrics_file=str(prom))
    report = gitsafe.pull(deploy, metrics_file=str(prom))
    assert report.warnings == [
        f"metrics file {prom} held the metrics of {other}; its totals start again "
        "(give each deploy base its own metrics file)"
    ]
    assert value(parse(prom), "gitsafe_runs_total", repo=str(deploy)) == 1


def test_an_unwritable_metrics_location_is_a_warning_and_not_a_failed_pull(
    deploy: Path, tmp_path: Path
) -> None:
    dirty(deploy)
    missing = tmp_path / "no-such-dir" / "shop.prom"
    report = gitsafe.pull(deploy, metrics_file=str(missing))
    assert (report.outcome, report.exit_code) == ("healed", 0)
    assert report.metrics == {
        "path": str(missing),
        "written": False,
        "error": f"directory {missing.parent} does not exist",
    }
    assert report.warnings == [
        f"could not write the metrics to {missing}: directory {missing.parent} does not exist"
    ]
    assert not missing.parent.exists()
    jsonschema.validate(report.as_json(), SCHEMA)
    link = tmp_path / "link.prom"
    link.symlink_to(tmp_path / "target.prom")
    report = gitsafe.pull(deploy, metrics_file=str(link))
    assert report.metrics is not None and not report.metrics["written"]
    assert link.is_symlink() and not (tmp_path / "target.prom").exists()


def test_a_corrupt_previous_file_is_replaced_and_totals_start_again(
    deploy: Path, tmp_path: Path
) -> None:
    prom = tmp_path / "shop.prom"
    prom.write_bytes(b"\xff\xfe garbage {{{ \n gitsafe_runs_total{repo=\n")
    report = gitsafe.pull(deploy, metrics_file=str(prom))
    assert report.metrics is not None and report.metrics["written"]
    assert value(parse(prom), "gitsafe_runs_total") == 1


def test_a_repository_path_that_is_not_utf8_gets_an_escaped_label_and_the_pull_stands(
    origin: Origin, tmp_path: Path
) -> None:
    import os

    deploy = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    origin.clone(deploy)
    prom = tmp_path / "latin1.prom"
    first = gitsafe.pull(deploy, metrics_file=str(prom))
    second = gitsafe.pull(deploy, metrics_file=str(prom))
    assert first.exit_code == 0 and second.exit_code == 0, second.to_json_text()
    assert second.metrics is not None and second.metrics["written"], second.warnings
    m = parse(prom)
    assert {dict(k)["repo"] for k in m["gitsafe_runs_total"]} == {f"{tmp_path}/caf\\xe9"}
    assert value(m, "gitsafe_runs_total") == 2  # the escaped label still carries the totals
