"""Tests of helpers.simulate: ranges, structure, determinism, the committed demo
files, the documented export faults, and recovery of the known truth.

The recovery tests use simple estimators written here (method-of-moments,
least squares, Pearson correlations on the observed items), not the
simulator's own code.  Their tolerances come from the Monte-Carlo spread of
each estimator over 20 independent large samples (seeds 1-20, measured once
while writing the tests); the SD is quoted next to each tolerance.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import schema
from helpers.paths import DEMO_DIR
from helpers.simulate import (
    DEFAULT_PARAMETERS,
    POPULATION_VALUES,
    clean_columns,
    export_clinic_file,
    simulate_study,
    spread_total_over_items,
    write_demo_study,
)

WAI = [schema.alliance_item_column("client", k) for k in range(1, 13)]
PHQ = [schema.outcome_item_column(k) for k in range(1, 10)]
THERAPIST_TOTAL = schema.alliance_total_column("therapist")
DEMO_FILES = ["README.md", "sessions.csv", "study.yml", "truth.json"]


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def demo():
    """The default (demo-sized) study."""
    return simulate_study()


@pytest.fixture(scope="module")
def large():
    """A large sample for the recovery tests: 600 therapists x ~15 patients."""
    return simulate_study(n_therapists=600, patients_per_therapist=15, seed=99)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The demo study written twice into two fresh folders."""
    first = tmp_path_factory.mktemp("demo_a")
    second = tmp_path_factory.mktemp("demo_b")
    return first, write_demo_study(first), second, write_demo_study(second)


# --------------------------------------------------------------------------- #
# Independent helpers (no simulator code)
# --------------------------------------------------------------------------- #
def complete_total(frame: pd.DataFrame, items: list[str]) -> pd.Series:
    """Sum of the items on rows where every item is present, else NaN."""
    values = frame[items].astype("float64")
    return values.sum(axis=1).where(values.notna().all(axis=1))


def with_totals(data: pd.DataFrame) -> pd.DataFrame:
    out = data[[schema.THERAPIST_ID, schema.PATIENT_ID, schema.SESSION]].copy()
    out["A"] = complete_total(data, WAI)
    out["Y"] = complete_total(data, PHQ)
    out["T"] = data[THERAPIST_TOTAL].astype("float64")
    return out


def therapist_share(data: pd.DataFrame) -> float:
    """Method-of-moments therapist share of PHQ-9 variance during treatment.

    Numerator: the average product of PHQ-9 deviations (from the session mean)
    over pairs of rows of *different* patients of the *same* therapist, which
    estimates the between-therapist variance.  Denominator: the variance of
    the PHQ-9 at each session, averaged over sessions 1..20.
    """
    d = with_totals(data)
    d = d[(d[schema.SESSION] >= 1) & d["Y"].notna()].copy()
    d["dev"] = d["Y"] - d.groupby(schema.SESSION)["Y"].transform("mean")
    per_patient = d.groupby([schema.THERAPIST_ID, schema.PATIENT_ID])["dev"].agg(["sum", "size"])
    per_therapist = per_patient.groupby(level=0).agg(
        s=("sum", "sum"), ss=("sum", lambda x: (x**2).sum()), n=("size", "sum"),
        nn=("size", lambda x: (x**2).sum()),
    )  # fmt: skip
    cross = (per_therapist["s"] ** 2 - per_therapist["ss"]).sum()
    pairs = (per_therapist["n"] ** 2 - per_therapist["nn"]).sum()
    mean_variance = d.groupby(schema.SESSION)["Y"].var().mean()
    return float(cross / pairs / mean_variance)


