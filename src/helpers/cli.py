"""Command line of the suite: ``python -m helpers <command>``.

Commands
--------
simulate
    Write the simulated demo study (``make data``).
scenarios
    Write the simulated study shapes of :mod:`helpers.scenarios` (``make scenarios``):
    ``python -m helpers scenarios --out DIR [--only NAME ...]``.
clean
    Run the cleaning step of notebook 01 on any study:
    ``python -m helpers clean --input FILE --config FILE --out DIR``.
run-notebooks
    Run the numbered notebooks in order with papermill (``make all``).
report
    Render a run's executed notebooks to HTML with an index page.
compare-runs
    Check that two runs wrote byte-identical files (``make check-determinism``):
    only the files each run's manifest lists are compared.
power
    Simulation-based power of a planned study (:mod:`helpers.power`):
    ``python -m helpers power --design power.yml --out runs/power [--scheduler ADDRESS]``.

A user's mistake (a bad file, a config naming a missing column …: a
:class:`~helpers.errors.StudyDataError`) is printed as a readable report and
the command exits with status 2; any other user error of :mod:`helpers.errors`
(a setting, a model) is printed as one ``error:`` message, also with status 2.
Bad input never shows a Python traceback.  A notebook that fails exits with
status 1.  Any other error is a bug of the suite: a short message says so, the
full traceback is saved to a temporary file named in the message, and the
command exits with status 3 (:data:`EXIT_BUG`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Alliance–outcome research compendium: command-line steps.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write the simulated demo study")
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")

    scen = sub.add_parser("scenarios", help="write the simulated study shapes (scenario matrix)")
    scen.add_argument("--out", type=Path, required=True, help="output folder (one folder each)")
    scen.add_argument(
        "--only", nargs="+", default=None, metavar="NAME", help="write only these scenarios"
    )

    clean = sub.add_parser("clean", help="load, validate, score and clean a study")
    clean.add_argument("--input", type=Path, required=True, help="the study's data file")
    clean.add_argument("--config", type=Path, required=True, help="the study config (YAML)")
    clean.add_argument("--out", type=Path, required=True, help="output folder")
    run = sub.add_parser("run-notebooks", help="run the numbered notebooks in order (make all)")
    run.add_argument("--data", type=Path, required=True, help="the study's data file")
    run.add_argument("--config", type=Path, required=True, help="the study config (YAML)")
    run.add_argument("--out", type=Path, required=True, help="the run's output folder")
    run.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    run.add_argument(
        "--only", nargs="*", default=None, help="run only notebooks whose names start so (e.g. 01)"
    )
    run.add_argument("--manifest", action="store_true", help="write <out>/manifest.json only")
    run.add_argument(
        "--stale", action="store_true", help="run only notebooks that are out of date (make all)"
    )
    run.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="notebooks run at once (default 1; results do not change)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="a notebook parameter, e.g. --set N_BOOTSTRAP=20 (repeatable)",
    )

    rep = sub.add_parser("report", help="render a run's executed notebooks to an HTML report")
    rep.add_argument("--out", type=Path, required=True, help="the run's output folder")

    cmp_ = sub.add_parser("compare-runs", help="check that two runs wrote byte-identical files")
    cmp_.add_argument("first", type=Path)
    cmp_.add_argument("second", type=Path)

    pow_ = sub.add_parser("power", help="simulation-based power of a planned study")
    pow_.add_argument("--design", type=Path, required=True, help="power study (YAML)")
    pow_.add_argument("--out", type=Path, required=True, help="results folder (resumable)")
    pow_.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://…)")
    pow_.add_argument("--reps", type=int, default=None, help="replicates per cell (overrides)")
    pow_.add_argument("--jobs", type=int, default=None, help="local worker processes")
    return parser


def values_lost_text(lost: pd.DataFrame) -> str:
    """The table of :meth:`helpers.pipeline.CleaningResult.values_lost` as plain text.

    Parameters
    ----------
    lost : pandas.DataFrame
        One row per column and reason (may be empty).

    Returns
    -------
    str
        An aligned table (counts as whole numbers, shares as percentages),
        or ``"no values were set to missing"``.
    """
    if lost.empty:
        return "no values were set to missing"
    share = "share of non-missing values"
    shown = lost.assign(**{share: lost[share].map(lambda x: f"{x:.2%}")})
    header = [str(c) for c in shown.columns]
    cells = [[str(v) for v in row] for row in shown.itertuples(index=False)]
    widths = [max(len(h), *(len(row[j]) for row in cells)) for j, h in enumerate(header)]
    numeric = [c in ("values set to missing", share) for c in header]

    def line(values: list[str]) -> str:
        padded = zip(values, widths, numeric, strict=True)
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in padded).rstrip()

    return "\n".join(["values set to missing:", line(header), *map(line, cells)])


def _write_scenarios(out: Path, only: Sequence[str] | None) -> int:
    """Write the chosen scenarios into ``out`` (checked, under its lock); return the status."""
    from helpers.safety import check_generator_folder, run_lock
    from helpers.scenarios import SCENARIOS, write_scenarios

    unknown = [name for name in only or () if name not in SCENARIOS]
    if unknown:
        print(
            f"error: unknown scenario(s) {', '.join(unknown)}; "
            f"the scenarios are: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    check_generator_folder(out)
    with run_lock(out, "scenarios"):
        summaries = write_scenarios(out, only)
    for summary in summaries:
        print(
            f"{summary['name']:<16} {summary['n_therapists']:>3} therapists "
            f"{summary['n_patients']:>4} patients  up to {summary['max_session']:>2} sessions "
            f"{summary['n_rows']:>5} rows  truth: {'yes' if summary['truth'] else 'no'}"
        )
    print(f"scenarios written to {out}")
    return 0


def _run_notebooks_command(args: argparse.Namespace) -> int:
    """``run-notebooks``: execute the notebooks (or the stale ones), then write the manifest."""
    from helpers.runner import parse_settings, run_notebooks, write_run_manifest

    try:
        extra = parse_settings(args.set)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs must be 1 or more, not {args.jobs}", file=sys.stderr)
        return 2
    if not args.manifest:
        ran = run_notebooks(
            args.data, args.config, args.out, seed=args.seed, only=args.only,
            extra=extra, jobs=args.jobs, stale_only=args.stale,
        )  # fmt: skip
        if args.stale and not ran:
            print(f"every notebook of {args.out} is up to date")
    if args.manifest or args.stale or not args.only:
        path = write_run_manifest(args.data, args.config, args.out, args.seed, extra=extra)
        if not args.stale:
            print(f"manifest written to {path.name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = _build_parser().parse_args(argv)
    from helpers.errors import (
        HelpersError,
        LedgerMismatchError,
        NotebookFailedError,
        OutputFolderError,
        StudyDataError,
    )

    try:
        if args.command == "simulate":
            from helpers.paths import DEMO_DIR
            from helpers.safety import check_generator_folder, run_lock
            from helpers.simulate import write_demo_study

            check_generator_folder(args.out, own=DEMO_DIR)
            with run_lock(args.out, f"simulate --seed {args.seed}"):
                write_demo_study(args.out, seed=args.seed)
            print(f"demo study written to {args.out}")
        elif args.command == "scenarios":
            return _write_scenarios(args.out, args.only)
        elif args.command == "clean":
            from helpers.pipeline import run_cleaning

            result = run_cleaning(args.input, args.config, args.out)
            print(result.summary())
            print(values_lost_text(result.values_lost()))
        elif args.command == "run-notebooks":
            return _run_notebooks_command(args)
        elif args.command == "report":
            from helpers.report import write_report

            index = write_report(args.out)
            print(f"report written: {index}")
        elif args.command == "compare-runs":
            from helpers.runner import compare_runs

            differ = compare_runs(args.first, args.second)
            if differ:
                print("files that differ between the runs:\n  " + "\n  ".join(differ))
                return 1
            print("the two runs wrote byte-identical processed data, results and figures")
        elif args.command == "power":
            from helpers.power import run_power_command

            return run_power_command(args.design, args.out, args.scheduler, args.reps, args.jobs)
    except StudyDataError as err:
        what = "output folder" if isinstance(err, OutputFolderError) else "input"
        print(f"error: the {what} cannot be used as it is.\n\n{err}", file=sys.stderr)
        return 2
    except NotebookFailedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except LedgerMismatchError as err:  # the ledger's counts do not add up: a bug of the suite
        return report_bug(err)
    except HelpersError as err:  # a setting, model or argument the user gave
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: every output is atomic, so nothing half-written stays
        print(
            f"interrupted: {args.command} stopped; files it had not finished were not kept. "
            "Run the same command again to continue.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as err:  # anything else is a bug of the suite, not the user's mistake
        return report_bug(err)
    return 0


#: Exit status of a failure that is a bug of the suite (not a bad input, not a notebook).
EXIT_BUG = 3
#: Exit status after Ctrl-C (the shell's convention: 128 + SIGINT).
EXIT_INTERRUPTED = 130


def report_bug(err: BaseException) -> int:
    """Save the traceback of an unexpected error to a file and print a short report.

    The traceback goes to a new file in the system's temporary folder (never
    into a study's output folder, so no committed output holds a machine's
    paths); the message says it is a bug and where the file is.

    Parameters
    ----------
    err : BaseException
        The exception being handled.

    Returns
    -------
    int
        :data:`EXIT_BUG`.
    """
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(err))
    with tempfile.NamedTemporaryFile(
        "w", prefix="helpers-bug-", suffix=".txt", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
    print(
        f"error: this is a bug in the suite, not a problem with your data "
        f"({type(err).__name__}: {str(err)[:200]}).\n"
        f"The full traceback was saved to {handle.name}; please attach that file "
        "when you report the bug.",
        file=sys.stderr,
    )
    return EXIT_BUG
