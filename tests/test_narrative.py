"""Sentences about the data: each builder is checked in every direction it can state.

Expected strings are written by hand from the inputs; a sentence for the demo study's
direction must flip when the numbers flip (the reversed-study requirement).
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from helpers import narrative
from helpers.narrative import Sentence


def _row(estimate, low, high, p=0.01):
    return pd.Series({"estimate": estimate, "ci_low": low, "ci_high": high, "p": p})


def test_sentence_shows_as_markdown_and_plain_text_alike():
    s = Sentence("A **b**")
    assert s._repr_markdown_() == "A **b**"
    assert repr(s) == "A **b**"


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [(-0.164, 2, "−0.16"), (0.004, 2, "0.00"), (-0.004, 2, "0.00"), (12.0, 1, "12.0")],
)
def test_number_uses_a_typographic_minus_and_no_negative_zero(value, decimals, text):
    assert narrative.number(value, decimals) == text


def test_count_agrees_in_number():
    assert narrative.count(1, "therapist") == "1 therapist"
    assert narrative.count(25, "therapist") == "25 therapists"
    assert narrative.count(4179, "session") == "4,179 sessions"
    assert narrative.count(2, "analysis", "analyses") == "2 analyses"


@pytest.mark.parametrize(
    ("est", "low", "high", "expected"),
    [(-0.16, -0.2, -0.1, "negative"), (0.3, 0.1, 0.5, "positive"), (0.1, -0.1, 0.3, "unclear")],
)
def test_direction_is_read_from_the_interval(est, low, high, expected):
    assert narrative.direction(est, low, high) == expected


def test_p_text_follows_apa():
    assert narrative.p_text(0.0004) == "p < .001"
    assert narrative.p_text(0.0342) == "p = .034"
    assert narrative.p_text(0.9996) == "p > .999"


def test_coefficient_sentence_states_both_directions_and_no_clear_one():
    subject, predicate = "a patient with one point more alliance", "has a PHQ-9"
    lower = narrative.coefficient_sentence(_row(-0.18, -0.25, -0.10, 0.0001), subject, predicate)
    higher = narrative.coefficient_sentence(_row(0.18, 0.10, 0.25, 0.0001), subject, predicate)
    unclear = narrative.coefficient_sentence(_row(0.05, -0.05, 0.15, 0.3), subject, predicate)
    assert lower == (
        "A patient with one point more alliance has a PHQ-9 lower by 0.18 points "
        "(95% CI −0.25 to −0.10, p < .001)."
    )
    assert higher == (
        "A patient with one point more alliance has a PHQ-9 higher by 0.18 points "
        "(95% CI 0.10 to 0.25, p < .001)."
    )
    assert "includes zero" in unclear and "no clear association" not in lower


def _agreement(mean_b_minus_a_per_patient):
    """Two raters on two sessions per patient; b − a is constant within a patient."""
    rows = []
    for i, diff in enumerate(mean_b_minus_a_per_patient):
        for session in (1, 2):
            a = 40.0 + i + session
            rows.append(
                {"patient_id": f"P{i}", "alliance_client": a, "alliance_therapist": a + diff}
            )
    sessions = pd.DataFrame(rows)
    estimate = SimpleNamespace(r=0.44, ci=(0.36, 0.52))
    agreement = SimpleNamespace(
        a="alliance_client",
        b="alliance_therapist",
        between=estimate,
        within=SimpleNamespace(r=0.29, ci=(0.26, 0.32)),
        loa_low=-17.27,
        loa_high=10.46,
    )
    return agreement, sessions


def test_agreement_sentence_says_who_rates_higher_from_patient_means():
    lower, s_lower = _agreement([-3.0, -2.0, -4.0, -3.0])
    higher, s_higher = _agreement([3.0, 2.0, 4.0, 3.0])
    none, s_none = _agreement([-3.0, 3.0, -2.0, 2.0])
    assert "therapists rate the alliance lower than clients" in narrative.agreement_sentence(
        lower, s_lower
    )
    assert "therapists rate the alliance higher than clients" in narrative.agreement_sentence(
        higher, s_higher
    )
    assert "do not differ clearly" in narrative.agreement_sentence(none, s_none)
    # mean of the patient means −3, SD 0.8165, t(0.975, 3) = 3.1824: half-width 1.30
    assert "−3.00 (95% CI −4.30 to −1.70) points over 4 patients" in narrative.agreement_sentence(
        lower, s_lower
    )
    assert "not compared" in narrative.agreement_sentence(lower, s_lower, same_scale=False)


def test_trend_says_rises_falls_or_same():
    sessions = pd.DataFrame({"session": [1] * 10 + [2] * 10, "score": [10.0] * 10 + [8.0] * 10})
    assert narrative.trend(sessions, "score", "PHQ-9") == (
        "The mean PHQ-9 falls from 10.0 at session 1 to 8.0 at session 2 "
        "(the last session with at least 10 scores)."
    )
    rising = sessions.assign(score=lambda d: 20 - d["score"])
    assert "rises from 10.0 at session 1 to 12.0" in narrative.trend(rising, "score", "X")
    flat = sessions.assign(score=5.0)
    assert "is about the same" in narrative.trend(flat, "score", "X")


def test_benchmark_sentence_places_the_interval():
    def r(value, low, high):
        return SimpleNamespace(r=value, ci=(low, high), n=100)

    assert "includes" in narrative.benchmark_sentence(r(0.3, 0.2, 0.4))
    assert "lies above" in narrative.benchmark_sentence(r(0.5, 0.4, 0.6))
    assert "lies below" in narrative.benchmark_sentence(r(-0.1, -0.3, 0.1))


def test_truth_sentence_counts_standard_errors_from_the_interval():
    comparison = pd.DataFrame(
        {
            "truth": [-0.15],
            "estimate": [-0.164],
            "ci_low": [-0.1902],
            "ci_high": [-0.1378],
            "CI covers truth": [True],
        },
        index=pd.Index(["alliance_within_lag"], name="term"),
    )
    text = narrative.truth_sentence(comparison)
    # SE = 0.0524 / 3.92 = 0.01337; |−0.164 + 0.15| / 0.01337 = 1.05
    assert "covers its true value −0.150, 1.0 standard errors away" in text


def test_diagnostics_sentence_names_singular_and_failed_fits():
    table = pd.DataFrame(
        {"converged": [True, False, True], "singular": [False, False, True]},
        index=["a", "b", "c"],
    )
    text = narrative.diagnostics_sentence(table)
    assert "1 fit of 3 did not pass the convergence check (b)" in text
    assert "1 fit is singular (c)" in text
    clean = narrative.diagnostics_sentence(table.assign(converged=True, singular=False))
    assert clean == "All 3 fits passed the convergence check; none is singular."


def test_treatment_length_sentence_for_longer_and_shorter():
    longer = pd.DataFrame(
        {"n_sessions": [12.3, 18.4, 16.7]}, index=["no rupture", "repaired", "unrepaired"]
    )
    assert "had longer treatments" in narrative.treatment_length_sentence(longer)
    shorter = longer.assign(n_sessions=[20.0, 10.0, 12.0])
    assert "had shorter treatments" in narrative.treatment_length_sentence(shorter)


def test_therapist_effects_sentence_says_when_the_variance_is_zero():
    zero = pd.DataFrame({"estimate": [0.0, 0.0], "ci_low": [0.0, 0.0], "ci_high": [0.0, 0.0]})
    assert "singular fit" in narrative.therapist_effects_sentence(zero, singular=True)
    spread = pd.DataFrame(
        {"estimate": [-1.5, 0.2, 1.7], "ci_low": [-2.5, -0.8, 0.3], "ci_high": [-0.5, 1.2, 3.1]}
    )
    assert narrative.therapist_effects_sentence(spread, singular=False) == (
        "The 3 therapists' effects range from −1.50 to 1.70 points; of their 3 intervals, 2 "
        "exclude zero."
    )


def test_modality_levels_sentence_reads_treatment_coded_main_effects_only():
    fixed = pd.DataFrame(
        {
            "estimate": [-3.0, 0.1, 0.05],
            "ci_low": [-4.0, -1.0, -0.1],
            "ci_high": [-2.0, 1.2, 0.2],
            "p": [0.0001, 0.8, 0.5],
        },
        index=[
            'C(modality, Treatment("CBT"))[T.psychodynamic]',
            'C(modality, Treatment("CBT"))[T.humanistic]',
            'alliance_within_lag:C(modality, Treatment("CBT"))[T.humanistic]',
        ],
    )
    text = narrative.modality_levels_sentence(SimpleNamespace(fixed=fixed), "PHQ-9")
    assert text.startswith(
        "Compared with CBT, an average patient in psychodynamic has a PHQ-9 lower by 3.00 points"
    )
    assert "humanistic has a PHQ-9 higher by 0.10 points on average, but" in text
    assert text.count("Compared with") == 2  # the interaction term is not a level difference


def test_lrt_sentence_names_the_reference_the_test_chose():
    mixture = SimpleNamespace(
        statistic=0.2178,
        p_value=0.3204,
        df=1,
        boundary=True,
        reference="50:50 mixture of chi-square(0) and chi-square(1)",
        conservative=False,
    )
    assert narrative.lrt_sentence(mixture, "a random slope") == (
        "Adding a random slope does not clearly improve the model: χ² = 0.22, p = .320 "
        "(50:50 mixture of χ²(0) and χ²(1))."
    )
    plain = SimpleNamespace(
        statistic=150.0,
        p_value=1e-30,
        df=3,
        boundary=False,
        reference="chi-square(3)",
        conservative=True,
    )
    assert "(χ²(3), conservative)" in narrative.lrt_sentence(plain, "a correlated slope")


def _ddf_table(same: list[bool]) -> pd.DataFrame:
    terms = ["Intercept", "x_within", "x_between"][: len(same)]
    return pd.DataFrame(
        {"df (Satterthwaite)": [30.0, 2833.46, 18.04][: len(same)], "same conclusion": same},
        index=terms,
    )


def test_ddf_sentence_lists_the_df_and_says_when_tests_agree():
    text = narrative.ddf_sentence(_ddf_table([True, True, True]))
    assert text == (
        "Satterthwaite degrees of freedom: `x_within` 2833.5 and `x_between` 18.0. The z-test "
        "and the small-sample t-tests reach the same conclusion at p < .05 for every term."
    )


def test_ddf_sentence_names_the_terms_where_tests_disagree():
    text = narrative.ddf_sentence(_ddf_table([True, True, False]))
    assert "different conclusions at p < .05 for `x_between`: report the small-sample" in text


def _shares(lower: float, at_bound: bool) -> pd.DataFrame:
    row = {"estimate": 0.05, "lower": lower, "upper": 0.12, "level": 0.95}
    return pd.concat({"outcome": pd.DataFrame([row | {"lower_at_bound": at_bound}])})


def test_share_interval_sentence_gives_the_interval():
    text = narrative.share_interval_sentence(_shares(0.012, False))
    assert text == (
        "Therapists' share of the variance — `outcome`: 5.0% (95% profile interval 1.2% to 12.0%)."
    )


def test_share_interval_sentence_says_when_the_interval_reaches_zero():
    text = narrative.share_interval_sentence(_shares(0.0, True))
    assert "reaches zero: no therapist differences is also consistent" in text


def test_modality_sentence_writes_f_tests_with_their_denominator_df():
    tests = pd.DataFrame(
        {"statistic": [1.2, 5.0], "df": [2.0, 2.0], "ddf": [31.44, 29.0], "p": [0.31, 0.013]},
        index=["x_within", "x_between"],
    )
    sessions = pd.DataFrame({"modality": ["a", "a", "b"], "therapist_id": ["T1", "T2", "T3"]})
    text = narrative.modality_sentence(tests, sessions)
    assert text == (
        "The slope of `x_within` does not differ clearly between modalities (F(2, 31.4) = 1.20, "
        "p = .310); the slope of `x_between` differs clearly between modalities (F(2, 29.0) = "
        "5.00, p = .013). Therapists per modality: a 2 and b 1."
    )


def test_modality_sentence_writes_chi_square_tests_without_ddf():
    tests = pd.DataFrame({"statistic": [2.4], "df": [2.0], "p": [0.3]}, index=["x"])
    text = narrative.modality_sentence(tests, pd.DataFrame({"modality": ["a"]}))
    assert "(χ²(2) = 2.40, p = .300)" in text