def lagged_within_effect(data: pd.DataFrame) -> float:
    """Least-squares effect of alliance at t-1 on PHQ-9 at t, within patients.

    Both variables and session dummies are centred on the patient's mean over
    the rows used; the session dummies absorb the common time trends.
    """
    d = with_totals(data)
    prev = d[[schema.PATIENT_ID, schema.SESSION, "A"]].copy()
    prev[schema.SESSION] += 1
    d = d.merge(prev.rename(columns={"A": "A_lag"}), on=[schema.PATIENT_ID, schema.SESSION])
    d = d[(d[schema.SESSION] >= 2) & d["Y"].notna() & d["A_lag"].notna()]
    dummies = pd.get_dummies(d[schema.SESSION], prefix="s", drop_first=True, dtype=float)
    design = pd.concat([d[["A_lag"]], dummies], axis=1)
    groups = d[schema.PATIENT_ID].to_numpy()
    x = design - design.groupby(groups).transform("mean")
    y = d["Y"] - d.groupby(groups)["Y"].transform("mean")
    coef, *_ = np.linalg.lstsq(x.to_numpy(), y.to_numpy(), rcond=None)
    return float(coef[0])


def patient_level_r(data: pd.DataFrame) -> float:
    """r(mean client alliance, intake PHQ-9 - last PHQ-9), patients with >= 3 sessions."""
    d = with_totals(data)
    n = d.groupby(schema.PATIENT_ID)[schema.SESSION].max()
    treat = d[d[schema.SESSION] >= 1]
    mean_alliance = treat.groupby(schema.PATIENT_ID)["A"].mean()
    intake = d[d[schema.SESSION] == 0].set_index(schema.PATIENT_ID)["Y"]
    last = treat.dropna(subset=["Y"]).sort_values(schema.SESSION).groupby(schema.PATIENT_ID)["Y"]
    frame = pd.DataFrame({"a": mean_alliance, "imp": intake - last.last(), "n": n}).dropna()
    frame = frame[frame["n"] >= 3]
    return float(np.corrcoef(frame["a"], frame["imp"])[0, 1])


def client_therapist_r(data: pd.DataFrame) -> float:
    d = with_totals(data)
    d = d[(d[schema.SESSION] >= 1)].dropna(subset=["A", "T"])
    return float(np.corrcoef(d["A"], d["T"])[0, 1])


def rupture_rate(data: pd.DataFrame, truth: dict) -> tuple[float, int]:
    """Episodes per at-risk session, at-risk sessions counted from the episodes."""
    n = data.groupby(schema.PATIENT_ID)[schema.SESSION].max()
    at_risk = int((n - 1).clip(lower=0).sum())
    for ep in truth["ruptures"]:
        end = ep["repair_session"] if ep["repaired"] else n[ep["patient_id"]]
        at_risk -= end - ep["rupture_session"] + 1
    return len(truth["ruptures"]) / at_risk, at_risk


# --------------------------------------------------------------------------- #
# Ranges and structure
# --------------------------------------------------------------------------- #
def test_columns_and_intake_rows(demo):
    data, _ = demo
    assert list(data.columns) == clean_columns()
    intake = data[data[schema.SESSION] == 0]
    assert intake[[*WAI, THERAPIST_TOTAL]].isna().all().all()
    assert intake[PHQ].notna().any(axis=1).all()  # the intake PHQ-9 is never wholly missed
    assert data[schema.PATIENT_ID].str.fullmatch(r"P\d{4}").all()
    assert data[schema.THERAPIST_ID].str.fullmatch(r"T\d{2}").all()


def test_items_and_totals_within_range(large):
    data, _ = large
    wai = data[WAI].astype("float64").to_numpy()
    phq = data[PHQ].astype("float64").to_numpy()
    assert np.nanmin(wai) == 1 and np.nanmax(wai) == 5
    assert np.nanmin(phq) == 0 and np.nanmax(phq) == 3
    assert np.all(np.isnan(wai) | (wai == np.round(wai)))
    totals = with_totals(data)
    assert totals["A"].dropna().between(12, 60).all()
    assert totals["Y"].dropna().between(0, 27).all()
    assert totals["T"].dropna().between(12, 60).all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 48), min_size=1, max_size=20),
    st.floats(-3, 3),
    st.integers(0, 2**16),
)
def test_spread_total_over_items_adds_up(excesses, shift, seed):
    totals = np.array(excesses) + 12  # WAI-SR totals 12..60
    propensity = shift + np.random.default_rng(seed).normal(0, 1.5, (len(totals), 12))
    items = spread_total_over_items(totals, propensity, 1, 5)
    assert items.min() >= 1 and items.max() <= 5
    assert np.array_equal(items.sum(axis=1), totals)


