"""The models of notebook 03 on the demo study, checked against lme4.

Expected values come from R's lme4 (``tests/reference/lme4_demo_reference.R``: REML fits of
every model of notebook 03, the main model also by ML, each with three optimisers at tight
tolerances) on the committed model columns of the processed demo data
(``tests/reference/demo_model_data.csv`` and ``demo_patient_model_data.csv``, written by
``make_demo_model_data.py``).  Three guards keep the references honest: a fresh cleaning run
must reproduce the committed data bit for bit, R must have read exactly these files (MD5
recorded in the JSON), and the formulas must be exactly the ones notebook 03 fits.

Agreement measured with the default optimisers (largest over the 9 fits):

=====================  ==============  ============
quantity               measured        asserted
=====================  ==============  ============
fixed effects          8.9e-8 rel.     1e-6 rel.
SEs (lme4 ``vcov``)    4.3e-7 rel.     1e-5 rel.
variances / covs       2.5e-6 rel.     1e-4 rel.
SDs / correlations     1.2e-6 rel.     1e-4 rel.
log-likelihood         5.6e-11 abs.    1e-6 abs.
=====================  ==============  ============

The asserted tolerances are 10 to 40 times the measured differences and 10 to 100 times
tighter than the accuracy required of these fits (1e-4, 1e-4, 1e-3, 1e-6): the remaining
differences are at the level of lme4's own optimiser precision on these fairly flat optima
(small slope variances).
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

from helpers.effects import fit_quietly
from helpers.features import add_patient_model_features
from helpers.models import UnsupportedModelError
from helpers.paths import DEMO_DIR, NOTEBOOKS_DIR, PROJECT_ROOT
from helpers.pipeline import run_cleaning

from _fits import LazyFits

REFERENCE = PROJECT_ROOT / "tests" / "reference"
DATA_FILES = {
    "demo_sessions": REFERENCE / "demo_model_data.csv",
    "demo_patients": REFERENCE / "demo_patient_model_data.csv",
}
FITS = json.loads((REFERENCE / "lme4_demo_fits.json").read_text())["fits"]
LME4_FIXED = pd.read_csv(REFERENCE / "lme4_demo_fixed.csv")
LME4_VARCOMP = pd.read_csv(REFERENCE / "lme4_demo_varcomp.csv", keep_default_na=False)
NOTEBOOK = NOTEBOOKS_DIR / "03_alliance_outcome_models.ipynb"

FIXED_RTOL = 1e-6
SE_RTOL = 1e-5
VARCOMP_RTOL = 1e-4
LOGLIK_ATOL = 1e-6

REF_IDS = [f"{r['model_id']}-{'REML' if r['reml'] else 'ML'}" for r in FITS]


def _read_reference_data(name: str) -> pd.DataFrame:
    """A committed data file, read the way R reads it ("NA" is the only missing code)."""
    return pd.read_csv(
        DATA_FILES[name],
        keep_default_na=False,
        na_values=["NA"],
        dtype={"therapist_id": "str", "patient_id": "str"},
    )


@pytest.fixture(scope="module")
def reference_data() -> dict[str, pd.DataFrame]:
    return {name: _read_reference_data(name) for name in DATA_FILES}


#: Fitting paths checked against lme4: the default ("auto": the vectorised engine for every
#: model of notebook 03) and the statsmodels reference path (its demo fits take minutes, so
#: its checks are ``slow``: ``make test`` runs them, ``make test-fast`` does not).
ENGINES = ["auto", pytest.param("statsmodels", marks=pytest.mark.slow)]
#: Reference models outside statsmodels' reach: correlated patient intercepts and slopes
#: inside a therapist grouping, which only the engine fits.
BEYOND_STATSMODELS = {"demo_three_level_corr"}


@pytest.fixture(scope="module")
def fits_by_engine(reference_data) -> LazyFits:
    """Every reference model fitted with the default settings, as notebook 03 does, per path
    (made on demand)."""

    def fit_path(engine: str) -> dict[tuple[str, bool], object]:
        fits = {}
        for ref in FITS:
            if engine == "statsmodels" and ref["model_id"] in BEYOND_STATSMODELS:
                continue  # checked to raise in test_statsmodels_refuses_what_it_cannot_fit
            fits[(ref["model_id"], ref["reml"])] = fit_quietly(
                reference_data[ref["data"]], ref["formula"], reml=ref["reml"], engine=engine
            )
        return fits

    return LazyFits(fit_path)


def _result(fits_by_engine, engine: str, ref: dict):
    if engine == "statsmodels" and ref["model_id"] in BEYOND_STATSMODELS:
        pytest.skip("statsmodels cannot fit correlated patient effects inside therapists")
    return fits_by_engine[engine][(ref["model_id"], ref["reml"])]


def test_statsmodels_refuses_what_it_cannot_fit(reference_data):
    for ref in FITS:
        if ref["model_id"] in BEYOND_STATSMODELS:
            with pytest.raises(UnsupportedModelError, match=r"(?i)nearest exact alternative"):
                fit_quietly(
                    reference_data[ref["data"]], ref["formula"], reml=ref["reml"],
                    engine="statsmodels",
                )  # fmt: skip


@pytest.fixture(scope="module")
def fitted(fits_by_engine) -> dict[tuple[str, bool], object]:
    """The default path, as notebook 03 fits."""
    return fits_by_engine["auto"]


# ---------------------------------------------------------------------------------------
# The references are about the current demo data and the current notebook
# ---------------------------------------------------------------------------------------


def test_fresh_cleaning_reproduces_the_reference_data_exactly(reference_data):
    cleaned = run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml")
    fresh = {
        "demo_sessions": cleaned.sessions,
        "demo_patients": add_patient_model_features(cleaned.patients),
    }
    for name, committed in reference_data.items():
        current = fresh[name][list(committed.columns)].reset_index(drop=True)
        # Any change in the cleaning or the features fails here: regenerate the data with
        # make_demo_model_data.py, then the lme4 references with lme4_demo_reference.R.
        # (whole-number float columns such as outcome_last are read back as integers)
        pd.testing.assert_frame_equal(current, committed, check_exact=True, check_dtype=False)
        for column in committed.select_dtypes("number"):
            assert np.array_equal(
                current[column].to_numpy(float), committed[column].to_numpy(float), equal_nan=True
            ), f"{DATA_FILES[name].name}: column {column} differs from a fresh cleaning run"


def test_lme4_fitted_exactly_the_committed_data():
    for ref in FITS:
        digest = hashlib.md5(DATA_FILES[ref["data"]].read_bytes()).hexdigest()
        assert ref["data_file"] == DATA_FILES[ref["data"]].name
        assert ref["data_md5"] == digest, (
            f"{ref['data_file']} changed after the lme4 references were computed; rerun "
            "Rscript tests/reference/lme4_demo_reference.R"
        )


def _notebook_formulas() -> set[str]:
    """The formulas notebook 03 fitted on the demo study, as its stored output lists them.

    Notebook 03 builds its formulas from the study's profile (two or three levels), so they
    are read from the cell that prints every fit's formula; nbval keeps that stored output
    equal to a fresh run on the demo study.
    """
    marker = "# the formulas of every fit"
    for cell in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith(marker):
            text = "".join("".join(o.get("text", "")) for o in cell["outputs"])
            return {" ".join(line.rsplit(": ", 1)[1].split()) for line in text.splitlines()}
    raise AssertionError(f"notebook 03 has no cell starting with {marker!r}")


def test_references_cover_exactly_the_models_of_notebook_03():
    referenced = {" ".join(ref["formula"].split()) for ref in FITS}
    assert referenced == _notebook_formulas()
    assert {(r["model_id"], r["reml"]) for r in FITS if not r["reml"]} == {("demo_main", False)}


def test_lme4_references_are_confirmed_optima():
    """At least two of lme4's three optimisers reach the kept criterion (1e-6 deviance)."""
    for ref in FITS:
        criteria = np.array(list(ref["criterion_by_optimizer"].values()))
        best = criteria.min()
        assert np.sum(criteria - best < 1e-6) >= 2, ref["model_id"]
        assert ref["max_abs_gradient"] < 1e-3 and ref["min_hessian_eigenvalue"] > 0
        assert not ref["singular"]


