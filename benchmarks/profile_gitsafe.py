#!/usr/bin/env python3
"""Profile one gitsafe run per scenario on a bench.py deploy base; text output per scenario.

    .venv/bin/python benchmarks/profile_gitsafe.py --size 50000 --out benchmarks/profiles

For each scenario (heal, noop, doctor) a fresh copy of the prepared state is made (as in
bench.py), then gitsafe runs in-process under pyinstrument (``<scenario>-n<N>.pyinstrument.txt``)
and, on another fresh copy, under cProfile (``<scenario>-n<N>.cprofile.txt``, top functions by
own time and by cumulative time).  Needs ``pip install pyinstrument`` for the first.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench


def _portable(text: str) -> str:
    """Profiles name files relative to the source tree and the interpreter's lib directories,
    not by this machine's absolute paths."""
    import sysconfig

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"
    for prefix, short in (
        (sysconfig.get_paths()["purelib"] + "/", "site-packages/"),
        (sysconfig.get_paths()["stdlib"] + "/", "stdlib/"),
        (root, ""),
    ):
        text = text.replace(prefix, short)
    return text


def run_cli(argv: list[str]) -> int:
    from gitsafe.cli import main

    old = sys.argv
    sys.argv = ["gitsafe", *argv]
    try:
        main()
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = old
    return 0


def argv_for(scenario: str, repo: str) -> list[str]:
    if scenario == "doctor":
        return ["doctor", "-C", repo, "-e", bench.EXCLUDE]
    return ["pull", "origin", "main", "-C", repo, "-e", bench.EXCLUDE, "-q"]


PREPARE = {"heal": bench.prep_heal, "noop": bench.prep_noop, "doctor": bench.prep_heal}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=50000)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "profiles"))
    p.add_argument("--only", action="append", choices=sorted(PREPARE))
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "gitsafe-bench"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    home = os.path.join(args.workdir, "home")
    os.makedirs(home, exist_ok=True)
    bench.ENV.update(bench.bench_env(home))
    # gitsafe runs in this process: give it the same isolated environment.
    for k in [k for k in os.environ if k.startswith(("GIT_", "GITSAFE_"))]:
        del os.environ[k]
    os.environ.update(HOME=home, GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    import pygit2

    for level in (
        pygit2.enums.ConfigLevel.GLOBAL,
        pygit2.enums.ConfigLevel.XDG,
        pygit2.enums.ConfigLevel.SYSTEM,
    ):
        pygit2.settings.search_path[level] = home
    t = bench.template(args.workdir, args.size)
    scratch = tempfile.mkdtemp(prefix="profile-", dir=args.workdir)
    import gitsafe.cli  # noqa: F401  (imports are not what we profile here; see bench startup)

    try:
        for scenario in args.only or ["heal", "noop", "doctor"]:
            stem = os.path.join(args.out, f"{scenario}-n{args.size}")
            # pyinstrument
            try:
                from pyinstrument import Profiler
            except ImportError:
                Profiler = None
            if Profiler is not None:
                repo = os.path.join(scratch, f"{scenario}-pyi")
                PREPARE[scenario](t, repo)
                prof = Profiler(interval=0.001)
                t0 = time.perf_counter()
                prof.start()
                code = run_cli(argv_for(scenario, repo))
                prof.stop()
                wall = time.perf_counter() - t0
                with open(stem + ".pyinstrument.txt", "w") as f:
                    f.write(
                        f"# gitsafe {' '.join(argv_for(scenario, '<copy>'))}: exit {code}, "
                        f"{wall:.3f} s wall (in-process, profiler on)\n"
                    )
                    f.write(_portable(prof.output_text(unicode=True, color=False, show_all=False)))
                shutil.rmtree(repo, ignore_errors=True)
            # cProfile
            repo = os.path.join(scratch, f"{scenario}-cprof")
            PREPARE[scenario](t, repo)
            cp = cProfile.Profile()
            t0 = time.perf_counter()
            cp.enable()
            code = run_cli(argv_for(scenario, repo))
            cp.disable()
            wall = time.perf_counter() - t0
            buf = io.StringIO()
            buf.write(
                f"# gitsafe {' '.join(argv_for(scenario, '<copy>'))}: exit {code}, "
                f"{wall:.3f} s wall (in-process, cProfile on)\n\n"
            )
            stats = pstats.Stats(cp, stream=buf)
            stats.sort_stats("tottime").print_stats(35)
            stats.sort_stats("cumulative").print_stats(45)
            with open(stem + ".cprofile.txt", "w") as f:
                f.write(_portable(buf.getvalue()))
            shutil.rmtree(repo, ignore_errors=True)
            print(f"{scenario}: {stem}.*", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