def test_spread_total_follows_propensity():
    # Hand case: total 30 = 12 + 18 over 12 items; a much higher propensity on
    # item 1 must give it the maximum score and the lowest item the minimum.
    propensity = np.zeros((1, 12))
    propensity[0, 0], propensity[0, 11] = 6.0, -6.0
    items = spread_total_over_items(np.array([30]), propensity, 1, 5)[0]
    assert items.sum() == 30 and items[0] == 5 and items[11] == 1


def test_one_therapist_per_patient_and_consecutive_sessions(large):
    data, truth = large
    assert data.groupby(schema.PATIENT_ID)[schema.THERAPIST_ID].nunique().max() == 1
    sessions = data.groupby(schema.PATIENT_ID)[schema.SESSION].agg(list)
    assert all(s == list(range(len(s))) for s in sessions)
    n_truth = {p["patient_id"]: p["n_sessions"] for p in truth["patients"]}
    assert (sessions.map(len) - 1).to_dict() == n_truth


def test_design_is_unequal_and_has_missing_values(large):
    data, _ = large
    first = data[data[schema.SESSION] == 0]
    caseload = first.groupby(schema.THERAPIST_ID).size()
    assert caseload.min() >= 1 and caseload.std() > 1
    n = data.groupby(schema.PATIENT_ID)[schema.SESSION].max()
    assert 0.10 < (n <= 2).mean() < 0.30  # early dropout (about 19% expected)
    assert (n == 20).any() and n.min() == 1
    treat = data[data[schema.SESSION] >= 1]
    missing = treat[WAI].isna().to_numpy().mean()
    assert 0.02 < missing < 0.08  # 2% items + 3% whole questionnaires
    assert treat[WAI].isna().all(axis=1).mean() > 0.01  # whole questionnaires missed
    assert data.groupby(schema.THERAPIST_ID)[schema.MODALITY].nunique().max() == 1
    shares = first.drop_duplicates(schema.THERAPIST_ID)[schema.MODALITY].value_counts(
        normalize=True
    )
    assert set(shares.index) == {"CBT", "psychodynamic", "humanistic"}
    assert shares.between(0.30, 0.37).all()
    assert first["age"].between(18, 80).all()
    assert set(first["gender"]) == {"F", "M", "other"}