# ---------------------------------------------------------------------------------------
# Agreement with lme4
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ref", FITS, ids=REF_IDS)
def test_fixed_effects_and_standard_errors_match_lme4(fits_by_engine, ref, engine):
    result = _result(fits_by_engine, engine, ref)
    lme4 = LME4_FIXED[
        (LME4_FIXED.model_id == ref["model_id"]) & (LME4_FIXED.reml == ref["reml"])
    ].reset_index(drop=True)
    assert list(result.fixed.index) == [t.replace("(Intercept)", "Intercept") for t in lme4.term]
    np.testing.assert_allclose(result.fixed["estimate"], lme4["estimate"], rtol=FIXED_RTOL)
    np.testing.assert_allclose(result.fixed["se"], lme4["se"], rtol=SE_RTOL)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ref", FITS, ids=REF_IDS)
def test_variance_components_match_lme4(fits_by_engine, ref, engine):
    result = _result(fits_by_engine, engine, ref)
    lme4 = LME4_VARCOMP[
        (LME4_VARCOMP.model_id == ref["model_id"]) & (LME4_VARCOMP.reml == ref["reml"])
    ]
    # lme4 names the independent pieces of (1 + session_c || patient_id) "patient_id",
    # "patient_id.1", ...: one variance component each, as in statsmodels' vc_formula.
    expected = {
        (re.sub(r"\.\d+$", "", grp), v1.replace("(Intercept)", "Intercept"), v2): (
            float(vcov),
            float(sdcor),
        )
        for grp, v1, v2, vcov, sdcor in lme4[["grp", "var1", "var2", "vcov", "sdcor"]].itertuples(
            index=False
        )
    }
    assert len(expected) == len(lme4)  # no two lme4 rows collapse onto one key
    ours = {(g, t, t2): (v, s) for g, t, t2, v, s in result.varcomp.itertuples(index=False)}
    assert set(ours) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(ours[key], values, rtol=VARCOMP_RTOL, err_msg=str(key))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ref", FITS, ids=REF_IDS)
