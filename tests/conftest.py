"""Shared test set-up: headless matplotlib, figures closed after each test, reference data."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def datasets() -> dict[str, pd.DataFrame]:
    """The lme4 reference data sets (fresh copies for each test module)."""
    return {
        "sleepstudy": pd.read_csv(REFERENCE / "sleepstudy.csv"),
        "three_level": pd.read_csv(REFERENCE / "three_level.csv"),
    }
