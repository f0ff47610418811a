"""Benchmark the model explorer's refit on the demo study (issue 16: under a second).

The explorer (``helpers.explorer.ModelExplorer``) refits whenever a control changes.  This
script builds it on the demo study's cleaned data, then times one refit per change of a
control, cycling through changes a user makes (random time slope off and on, correlated
effects, ML, the therapist's rating, the within term), ``--repeat`` times each, and reports
the median and the slowest refit (wall time of the whole update: the fit, the tables, the
likelihood-ratio test against the previous fit and the figure) and, separately, the median
of the fit alone (``ModelView.seconds``).  It also checks that the explorer's numbers equal
``fit_mixed``'s for the same formula (fixed effects, variance components, log-likelihood),
and times one update of the rupture explorer.  Times vary with the machine; the check of the
numbers is exact.

Usage::

    .venv/bin/python bench/bench_explorer.py
    .venv/bin/python bench/bench_explorer.py --repeat 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers import explorer as ex  # noqa: E402
from helpers.models import fit_mixed  # noqa: E402
from helpers.pipeline import run_cleaning  # noqa: E402

DEMO = ROOT / "data" / "raw" / "demo"
#: Control changes, applied in turn; each is one refit.
CHANGES = [
    ("time_slope", False),
    ("time_slope", True),
    ("correlated", True),
    ("correlated", False),
    ("reml", False),
    ("reml", True),
    ("rater", "therapist"),
    ("rater", "client"),
    ("terms", ("within", "between")),
    ("terms", ("lagged", "between")),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="cycles through CHANGES")
    args = parser.parse_args(argv)

    cleaned = run_cleaning(DEMO / "sessions.csv", DEMO / "study.yml")
    study = ex.study_from_frames(cleaned.sessions, cleaned.config.to_dict())
    explorer = ex.ModelExplorer(study)

    updates, fits = [], []
    for _ in range(args.repeat):
        for name, value in CHANGES:
            control = getattr(explorer, name)
            start = time.perf_counter()
            control.value = value
            updates.append(time.perf_counter() - start)
            fits.append(explorer.current.seconds)
            assert explorer.current.error is None, explorer.current.error

    mismatches = []
    for spec in (ex.ModelSpec(), ex.ModelSpec(rater="therapist", correlated=True, reml=False)):
        view = ex.fit_model(study, spec)
        reference = fit_mixed(ex.model_data(study, spec), view.formula, reml=spec.reml)
        for what, mine, theirs in (
            ("fixed", view.result.fixed, reference.fixed),
            ("varcomp", view.result.varcomp, reference.varcomp),
        ):
            try:
                pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
            except AssertionError as err:
                mismatches.append(f"{view.formula}: {what}: {err}")
        if view.result.loglik != reference.loglik:
            mismatches.append(f"{view.formula}: loglik {view.result.loglik} != {reference.loglik}")

    ruptures = ex.RuptureExplorer(study)
    rupture_times = []
    for k in (1.0, 1.5, 2.5, 2.0) * 2:
        start = time.perf_counter()
        ruptures.k.value = k
        rupture_times.append(time.perf_counter() - start)

    print(f"demo study: {len(study.sessions)} sessions; {len(updates)} refits")
    print(f"model explorer, whole update: median {statistics.median(updates):.3f} s, ", end="")
    print(f"slowest {max(updates):.3f} s")
    print(f"model explorer, fit alone:    median {statistics.median(fits):.3f} s")
    print(f"rupture explorer, update:     median {statistics.median(rupture_times):.3f} s")
    print("numbers equal fit_mixed's:   " + ("yes" if not mismatches else "NO"))
    for line in mismatches:
        print("  " + line)
    return 1 if mismatches or statistics.median(updates) >= 1.0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
