"""Tests of helpers.plots and helpers.style.

Three kinds of checks:

* **What was drawn.**  Every plot function is called on a small synthetic frame
  (fixed seed) and its artists are inspected: number of lines and collections,
  their data, colours from the Okabe–Ito palette, labels, limits, legend
  entries.  Expected numbers are worked out by hand in the comments (means,
  normal-approximation intervals, R's ``qqnorm`` / ``qqline`` values) or are
  known truth of the synthetic data.
* **Stable files.**  Two :func:`save_figure` calls, in one process and in two
  processes with different hash seeds, give byte-identical PNG, SVG and PDF.
* **Baseline images.**  Each plot is rendered to PNG at 100 dpi and compared
  with the committed image in ``tests/baseline_images/`` by
  :func:`matplotlib.testing.compare.compare_images` with ``tol=BASELINE_TOL``
  (RMS difference of pixel values, 0–255).  With the pinned matplotlib (which
  bundles its own FreeType) the difference is 0; the tolerance only absorbs
  anti-aliasing noise, while one missing 1-pixel line already gives an RMS of
  several units (:func:`test_baseline_comparison_detects_a_missing_line`).

Regenerating the baselines (after an intended change of a figure; look at the
new images before committing them)::

    UPDATE_BASELINES=1 .venv/bin/pytest tests/test_plots.py -k baseline

writes every ``tests/baseline_images/<name>.png`` and skips the comparisons.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import FillBetweenPolyCollection, LineCollection, PathCollection
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.testing.compare import compare_images

from helpers import plots
from helpers.plots import (
    REFERENCE_GID,
    PlotInputError,
    new_figure,
    normal_quantiles,
    plot_caterpillar,
    plot_coefficients,
    plot_forest,
    plot_predicted_trajectories,
    plot_qq,
    plot_residuals_vs_fitted,
    plot_rupture_v,
    plot_trajectories,
    save_figure,
    session_means,
)
from helpers.style import (
    LABELS,
    MODALITY_COLORS,
    OKABE_ITO,
    STYLE,
    alliance_level_name,
    group_colors,
    make_labels,
    use_style,
)

BASELINE_DIR = Path(__file__).parent / "baseline_images"
BASELINE_DPI = 100
#: RMS tolerance of compare_images (pixel values 0-255); see the module docstring.
BASELINE_TOL = 2.0
UPDATE_BASELINES = os.environ.get("UPDATE_BASELINES") == "1"
SEED = 20240501
Z = 1.959963984540054  # qnorm(0.975), from published tables / R

VERMILLION, BLUE, BLACK = "#d55e00", "#0072b2", "#000000"


# --------------------------------------------------------------------------------------
# Synthetic inputs (fixed seed)
# --------------------------------------------------------------------------------------


def sessions_frame(seed: int = SEED) -> pd.DataFrame:
    """3 modalities x 4 patients x 6 sessions; outcome falls 1 point per session on average."""
    rng = np.random.default_rng(seed)
    rows = []
    for m, modality in enumerate(["CBT", "psychodynamic", "humanistic"]):
        for p in range(4):
            pid = f"P{m}{p}"
            start = rng.normal(18, 3)
            level = rng.normal(42, 5)
            for session in range(1, 7):
                rows.append(
                    {
                        "therapist_id": f"T{m}",
                        "patient_id": pid,
                        "session": session,
                        "modality": modality,
                        "alliance": level + 0.5 * session + rng.normal(0, 2),
                        "outcome": start - 1.0 * session + rng.normal(0, 2),
                    }
                )
    return pd.DataFrame(rows)


def hand_frame() -> pd.DataFrame:
    """One group; per session, the values whose mean and CI are worked out below.

    session 1: 2, 4, 6, 8 -> n 4, mean 5, SD sqrt(20/3)
    session 2: 1, 2, 3, 6 -> n 4, mean 3, SD sqrt(14/3)
    session 3: 5, 7       -> n 2 (below min_n = 3: not drawn)
    """
    values = {1: [2, 4, 6, 8], 2: [1, 2, 3, 6], 3: [5, 7]}
    rows = [
        {"patient_id": f"P{i}", "session": s, "modality": "CBT", "outcome": float(v)}
        for s, vs in values.items()
        for i, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def fixed_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "estimate": [20.0, -0.30, -0.12, -0.40],
            "se": [1.0, 0.05, 0.03, 0.02],
            "ci_low": [18.0, -0.40, -0.18, -0.44],
            "ci_high": [22.0, -0.20, -0.06, -0.36],
            "p": [0.0, 0.0, 0.0, 0.0],
        },
        index=pd.Index(
            ["Intercept", "alliance_between", "alliance_within_lag", "session"], name="term"
        ),
    )


def random_table(n: int = 12, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    est = rng.normal(0, 1.5, n)
    sd = rng.uniform(0.4, 0.9, n)
    return pd.DataFrame(
        {
            "therapist_id": [f"T{i:02d}" for i in range(n)],
            "term": "Intercept",
            "estimate": est,
            "ci_low": est - Z * sd,
            "ci_high": est + Z * sd,
        }
    )


def predictions_table() -> pd.DataFrame:
    sessions = np.arange(1, 9)
    parts = []
    # Data order high, low, average: the plot must still order low, average, high.
    for label, slope in [("high (+1 SD)", -1.2), ("low (−1 SD)", -0.4), ("average", -0.8)]:
        pred = 18 + slope * sessions
        parts.append(
            pd.DataFrame(
                {
                    "session": sessions,
                    "alliance_level": label,
                    "predicted": pred,
                    "ci_low": pred - 1.0,
                    "ci_high": pred + 1.0,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def rupture_tables(seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rel = np.arange(-3, 4)
    dip = np.where(rel == 0, -6.0, np.where(rel > 0, -1.0, 0.0))
    individual = pd.DataFrame(
        [
            {"patient_id": f"P{p}", "relative_session": r, "alliance": 45 + d + rng.normal(0, 2)}
            for p in range(8)
            for r, d in zip(rel, dip, strict=True)
        ]
    )
    summary = pd.DataFrame(
        {"relative_session": rel, "mean": 45 + dip, "ci_low": 44 + dip, "ci_high": 46 + dip}
    )
    return summary, individual


def forest_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": [
                "Horvath & Symonds (1991)",
                "Flückiger et al. (2018)",
                "This study",
            ],
            "r": [0.26, 0.278, 0.31],
            "ci_low": [np.nan, 0.256, 0.22],
            "ci_high": [np.nan, 0.299, 0.40],
            "k": [24, 295, np.nan],
            "N": [np.nan, np.nan, 399],
        }
    )


def residual_table(seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    fitted = rng.uniform(2, 22, 200)
    return pd.DataFrame({"fitted": fitted, "residual": rng.normal(0, 2.5, 200)})


# --------------------------------------------------------------------------------------
# Helpers to read what was drawn
# --------------------------------------------------------------------------------------


def line_collections(ax) -> list[LineCollection]:
    return [c for c in ax.collections if type(c) is LineCollection]


def bands(ax) -> list[FillBetweenPolyCollection]:
    return [c for c in ax.collections if isinstance(c, FillBetweenPolyCollection)]


def data_lines(ax) -> list[Line2D]:
    """Lines other than the reference lines (zero, rupture, pooled r)."""
    return [line for line in ax.lines if not str(line.get_gid()).startswith(REFERENCE_GID)]


def reference_lines(ax, orientation: str) -> list[float]:
    """Positions of vertical (``"v"``) or horizontal (``"h"``) reference lines."""
    out = []
    for line in ax.lines:
        if not str(line.get_gid()).startswith(REFERENCE_GID):
            continue
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if orientation == "v" and x[0] == x[-1]:
            out.append(float(x[0]))
        if orientation == "h" and y[0] == y[-1]:
            out.append(float(y[0]))
    return out


def hex_of(color) -> str:
    return to_hex(color, keep_alpha=False).lower()


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


# --------------------------------------------------------------------------------------
# Style
# --------------------------------------------------------------------------------------


def test_okabe_ito_palette_matches_the_published_rgb_values():
    # Okabe & Ito (2008), RGB 0-255.
    published = {
        "black": (0, 0, 0),
        "orange": (230, 159, 0),
        "sky_blue": (86, 180, 233),
        "bluish_green": (0, 158, 115),
        "yellow": (240, 228, 66),
        "blue": (0, 114, 178),
        "vermillion": (213, 94, 0),
        "reddish_purple": (204, 121, 167),
    }
    as_rgb = {
        name: tuple(round(255 * c) for c in mpl.colors.to_rgb(hexcode))
        for name, hexcode in OKABE_ITO.items()
    }
    assert as_rgb == published


def test_modalities_have_fixed_distinct_palette_colours():
    assert set(MODALITY_COLORS) == {"CBT", "psychodynamic", "humanistic"}
    assert len(set(MODALITY_COLORS.values())) == 3
    assert set(MODALITY_COLORS.values()) <= set(OKABE_ITO.values())
    # The colour does not depend on which other levels are present, or on case.
    assert group_colors(["humanistic"])["humanistic"] == MODALITY_COLORS["humanistic"]
    assert group_colors(["cbt", "Other"])["cbt"] == MODALITY_COLORS["CBT"]
    assert group_colors(["cbt", "Other"])["Other"] not in MODALITY_COLORS.values()
    with pytest.raises(ValueError, match="distinguishable"):
        group_colors([f"g{i}" for i in range(9)])


def test_labels_name_instrument_and_range():
    assert LABELS["alliance"] == "Alliance (WAI-SR total, 12–60)"
    assert LABELS["outcome"] == "Depression (PHQ-9 total, 0–27)"
    assert LABELS["session"] == "Session"
    # WAI-S: 12 items scored 1-7 -> 12-84; GAD-7: 7 items scored 0-3 -> 0-21.
    other = make_labels("wai_s", "gad7")
    assert other["alliance"] == "Alliance (WAI-S total, 12–84)"
    assert other["outcome"] == "Anxiety (GAD-7 total, 0–21)"
    with pytest.raises(ValueError, match="Known instruments"):
        make_labels("wai_xx", "phq9")


def test_alliance_level_names():
    assert alliance_level_name("low (−1 SD)") == "low"
    assert alliance_level_name("Mean") == "average"
    assert alliance_level_name("HIGH") == "high"
    assert alliance_level_name("median") is None


def _all_plots(tmp_path: Path) -> None:
    summary, individual = rupture_tables()
    plot_trajectories(sessions_frame(), "outcome", min_n=3)
    plot_coefficients(fixed_table())
    plot_caterpillar(random_table(), group="therapist_id")
    plot_predicted_trajectories(predictions_table())
    plot_rupture_v(summary, individual=individual)
    plot_forest(forest_table(), highlight="This study", pooled=0.278)
    plot_residuals_vs_fitted(residual_table())
    ax = plot_qq(residual_table()["residual"])
    save_figure(ax.figure, "qq", tmp_path, formats=("png", "svg", "pdf"), dpi=50)


def test_global_rcparams_are_left_unchanged(tmp_path):
    before = dict(mpl.rcParams)
    _all_plots(tmp_path)
    after = dict(mpl.rcParams)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == set()


def test_style_applies_even_under_other_global_settings():
    # The user's own rcParams are very different; the plot still uses the style, also for
    # the tick labels that matplotlib only creates when the figure is drawn (outside the
    # style context).
    with mpl.rc_context({"font.size": 20, "xtick.labelsize": 20, "font.family": "serif"}):
        ax = plot_trajectories(sessions_frame(), "outcome", min_n=3)
        ax.figure.canvas.draw()
        assert ax.xaxis.label.get_fontsize() == STYLE["font.size"] == 8.0
        ticks = [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        assert ticks
        assert {t.get_fontsize() for t in ticks} == {7.0}
        assert {t.get_fontfamily()[0] for t in ticks} == {"DejaVu Sans"}
        assert ax.xaxis.label.get_fontname() == "DejaVu Sans"
        assert not ax.spines["top"].get_visible()


def test_figures_are_made_at_journal_widths():
    ax = plot_coefficients(fixed_table())
    assert ax.figure.get_size_inches()[0] == pytest.approx(3.5)
    fig, _ = new_figure("double", aspect=0.5)
    assert tuple(fig.get_size_inches()) == pytest.approx((7.0, 3.5))
    with pytest.raises(ValueError, match="Unknown figure width"):
        new_figure("triple")


def test_use_style_restores_rcparams():
    before = mpl.rcParams["font.size"]
    with use_style(**{"font.size": 11}):
        assert mpl.rcParams["font.size"] == 11
        assert mpl.rcParams["axes.spines.right"] is False
    assert mpl.rcParams["font.size"] == before


# --------------------------------------------------------------------------------------
# plot_trajectories
# --------------------------------------------------------------------------------------


def test_trajectories_draw_one_line_set_band_and_mean_per_modality():
    ax = plot_trajectories(sessions_frame(), "outcome", min_n=3)
    collections = line_collections(ax)
    assert len(collections) == 3
    # 4 patients per modality, 6 sessions each -> 4 segments of 6 points.
    assert [len(c.get_segments()) for c in collections] == [4, 4, 4]
    assert all(len(seg) == 6 for c in collections for seg in c.get_segments())
    assert len(bands(ax)) == 3
    means = data_lines(ax)
    assert len(means) == 3
    # Levels in sorted order, each in its fixed modality colour.
    expected = ["CBT", "humanistic", "psychodynamic"]
    assert [hex_of(line.get_color()) for line in means] == [
        MODALITY_COLORS[m].lower() for m in expected
    ]
    assert [hex_of(c.get_edgecolor()[0]) for c in collections] == [
        MODALITY_COLORS[m].lower() for m in expected
    ]
    assert legend_texts(ax) == [f"{m} (n = 4)" for m in expected]
    assert ax.get_xlabel() == "Session"
    assert ax.get_ylabel() == "Depression (PHQ-9 total, 0–27)"
    lo, hi = ax.get_xlim()
    assert lo <= 1 and hi >= 6


def test_trajectory_means_and_bands_match_hand_calculation():
    data = hand_frame()
    # session 1: mean 5, SD sqrt(20/3), half-width Z * SD / 2;
    # session 2: mean 3, SD sqrt(14/3), half-width Z * SD / 2.
    half1 = Z * math.sqrt(20 / 3) / math.sqrt(4)
    half2 = Z * math.sqrt(14 / 3) / math.sqrt(4)
    summary = session_means(data, "outcome", min_n=3)
    assert summary["session"].tolist() == [1, 2]  # session 3 has n = 2 < 3
    assert summary["n"].tolist() == [4, 4]
    np.testing.assert_allclose(summary["mean"], [5.0, 3.0])
    np.testing.assert_allclose(summary["ci_low"], [5 - half1, 3 - half2])
    np.testing.assert_allclose(summary["ci_high"], [5 + half1, 3 + half2])

    ax = plot_trajectories(data, "outcome", min_n=3)
    (mean_line,) = data_lines(ax)
    x, y = (np.asarray(v, dtype=float) for v in mean_line.get_data())
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_allclose(y[:2], [5.0, 3.0])
    assert np.isnan(y[2])  # skipped session leaves a gap
    vertices = bands(ax)[0].get_paths()[0].vertices
    for point in [(1, 5 - half1), (1, 5 + half1), (2, 3 - half2), (2, 3 + half2)]:
        assert np.min(np.hypot(*(vertices - point).T)) < 1e-9
    assert np.all(vertices[:, 0] <= 2)  # nothing drawn at session 3


def test_trajectories_sample_units_with_a_seed_but_means_use_all():
    data = sessions_frame()
    full = plot_trajectories(data, "outcome", min_n=3)
    full_means = [np.asarray(line.get_ydata(), dtype=float) for line in data_lines(full)]

    def drawn_units(seed):
        ax = plot_trajectories(data, "outcome", max_units=5, seed=seed, min_n=3)
        segments = [seg for c in line_collections(ax) for seg in c.get_segments()]
        means = [np.asarray(line.get_ydata(), dtype=float) for line in data_lines(ax)]
        return sorted(tuple(map(tuple, s)) for s in segments), means

    first, means = drawn_units(1)
    again, _ = drawn_units(1)
    other, _ = drawn_units(2)
    assert len(first) == 5
    assert first == again
    assert first != other
    for a, b in zip(means, full_means, strict=True):
        np.testing.assert_allclose(a, b)


def test_trajectories_without_hue_are_black_with_no_legend():
    ax = plot_trajectories(sessions_frame(), "alliance", hue=None, min_n=3)
    assert len(line_collections(ax)) == 1
    assert len(line_collections(ax)[0].get_segments()) == 12
    assert hex_of(data_lines(ax)[0].get_color()) == BLACK
    assert ax.get_legend() is None
    assert ax.get_ylabel() == "Alliance (WAI-SR total, 12–60)"


def test_trajectories_warn_about_rows_without_hue():
    data = sessions_frame()
    data.loc[data["patient_id"] == "P00", "modality"] = None
    with pytest.warns(UserWarning, match="6 row"):
        ax = plot_trajectories(data, "outcome", min_n=3)
    assert legend_texts(ax)[0] == "CBT (n = 3)"


def test_trajectories_report_bad_input_clearly():
    data = sessions_frame()
    with pytest.raises(PlotInputError, match=r"y='phq'.*Columns present"):
        plot_trajectories(data, "phq")
    text = data.astype({"outcome": object})
    text.loc[3, "outcome"] = "n/a"
    with pytest.raises(PlotInputError, match=r"'outcome'.*rows 3.*'n/a'"):
        plot_trajectories(text, "outcome")
    doubled = pd.concat([data, data.iloc[[0]]], ignore_index=True)
    with pytest.raises(PlotInputError, match="one row per patient_id and session"):
        plot_trajectories(doubled, "outcome")
    with pytest.raises(PlotInputError, match="min_n"):
        plot_trajectories(data, "outcome", min_n=1)
    with pytest.raises(PlotInputError, match="DataFrame"):
        plot_trajectories(data.to_dict(), "outcome")


# --------------------------------------------------------------------------------------
# plot_coefficients
# --------------------------------------------------------------------------------------


def test_coefficients_points_intervals_and_zero_line():
    ax = plot_coefficients(fixed_table(), terms=["alliance_within_lag", "alliance_between"])
    (points,) = data_lines(ax)
    x, y = (np.asarray(v, dtype=float) for v in points.get_data())
    np.testing.assert_allclose(x, [-0.12, -0.30])
    assert y[0] > y[1]  # first term on top
    (intervals,) = line_collections(ax)
    segments = intervals.get_segments()
    assert [tuple(s[:, 0]) for s in segments] == [(-0.18, -0.06), (-0.40, -0.20)]
    assert reference_lines(ax, "v") == [0.0]
    labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert labels == [
        "Alliance within patient, previous session (per WAI-SR point)",
        "Alliance between patients (per WAI-SR point)",
    ]
    assert ax.get_xlabel() == "Estimate (PHQ-9 points, 95% CI)"
    lo, hi = ax.get_xlim()
    assert lo < -0.40 and hi > 0


def test_coefficients_leave_out_intercept_and_accept_custom_labels():
    ax = plot_coefficients(fixed_table(), labels={"session": "Time"})
    labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert len(labels) == 3
    assert "Intercept" not in labels
    assert labels[-1] == "Time"


def test_coefficients_fall_back_to_se_for_the_interval():
    table = pd.DataFrame({"term": ["x"], "estimate": [1.0], "se": [2.0]})
    ax = plot_coefficients(table)
    (segment,) = line_collections(ax)[0].get_segments()
    # 1 -/+ 1.959964 * 2
    np.testing.assert_allclose(segment[:, 0], [1 - 3.919927969, 1 + 3.919927969])


def test_coefficients_report_bad_input_clearly():
    with pytest.raises(PlotInputError, match=r"\['alliance'\] not in the table.*Terms present"):
        plot_coefficients(fixed_table(), terms=["alliance"])
    swapped = fixed_table().rename(columns={"ci_low": "ci_high", "ci_high": "ci_low"})
    with pytest.raises(PlotInputError, match="does not contain the estimate"):
        plot_coefficients(swapped)
    with pytest.raises(PlotInputError, match="no interval columns"):
        plot_coefficients(fixed_table()[["estimate"]])


# --------------------------------------------------------------------------------------
# plot_caterpillar
# --------------------------------------------------------------------------------------


def test_caterpillar_ranks_estimates_with_intervals_and_zero_line():
    table = random_table()
    ax = plot_caterpillar(table, group="therapist_id")
    (points,) = data_lines(ax)
    x, y = (np.asarray(v, dtype=float) for v in points.get_data())
    np.testing.assert_array_equal(x, np.arange(1, 13))
    np.testing.assert_allclose(y, np.sort(table["estimate"]))
    segments = line_collections(ax)[0].get_segments()
    assert len(segments) == 12
    lowest = table.loc[table["estimate"].idxmin()]
    np.testing.assert_allclose(segments[0][:, 1], [lowest["ci_low"], lowest["ci_high"]])
    assert reference_lines(ax, "h") == [0.0]
    assert ax.get_xlabel() == "Therapists (ranked by estimate)"
    assert "PHQ-9 points" in ax.get_ylabel()
    lo, hi = ax.get_xlim()
    assert lo < 1 and hi > 12


def test_caterpillar_needs_one_term_and_unique_ids():
    table = random_table()
    slopes = table.assign(term="session")
    both = pd.concat([table, slopes], ignore_index=True)
    with pytest.raises(PlotInputError, match="several terms"):
        plot_caterpillar(both, group="therapist_id")
    ax = plot_caterpillar(both, group="therapist_id", term="session")
    assert ax.get_ylabel().replace("\n", " ").startswith("Random effect: session")
    with pytest.raises(PlotInputError, match="one row per therapist_id"):
        plot_caterpillar(both.assign(term="Intercept"), group="therapist_id")
    with pytest.raises(PlotInputError, match=r"group='patient_id'"):
        plot_caterpillar(table, group="patient_id")


# --------------------------------------------------------------------------------------
# plot_predicted_trajectories
# --------------------------------------------------------------------------------------


def test_predicted_trajectories_colours_styles_and_order():
    data = predictions_table()
    ax = plot_predicted_trajectories(data)
    lines = data_lines(ax)
    assert [line.get_label() for line in lines] == ["low (−1 SD)", "average", "high (+1 SD)"]
    assert [hex_of(line.get_color()) for line in lines] == [VERMILLION, BLACK, BLUE]
    assert [line.get_linestyle() for line in lines] == ["--", "-", "-."]
    assert legend_texts(ax) == ["low (−1 SD)", "average", "high (+1 SD)"]
    assert ax.get_legend().get_title().get_text() == "Alliance"
    assert len(bands(ax)) == 3
    # high alliance: 18 - 1.2 * session
    np.testing.assert_allclose(lines[2].get_ydata(), 18 - 1.2 * np.arange(1, 9))
    assert ax.get_ylabel() == "Predicted depression (PHQ-9 total)"
    with pytest.raises(PlotInputError, match="one row per alliance_level and session"):
        plot_predicted_trajectories(pd.concat([data, data.iloc[[0]]]))
    with pytest.raises(PlotInputError, match="order must list the levels"):
        plot_predicted_trajectories(data, order=["low (−1 SD)", "high (+1 SD)"])


# --------------------------------------------------------------------------------------
# plot_rupture_v
# --------------------------------------------------------------------------------------


def test_rupture_v_mean_band_individuals_and_rupture_line():
    summary, individual = rupture_tables()
    ax = plot_rupture_v(summary, individual=individual)
    assert reference_lines(ax, "v") == [0.0]
    (mean_line,) = data_lines(ax)
    np.testing.assert_array_equal(mean_line.get_xdata(), np.arange(-3, 4))
    np.testing.assert_allclose(mean_line.get_ydata(), [45, 45, 45, 39, 44, 44, 44])
    assert mean_line.get_marker() == "o"
    assert len(bands(ax)) == 1
    assert len(line_collections(ax)[0].get_segments()) == 8
    assert legend_texts(ax) == ["Mean (95% CI)", "Individual patients (n = 8)"]
    assert ax.get_xlabel() == "Session relative to rupture (0 = rupture)"
    assert ax.get_ylabel() == "Alliance (WAI-SR total, 12–60)"

    sampled = plot_rupture_v(summary, individual=individual, max_units=3, seed=7)
    assert len(line_collections(sampled)[0].get_segments()) == 3
    alone = plot_rupture_v(summary)
    assert line_collections(alone) == []


# --------------------------------------------------------------------------------------
# plot_forest
# --------------------------------------------------------------------------------------


def test_forest_highlights_the_study_and_draws_reference_lines():
    ax = plot_forest(forest_table(), highlight="This study", pooled="Flückiger et al. (2018)")
    # Only the two rows with a CI get a line; the first row is a point only.
    segments = [s for c in line_collections(ax) for s in c.get_segments()]
    assert sorted(tuple(np.round(s[:, 0], 3)) for s in segments) == [
        (0.22, 0.40),
        (0.256, 0.299),
    ]
    markers = data_lines(ax)
    benchmark = next(m for m in markers if m.get_marker() == "D")
    study = next(m for m in markers if m.get_marker() == "s")
    np.testing.assert_allclose(benchmark.get_xdata(), [0.26, 0.278])
    np.testing.assert_allclose(study.get_xdata(), [0.31])
    assert hex_of(study.get_color()) == VERMILLION
    assert hex_of(benchmark.get_color()) == BLACK
    assert sorted(reference_lines(ax, "v")) == [0.0, 0.278]
    assert legend_texts(ax) == ["Pooled r = .28"]
    ticks = ax.get_yticklabels()
    assert [t.get_text().replace("\n", " ") for t in ticks] == [
        "Horvath & Symonds (1991) (k = 24)",
        "Flückiger et al. (2018) (k = 295)",
        "This study (N = 399)",
    ]
    assert ticks[2].get_fontweight() == "bold"
    assert hex_of(ticks[2].get_color()) == VERMILLION
    assert ticks[0].get_fontweight() == "normal"
    values = [t.get_text() for t in ax.child_axes[0].get_yticklabels()]
    assert values == [".26", ".28 [.26, .30]", ".31 [.22, .40]"]
    assert ax.get_xlabel() == "Alliance–outcome correlation r (95% CI)"


def test_forest_reports_bad_input_clearly():
    table = forest_table()
    with pytest.raises(PlotInputError, match=r"highlight label\(s\) \['Our study'\]"):
        plot_forest(table, highlight="Our study")
    with pytest.raises(PlotInputError, match=r"\[-1, 1\]"):
        plot_forest(table.assign(r=[1.3, 0.278, 0.31]))  # row 0 has no interval
    one_sided = table.copy()
    one_sided.loc[0, "ci_low"] = 0.1
    with pytest.raises(PlotInputError, match="only one interval bound"):
        plot_forest(one_sided)
    with pytest.raises(PlotInputError, match="pooled='Meta'"):
        plot_forest(table, pooled="Meta")


# --------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------


def test_residuals_vs_fitted_points_zero_line_and_lowess():
    data = residual_table()
    data.loc[0, "residual"] = np.nan
    ax = plot_residuals_vs_fitted(data)
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points.get_offsets()) == 199
    assert reference_lines(ax, "h") == [0.0]
    assert ax.get_xlabel() == "Fitted value (PHQ-9 total)"
    assert ax.get_ylabel() == "Residual (PHQ-9 points)"
    (smooth,) = data_lines(ax)
    assert smooth.get_label() == "LOWESS"
    assert len(plot_residuals_vs_fitted(data, lowess=False).lines) == 1


def test_lowess_of_an_exact_line_is_that_line():
    # Known truth: a local linear fit reproduces a straight line exactly.
    fitted = np.linspace(0, 20, 50)
    data = pd.DataFrame({"fitted": fitted, "residual": 0.5 * (fitted - 10)})
    (smooth,) = data_lines(plot_residuals_vs_fitted(data))
    np.testing.assert_allclose(smooth.get_ydata(), 0.5 * (smooth.get_xdata() - 10), atol=1e-9)


def test_normal_quantiles_match_r_qqnorm():
    # R: qqnorm(1:5)$x, plotting positions (i - 3/8) / (n + 1/4) for n <= 10.
    np.testing.assert_allclose(
        normal_quantiles(5), [-1.1797611, -0.4972006, 0.0, 0.4972006, 1.1797611], atol=1e-7
    )
    # n = 11 > 10: positions (i - 1/2) / n; the first is 0.5 / 11 -> qnorm = -1.6906216.
    assert normal_quantiles(11)[0] == pytest.approx(-1.6906216, abs=1e-7)


def test_qq_points_and_quartile_line_match_r():
    values = pd.Series([3.0, 1.0, np.nan, 5.0, 2.0, 4.0], name="residual")
    ax = plot_qq(values)
    line, points = data_lines(ax)
    np.testing.assert_allclose(
        points.get_xdata(), [-1.1797611, -0.4972006, 0.0, 0.4972006, 1.1797611], atol=1e-7
    )
    np.testing.assert_array_equal(points.get_ydata(), [1, 2, 3, 4, 5])
    # R qqline(1:5): quartiles 2 and 4 against qnorm(.25), qnorm(.75) = -/+0.6744898:
    # slope 2 / 1.3489795 = 1.4826022, intercept 3.
    x, y = (np.asarray(v, dtype=float) for v in line.get_data())
    slope = (y[1] - y[0]) / (x[1] - x[0])
    assert slope == pytest.approx(1.4826022, abs=1e-6)
    assert y[0] - slope * x[0] == pytest.approx(3.0, abs=1e-9)
    assert ax.get_ylabel() == "Residual (PHQ-9 points)"
    assert ax.get_xlabel() == "Standard normal quantiles"
    with pytest.raises(PlotInputError, match="at least 3"):
        plot_qq([1.0, np.nan, 2.0])
    with pytest.raises(PlotInputError, match="must be numbers"):
        plot_qq(["a", "b", "c"])


# --------------------------------------------------------------------------------------
# save_figure
# --------------------------------------------------------------------------------------


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.suffix: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_save_figure_writes_every_format_byte_identically(tmp_path):
    ax = plot_trajectories(sessions_frame(), "outcome", min_n=3)
    first = save_figure(ax.figure, "traj", tmp_path / "a" / "b", dpi=100)
    second = save_figure(ax.figure, "traj", tmp_path / "c", dpi=100)
    assert [p.name for p in first] == ["traj.png", "traj.svg", "traj.pdf"]
    assert all(p.parent == tmp_path / "a" / "b" for p in first)
    assert _digest(first) == _digest(second)
    png, svg, pdf = (p.read_bytes() for p in first)
    assert png.startswith(b"\x89PNG") and b"Software" not in png
    assert svg.lstrip().startswith(b"<?xml") and b"<dc:date>" not in svg
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf and b"ModDate" not in pdf
    # 3.5 in at 100 dpi; the layout engine is switched back on afterwards.
    assert png_size(first[0])[0] == 350
    assert ax.figure.get_layout_engine() is not None


@pytest.mark.slow  # two fresh interpreters
def test_save_figure_is_identical_across_processes(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("Agg")
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_plots import sessions_frame
        from helpers.plots import plot_trajectories, save_figure
        ax = plot_trajectories(sessions_frame(), "outcome", min_n=3, max_units=6)
        save_figure(ax.figure, "traj", sys.argv[1], dpi=100)
        """
    )
    digests = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed, "MPLBACKEND": "Agg"}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        digests.append(_digest(sorted(out.iterdir())))
    assert digests[0] == digests[1]
    assert set(digests[0]) == {".png", ".svg", ".pdf"}