def test_same_seed_same_study_other_seed_differs():
    a, truth_a = simulate_study(n_therapists=5, seed=11)
    b, truth_b = simulate_study(n_therapists=5, seed=11)
    c, _ = simulate_study(n_therapists=5, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert json.dumps(truth_a, sort_keys=True) == json.dumps(truth_b, sort_keys=True)
    assert not (a.shape == c.shape and a.equals(c))


def test_truth_is_json_and_complete(demo):
    data, truth = demo
    json.dumps(truth)  # serialisable
    assert truth["simulated"] is True
    assert truth["parameters"] == DEFAULT_PARAMETERS
    assert truth["population"]["alliance_outcome_r_patient"] == pytest.approx(0.278, abs=0.005)
    assert (
        truth["effects"]["alliance_within_lag1_effect"]
        == DEFAULT_PARAMETERS["alliance_within_effect"]
    )
    n = data.groupby(schema.PATIENT_ID)[schema.SESSION].max()
    for ep in truth["ruptures"]:
        assert 2 <= ep["rupture_session"] <= n[ep["patient_id"]]
        if ep["repaired"]:
            assert 1 <= ep["repair_session"] - ep["rupture_session"] <= 3
            assert ep["repair_session"] <= n[ep["patient_id"]]
        else:
            assert ep["repair_session"] is None


def test_parameter_errors_are_clear():
    with pytest.raises(ValueError, match=r"unknown parameter.*rupture_rat"):
        simulate_study(n_therapists=2, rupture_rat=0.1)
    with pytest.raises(ValueError, match="rupture_rate is a probability"):
        simulate_study(n_therapists=2, rupture_rate=1.5)
    with pytest.raises(ValueError, match="n_therapists must be a whole number"):
        simulate_study(n_therapists=0)
    _, truth = simulate_study(n_therapists=2, rupture_rate=0.1)
    assert truth["population"]["alliance_outcome_r_patient"] is None
    assert truth["parameters"]["rupture_rate"] == 0.1


# --------------------------------------------------------------------------- #
# The demo files
# --------------------------------------------------------------------------- #
def test_write_twice_is_byte_identical_and_manifest_matches(written):
    first, summary_a, second, summary_b = written
    assert summary_a == summary_b
    for name in [*DEMO_FILES, "MANIFEST.sha256"]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    manifest = (first / "MANIFEST.sha256").read_text(encoding="utf-8")
    expected = "".join(
        f"{hashlib.sha256((first / name).read_bytes()).hexdigest()}  {name}\n"
        for name in DEMO_FILES
    )
    assert manifest == expected
    for name in DEMO_FILES:
        assert b"\r" not in (first / name).read_bytes()
        assert str(first) not in (first / name).read_text(encoding="utf-8")


def test_committed_demo_matches_fresh_write(written):
    first = written[0]
    for name in [*DEMO_FILES, "MANIFEST.sha256"]:
        committed = DEMO_DIR / name
        assert committed.exists(), f"{committed} missing: run `make data`"
        assert committed.read_bytes() == (first / name).read_bytes(), (
            f"{name} differs from a fresh write_demo_study: run `make data`"
        )


def test_data_card_and_config(written):
    first = written[0]
    card = (first / "README.md").read_text(encoding="utf-8")
    assert "SIMULATED" in card and "no real person" in card and "make data" in card
    for name in DEFAULT_PARAMETERS:
        assert f"`{name}`" in card
    config = yaml.safe_load((first / "study.yml").read_text(encoding="utf-8"))
    assert config["layout"] == "long"
    assert config["columns"] == {
        "therapist_id": "therapist", "patient_id": "patient",
        "session": "session", "modality": "modality",
    }  # fmt: skip
    assert config["covariates"] == {"age": "age", "gender": "gender"}
    assert config["alliance"]["client"] == {"instrument": "wai_sr", "item_pattern": "wai_{i}"}
    assert config["alliance"]["therapist"]["total"] == "therapist_wai_total"
    assert config["primary_alliance"] == "client"
    assert config["outcome"] == {
        "instrument": "phq9", "item_pattern": "phq_{i}", "intake_session": 0,
    }  # fmt: skip
    assert config["read"]["missing_codes"] == ["", "NA", "."]
    assert config["modality_labels"] == {
        "CBT": "CBT", "Psychodynamic": "psychodynamic", "Humanistic": "humanistic",
    }  # fmt: skip
    from helpers.config import load_config  # the suite's own reader accepts it

    assert load_config(first / "study.yml").item_columns("client")[0] == "wai_1"


def test_export_has_exactly_the_documented_faults(written, demo):
    first = written[0]
    data, _ = demo
    raw = pd.read_csv(first / "sessions.csv", dtype=str, keep_default_na=False)
    truth = json.loads((first / "truth.json").read_text(encoding="utf-8"))
    faults = truth["faults"]
    kinds = sorted(f["type"] for f in faults)
    assert kinds == sorted(
        ["out_of_range", "out_of_range", "exact_duplicate", "conflicting_duplicate",
         "mistyped_therapist_id", "missing_code_dot", "missing_code_dot", "missing_code_dot",
         "missing_codes"]
    )  # fmt: skip
    by_type = {f["type"]: f for f in faults}
    rows = raw.copy()
    rows.index = range(2, len(rows) + 2)  # file row numbers (header = row 1), as source_row
    exact, conflict = by_type["exact_duplicate"], by_type["conflicting_duplicate"]
    # the exact duplicate repeats its original; the conflicting one differs only as documented
    assert rows.loc[exact["row"]].equals(rows.loc[exact["row_original"]])
    diff = rows.loc[conflict["row"]] != rows.loc[conflict["row_original"]]
    changed = {c["column"]: c for c in conflict["changes"]}
    assert set(diff[diff].index) == set(changed)
    for col, c in changed.items():
        assert rows.loc[conflict["row_original"], col] == str(c["original"])
        assert rows.loc[conflict["row"], col] == str(c["new"])
    body = rows.drop(index=[exact["row"], conflict["row"]])
    assert len(body) == len(data)

    # Expected text of every cell from the clean data, written independently here.
    expected = pd.DataFrame(
        {
            "therapist": data[schema.THERAPIST_ID].to_numpy(),
            "patient": data[schema.PATIENT_ID].to_numpy(),
            "session": data[schema.SESSION].astype(str).to_numpy(),
            "modality": data[schema.MODALITY].str.capitalize().str.replace("Cbt", "CBT").to_numpy(),
            "age": data["age"].astype(str).to_numpy(),
            "gender": data["gender"].to_numpy(),
        },
        index=body.index,
    )
    for k in range(12):
        expected[f"wai_{k + 1}"] = data[WAI[k]].astype("string").to_numpy()
    expected["therapist_wai_total"] = data[THERAPIST_TOTAL].astype("string").to_numpy()
    for k in range(9):
        expected[f"phq_{k + 1}"] = data[PHQ[k]].astype("string").to_numpy()
    assert list(raw.columns) == list(expected.columns)

    found = set()
    first_half = sorted(data[schema.THERAPIST_ID].unique())[:20]
    for col in expected.columns:
        exp, got = expected[col], body[col]
        missing = exp.isna().to_numpy()
        # missing cells: "NA" for therapists T01-T20, blank otherwise, or "." if documented
        clerk = np.where(expected["therapist"].isin(first_half), "NA", "")
        for row in body.index[missing & (got.to_numpy() != clerk)]:
            found.add(("missing_code_dot", row, col, got[row]))
        for row in body.index[~missing & (got.to_numpy() != exp.fillna("").to_numpy())]:
            found.add(("value", row, col, got[row]))
    documented = set()
    for f in faults:
        if f["type"] == "missing_code_dot":
            documented.add(("missing_code_dot", f["row"], f["column"], "."))
        elif f["type"] in ("out_of_range", "mistyped_therapist_id"):
            documented.add(("value", f["row"], f["column"], str(f["new"])))
    assert found == documented
    out_of_range = {
        (f["column"].split("_")[0], f["new"]) for f in faults if f["type"] == "out_of_range"
    }
    assert out_of_range == {("wai", 6), ("phq", 4)}
    # only the mistyped patient appears under two therapists
    per_patient = raw.groupby("patient")["therapist"].nunique()
    assert list(per_patient[per_patient > 1].index) == [by_type["mistyped_therapist_id"]["patient"]]
    # no other duplicated patient-session
    dup = raw.duplicated(["patient", "session"], keep=False)
    assert set(raw.loc[dup, "patient"]) == {exact["patient"], conflict["patient"]}
    counts = {code: int((raw == code).to_numpy().sum()) for code in ["", "NA", "."]}
    assert counts == by_type["missing_codes"]["counts"]
    assert counts["."] == 3 and counts[""] > 100 and counts["NA"] > 100


def test_export_function_checks_its_input():
    with pytest.raises(ValueError, match="lack the column"):
        export_clinic_file(pd.DataFrame({"x": [1]}), seed=1)


# --------------------------------------------------------------------------- #
# Recovery of the truth on a large sample (9,000 patients)
# --------------------------------------------------------------------------- #
def test_intake_phq9_distribution(large):
    data, _ = large
    intake = with_totals(data).query("session == 0")["Y"]
    # Kroenke-based targets: mean 15, SD 5 (latent; rounding/clipping change little).
    # SE of the mean 5/sqrt(9000) = 0.05; SD's MC SE ~0.04.
    assert intake.mean() == pytest.approx(15.0, abs=0.2)
    assert intake.std() == pytest.approx(5.0, abs=0.25)


def test_recovers_therapist_share(large):
    data, truth = large
    # Truth .0498 (latent scale). Over 20 seeds this estimator had mean .0494 and
    # SD .0070; tolerance 3 SD.
    assert truth["population"]["therapist_share_outcome"] == pytest.approx(0.05, abs=0.001)
    assert therapist_share(data) == pytest.approx(
        truth["population"]["therapist_share_outcome"], abs=0.021
    )


def test_recovers_lagged_within_effect(large):
    data, truth = large
    # Truth -0.15 PHQ-9 points per WAI-SR point. Over 20 seeds: mean -0.141, SD 0.005.
    # The +0.009 bias is understood: +0.0045 from rounding and floor clipping of the
    # observed totals, +0.004 from the reverse path (alliance is then not strictly
    # exogenous, Nickell-type bias of person-centring); on latent scores with no
    # reverse path the same estimator gave -0.1487.  Tolerance = bias + 3 SD.
    assert lagged_within_effect(data) == pytest.approx(
        truth["effects"]["alliance_within_lag1_effect"], abs=0.025
    )


def test_recovers_patient_level_alliance_outcome_r(large):
    data, truth = large
    # Truth .2778 (meta-analytic .278). Over 20 seeds: mean .2768, SD .0131; tolerance 3 SD.
    assert (
        truth["population"]["alliance_outcome_r_patient"]
        == POPULATION_VALUES["alliance_outcome_r_patient"]
    )
    assert patient_level_r(data) == pytest.approx(0.278, abs=0.04)


def test_recovers_client_therapist_agreement(large):
    data, truth = large
    # Truth .3605 (target .36). Over 20 seeds: mean .3641, SD .0121; tolerance 3 SD.
    assert client_therapist_r(data) == pytest.approx(
        truth["population"]["client_therapist_alliance_r"], abs=0.036
    )


def test_recovers_rupture_rate_and_visible_drops(large):
    data, truth = large
    rate, at_risk = rupture_rate(data, truth)
    h = DEFAULT_PARAMETERS["rupture_rate"]
    se = np.sqrt(h * (1 - h) / at_risk)  # binomial SE, about 0.0005
    assert abs(rate - h) < 4 * se
    # At a rupture the observed client total drops by about D = 8 from the previous
    # session (+0.15 growth); per-episode SD of the change ~3, so SE ~0.1 over ~1500.
    d = with_totals(data).set_index([schema.PATIENT_ID, schema.SESSION])["A"]
    at = pd.MultiIndex.from_tuples(
        [(e["patient_id"], e["rupture_session"]) for e in truth["ruptures"]]
    )
    before = pd.MultiIndex.from_tuples(
        [(e["patient_id"], e["rupture_session"] - 1) for e in truth["ruptures"]]
    )
    drops = d.reindex(at).to_numpy() - d.reindex(before).to_numpy()
    drops = drops[~np.isnan(drops)]
    assert drops.mean() == pytest.approx(-DEFAULT_PARAMETERS["rupture_drop"] + 0.15, abs=0.5)
    # share of patients with a rupture lies in the literature range 20-40% for those
    # treated 15+ sessions
    n = data.groupby(schema.PATIENT_ID)[schema.SESSION].max()
    long_patients = set(n[n >= 15].index)
    with_rupture = {ep["patient_id"] for ep in truth["ruptures"]} & long_patients
    assert 0.20 <= len(with_rupture) / len(long_patients) <= 0.40


@pytest.mark.parametrize("seed", range(1, 13))
def test_small_exports_always_clean(seed, tmp_path):
    """Every seed gives an export the cleaning step accepts (no unset cells, no crash).

    Seed 2 once crashed (the conflicting duplicate fell on a row without a PHQ-9), and the
    conflicting copy's missing cells were left unset (written as 'nan').
    """
    from helpers.pipeline import run_cleaning

    data, _ = simulate_study(n_therapists=20, patients_per_therapist=8, seed=seed)
    export, faults = export_clinic_file(data, seed=seed)
    assert not export.isna().any().any()
    assert not export.isin(["nan", "None"]).any().any()
    path = tmp_path / "sessions.csv"
    export.to_csv(path, index=False, lineterminator="\n")
    result = run_cleaning(path, DEMO_DIR / "study.yml")
    assert len(result.sessions) + len(result.ledger) == len(export)
    assert {f["type"] for f in faults} >= {"exact_duplicate", "conflicting_duplicate"}


# --------------------------------------------------------------------------- #
# Modality effect on the outcome (off by default)
# --------------------------------------------------------------------------- #
def test_modality_outcome_effects_shift_only_that_modality():
    """Psychodynamic patients are 3 PHQ-9 points lower during treatment; nothing else moves."""
    plain, plain_truth = simulate_study(n_therapists=30, patients_per_therapist=6, seed=5)
    shifted, truth = simulate_study(
        n_therapists=30,
        patients_per_therapist=6,
        seed=5,
        modality_outcome_effects={"psychodynamic": -3.0},
    )
    assert "modality_outcome_effects" not in plain_truth["effects"]
    assert truth["effects"]["modality_outcome_effects"] == {
        "CBT": 0.0,
        "psychodynamic": -3.0,
        "humanistic": 0.0,
    }
    assert truth["population"]["alliance_outcome_r_patient"] is None
    keep = shifted[schema.MODALITY] != "psychodynamic"
    pd.testing.assert_frame_equal(shifted[keep], plain[keep])
    unchanged = [c for c in shifted.columns if c not in PHQ]
    pd.testing.assert_frame_equal(shifted[unchanged], plain[unchanged])
    psy = ~keep
    intake = psy & (shifted[schema.SESSION] == 0)
    pd.testing.assert_frame_equal(shifted.loc[intake, PHQ], plain.loc[intake, PHQ])
    treat = psy & (shifted[schema.SESSION] >= 1)
    difference = complete_total(shifted[treat], PHQ) - complete_total(plain[treat], PHQ)
    # -3 exactly unless the floor of 0 clips the shifted score
    assert difference.dropna().between(-3, 0).all()
    assert difference.mean() == pytest.approx(-3.0, abs=0.4)


def test_empty_modality_outcome_effects_is_the_default_study():
    a, truth_a = simulate_study(n_therapists=4, patients_per_therapist=3, seed=3)
    b, truth_b = simulate_study(
        n_therapists=4, patients_per_therapist=3, seed=3, modality_outcome_effects={}
    )
    pd.testing.assert_frame_equal(a, b)
    assert json.dumps(truth_a, sort_keys=True) == json.dumps(truth_b, sort_keys=True)


def test_modality_outcome_effects_errors_are_clear():
    with pytest.raises(ValueError, match=r"unknown modalities \['DBT'\]"):
        simulate_study(n_therapists=2, modality_outcome_effects={"DBT": 1.0})
    with pytest.raises(ValueError, match="must be a number"):
        simulate_study(n_therapists=2, modality_outcome_effects={"CBT": "low"})
    with pytest.raises(ValueError, match="must be finite"):
        simulate_study(n_therapists=2, modality_outcome_effects={"CBT": float("nan")})
