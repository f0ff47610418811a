"""Wall time and peak memory of the cleaning step at 100k, 1M and 5M rows.

The input is the demo study's export (``data/raw/demo/sessions.csv``) copied
``k`` times with the therapist and patient ids made unique per copy, so every
copy carries the demo's faults (duplicates, out-of-range values, a mistyped
therapist) and the cleaning rules do real work at every size.  Each size runs
``python -m helpers clean`` in a fresh process; peak memory is that process's
maximum resident set size (``getrusage(RUSAGE_CHILDREN)``), wall time is
measured around it.

Usage::

    .venv/bin/python bench/bench_cleaning.py                 # 100k, 1M, 5M rows
    .venv/bin/python bench/bench_cleaning.py --rows 100000   # one size
    .venv/bin/python bench/bench_cleaning.py --keep /tmp/bench-cleaning

The table is printed as Markdown (rows, file MB, seconds, peak MB, peak ÷ file
size, rows per second).  Generated files go to a temporary folder that is
removed afterwards unless ``--keep`` names one.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "raw" / "demo"
SIZES = (100_000, 1_000_000, 5_000_000)


def write_scaled_export(rows: int, path: Path) -> int:
    """Write the demo export repeated until it has about ``rows`` data rows.

    Copy ``c`` renames therapist ``T01`` to ``T01c<c>`` and patient ``P0001``
    to ``P0001c<c>`` (the first two columns), so copies never merge.  Returns
    the number of data rows written.
    """
    lines = (DEMO / "sessions.csv").read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    copies = max(1, round(rows / len(body)))
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(header + "\n")
        for copy in range(copies):
            suffix = f"c{copy}"
            chunk = []
            for line in body:
                therapist, patient, rest = line.split(",", 2)
                chunk.append(f"{therapist}{suffix},{patient}{suffix},{rest}\n")
            out.write("".join(chunk))
    return copies * len(body)


def run_once(data: Path, out: Path) -> tuple[float, float]:
    """Run the cleaning CLI on ``data``; return (seconds, peak RSS in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "clean",
            "--input",
            str(data),
            "--config",
            str(DEMO / "study.yml"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"cleaning failed on {data}:\n{proc.stdout}\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print(f"note: peak RSS of this run is not above an earlier run's ({before} KB)")
    return seconds, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="sizes (repeatable)")
    parser.add_argument("--keep", type=Path, help="folder for the generated files (kept)")
    args = parser.parse_args()
    sizes = tuple(args.rows) if args.rows else SIZES
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-cleaning-"))
    work.mkdir(parents=True, exist_ok=True)
    print("| rows | file MB | seconds | peak MB | peak / file | rows/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    try:
        for size in sorted(sizes):  # ascending, so each run's peak is its own
            data = work / f"sessions_{size}.csv"
            written = write_scaled_export(size, data)
            file_mb = data.stat().st_size / 2**20
            seconds, peak = run_once(data, work / f"out_{size}")
            print(
                f"| {written:,} | {file_mb:.0f} | {seconds:.1f} | {peak:.0f} | "
                f"{peak / file_mb:.1f} | {written / seconds:,.0f} |",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
