"""Wall time, CPU time and peak memory of the cleaning step at 100k, 1M and 5M rows.

The input is the demo study's export (``data/raw/demo/sessions.csv``) copied
``k`` times with the therapist and patient ids made unique per copy, so every
copy carries the demo's faults (duplicates, out-of-range values, a mistyped
therapist) and the cleaning rules do real work at every size.  Each size runs
``python -m helpers clean`` of this checkout (``src/`` first on the path) in a
fresh process; peak memory is that process's maximum resident set size and
CPU time its user + system time (both from ``os.wait4``), wall time is
measured around it.  With ``--repeat N`` each size runs N times and the table
shows the medians (wall times on a shared machine vary by tens of percent;
CPU time and the peak much less).

Usage::

    .venv/bin/python bench/bench_cleaning.py                 # 100k, 1M, 5M rows
    .venv/bin/python bench/bench_cleaning.py --rows 100000   # one size
    .venv/bin/python bench/bench_cleaning.py --repeat 3      # medians of 3 runs
    .venv/bin/python bench/bench_cleaning.py --keep /tmp/bench-cleaning

The table is printed as Markdown (rows, file MB, wall seconds, CPU seconds,
peak MB, peak ÷ file size, rows per second of wall time).  About 150 MB of
every peak is the interpreter with pandas, pyarrow and pandera loaded,
whatever the file size.  Generated files go to a temporary folder that is
removed afterwards unless ``--keep`` names one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


def run_once(data: Path, out: Path) -> tuple[float, float, float]:
    """Run the cleaning CLI on ``data``; return (wall seconds, CPU seconds, peak RSS in MB)."""
    command = [
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
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not all children's
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise SystemExit(f"cleaning failed on {data}:\n{output}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="sizes (repeatable)")
    parser.add_argument("--keep", type=Path, help="folder for the generated files (kept)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (medians shown)")
    args = parser.parse_args()
    sizes = tuple(args.rows) if args.rows else SIZES
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-cleaning-"))
    work.mkdir(parents=True, exist_ok=True)
    print("| rows | file MB | wall s | CPU s | peak MB | peak / file | rows/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for size in sorted(sizes):
            data = work / f"sessions_{size}.csv"
            written = write_scaled_export(size, data)
            file_mb = data.stat().st_size / 2**20
            runs = [run_once(data, work / f"out_{size}") for _ in range(args.repeat)]
            seconds = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            peak = statistics.median(r[2] for r in runs)
            print(
                f"| {written:,} | {file_mb:.0f} | {seconds:.1f} | {cpu:.1f} | {peak:.0f} | "
                f"{peak / file_mb:.1f} | {written / seconds:,.0f} |",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