def test_save_figure_rejects_bad_arguments(tmp_path):
    fig, _ = new_figure()
    with pytest.raises(PlotInputError, match="unknown format"):
        save_figure(fig, "f", tmp_path, formats=("jpg",))
    with pytest.raises(PlotInputError, match="without an extension"):
        save_figure(fig, "f.png", tmp_path)
    with pytest.raises(PlotInputError, match="without folders"):
        save_figure(fig, "sub/f", tmp_path)
    with pytest.raises(PlotInputError, match="dpi"):
        save_figure(fig, "f", tmp_path, dpi=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# Baseline images
# --------------------------------------------------------------------------------------


def _baseline_figures():
    summary, individual = rupture_tables()
    return {
        "trajectories": lambda: plot_trajectories(sessions_frame(), "outcome", min_n=3),
        "coefficients": lambda: plot_coefficients(fixed_table()),
        "caterpillar": lambda: plot_caterpillar(random_table(), group="therapist_id"),
        "predicted_trajectories": lambda: plot_predicted_trajectories(predictions_table()),
        "rupture_v": lambda: plot_rupture_v(summary, individual=individual),
        "forest": lambda: plot_forest(
            forest_table(), highlight="This study", pooled="Flückiger et al. (2018)"
        ),
        "residuals_vs_fitted": lambda: plot_residuals_vs_fitted(residual_table()),
        "qq": lambda: plot_qq(residual_table()["residual"]),
    }


BASELINE_NAMES = sorted(_baseline_figures())


def _render(name: str, folder: Path) -> Path:
    ax = _baseline_figures()[name]()
    (path,) = save_figure(ax.figure, name, folder, formats=("png",), dpi=BASELINE_DPI)
    plt.close(ax.figure)
    return path


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_baseline_image(name, tmp_path):
    actual = _render(name, tmp_path)
    expected = BASELINE_DIR / f"{name}.png"
    if UPDATE_BASELINES:
        BASELINE_DIR.mkdir(exist_ok=True)
        shutil.copyfile(actual, expected)
        pytest.skip(f"baseline written: {expected.name}")
    assert expected.exists(), (
        f"No baseline image {expected.name}; create it with "
        "UPDATE_BASELINES=1 pytest tests/test_plots.py -k baseline, check it, and commit it."
    )
    assert png_size(actual) == png_size(expected)
    result = compare_images(str(expected), str(actual), tol=BASELINE_TOL)
    assert result is None, result


def test_baseline_comparison_detects_a_missing_line(tmp_path):
    if UPDATE_BASELINES:
        pytest.skip("baselines are being written")
    # The coefficient plot without its zero line (one 1-pixel dashed line) must fail.
    ax = plot_coefficients(fixed_table())
    for line in ax.lines:
        if str(line.get_gid()).startswith(REFERENCE_GID):
            line.remove()
    (actual,) = save_figure(ax.figure, "coefficients", tmp_path, formats=("png",), dpi=BASELINE_DPI)
    result = compare_images(str(BASELINE_DIR / "coefficients.png"), str(actual), tol=BASELINE_TOL)
    assert result is not None


def test_module_exports_are_public_functions():
    for name in plots.__all__:
        assert hasattr(plots, name), name


def test_save_and_show_writes_every_format_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    from helpers.plots import new_figure, save_and_show

    fig, ax = new_figure("single")
    ax.plot([0, 1], [0, 1])
    paths = save_and_show(fig, "tiny", tmp_path)
    assert sorted(p.suffix for p in paths) == [".pdf", ".png", ".svg"]
    assert all(p.exists() for p in paths)
    assert fig.number not in plt.get_fignums()


def test_add_note_writes_the_warning_inside_the_axes():
    _fig, ax = plots.new_figure("single")
    plots.add_note(ax, "Therapist variance estimated at zero (singular fit)")
    texts = [t for t in ax.texts if t.get_text().startswith("Therapist variance")]
    assert len(texts) == 1
    assert texts[0].get_transform() == ax.transAxes
    assert texts[0].get_position() == (0.5, 0.97)
