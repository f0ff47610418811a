"""Wall time and peak memory of the whole suite (`make all`) on the demo study.

Usage: ``.venv/bin/python bench/bench_suite.py [--repeat N]``

Each repetition runs ``make all OUT=<fresh temporary folder>`` (so every notebook
really runs) under GNU time, and reports the wall time and the peak resident
memory of the largest process (the notebook kernels included).  Prints a
Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "make", "--no-print-directory", "all", f"OUT={out}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    wall, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), float(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cores, python = os.cpu_count(), platform.python_version()
    print(f"machine: {platform.machine()}, {cores} cores, Python {python}")
    print("| run | wall time (s) | peak RSS (MiB) |")
    print("|---|---|---|")
    for i in range(1, args.repeat + 1):
        wall, rss = run_once()
        print(f"| {i} | {wall:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
