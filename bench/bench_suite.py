"""Wall time, CPU time and peak memory of the whole suite (`make all`) on the demo study.

Usage: ``.venv/bin/python bench/bench_suite.py [--repeat N] [--jobs 1 2] [--kernels warm cold]``

Each repetition runs ``make all JOBS=<j> OUT=<fresh temporary folder>`` (so every
notebook really runs) under GNU time, and reports the wall time, the CPU time
(user + system, of every process of the run: runner, kernels, report) and the
peak resident memory of the largest process.  On a shared machine the wall time
follows the load; the CPU time much less, so compare versions by both.  Prints a
Markdown table; nothing is asserted.  ``--kernels cold`` runs with
``HELPERS_WARM_KERNELS=0`` (every notebook starts a fresh kernel), so warm and
fresh kernels are compared in the same session.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(jobs: int, kernels: str = "warm") -> tuple[float, float, float]:
    """One ``make all`` into a fresh folder: wall seconds, CPU seconds, peak MiB."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = ["make", "--no-print-directory", "all", f"OUT={out}", f"JOBS={jobs}"]
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %S %M", *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "HELPERS_WARM_KERNELS": "0" if kernels == "cold" else "1"},
        )
    wall, user, system, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(system), float(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kernels", nargs="+", choices=["warm", "cold"], default=["warm"])
    args = parser.parse_args()
    cores, python = os.cpu_count(), platform.python_version()
    print(f"machine: {platform.machine()}, {cores} cores, Python {python}")
    print("| run | JOBS | kernels | wall time (s) | CPU time (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for i in range(1, args.repeat + 1):
        for jobs in args.jobs:
            for kernels in args.kernels:
                wall, cpu, rss = run_once(jobs, kernels)
                row = f"| {i} | {jobs} | {kernels} | {wall:.1f} | {cpu:.1f} | {rss:.0f} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
