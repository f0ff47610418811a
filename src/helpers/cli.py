"""Command line of the suite: ``python -m helpers <command>``.

Commands
--------
simulate
    Write the simulated demo study (``make data``).
clean
    Run the cleaning step of notebook 01 on any study:
    ``python -m helpers clean --input FILE --config FILE --out DIR``.
run-notebooks
    Run the numbered notebooks in order with papermill (``make all``).

A user's mistake (a bad file, a config naming a missing column …) is printed
as a readable report and the command exits with status 2; it never shows a
Python traceback for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Alliance–outcome research compendium: command-line steps.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write the simulated demo study")
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")

    clean = sub.add_parser("clean", help="load, validate, score and clean a study")
    clean.add_argument("--input", type=Path, required=True, help="the study's data file")
    clean.add_argument("--config", type=Path, required=True, help="the study config (YAML)")
    clean.add_argument("--out", type=Path, required=True, help="output folder")
    run = sub.add_parser("run-notebooks", help="run the numbered notebooks in order (make all)")
    run.add_argument("--data", type=Path, required=True, help="the study's data file")
    run.add_argument("--config", type=Path, required=True, help="the study config (YAML)")
    run.add_argument("--out", type=Path, required=True, help="the run's output folder")
    run.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = _build_parser().parse_args(argv)
    from helpers.validation import StudyDataError

    try:
        if args.command == "simulate":
            from helpers.simulate import write_demo_study

            write_demo_study(args.out, seed=args.seed)
            print(f"demo study written to {args.out}")
        elif args.command == "clean":
            from helpers.pipeline import run_cleaning

            result = run_cleaning(args.input, args.config, args.out)
            print(result.summary())
        elif args.command == "run-notebooks":
            from helpers.runner import run_notebooks

            run_notebooks(args.data, args.config, args.out, seed=args.seed)
    except StudyDataError as err:
        print(f"error: the input cannot be used as it is.\n\n{err}", file=sys.stderr)
        return 2
    return 0