def test_loglik_counts_and_checks_match_lme4(fits_by_engine, ref, engine):
    result = _result(fits_by_engine, engine, ref)
    assert abs(result.loglik - ref["logLik"]) < LOGLIK_ATOL
    assert result.n_params == ref["df"]
    assert result.nobs == ref["nobs"]  # rows with a missing model variable dropped alike
    assert result.ngroups == ref["ngroups"]
    assert result.converged and result.hessian_positive_definite
    assert result.singular == ref["singular"]


def test_main_model_drops_the_rows_without_a_lagged_alliance(fitted, reference_data):
    sessions = reference_data["demo_sessions"]
    model_columns = ["outcome", "alliance_within_lag", "alliance_between_c", "session_c"]
    complete = sessions[model_columns].notna().all(axis=1)
    result = fitted[("demo_main", True)]
    assert result.nobs == int(complete.sum())
    assert result.n_dropped_missing == int((~complete).sum())
    assert result.missing_by_column["alliance_within_lag"] == int(
        sessions["alliance_within_lag"].isna().sum()
    )


@pytest.mark.slow  # the statsmodels path's demo fits take minutes
@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_engine_and_statsmodels_agree_on_the_main_model(fits_by_engine, reml):
    """The two paths give the same numbers (within the lme4 tolerances above)."""
    by_engine = fits_by_engine["auto"][("demo_main", reml)]
    by_statsmodels = fits_by_engine["statsmodels"][("demo_main", reml)]
    assert (by_engine.engine, by_statsmodels.engine) == ("engine", "statsmodels")
    pd.testing.assert_index_equal(by_engine.fixed.index, by_statsmodels.fixed.index)
    np.testing.assert_allclose(
        by_engine.fixed["estimate"], by_statsmodels.fixed["estimate"], rtol=FIXED_RTOL
    )
    np.testing.assert_allclose(by_engine.fixed["se"], by_statsmodels.fixed["se"], rtol=SE_RTOL)
    np.testing.assert_allclose(
        by_engine.cov_fixed.to_numpy(), by_statsmodels.cov_fixed.to_numpy(), rtol=SE_RTOL
    )
    keys = ["group", "term", "term2"]
    pd.testing.assert_frame_equal(by_engine.varcomp[keys], by_statsmodels.varcomp[keys])
    np.testing.assert_allclose(
        by_engine.varcomp[["variance_or_cov", "sd_or_corr"]],
        by_statsmodels.varcomp[["variance_or_cov", "sd_or_corr"]],
        rtol=VARCOMP_RTOL,
    )
    assert abs(by_engine.loglik - by_statsmodels.loglik) < LOGLIK_ATOL
    assert by_engine.n_params == by_statsmodels.n_params
    assert (by_engine.nobs, by_engine.ngroups) == (by_statsmodels.nobs, by_statsmodels.ngroups)
    pd.testing.assert_frame_equal(by_engine.model_frame, by_statsmodels.model_frame)
    pd.testing.assert_frame_equal(by_engine.design, by_statsmodels.design)
    assert by_engine._fingerprint == by_statsmodels._fingerprint  # LRTs may mix the paths
