"""Write the small data sets of the degrees-of-freedom references (``tests/test_ddf.py``).

Run from the project root to regenerate the committed files byte for byte::

    .venv/bin/python tests/reference/ddf/make_ddf_data.py

Files (values rounded to 4 decimals so that R and Python read the same numbers):

``oneway_balanced.csv``
    8 groups x 5 observations, ``y = 1 + 0.5 x_between + 0.3 x_within + u + e`` with
    ``u ~ N(0, 1)``, ``e ~ N(0, 1)``; ``x_between`` is constant within a group,
    ``x_within`` is a permutation of -2, -1, 0, 1, 2 within each group (sums to zero).
    The balanced one-way layout whose Satterthwaite and Kenward-Roger df are known in
    closed form (see the test).
``oneway_singular.csv``
    The same layout with the group means of the residuals shrunk to a tenth, so that the
    between-group mean square is below the within-group one and REML puts the group
    variance on the boundary (a singular fit).
``sleep_unbalanced.csv``
    ``../sleepstudy.csv`` without 50 rows drawn at random (every subject keeps at least 3
    days): an unbalanced two-level design.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SEED = 20250117
N_GROUPS, PER_GROUP = 8, 5


def oneway(shrink_group_means: bool, seed: int = SEED) -> pd.DataFrame:
    """Balanced one-way data; ``shrink_group_means`` makes the REML fit singular."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    x_between = np.round(rng.normal(0.0, 1.0, N_GROUPS), 4)[group]
    steps = np.arange(PER_GROUP, dtype=float) - (PER_GROUP - 1) / 2
    x_within = np.concatenate([rng.permutation(steps) for _ in range(N_GROUPS)])
    u = rng.normal(0.0, 1.0, N_GROUPS)[group]
    e = rng.normal(0.0, 1.0, N_GROUPS * PER_GROUP)
    if shrink_group_means:
        u = np.zeros_like(u)
        e = e - 0.9 * pd.Series(e).groupby(group).transform("mean").to_numpy()
    y = 1.0 + 0.5 * x_between + 0.3 * x_within + u + e
    return pd.DataFrame(
        {
            "group": [f"g{g + 1}" for g in group],
            "x_between": x_between,
            "x_within": x_within,
            "y": np.round(y, 4),
        }
    )


def sleep_unbalanced(seed: int = SEED) -> pd.DataFrame:
    """sleepstudy without 50 random rows, each subject keeping at least 3 days."""
    sleep = pd.read_csv(HERE.parent / "sleepstudy.csv")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sleep))
    keep = np.ones(len(sleep), dtype=bool)
    dropped = 0
    for row in order:
        subject = sleep.loc[row, "Subject"]
        if (keep & (sleep["Subject"] == subject).to_numpy()).sum() > 3:
            keep[row] = False
            dropped += 1
        if dropped == 50:
            break
    return sleep.loc[keep].reset_index(drop=True)


def main() -> None:
    """Write the three files beside this script."""
    oneway(False).to_csv(HERE / "oneway_balanced.csv", index=False)
    oneway(True).to_csv(HERE / "oneway_singular.csv", index=False)
    sleep_unbalanced().to_csv(HERE / "sleep_unbalanced.csv", index=False)


if __name__ == "__main__":
    main()
