r"""The simulated demo study: session-level alliance and symptom data with known truth.

Nothing here describes a real person.  :func:`simulate_study` draws a whole
study (therapists → patients → sessions) from a generating process whose
parameters are set to values from the published literature, and returns the
clean session-level data together with a JSON-serialisable ``truth`` dict that
holds every generating parameter, the true effects and every true
rupture–repair episode.  :func:`export_clinic_file` turns the clean data into
the kind of file a clinic would send (its own column names, mixed missing
codes and a few documented data-entry faults), and :func:`write_demo_study`
writes the committed demo study in ``data/raw/demo/`` (``make data``).

Generating process
------------------
Indices: therapist :math:`j`, patient :math:`i` (treated by one therapist
:math:`j[i]`), treatment session :math:`t = 1, …, n_i` (session 0 is the
intake assessment).  :math:`z` denotes independent standard normal draws;
``SD`` values are the parameters of :data:`PARAMETERS`.

Design
    Each therapist practises one modality (CBT, psychodynamic, humanistic in
    equal shares, randomly allocated; no modality effect unless
    ``modality_outcome_effects`` is given, see Symptoms).  Caseload
    :math:`m_j = 1 + \mathrm{Poisson}(\text{patients\_per\_therapist} - 1)`.
    Treatment length: after session :math:`t` a patient stops with probability
    ``dropout_hazard_early`` (:math:`t \le 2`) or ``dropout_hazard_late``
    (:math:`t \ge 3`); nobody continues past ``max_sessions``.  Dropout is
    independent of alliance and symptoms (missing completely at random).

Client alliance (WAI-SR total, 12–60), latent, :math:`t \ge 1`
    .. math::

        A_{it} = \mu_A + g\,(t-1) + u_j + v_i + d_{it}, \qquad
        d_{it} = s_{it} + R_{it} + \gamma\,r_{i,t-1}

    with therapist part :math:`u_j = \sigma_u z`, trait-like patient part
    :math:`v_i = \sigma_v z`, state-like AR(1) part
    :math:`s_{it} = \phi s_{i,t-1} + \sigma_s\sqrt{1-\phi^2}\,z` (stationary,
    :math:`s_{i1} = \sigma_s z`), rupture effect :math:`R_{it}` (below) and the
    reverse path :math:`\gamma\,r_{i,t-1}` from the patient's symptom deviation
    at the previous session (:math:`r_{i0}` is the intake deviation).
    :math:`\tau_i = u_j + v_i` is the patient's true alliance level and
    :math:`d_{it}` the true within-patient alliance deviation.

Ruptures and repairs
    At each session :math:`t \ge 2` with no episode in progress a rupture starts
    with probability ``rupture_rate``: :math:`R_{it} = -D` (``rupture_drop``).
    With probability ``repair_probability`` it is repaired over
    :math:`k \sim \mathrm{Uniform}\{1, …, \text{repair\_max\_sessions}\}`
    sessions, recovering linearly, :math:`R_{i,t+m} = -D(1 - m/k)`, so the
    alliance is back at its pre-rupture level at the repair session
    :math:`t + k`; a patient is at risk again from the session after the
    repair.  Otherwise the drop lasts for the rest of treatment.

Symptoms (PHQ-9 total, 0–27), latent
    .. math::

        Y_{i0} &= \mu_Y + c_{0i} + e_{i0} \\
        Y_{it} &= \mu_Y + c_{0i} + b_j + (\beta_1 + c_{1i})\log(1+t)
                  + \beta_B\,\tau_i + \beta_W\,d_{i,t-1} + e_{it}, \quad t \ge 1

    with :math:`(c_{0i}, c_{1i})` bivariate normal (SDs ``outcome_sd_patient_
    intercept``, ``outcome_sd_patient_slope``, correlation ``outcome_intercept_
    slope_corr``), therapist intercept :math:`b_j = \sigma_b z` during treatment,
    residual :math:`e_{it} = \sigma_e z`, between-patient alliance effect
    :math:`\beta_B` and lagged within-patient effect :math:`\beta_W`
    (:math:`d_{i0} = 0`).  The symptom deviation feeding the reverse path is
    :math:`r_{it} = \beta_W d_{i,t-1} + e_{it}`.  With
    ``simulate_study(modality_outcome_effects={...})`` a fixed number of
    PHQ-9 points :math:`m_{k[j]}` is added at every treatment session of the
    patients of a therapist practising modality :math:`k` (not at the
    intake); by default there is none, and no random draw depends on it.

Therapist-rated alliance (WAI-SR therapist total, 12–60), latent
    .. math::

        T_{it} = \mu_T + g\,(t-1) + \kappa\,(\tau_i + d_{it}) + \ell_j + w_i + \omega_{it}

    with rater leniency :math:`\ell_j`, patient-specific rater part
    :math:`w_i` and session noise :math:`\omega_{it}`; the loading
    :math:`\kappa` is calibrated to the client–therapist agreement r = .36.

Observed scores
    Totals are the latent values rounded to integers and clipped to the
    instrument range (clipping is rare: see ``truth["clipping"]``).  Items are
    then generated so that they add up exactly to the observed total: each
    item gets a propensity (item difficulty + patient-by-item effect +
    session noise, and for the WAI-SR a session-by-subscale effect), the
    total above the minimum is spread over the items in proportion to a
    logistic function of the propensities, and the shares are rounded by the
    largest-remainder rule within the item range.  Finally a few items are
    set missing at random (``item_missing_rate``) and sometimes a whole
    questionnaire is missed (``questionnaire_missing_rate``; never the intake
    PHQ-9).

Derived truths (``truth["population"]``)
-----------------------------------------
``alliance_outcome_r_patient``
    Pearson correlation, over patients with at least 3 treatment sessions,
    between the patient's mean client WAI-SR total over sessions 1..n and the
    improvement = PHQ-9 total at intake − PHQ-9 total at the last session,
    on observed totals before any item is set missing.  Calibrated to the
    meta-analytic r = .278 (Flückiger et al. 2018).
``client_therapist_alliance_r``
    Pearson correlation, over all treatment-session rows, between the client
    and the therapist WAI-SR totals (observed totals before missingness).
    Calibrated to r = .36 (Tryon et al. 2007).
``therapist_share_outcome``
    :math:`\sigma_T^2 / \bar V` where :math:`\sigma_T^2 = \sigma_b^2 +
    \beta_B^2\sigma_u^2` is the between-therapist variance of the latent
    PHQ-9 during treatment (the same at every session) and :math:`\bar V` is
    the variance of the latent PHQ-9 at session t across all patients,
    averaged over t = 1..max_sessions.  Calibrated to .05 (Wampold & Brown
    2005; Baldwin & Imel 2013).

All three are large-sample values measured by :func:`measure_population_targets`
once, with the default parameters, and stored in :data:`POPULATION_VALUES`;
they are reported in ``truth`` only when the study is simulated with those
parameters (otherwise ``None``: call :func:`measure_population_targets`).

Examples
--------
>>> data, truth = simulate_study(n_therapists=3, patients_per_therapist=4, seed=1)
>>> int(data.groupby("patient_id")["therapist_id"].nunique().max())
1
>>> truth["parameters"]["rupture_rate"]
0.02
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from helpers import schema
from helpers.errors import DataInputError, SettingsError
from helpers.safety import atomic_write_bytes

# --------------------------------------------------------------------------- #
# Instruments
# --------------------------------------------------------------------------- #
WAI_SR_ITEMS = 12
WAI_SR_MIN, WAI_SR_MAX = 1, 5
WAI_SR_SUBSCALES: dict[str, tuple[int, ...]] = {
    "task": (1, 2, 10, 12),
    "bond": (3, 5, 7, 9),
    "goal": (4, 6, 8, 11),
}
PHQ9_ITEMS = 9
PHQ9_MIN, PHQ9_MAX = 0, 3

#: Item difficulties on the logit scale of the item-spreading step (assumption:
#: bond items endorsed most, goal items least; in the PHQ-9, sleep and fatigue
#: most, psychomotor change and thoughts of self-harm (item 9) least).
WAI_ITEM_DIFFICULTY: tuple[float, ...] = (
    0.0, 0.0, 0.3, -0.2, 0.3, -0.2, 0.3, -0.2, 0.3, 0.0, -0.2, 0.0,
)  # fmt: skip
PHQ_ITEM_DIFFICULTY: tuple[float, ...] = (0.3, 0.3, 0.5, 0.5, 0.0, 0.0, 0.0, -0.8, -2.0)

MODALITIES: tuple[str, ...] = ("CBT", "psychodynamic", "humanistic")
GENDERS: tuple[str, ...] = ("F", "M", "other")
AGE_MIN, AGE_MAX = 18, 80

#: Column names of the clinic export (see :func:`export_clinic_file`).
EXPORT_MODALITY_LABELS: dict[str, str] = {
    "CBT": "CBT",
    "psychodynamic": "Psychodynamic",
    "humanistic": "Humanistic",
}
MISSING_CODES: tuple[str, ...] = ("", "NA", ".")
DEMO_FILES: tuple[str, ...] = ("README.md", "sessions.csv", "study.yml", "truth.json")
MANIFEST_NAME = "MANIFEST.sha256"
_N_STREAMS = 7  # independent random streams spawned from default_rng(seed)
_EXPORT_STREAM = 6


# --------------------------------------------------------------------------- #
# Parameters
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Parameter:
    """One default generating parameter and where its value comes from.

    Attributes
    ----------
    name : str
        Keyword accepted by :func:`simulate_study`.
    value : float
        Default value.
    unit : str
        Unit of the value.
    meaning : str
        What the parameter is (symbol of the module equations in brackets).
    source : str
        Published source, or "assumption" with the reason for the value.
    """

    name: str
    value: float
    unit: str
    meaning: str
    source: str


FLUCKIGER_2018 = "Flückiger, Del Re, Wampold & Horvath (2018), Psychotherapy 55(4)"
TRYON_2007 = "Tryon, Blackwell & Hammel (2007), Psychotherapy Research 17(6)"
KROENKE_2001 = "Kroenke, Spitzer & Williams (2001), J Gen Intern Med 16(9)"
CALIBRATED = "calibrated by simulation (calibrate_defaults)"

#: The default generating parameters, with units and sources (also rendered in
#: the data card).  Values marked "assumption" have no single published value;
#: the reason for the choice is given.
PARAMETERS: tuple[Parameter, ...] = (
    # Design
    Parameter(
        "dropout_hazard_early", 0.10, "probability per session",
        "stopping after session 1 or 2",
        "Swift & Greenberg (2012), J Consult Clin Psychol 80(4): weighted dropout 19.7%; "
        "with 0.10 about 19% of patients end after 1-2 sessions",
    ),
    Parameter(
        "dropout_hazard_late", 0.07, "probability per session",
        "stopping after session 3 or later",
        "assumption: about a quarter of patients reach 20 sessions, mean length ~10",
    ),
    Parameter(
        "item_missing_rate", 0.02, "probability per item", "single item left blank",
        "assumption: a few % of items missing, as typical of routine questionnaires",
    ),
    Parameter(
        "questionnaire_missing_rate", 0.03, "probability per questionnaire",
        "whole questionnaire missed at a session (never the intake PHQ-9)",
        "assumption",
    ),
    Parameter(
        "age_mean", 38.0, "years", "patient age, mean (clipped to 18-80)",
        "assumption: adult outpatients",
    ),
    Parameter("age_sd", 12.0, "years", "patient age, SD", "assumption: adult outpatients"),
    Parameter(
        "share_female", 0.64, "proportion", "patients recorded F",
        "assumption: women are the majority of psychotherapy outpatients",
    ),
    Parameter(
        "share_other_gender", 0.02, "proportion", "patients recorded 'other'", "assumption"
    ),
    # Client alliance
    Parameter(
        "alliance_mean", 43.0, "WAI-SR total (12-60)", "client alliance at session 1 (mu_A)",
        "assumption: client ratings are high (Hatcher & Gillaspy 2006 WAI-SR, 5-point "
        "items); kept below 45 so that ceiling clipping stays rare",
    ),
    Parameter(
        "alliance_growth", 0.15, "WAI-SR points per session", "average linear growth (g)",
        "assumption: modest average increase; growth is one of the typical patterns "
        "(Kivlighan & Shaughnessy 2000, J Couns Psychol 47(3))",
    ),
    Parameter(
        "alliance_sd_therapist", 2.0, "WAI-SR points", "therapist part (sigma_u)",
        "assumption: therapists differ in their patients' alliance "
        "(Baldwin, Wampold & Imel 2007, J Consult Clin Psychol 75(6))",
    ),
    Parameter(
        "alliance_sd_patient", 5.5, "WAI-SR points", "trait-like patient part (sigma_v)",
        "assumption: between-patient SD of about 0.5 per item",
    ),
    Parameter(
        "alliance_sd_state", 2.5, "WAI-SR points", "state-like AR(1) part, marginal SD (sigma_s)",
        "assumption: within-patient fluctuation smaller than between-patient differences "
        "(Falkenström, Granström & Holmqvist 2013, J Couns Psychol 60(3))",
    ),
    Parameter(
        "alliance_state_ar", 0.4, "correlation", "AR(1) coefficient of the state part (phi)",
        "assumption",
    ),
    Parameter(
        "reverse_path_effect", -0.10, "WAI-SR points per PHQ-9 point",
        "symptom deviation at t-1 -> alliance at t (gamma)",
        "assumption: small reciprocal path, as modelled session by session by "
        "Falkenström, Granström & Holmqvist (2013)",
    ),
    # Ruptures
    Parameter(
        "rupture_rate", 0.02, "probability per at-risk session",
        "rupture onset at a session >= 2 with no episode in progress",
        "Eubanks, Muran & Safran (2018), Psychotherapy 55(4): ruptures in roughly 20-40% "
        "of patients; 1-(1-0.02)^19 = 32% over 20 sessions",
    ),
    Parameter(
        "rupture_drop", 8.0, "WAI-SR points", "drop of the latent alliance at a rupture (D)",
        "assumption: sharp and visible, 2.9 x the SD of session-to-session change of the "
        "state part (2.74 points)",
    ),
    Parameter(
        "repair_probability", 0.7, "probability", "a rupture is repaired",
        "assumption: most ruptures are resolved (Eubanks, Muran & Safran 2018 relate "
        "resolution to outcome; no pooled repair rate)",
    ),
    Parameter(
        "repair_max_sessions", 3, "sessions", "repair takes 1..this many sessions (uniform)",
        "assumption: short V-shaped rupture-repair sequences (Stiles et al. 2004, "
        "J Couns Psychol 51(1))",
    ),
    # Therapist-rated alliance
    Parameter(
        "therapist_rating_mean", 39.0, "WAI-SR total (12-60)",
        "therapist-rated alliance at session 1 (mu_T)",
        f"{TRYON_2007}: clients rate the alliance higher than therapists, d = .63",
    ),
    Parameter(
        "therapist_rating_loading", 0.3214, "per client WAI-SR point",
        "loading on the client's latent alliance (kappa)",
        f"{CALIBRATED} to client-therapist r = .36 ({TRYON_2007})",
    ),
    Parameter(
        "therapist_rating_sd_therapist", 2.5, "WAI-SR points", "rater leniency (l_j)",
        "assumption",
    ),
    Parameter(
        "therapist_rating_sd_patient", 4.0, "WAI-SR points",
        "patient-specific therapist view (w_i)", "assumption",
    ),
    Parameter(
        "therapist_rating_sd_session", 3.0, "WAI-SR points", "session noise (omega)",
        "assumption",
    ),
    # Outcome
    Parameter(
        "outcome_intake_mean", 15.0, "PHQ-9 total (0-27)", "intake mean (mu_Y)",
        f"{KROENKE_2001} severity bands (15-19 = moderately severe); assumption: "
        "moderately severe depression at intake",
    ),
    Parameter(
        "outcome_sd_patient_intercept", 4.583, "PHQ-9 points", "patient intercept (c_0)",
        "intake SD 5 = sqrt(4.583^2 + 2^2)",
    ),
    Parameter(
        "outcome_sd_residual", 2.0, "PHQ-9 points", "session residual (sigma_e)",
        f"{KROENKE_2001}: 48-hour retest r = .84, so (1-.84) x 25 = 4 = 2^2",
    ),
    Parameter(
        "outcome_log_slope", -2.2, "PHQ-9 points per log(1+session)",
        "average decline (beta_1); negatively accelerated",
        "assumption: about 6.7 points lower after 20 sessions, 4.8 after 8",
    ),
    Parameter(
        "outcome_sd_patient_slope", 0.8, "PHQ-9 points per log(1+session)",
        "patient slope (c_1)", "assumption",
    ),
    Parameter(
        "outcome_intercept_slope_corr", -0.3, "correlation",
        "patient intercept-slope correlation",
        "assumption: more severe patients improve more in absolute terms",
    ),
    Parameter(
        "outcome_sd_therapist", 1.0839, "PHQ-9 points",
        "therapist intercept during treatment (sigma_b)",
        f"{CALIBRATED} to a therapist share of .05 (Wampold & Brown 2005, J Consult Clin "
        "Psychol 73(5); Baldwin & Imel 2013, Bergin & Garfield's Handbook, 6th ed.)",
    ),
    Parameter(
        "alliance_within_effect", -0.15, "PHQ-9 points per WAI-SR point",
        "lagged within-patient effect of d_{t-1} (beta_W)",
        "assumption: small within-patient effect of the previous session's alliance "
        "(Falkenström, Granström & Holmqvist 2013; Zilcha-Mano 2017, Am Psychol 72(4))",
    ),
    Parameter(
        "alliance_between_effect", -0.1770, "PHQ-9 points per WAI-SR point",
        "between-patient effect of the alliance level tau (beta_B)",
        f"{CALIBRATED} to patient-level r = .278 ({FLUCKIGER_2018})",
    ),
    # Item-level variation (only shapes how a total is spread over the items)
    Parameter(
        "wai_item_sd_patient", 0.3, "logit", "patient-by-item propensity (WAI-SR)", "assumption"
    ),
    Parameter(
        "wai_item_sd_subscale", 0.3, "logit", "session-by-subscale propensity (WAI-SR)",
        "assumption",
    ),
    Parameter(
        "wai_item_sd_noise", 0.3, "logit", "session-by-item propensity (WAI-SR)", "assumption"
    ),
    Parameter(
        "phq_item_sd_patient", 0.4, "logit", "patient-by-item propensity (PHQ-9)", "assumption"
    ),
    Parameter(
        "phq_item_sd_noise", 0.4, "logit", "session-by-item propensity (PHQ-9)", "assumption"
    ),
)  # fmt: skip

#: Default value of every generating parameter, by name.
DEFAULT_PARAMETERS: dict[str, float] = {p.name: p.value for p in PARAMETERS}

_PROBABILITIES = {
    "dropout_hazard_early",
    "dropout_hazard_late",
    "item_missing_rate",
    "questionnaire_missing_rate",
    "share_female",
    "share_other_gender",
    "rupture_rate",
    "repair_probability",
}
_CORRELATIONS = {"alliance_state_ar", "outcome_intercept_slope_corr"}
_NON_NEGATIVE = {p.name for p in PARAMETERS if "_sd" in p.name or p.name == "rupture_drop"}

#: Calibration targets and the literature they come from.
TARGETS: dict[str, float] = {
    "alliance_outcome_r_patient": 0.278,
    "client_therapist_alliance_r": 0.36,
    "therapist_share_outcome": 0.05,
}

#: Large-sample values of the derived truths under :data:`DEFAULT_PARAMETERS`
#: and ``max_sessions=20``.  Computed once, after ``calibrate_defaults()`` (run
#: on an independent sample of 200,000 patients, seed 20260102), by
#: ``measure_population_targets(n_therapists=100000, patients_per_therapist=10,
#: max_sessions=20, seed=20260101)`` (1,001,297 patients); ``*_mc_se`` is the
#: Monte-Carlo standard error.
POPULATION_VALUES: dict[str, Any] = {
    "alliance_outcome_r_patient": 0.2778,
    "alliance_outcome_r_patient_mc_se": 0.0010,
    "client_therapist_alliance_r": 0.3605,
    "client_therapist_alliance_r_mc_se": 0.0009,
    "therapist_share_outcome": 0.0498,
    "therapist_share_outcome_mc_se": 0.0001,
    "max_sessions": 20,
    "computed_with": (
        "measure_population_targets(n_therapists=100000, patients_per_therapist=10, "
        "max_sessions=20, seed=20260101)"
    ),
}


def _check_design(n_therapists: Any, patients_per_therapist: Any, max_sessions: Any) -> None:
    for name, value, low in (
        ("n_therapists", n_therapists, 1),
        ("patients_per_therapist", patients_per_therapist, 1),
        ("max_sessions", max_sessions, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise SettingsError(
                f"simulate_study: {name} must be a whole number >= {low}; got {value!r}. "
                f"Pass e.g. {name}={max(low, 10)}."
            )


def resolve_parameters(**params: float) -> dict[str, float]:
    """Return the default parameters updated with ``params``, after checking them.

    Parameters
    ----------
    **params : float
        Overrides, by the names of :data:`PARAMETERS`.

    Returns
    -------
    dict
        Every generating parameter (defaults for those not given).

    Raises
    ------
    ValueError
        For an unknown name or a value out of its range, naming the parameter,
        what was expected and what was found.

    Examples
    --------
    >>> resolve_parameters(rupture_rate=0.05)["rupture_rate"]
    0.05
    """
    unknown = sorted(set(params) - set(DEFAULT_PARAMETERS))
    if unknown:
        raise SettingsError(
            f"simulate_study: unknown parameter(s) {', '.join(unknown)}. "
            f"Valid names: {', '.join(sorted(DEFAULT_PARAMETERS))}."
        )
    resolved = dict(DEFAULT_PARAMETERS)
    problems = []
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            problems.append(f"{name} must be a number; got {value!r}")
            continue
        value = float(value)
        if not math.isfinite(value):
            problems.append(f"{name} must be finite; got {value!r}")
        elif name in _PROBABILITIES and not 0.0 <= value <= 1.0:
            problems.append(f"{name} is a probability and must lie in [0, 1]; got {value}")
        elif name in _CORRELATIONS and not -1.0 < value < 1.0:
            problems.append(f"{name} is a correlation and must lie in (-1, 1); got {value}")
        elif name in _NON_NEGATIVE and value < 0:
            problems.append(f"{name} is a standard deviation or size and must be >= 0; got {value}")
        elif name == "repair_max_sessions" and (value < 1 or value != int(value)):
            problems.append(f"repair_max_sessions must be a whole number >= 1; got {value}")
        resolved[name] = value
    if resolved["share_female"] + resolved["share_other_gender"] > 1:
        problems.append("share_female + share_other_gender must not exceed 1")
    if problems:
        raise SettingsError("simulate_study: invalid parameter(s): " + "; ".join(problems) + ".")
    if "repair_max_sessions" in params:
        resolved["repair_max_sessions"] = int(resolved["repair_max_sessions"])
    return resolved


# --------------------------------------------------------------------------- #
# Latent simulation
# --------------------------------------------------------------------------- #
def _streams(seed: int) -> list[np.random.Generator]:
    """Independent generators for the stages, all derived from ``default_rng(seed)``."""
    return np.random.default_rng(seed).spawn(_N_STREAMS)


def _simulate_design(
    rng: np.random.Generator,
    n_therapists: int,
    patients_per_therapist: int,
    n_sess: int,
    p: dict[str, float],
    equal_caseloads: bool,
) -> dict[str, np.ndarray]:
    """The design stream: modalities, caseloads, age, gender and dropout (sessions observed)."""
    modality_index = rng.permutation(np.arange(n_therapists) % len(MODALITIES))
    caseload = 1 + rng.poisson(patients_per_therapist - 1, n_therapists)
    if equal_caseloads:
        caseload = np.full(n_therapists, patients_per_therapist)
    therapist_of = np.repeat(np.arange(n_therapists), caseload)
    n_pat = therapist_of.size
    age = np.clip(np.rint(p["age_mean"] + p["age_sd"] * rng.standard_normal(n_pat)),
                  AGE_MIN, AGE_MAX).astype(np.int64)  # fmt: skip
    u_gender = rng.random(n_pat)
    gender_index = np.where(
        u_gender < p["share_female"],
        0,
        np.where(u_gender < 1 - p["share_other_gender"], 1, 2),
    )
    u_drop = rng.random((n_pat, n_sess))
    hazard = np.where(np.arange(1, n_sess + 1) <= 2, p["dropout_hazard_early"],
                      p["dropout_hazard_late"])  # fmt: skip
    stops = u_drop[:, : n_sess - 1] < hazard[: n_sess - 1]
    n_sessions = np.where(stops.any(axis=1), stops.argmax(axis=1) + 1, n_sess)
    return {
        "modality_index": modality_index,
        "therapist_of": therapist_of,
        "n_sessions": n_sessions,
        "age": age,
        "gender_index": gender_index,
    }


def _draw_standard_scores(
    streams: list[np.random.Generator], n_therapists: int, n_pat: int, n_sess: int
) -> dict[str, np.ndarray]:
    """The alliance, outcome and rater streams' draws (shapes independent of the parameters)."""
    rng_alliance, rng_outcome, rng_rater = streams[1:4]
    per_session = (n_pat, n_sess + 1)
    return {
        "z_u": rng_alliance.standard_normal(n_therapists),
        "z_v": rng_alliance.standard_normal(n_pat),
        "z_state": rng_alliance.standard_normal(per_session),
        "u_rupture": rng_alliance.random(per_session),
        "u_repair": rng_alliance.random(per_session),
        "u_duration": rng_alliance.random(per_session),
        "z_b": rng_outcome.standard_normal(n_therapists),
        "z_c": rng_outcome.standard_normal((n_pat, 2)),
        "z_e": rng_outcome.standard_normal(per_session),
        "z_l": rng_rater.standard_normal(n_therapists),
        "z_w": rng_rater.standard_normal(n_pat),
        "z_omega": rng_rater.standard_normal(per_session),
    }


def _person_effects(
    z: dict[str, np.ndarray], therapist_of: np.ndarray, p: dict[str, float]
) -> dict[str, np.ndarray]:
    """Therapist and patient random effects of alliance, outcome and the therapist's rating."""
    u = p["alliance_sd_therapist"] * z["z_u"]
    v = p["alliance_sd_patient"] * z["z_v"]
    rho = p["outcome_intercept_slope_corr"]
    z_c = z["z_c"]
    return {
        "u": u,
        "v": v,
        "tau": u[therapist_of] + v,
        "b": p["outcome_sd_therapist"] * z["z_b"],
        "c0": p["outcome_sd_patient_intercept"] * z_c[:, 0],
        "c1": p["outcome_sd_patient_slope"] * (rho * z_c[:, 0] + math.sqrt(1 - rho**2) * z_c[:, 1]),
        "leniency": p["therapist_rating_sd_therapist"] * z["z_l"],
        "w": p["therapist_rating_sd_patient"] * z["z_w"],
    }


class _Ruptures:
    """Rupture episodes as the session loop advances: onset, repair over k sessions, or none.

    ``step(t, ...)`` returns the rupture effect on every patient's alliance at
    session ``t`` and records the episodes that start there.
    """

    def __init__(self, n_pat: int, z: dict[str, np.ndarray], p: dict[str, float]) -> None:
        self.z, self.p = z, p
        self.drop, self.k_max = p["rupture_drop"], int(p["repair_max_sessions"])
        self.active = np.zeros(n_pat, dtype=bool)
        self.start = np.zeros(n_pat, dtype=np.int64)
        self.length = np.zeros(n_pat, dtype=np.int64)  # 0 = not to be repaired
        self.episodes: list[tuple[int, int, int]] = []  # (patient index, start, length or 0)
        self.at_risk_count = 0

    def step(self, t: int, n_sessions: np.ndarray) -> np.ndarray:
        drop, active = self.drop, self.active
        # ruptures in progress
        effect = np.zeros(active.size)
        since = t - self.start
        lasting = active & (self.length == 0)
        repairing = active & (self.length > 0)
        ended = repairing & (since >= self.length)
        going = repairing & ~ended
        effect[lasting] = -drop
        effect[going] = -drop * (1 - since[going] / self.length[going])
        active[ended] = False
        # new ruptures
        at_risk = (t >= 2) & (t <= n_sessions) & ~active & ~ended
        self.at_risk_count += int(at_risk.sum())
        new = at_risk & (self.z["u_rupture"][:, t] < self.p["rupture_rate"])
        repaired = self.z["u_repair"][:, t] < self.p["repair_probability"]
        duration = 1 + np.floor(self.z["u_duration"][:, t] * self.k_max).astype(np.int64)
        length = np.where(repaired, duration, 0)
        active[new] = True
        self.start[new] = t
        self.length[new] = length[new]
        effect[new] = -drop
        self.episodes.extend((int(i), t, int(length[i])) for i in np.flatnonzero(new))
        return effect


def _simulate_sessions(
    design: dict[str, np.ndarray],
    z: dict[str, np.ndarray],
    person: dict[str, np.ndarray],
    p: dict[str, float],
    n_sess: int,
    modality_shift: np.ndarray | None,
) -> dict[str, Any]:
    """The session loop: alliance state, ruptures, the two ratings and the outcome."""
    therapist_of, n_sessions = design["therapist_of"], design["n_sessions"]
    n_pat = therapist_of.size
    tau, w = person["tau"], person["w"]
    alliance = np.full((n_pat, n_sess + 1), np.nan)
    rater = np.full((n_pat, n_sess + 1), np.nan)
    deviation = np.zeros((n_pat, n_sess + 1))
    rupture_effect = np.zeros((n_pat, n_sess + 1))
    outcome = np.empty((n_pat, n_sess + 1))
    symptom_dev = np.empty((n_pat, n_sess + 1))
    e = p["outcome_sd_residual"] * z["z_e"]
    outcome[:, 0] = p["outcome_intake_mean"] + person["c0"] + e[:, 0]
    symptom_dev[:, 0] = e[:, 0]

    phi, sd_s = p["alliance_state_ar"], p["alliance_sd_state"]
    ruptures = _Ruptures(n_pat, z, p)
    state = np.zeros(n_pat)
    for t in range(1, n_sess + 1):
        if t == 1:
            state = sd_s * z["z_state"][:, t]
        else:
            state = phi * state + sd_s * math.sqrt(1 - phi**2) * z["z_state"][:, t]
        effect = ruptures.step(t, n_sessions)
        rupture_effect[:, t] = effect

        d = state + effect + p["reverse_path_effect"] * symptom_dev[:, t - 1]
        deviation[:, t] = d
        growth = p["alliance_growth"] * (t - 1)
        alliance[:, t] = p["alliance_mean"] + growth + tau + d
        rater[:, t] = (
            p["therapist_rating_mean"]
            + growth
            + p["therapist_rating_loading"] * (tau + d)
            + person["leniency"][therapist_of]
            + w
            + p["therapist_rating_sd_session"] * z["z_omega"][:, t]
        )
        lagged = p["alliance_within_effect"] * deviation[:, t - 1] if t >= 2 else 0.0
        symptom_dev[:, t] = lagged + e[:, t]
        outcome[:, t] = (
            p["outcome_intake_mean"]
            + person["c0"]
            + person["b"][therapist_of]
            + (p["outcome_log_slope"] + person["c1"]) * math.log1p(t)
            + p["alliance_between_effect"] * tau
            + symptom_dev[:, t]
        )
        if modality_shift is not None:
            outcome[:, t] += modality_shift
    return {
        "alliance_latent": alliance,
        "rater_latent": rater,
        "outcome_latent": outcome,
        "deviation": deviation,
        "rupture_effect": rupture_effect,
        "episodes": ruptures.episodes,
        "at_risk_sessions": ruptures.at_risk_count,
    }


def _observed_total(latent: np.ndarray, low: int, high: int) -> np.ndarray:
    """A latent total rounded to a whole score and kept within the instrument's range."""
    with np.errstate(invalid="ignore"):
        return np.clip(np.rint(latent), low, high)


def _simulate_latent(
    n_therapists: int,
    patients_per_therapist: int,
    max_sessions: int,
    p: dict[str, float],
    streams: list[np.random.Generator],
    modality_outcome: np.ndarray | None = None,
    equal_caseloads: bool = False,
) -> dict[str, Any]:
    """Simulate design, latent scores and observed totals for every session 0..max.

    Every patient is simulated over all ``max_sessions`` sessions (so the
    random draws do not depend on the parameters, which makes calibration with
    common random numbers smooth); ``n_sessions`` says how many are observed.
    ``modality_outcome`` holds the PHQ-9 points added at treatment sessions per
    modality (order of :data:`MODALITIES`); ``None`` adds nothing.
    ``equal_caseloads`` gives every therapist ``patients_per_therapist``
    patients (the Poisson caseloads are still drawn, so the other draws of a
    stream stay where they were; :mod:`helpers.power` uses it).

    The steps, each drawing from its own streams: the design
    (:func:`_simulate_design`), the standard scores of the other streams
    (:func:`_draw_standard_scores`), the person-level effects
    (:func:`_person_effects`) and the session loop (:func:`_simulate_sessions`).
    """
    design = _simulate_design(
        streams[0], n_therapists, patients_per_therapist, max_sessions, p, equal_caseloads
    )
    therapist_of = design["therapist_of"]
    z = _draw_standard_scores(streams, n_therapists, therapist_of.size, max_sessions)
    person = _person_effects(z, therapist_of, p)
    modality_shift = (
        None
        if modality_outcome is None
        else modality_outcome[design["modality_index"][therapist_of]]
    )
    sessions = _simulate_sessions(design, z, person, p, max_sessions, modality_shift)
    wai_low, wai_high = 12 * WAI_SR_MIN, 12 * WAI_SR_MAX
    return {
        "n_therapists": n_therapists,
        "max_sessions": max_sessions,
        **design,
        **{k: person[k] for k in ("u", "v", "tau", "b", "c0", "c1", "leniency")},
        **{k: sessions[k] for k in ("alliance_latent", "rater_latent", "outcome_latent")},
        "deviation": sessions["deviation"],
        "rupture_effect": sessions["rupture_effect"],
        "alliance_total": _observed_total(sessions["alliance_latent"], wai_low, wai_high),
        "rater_total": _observed_total(sessions["rater_latent"], wai_low, wai_high),
        "outcome_total": _observed_total(sessions["outcome_latent"], 9 * PHQ9_MIN, 9 * PHQ9_MAX),
        "episodes": sessions["episodes"],
        "at_risk_sessions": sessions["at_risk_sessions"],
    }


def _observed_mask(latent: dict[str, Any]) -> np.ndarray:
    """Boolean (patients x sessions 0..max) mask of the sessions that took place."""
    sessions = np.arange(latent["max_sessions"] + 1)
    return sessions[None, :] <= latent["n_sessions"][:, None]


def _derived_statistics(latent: dict[str, Any], p: dict[str, float]) -> dict[str, float]:
    """Sample values of the derived truths (see the module docstring) and MC SEs."""
    n_sessions = latent["n_sessions"]
    mask = _observed_mask(latent)
    treat = mask.copy()
    treat[:, 0] = False
    # patient-level alliance-outcome correlation
    eligible = n_sessions >= 3
    alliance_total = np.where(treat, latent["alliance_total"], np.nan)
    mean_alliance = np.nanmean(alliance_total[eligible], axis=1)
    outcome_total = latent["outcome_total"][eligible]
    last = outcome_total[np.arange(outcome_total.shape[0]), n_sessions[eligible]]
    improvement = outcome_total[:, 0] - last
    r_patient = float(np.corrcoef(mean_alliance, improvement)[0, 1])
    # client-therapist agreement over treatment rows
    client = latent["alliance_total"][treat]
    therapist = latent["rater_total"][treat]
    r_agree = float(np.corrcoef(client, therapist)[0, 1])
    # therapist share of the latent PHQ-9 variance during treatment
    sigma_t2 = p["outcome_sd_therapist"] ** 2 + (
        p["alliance_between_effect"] ** 2 * p["alliance_sd_therapist"] ** 2
    )
    variance_by_session = latent["outcome_latent"][:, 1:].var(axis=0)
    share = float(sigma_t2 / variance_by_session.mean())
    n_eligible = int(eligible.sum())
    # The SE of r_patient treats patients as independent (they are, given the
    # therapist effects, up to the small therapist share); see
    # measure_population_targets for the SEs of the clustered statistics.
    return {
        "alliance_outcome_r_patient": r_patient,
        "alliance_outcome_r_patient_mc_se": (1 - r_patient**2) / math.sqrt(n_eligible),
        "client_therapist_alliance_r": r_agree,
        "therapist_share_outcome": share,
        "therapist_variance_outcome": float(sigma_t2),
        "n_patients": int(n_sessions.size),
        "n_patients_3plus": n_eligible,
    }


def measure_population_targets(
    n_therapists: int = 20000,
    patients_per_therapist: int = 10,
    max_sessions: int = 20,
    seed: int = 20260101,
    **params: float,
) -> dict[str, float]:
    """Measure the derived truths on one large simulated sample.

    Only the latent stage and the observed totals are simulated (no items, no
    missingness), so a sample of 200,000 patients takes a few seconds.

    Parameters
    ----------
    n_therapists, patients_per_therapist, max_sessions : int
        Size of the sample (defaults: 200,000 patients of up to 20 sessions).
    seed : int
        Seed of ``numpy.random.default_rng``.
    **params : float
        Generating parameters that differ from :data:`DEFAULT_PARAMETERS`.

    Returns
    -------
    dict
        ``alliance_outcome_r_patient`` (with ``_mc_se``),
        ``client_therapist_alliance_r`` (with ``_mc_se``, from 8 sub-samples of
        whole therapists), ``therapist_share_outcome`` (with ``_mc_se``, same
        sub-samples), ``therapist_variance_outcome``, sample sizes.

    Examples
    --------
    >>> m = measure_population_targets(n_therapists=50, seed=3)
    >>> 0 < m["therapist_share_outcome"] < 1
    True
    """
    _check_design(n_therapists, patients_per_therapist, max_sessions)
    p = resolve_parameters(**params)
    latent = _simulate_latent(n_therapists, patients_per_therapist, max_sessions, p, _streams(seed))
    stats = _derived_statistics(latent, p)
    # Monte-Carlo SEs of the clustered statistics from 8 sub-samples of therapists.
    groups = latent["therapist_of"] % 8
    parts = []
    for g in range(8):
        keep = groups == g
        sub = {
            key: (value[keep] if isinstance(value, np.ndarray) and value.shape[:1] == keep.shape
                  else value)
            for key, value in latent.items()
        }  # fmt: skip
        if keep.sum() >= 10:
            parts.append(_derived_statistics(sub, p))
    for key in ("client_therapist_alliance_r", "therapist_share_outcome"):
        values = np.array([part[key] for part in parts])
        stats[f"{key}_mc_se"] = (
            float(values.std(ddof=1) / math.sqrt(values.size))
            if (values.size > 1)
            else float("nan")
        )
    return stats


def calibrate_defaults(
    n_therapists: int = 20000, seed: int = 20260102, iterations: int = 6
) -> dict[str, float]:
    """Re-derive the three calibrated defaults by simulation (not run on import).

    With common random numbers (same ``seed`` at every step) the three targets
    are matched in turn: ``therapist_rating_loading`` to the client–therapist
    r = .36 (bisection), ``alliance_between_effect`` to the patient-level
    r = .278 (secant steps) and ``outcome_sd_therapist`` to the therapist share
    .05 (closed form given the measured variance), repeated ``iterations``
    times because the last two interact slightly.

    Parameters
    ----------
    n_therapists : int
        Therapists in the calibration sample (10 patients each).
    seed : int
        Seed of the calibration sample.
    iterations : int
        Rounds of the joint adjustment.

    Returns
    -------
    dict
        The calibrated ``therapist_rating_loading``, ``alliance_between_effect``
        and ``outcome_sd_therapist``, and the achieved values of the targets.
    """
    p = dict(DEFAULT_PARAMETERS)

    def measure(**overrides: float) -> dict[str, float]:
        q = {**p, **overrides}
        latent = _simulate_latent(n_therapists, 10, 20, q, _streams(seed))
        return _derived_statistics(latent, q)

    low, high = 0.0, 2.0
    for _ in range(30):
        mid = (low + high) / 2
        if (
            measure(therapist_rating_loading=mid)["client_therapist_alliance_r"]
            < TARGETS["client_therapist_alliance_r"]
        ):
            low = mid
        else:
            high = mid
    p["therapist_rating_loading"] = (low + high) / 2
    for _ in range(iterations):
        beta = p["alliance_between_effect"]
        r0 = measure()["alliance_outcome_r_patient"]
        r1 = measure(alliance_between_effect=beta - 0.01)["alliance_outcome_r_patient"]
        slope = (r1 - r0) / -0.01
        p["alliance_between_effect"] = beta + (TARGETS["alliance_outcome_r_patient"] - r0) / slope
        stats = measure()
        sigma_t2 = stats["therapist_variance_outcome"]
        rest = sigma_t2 / stats["therapist_share_outcome"] - sigma_t2
        target_t2 = (
            TARGETS["therapist_share_outcome"] / (1 - TARGETS["therapist_share_outcome"]) * rest
        )
        between_part = p["alliance_between_effect"] ** 2 * p["alliance_sd_therapist"] ** 2
        p["outcome_sd_therapist"] = math.sqrt(max(target_t2 - between_part, 0.0))
    achieved = measure()
    return {
        "therapist_rating_loading": p["therapist_rating_loading"],
        "alliance_between_effect": p["alliance_between_effect"],
        "outcome_sd_therapist": p["outcome_sd_therapist"],
        **{f"achieved_{k}": achieved[k] for k in TARGETS},
    }


# --------------------------------------------------------------------------- #
# Items and missingness
# --------------------------------------------------------------------------- #
def spread_total_over_items(
    totals: np.ndarray, propensity: np.ndarray, item_min: int, item_max: int
) -> np.ndarray:
    """Integer item scores within ``[item_min, item_max]`` that add up to ``totals``.

    The part of each total above the minimum is shared out over the items in
    proportion to ``expit(propensity + c)``, with the row constant ``c`` found
    by bisection so that the shares add up to the total; the shares are then
    rounded by the largest-remainder rule (an item already at the maximum is
    never raised).

    Parameters
    ----------
    totals : numpy.ndarray
        Integer totals, shape ``(n,)``, each within ``[k*item_min, k*item_max]``.
    propensity : numpy.ndarray
        Item propensities, shape ``(n, k)``; higher = higher item score.
    item_min, item_max : int
        Item range.

    Returns
    -------
    numpy.ndarray
        Integer items, shape ``(n, k)``, row sums equal to ``totals``.

    Examples
    --------
    >>> spread_total_over_items(np.array([12, 60, 30]), np.zeros((3, 12)), 1, 5).sum(axis=1)
    array([12, 60, 30])
    """
    totals = np.asarray(totals, dtype=float)
    n_rows, n_items = propensity.shape
    span = item_max - item_min
    excess = totals - n_items * item_min
    if np.any(excess < 0) or np.any(excess > n_items * span):
        raise ValueError("spread_total_over_items: a total lies outside the instrument range")
    low = np.full(n_rows, -40.0)
    high = np.full(n_rows, 40.0)
    for _ in range(64):
        mid = (low + high) / 2
        too_big = (span * expit(propensity + mid[:, None])).sum(axis=1) > excess
        high = np.where(too_big, mid, high)
        low = np.where(too_big, low, mid)
    shares = span * expit(propensity + ((low + high) / 2)[:, None])
    base = np.clip(np.floor(shares), 0, span)
    remaining = np.rint(excess - base.sum(axis=1)).astype(np.int64)
    fraction = np.where(base >= span, -np.inf, shares - base)
    order = np.argsort(-fraction, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_items)[None, :].repeat(n_rows, axis=0), axis=1)
    items = (base + (rank < remaining[:, None]) + item_min).astype(np.int64)
    if not np.array_equal(items.sum(axis=1), totals.astype(np.int64)):  # internal invariant
        raise RuntimeError("spread_total_over_items: items do not add up to the totals")
    return items


def _items_and_missingness(
    latent: dict[str, Any], p: dict[str, float], streams: list[np.random.Generator]
) -> dict[str, np.ndarray]:
    """Items (rows = observed patient-sessions) with missing values as NaN."""
    rng_items, rng_missing = streams[4], streams[5]
    mask = _observed_mask(latent)
    patient_index, session = np.nonzero(mask)
    n_rows = patient_index.size
    n_pat = latent["n_sessions"].size
    treat = session >= 1

    # WAI-SR client items
    subscale_of = np.empty(WAI_SR_ITEMS, dtype=np.int64)
    for s, items in enumerate(WAI_SR_SUBSCALES.values()):
        subscale_of[np.array(items) - 1] = s
    wai_patient = p["wai_item_sd_patient"] * rng_items.standard_normal((n_pat, WAI_SR_ITEMS))
    wai_subscale = p["wai_item_sd_subscale"] * rng_items.standard_normal((n_rows, 3))
    wai_noise = p["wai_item_sd_noise"] * rng_items.standard_normal((n_rows, WAI_SR_ITEMS))
    wai_prop = (
        np.array(WAI_ITEM_DIFFICULTY)[None, :]
        + wai_patient[patient_index]
        + wai_subscale[:, subscale_of]
        + wai_noise
    )
    wai = np.full((n_rows, WAI_SR_ITEMS), np.nan)
    totals = latent["alliance_total"][patient_index, session]
    wai[treat] = spread_total_over_items(totals[treat], wai_prop[treat], WAI_SR_MIN, WAI_SR_MAX)

    # PHQ-9 items
    phq_patient = p["phq_item_sd_patient"] * rng_items.standard_normal((n_pat, PHQ9_ITEMS))
    phq_noise = p["phq_item_sd_noise"] * rng_items.standard_normal((n_rows, PHQ9_ITEMS))
    phq_prop = np.array(PHQ_ITEM_DIFFICULTY)[None, :] + phq_patient[patient_index] + phq_noise
    phq = spread_total_over_items(
        latent["outcome_total"][patient_index, session], phq_prop, PHQ9_MIN, PHQ9_MAX
    ).astype(float)

    rater = latent["rater_total"][patient_index, session].astype(float)
    rater[~treat] = np.nan

    # Missingness: single items, then whole questionnaires (never the intake PHQ-9).
    u_wai_item = rng_missing.random((n_rows, WAI_SR_ITEMS))
    u_phq_item = rng_missing.random((n_rows, PHQ9_ITEMS))
    u_whole = rng_missing.random((n_rows, 3))
    rate, whole = p["item_missing_rate"], p["questionnaire_missing_rate"]
    wai[u_wai_item < rate] = np.nan
    phq[u_phq_item < rate] = np.nan
    wai[u_whole[:, 0] < whole] = np.nan
    rater[u_whole[:, 1] < whole] = np.nan
    phq[(u_whole[:, 2] < whole) & treat] = np.nan
    return {
        "patient_index": patient_index,
        "session": session,
        "wai": wai,
        "rater": rater,
        "phq": phq,
    }


def _integer_array(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    missing = np.isnan(values)
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)


def _id_labels(prefix: str, count: int, min_width: int) -> list[str]:
    width = max(min_width, len(str(count)))
    return [f"{prefix}{k:0{width}d}" for k in range(1, count + 1)]


def clean_columns() -> list[str]:
    """Columns of the clean frame returned by :func:`simulate_study`, in order.

    Examples
    --------
    >>> clean_columns()[:4]
    ['therapist_id', 'patient_id', 'session', 'modality']
    """
    return [
        schema.THERAPIST_ID,
        schema.PATIENT_ID,
        schema.SESSION,
        schema.MODALITY,
        "age",
        "gender",
        *(schema.alliance_item_column("client", k) for k in range(1, WAI_SR_ITEMS + 1)),
        schema.alliance_total_column("therapist"),
        *(schema.outcome_item_column(k) for k in range(1, PHQ9_ITEMS + 1)),
    ]


def _modality_outcome_array(effects: Mapping[str, float] | None) -> np.ndarray | None:
    """Check ``modality_outcome_effects``; return the effects in :data:`MODALITIES` order."""
    if effects is None or len(effects) == 0:
        return None
    if not isinstance(effects, Mapping):
        raise SettingsError(
            "simulate_study: modality_outcome_effects must map modality names to PHQ-9 "
            f"points, e.g. {{'psychodynamic': -3.0}}; got {effects!r}."
        )
    unknown = sorted(str(k) for k in effects if k not in MODALITIES)
    if unknown:
        raise SettingsError(
            f"simulate_study: modality_outcome_effects names unknown modalities {unknown}. "
            f"Valid names: {', '.join(MODALITIES)}."
        )
    values = np.zeros(len(MODALITIES))
    for k, name in enumerate(MODALITIES):
        value = effects.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SettingsError(
                f"simulate_study: modality_outcome_effects[{name!r}] must be a number; "
                f"got {value!r}."
            )
        if not math.isfinite(value):
            raise SettingsError(
                f"simulate_study: modality_outcome_effects[{name!r}] must be finite; got {value!r}."
            )
        values[k] = float(value)
    return values


def simulate_study(
    n_therapists: int = 40,
    patients_per_therapist: int = 10,
    max_sessions: int = 20,
    seed: int = 2026,
    modality_outcome_effects: Mapping[str, float] | None = None,
    **params: float,
) -> tuple[pd.DataFrame, dict]:
    """Simulate a whole alliance–outcome study with known truth.

    The generating process and every parameter are described in the module
    docstring and :data:`PARAMETERS`.

    Parameters
    ----------
    n_therapists : int
        Number of therapists.
    patients_per_therapist : int
        Mean caseload (caseloads are 1 + Poisson(mean − 1), so unequal).
    max_sessions : int
        Maximum number of treatment sessions per patient.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same study.
    modality_outcome_effects : mapping of str to float, optional
        A real modality difference on the outcome: modality name (of
        :data:`MODALITIES`) -> PHQ-9 points added at every treatment session
        (not the intake) of the patients of therapists practising it, e.g.
        ``{"psychodynamic": -3.0}``; modalities not named get 0.  ``None``
        (default) leaves the study exactly as without the argument (no random
        draw depends on it) and adds nothing to ``truth``.  When given,
        ``truth["effects"]["modality_outcome_effects"]`` records every
        modality's value.
    **params : float
        Generating parameters that differ from :data:`DEFAULT_PARAMETERS`
        (unknown names raise ``ValueError``).

    Returns
    -------
    data : pandas.DataFrame
        One row per patient-session, sorted by therapist, patient and session,
        with the columns of :func:`clean_columns`.  Session 0 is the intake
        (alliance missing); items are nullable integers (``Int64``) with the
        simulated missing values as ``<NA>``.
    truth : dict
        JSON-serialisable: ``parameters``, ``design``, ``effects`` (the
        population-level effects), ``population`` (derived truths or ``None``),
        ``definitions``, ``ruptures`` (every episode), ``patients`` and
        ``therapists`` (true random effects), ``clipping`` and ``sample``
        (statistics of this sample).

    Examples
    --------
    >>> data, truth = simulate_study(n_therapists=2, patients_per_therapist=3, seed=7)
    >>> int(data["session"].min()), data["alliance_client_item01"].isna().all()
    (0, np.False_)
    """
    _check_design(n_therapists, patients_per_therapist, max_sessions)
    p = resolve_parameters(**params)
    modality_outcome = _modality_outcome_array(modality_outcome_effects)
    streams = _streams(seed)
    latent = _simulate_latent(
        n_therapists, patients_per_therapist, max_sessions, p, streams, modality_outcome
    )
    rows = _items_and_missingness(latent, p, streams)

    therapist_ids = _id_labels("T", n_therapists, 2)
    n_pat = latent["n_sessions"].size
    patient_ids = _id_labels("P", n_pat, 4)
    pi = rows["patient_index"]
    ti = latent["therapist_of"][pi]
    columns: dict[str, Any] = {
        schema.THERAPIST_ID: pd.array(np.array(therapist_ids)[ti], dtype="str"),
        schema.PATIENT_ID: pd.array(np.array(patient_ids)[pi], dtype="str"),
        schema.SESSION: rows["session"].astype(np.int64),
        schema.MODALITY: pd.array(np.array(MODALITIES)[latent["modality_index"][ti]], dtype="str"),
        "age": latent["age"][pi],
        "gender": pd.array(np.array(GENDERS)[latent["gender_index"][pi]], dtype="str"),
    }
    for k in range(WAI_SR_ITEMS):
        columns[schema.alliance_item_column("client", k + 1)] = _integer_array(rows["wai"][:, k])
    columns[schema.alliance_total_column("therapist")] = _integer_array(rows["rater"])
    for k in range(PHQ9_ITEMS):
        columns[schema.outcome_item_column(k + 1)] = _integer_array(rows["phq"][:, k])
    data = pd.DataFrame(columns)[clean_columns()]

    truth = _build_truth(
        latent, p, therapist_ids, patient_ids, n_therapists, patients_per_therapist, seed
    )
    if modality_outcome is not None:
        _record_modality_outcome(truth, modality_outcome)
    truth["sample"]["n_rows"] = len(data)
    item_cols = [c for c in data.columns if "_item" in c]
    truth["sample"]["share_items_missing"] = float(
        data.loc[data[schema.SESSION] >= 1, item_cols].isna().to_numpy().mean()
    )
    return data, truth


def _record_modality_outcome(truth: dict[str, Any], modality_outcome: np.ndarray) -> None:
    """Add the modality effects on the outcome to ``truth`` (population values unknown)."""
    truth["effects"]["modality_outcome_effects"] = {
        name: float(value) for name, value in zip(MODALITIES, modality_outcome, strict=True)
    }
    truth["definitions"]["modality_outcome_effects"] = (
        "PHQ-9 points added at every treatment session (not the intake) of the patients of "
        "therapists practising this modality; the difference between two modalities is the "
        "true modality contrast on the outcome during treatment"
    )
    truth["definitions"]["modality_effect"] = (
        "true value of every modality x alliance interaction (the alliance-outcome slopes do "
        "not differ by modality); the modality main effects are modality_outcome_effects"
    )
    truth["definitions"]["therapist_variance_outcome"] += (
        " within modality (the modality effects add between-therapist variance)"
    )
    for key in TARGETS:
        truth["population"][key] = None
    truth["population"]["note"] = (
        "not known: the study has modality effects on the outcome, which "
        "helpers.simulate.measure_population_targets does not simulate"
    )


def _build_truth(
    latent: dict[str, Any],
    p: dict[str, float],
    therapist_ids: list[str],
    patient_ids: list[str],
    n_therapists: int,
    patients_per_therapist: int,
    seed: int,
) -> dict[str, Any]:
    n_sessions = latent["n_sessions"]
    therapist_of = latent["therapist_of"]
    ruptures = []
    for i, start, length in latent["episodes"]:
        planned = length > 0
        repair = start + length if planned else None
        observed = planned and repair <= n_sessions[i]
        ruptures.append(
            {
                "patient_id": patient_ids[i],
                "therapist_id": therapist_ids[therapist_of[i]],
                "rupture_session": int(start),
                "repaired": bool(observed),
                "repair_session": int(repair) if observed else None,
                "ended_before_repair": bool(planned and not observed),
            }
        )
    ruptures.sort(key=lambda r: (r["patient_id"], r["rupture_session"]))
    sample_stats = _derived_statistics(latent, p)
    defaults = (
        p == DEFAULT_PARAMETERS and latent["max_sessions"] == POPULATION_VALUES["max_sessions"]
    )
    population = {key: (POPULATION_VALUES[key] if defaults else None) for key in TARGETS}
    population["therapist_variance_outcome"] = sample_stats["therapist_variance_outcome"]
    population["note"] = (
        "large-sample values stored in helpers.simulate.POPULATION_VALUES, computed with "
        + POPULATION_VALUES["computed_with"]
        if defaults
        else "not known for these parameters: call helpers.simulate.measure_population_targets"
        " with the same parameters"
    )
    mask = _observed_mask(latent)
    treat = mask.copy()
    treat[:, 0] = False

    def clipped(latent_scores: np.ndarray, where: np.ndarray, low: float, high: float) -> float:
        values = np.rint(latent_scores[where])
        return float(np.mean((values < low) | (values > high)))

    n_patients_with_rupture = len({r["patient_id"] for r in ruptures})
    return {
        "simulated": True,
        "generator": "helpers.simulate.simulate_study",
        "seed": int(seed),
        "design": {
            "n_therapists": int(n_therapists),
            "patients_per_therapist": int(patients_per_therapist),
            "max_sessions": int(latent["max_sessions"]),
            "n_patients": int(n_sessions.size),
            "session_0": "intake assessment (PHQ-9 only; alliance missing)",
            "modalities": list(MODALITIES),
        },
        "parameters": dict(p),
        "targets": dict(TARGETS),
        "effects": {
            "alliance_within_lag1_effect": p["alliance_within_effect"],
            "alliance_between_effect": p["alliance_between_effect"],
            "reverse_path_effect": p["reverse_path_effect"],
            "therapist_variance_outcome": sample_stats["therapist_variance_outcome"],
            "rupture_rate_per_session": p["rupture_rate"],
            "repair_probability": p["repair_probability"],
            "rupture_drop": p["rupture_drop"],
            "modality_effect": 0.0,
        },
        "population": population,
        "definitions": {
            "alliance_within_lag1_effect": (
                "PHQ-9 points per WAI-SR point of the latent within-patient alliance "
                "deviation d at the previous session (d = state + rupture + reverse path; "
                "the growth g*(t-1) is common to all patients). A person-centred least-squares "
                "estimate on the observed totals is attenuated by about 6% (-0.141 for -0.15): "
                "rounding and floor clipping, and the reverse path (feedback)"
            ),
            "alliance_between_effect": (
                "PHQ-9 points per WAI-SR point of the patient's true alliance level "
                "tau = therapist part + patient part, added at every treatment session"
            ),
            "alliance_outcome_r_patient": (
                "Pearson r over patients with >= 3 treatment sessions between the mean "
                "client WAI-SR total over sessions 1..n and intake PHQ-9 minus last-session "
                "PHQ-9 (observed totals before missingness)"
            ),
            "client_therapist_alliance_r": (
                "Pearson r over all treatment-session rows between client and therapist "
                "WAI-SR totals (observed totals before missingness)"
            ),
            "therapist_share_outcome": (
                "(sd_b^2 + beta_B^2 sd_u^2) / mean over sessions 1..max_sessions of the "
                "variance of the latent PHQ-9 at that session"
            ),
            "therapist_variance_outcome": "sd_b^2 + beta_B^2 sd_u^2 (PHQ-9 points squared)",
            "rupture_rate_per_session": (
                "probability of a rupture at a session >= 2 that is not inside an episode "
                "(rupture session .. repair session, or to the end if not repaired)"
            ),
            "ruptures": (
                "repaired = alliance back at its pre-rupture level at repair_session "
                "within the observed treatment; ended_before_repair = a repair was under "
                "way when treatment ended"
            ),
        },
        "ruptures": ruptures,
        "therapists": [
            {
                "therapist_id": therapist_ids[j],
                "modality": MODALITIES[latent["modality_index"][j]],
                "alliance_effect": float(latent["u"][j]),
                "outcome_effect": float(latent["b"][j]),
                "rater_leniency": float(latent["leniency"][j]),
            }
            for j in range(n_therapists)
        ],
        "patients": [
            {
                "patient_id": patient_ids[i],
                "therapist_id": therapist_ids[therapist_of[i]],
                "n_sessions": int(n_sessions[i]),
                "alliance_level": float(latent["tau"][i]),
                "outcome_intercept": float(latent["c0"][i]),
                "outcome_log_slope": float(p["outcome_log_slope"] + latent["c1"][i]),
            }
            for i in range(n_sessions.size)
        ],
        "clipping": {
            "alliance_client_share_clipped": clipped(latent["alliance_latent"], treat, 12, 60),
            "alliance_therapist_share_clipped": clipped(latent["rater_latent"], treat, 12, 60),
            "outcome_share_clipped": clipped(latent["outcome_latent"], mask, 0, 27),
        },
        "sample": {
            "n_ruptures": len(ruptures),
            "n_patients_with_rupture": n_patients_with_rupture,
            "at_risk_sessions": int(latent["at_risk_sessions"]),
            "alliance_outcome_r_patient": sample_stats["alliance_outcome_r_patient"],
            "client_therapist_alliance_r": sample_stats["client_therapist_alliance_r"],
            "mean_sessions": float(n_sessions.mean()),
        },
    }


# --------------------------------------------------------------------------- #
# Clinic export with data-entry faults
# --------------------------------------------------------------------------- #
def export_columns() -> list[str]:
    """Column names of the clinic export, in file order.

    Examples
    --------
    >>> export_columns()[:7]
    ['therapist', 'patient', 'session', 'modality', 'age', 'gender', 'wai_1']
    """
    return [
        "therapist",
        "patient",
        "session",
        "modality",
        "age",
        "gender",
        *(f"wai_{k}" for k in range(1, WAI_SR_ITEMS + 1)),
        "therapist_wai_total",
        *(f"phq_{k}" for k in range(1, PHQ9_ITEMS + 1)),
    ]


def _export_rename() -> dict[str, str]:
    return dict(zip(clean_columns(), export_columns(), strict=True))


def _int_text(value: Any) -> str | None:
    return None if pd.isna(value) else str(int(value))


def _export_rows(data: pd.DataFrame) -> list[dict[str, str | None]]:
    """The rows of ``data`` as export text (None = missing, its code set later)."""
    cells: dict[str, list[str | None]] = {}
    for clean, export in _export_rename().items():
        column = data[clean]
        if clean == schema.MODALITY:
            cells[export] = [EXPORT_MODALITY_LABELS[m] for m in column]
        elif clean in (schema.THERAPIST_ID, schema.PATIENT_ID, "gender"):
            cells[export] = [str(x) for x in column]
        else:
            cells[export] = [_int_text(x) for x in column]
    return [dict(zip(cells, values, strict=True)) for values in zip(*cells.values(), strict=True)]


_WAI_EXPORT = [f"wai_{k}" for k in range(1, WAI_SR_ITEMS + 1)]
_PHQ_EXPORT = [f"phq_{k}" for k in range(1, PHQ9_ITEMS + 1)]


@dataclass
class _Faults:
    """The export rows being faulted, the fault stream and the records so far.

    ``marks`` maps a row position to the indices of the faults located on that
    row, so that their CSV line numbers can be set once the file order is known.
    """

    rows: list[dict[str, str | None]]
    rows_of: dict[str, list[int]]
    rng: np.random.Generator
    faults: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[int, list[int]] = field(default_factory=dict)

    def record(self, fault: dict[str, Any], row: int | None = None) -> int:
        """Append ``fault`` (located on ``row`` when given); return its index."""
        self.faults.append(fault)
        index = len(self.faults) - 1
        if row is not None:
            self.marks.setdefault(row, []).append(index)
        return index

    def draw(self, options: list[Any]) -> Any:
        """One of ``options``, drawn from the fault stream."""
        return options[int(self.rng.integers(len(options)))]

    def pick_cell(self, pid: str, columns: list[str], treatment_only: bool) -> tuple[int, str]:
        """A non-missing (row, column) cell of patient ``pid``."""
        rows = self.rows
        return self.draw(
            [
                (k, c)
                for k in self.rows_of[pid]
                if not treatment_only or rows[k]["session"] != "0"
                for c in columns
                if rows[k][c] is not None
            ]
        )


def _fault_record(kind: str, pid: str, row: dict, **fields: Any) -> dict[str, Any]:
    record = {"type": kind, "patient": pid, "session": int(row["session"])}
    return record | {"column": None, "original": None, "new": None} | fields


def _inject_out_of_range(
    state: _Faults, pid: str, columns: list[str], bad: str, treatment_only: bool
) -> None:
    """``out_of_range``: one item of ``columns`` set to ``bad``."""
    k, col = state.pick_cell(pid, columns, treatment_only)
    row = state.rows[k]
    state.record(
        _fault_record("out_of_range", pid, row, column=col, original=int(row[col]), new=int(bad)),
        k,
    )
    row[col] = bad


def _inject_exact_duplicate(state: _Faults, pid: str) -> tuple[int, int]:
    """``exact_duplicate``: choose a treatment row to repeat; (row, fault index)."""
    k = state.draw([k for k in state.rows_of[pid] if state.rows[k]["session"] != "0"])
    return k, state.record(_fault_record("exact_duplicate", pid, state.rows[k]))


def _shift_in_range(text: str, high: int) -> str:
    value = int(text)
    return str(value + 1 if value < high else value - 1)


def _inject_conflicting_duplicate(state: _Faults, pid: str) -> tuple[int, dict, int]:
    """``conflicting_duplicate``: a copy of a treatment row, one WAI-SR and one
    PHQ-9 item moved by one point; (row, copy, fault index)."""
    rows = state.rows
    k, wai_col = state.pick_cell(pid, _WAI_EXPORT, True)
    phq_options = [c for c in _PHQ_EXPORT if rows[k][c] is not None]
    if not phq_options:  # a missed PHQ-9: pick again among rows that have both questionnaires
        k, wai_col = state.draw(
            [
                (j, c)
                for j in state.rows_of[pid]
                if rows[j]["session"] != "0" and any(rows[j][p] is not None for p in _PHQ_EXPORT)
                for c in _WAI_EXPORT
                if rows[j][c] is not None
            ]
        )
        phq_options = [c for c in _PHQ_EXPORT if rows[k][c] is not None]
    phq_col = state.draw(phq_options)
    copy = dict(rows[k])
    changes = []
    for col, high in ((wai_col, WAI_SR_MAX), (phq_col, PHQ9_MAX)):
        copy[col] = _shift_in_range(rows[k][col], high)
        changes.append({"column": col, "original": int(rows[k][col]), "new": int(copy[col])})
    index = state.record(_fault_record("conflicting_duplicate", pid, rows[k], changes=changes))
    return k, copy, index


def _inject_mistyped_therapist_id(state: _Faults, pid: str, therapist_ids: list[str]) -> str:
    """``mistyped_therapist_id`` on a row that is not the patient's first; the true id."""
    own = state.rows_of[pid]
    k = own[1 + int(state.rng.integers(len(own) - 1))]
    true_id = state.rows[k]["therapist"]
    near = [
        t
        for t in therapist_ids
        if t != true_id
        and len(t) == len(true_id)
        and sum(a != b for a, b in zip(t, true_id, strict=True)) == 1
    ]
    typo = state.draw(near) if near else true_id + "0"
    state.rows[k]["therapist"] = typo
    state.record(
        _fault_record(
            "mistyped_therapist_id",
            pid,
            state.rows[k],
            column="therapist",
            original=true_id,
            new=typo,
        ),
        k,
    )
    return true_id


def _write_missing_codes(
    rows: list[dict], na_therapists: set[str], typo_patient: str, true_id: str
) -> None:
    """ "NA" or blank by therapist (two clerks); the mistyped row keeps its true clerk."""
    for r in rows:
        code = "NA" if r["therapist"] in na_therapists else ""
        if r["patient"] == typo_patient:
            code = "NA" if true_id in na_therapists else ""
        for col in export_columns():
            if r[col] is None:
                r[col] = code


def _inject_missing_code_dots(state: _Faults, chosen: list[str]) -> None:
    """``missing_code_dot``: three missing item cells of other patients written "."."""
    options = [
        (k, c)
        for k, r in enumerate(state.rows)
        if r["patient"] not in chosen and r["session"] != "0"
        for c in (*_WAI_EXPORT, *_PHQ_EXPORT)
        if r[c] in ("", "NA")
    ]
    for idx in sorted(state.rng.choice(len(options), size=min(3, len(options)), replace=False)):
        k, col = options[int(idx)]
        row = state.rows[k]
        fault = _fault_record(
            "missing_code_dot", row["patient"], row, column=col, original=row[col], new="."
        )
        state.record(fault, k)
        row[col] = "."


def _file_order(
    state: _Faults, duplicates: dict[int, tuple[dict, int]]
) -> list[dict[str, str | None]]:
    """The rows in file order, each duplicate right below its original.

    ``duplicates`` maps a row position to (its copy, the fault index).  Row
    numbers are file lines as a spreadsheet shows them (the header is row 1,
    the first record row 2): the same convention as ``source_row``.
    """
    ordered: list[dict[str, str | None]] = []
    for k, r in enumerate(state.rows):
        ordered.append(r)
        for f in state.marks.get(k, []):
            state.faults[f]["row"] = len(ordered) + 1
        if k in duplicates:
            copy, f = duplicates[k]
            ordered.append(copy)
            state.faults[f]["row"] = len(ordered) + 1
            state.faults[f]["row_original"] = len(ordered)
    return ordered


def _missing_codes_record(ordered: list[dict], na_therapists: set[str]) -> dict[str, Any]:
    counts = {code: 0 for code in MISSING_CODES}
    for r in ordered:
        for col in export_columns():
            if r[col] in counts:
                counts[r[col]] += 1
    return {
        "type": "missing_codes",
        "counts": counts,
        "rule": (
            'missing cells are written "NA" for therapists '
            f"{min(na_therapists)}-{max(na_therapists)} and blank for the others; "
            'the missing_code_dot records list the cells written "."'
        ),
    }


def _fault_candidates(data: pd.DataFrame) -> list[Any]:
    """Patients with at least 3 treatment sessions (at least 8 of them needed)."""
    treatment_counts = data.loc[data[schema.SESSION] >= 1].groupby(schema.PATIENT_ID).size()
    candidates = sorted(treatment_counts.index[treatment_counts >= 3])
    if len(candidates) < 8:
        raise SettingsError(
            "export_clinic_file: need at least 8 patients with 3 or more treatment sessions "
            f"to place the faults; found {len(candidates)}. Simulate a larger study."
        )
    return candidates


def export_clinic_file(data: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, list[dict]]:
    """Write the clean data the way a clinic would export it, with known faults.

    Columns are renamed to :func:`export_columns` (modality labels "CBT",
    "Psychodynamic", "Humanistic"); every cell becomes the exact text written
    to the CSV.  Missing cells are written "NA" for the first half of the
    therapists and blank for the others (two data-entry clerks), and three
    missing item cells are written ".".  Five different patients (with at
    least 3 treatment sessions) each receive one fault:

    * ``out_of_range``: one WAI-SR item set to 6 (range 1–5);
    * ``out_of_range``: one PHQ-9 item set to 4 (range 0–3);
    * ``exact_duplicate``: one treatment-session row repeated just below itself;
    * ``conflicting_duplicate``: one treatment-session row repeated just below
      itself with one WAI-SR and one PHQ-9 item changed by one point (in range);
    * ``mistyped_therapist_id``: the therapist id on one row (not the first) of
      one patient replaced by another existing id that differs in one
      character, so that the patient appears under two therapists.

    Parameters
    ----------
    data : pandas.DataFrame
        Clean data as returned by :func:`simulate_study`.
    seed : int
        Seed; the faults are drawn from a stream derived from
        ``numpy.random.default_rng(seed)`` that the simulation does not use.

    Returns
    -------
    export : pandas.DataFrame
        All columns of string dtype, rows in file order (sorted by therapist,
        patient and session before the faults; duplicates adjacent).
    faults : list of dict
        One record per fault: ``type``, ``patient``, ``session``, ``row`` (the
        CSV line number, header = row 1, as in ``source_row``), ``column``, ``original`` and ``new``
        (conflicting duplicates list their ``changes``), then one summary record
        of type ``missing_codes`` with the count of cells per code and the rule.

    Raises
    ------
    ValueError
        If ``data`` lacks a column of :func:`clean_columns` or has fewer than 8
        patients with at least 3 treatment sessions.
    """
    missing_cols = [c for c in clean_columns() if c not in data.columns]
    if missing_cols:
        raise DataInputError(
            "export_clinic_file: the data lack the column(s) "
            f"{', '.join(missing_cols)}; pass the frame returned by simulate_study."
        )
    data = data.sort_values([schema.THERAPIST_ID, schema.PATIENT_ID, schema.SESSION])
    data = data.reset_index(drop=True)
    rng = _streams(seed)[_EXPORT_STREAM]
    therapist_ids = sorted(data[schema.THERAPIST_ID].unique())
    na_therapists = set(therapist_ids[: math.ceil(len(therapist_ids) / 2)])
    rows = _export_rows(data)
    candidates = _fault_candidates(data)
    chosen = [str(x) for x in rng.choice(candidates, size=5, replace=False)]
    rows_of = {pid: [k for k, r in enumerate(rows) if r["patient"] == pid] for pid in chosen}
    state = _Faults(rows, rows_of, rng)

    # The faults, one patient each, in the order of the docstring (the draws depend on it).
    _inject_out_of_range(state, chosen[0], _WAI_EXPORT, "6", treatment_only=True)
    _inject_out_of_range(state, chosen[1], _PHQ_EXPORT, "4", treatment_only=False)
    k_exact, exact_fault = _inject_exact_duplicate(state, chosen[2])
    k_conf, conflict_copy, conflict_fault = _inject_conflicting_duplicate(state, chosen[3])
    true_id = _inject_mistyped_therapist_id(state, chosen[4], therapist_ids)

    # Missing codes: "NA" or blank by therapist, then three "." among other patients.
    _write_missing_codes(rows, na_therapists, chosen[4], true_id)
    for col in export_columns():  # the conflicting copy was made before the codes were set
        if conflict_copy[col] is None:
            conflict_copy[col] = rows[k_conf][col]
    _inject_missing_code_dots(state, chosen)

    ordered = _file_order(
        state,
        {k_exact: (dict(rows[k_exact]), exact_fault), k_conf: (conflict_copy, conflict_fault)},
    )
    faults = [*state.faults, _missing_codes_record(ordered, na_therapists)]
    export = pd.DataFrame(ordered, columns=export_columns(), dtype="str")
    return export, faults


# --------------------------------------------------------------------------- #
# Writing the demo study
# --------------------------------------------------------------------------- #
def _round_floats(value: Any, digits: int = 6) -> Any:
    """Round every float in a JSON-like structure to ``digits`` significant digits."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if value == 0 or not math.isfinite(value) else float(f"{value:.{digits}g}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round_floats(v, digits) for v in value]
    return value


def _csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(frame.columns)
    writer.writerows(frame.itertuples(index=False, name=None))
    return buffer.getvalue()


STUDY_CONFIG_TEXT = """\
# Study config of the SIMULATED demo study (data/raw/demo/sessions.csv).
# Written by helpers.simulate.write_demo_study; regenerate with `make data`.
# The format is documented key by key in src/helpers/study_template.yml.

study: demo

read:
  format: csv
  header_row: 1
  delimiter: ","
  encoding: utf-8
  missing_codes: ["", "NA", "."]

layout: long

columns:
  therapist_id: therapist
  patient_id: patient
  session: session
  modality: modality

covariates:
  age: age
  gender: gender

modality_labels:
  CBT: CBT
  Psychodynamic: psychodynamic
  Humanistic: humanistic

alliance:
  client:
    instrument: wai_sr
    item_pattern: "wai_{i}"
  therapist:
    instrument: wai_sr
    total: therapist_wai_total
primary_alliance: client

outcome:
  instrument: phq9
  item_pattern: "phq_{i}"
  intake_session: 0

cleaning:
  out_of_range: set_missing
  conflicting_duplicates: exclude
  # The demo's only patient under two therapists is a mistyped therapist id on
  # one row: keep the records under the therapist who has the clear majority.
  multiple_therapists: keep_majority
  min_sessions_within: 3
  early_session: 3
"""


def _markdown_cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def parameter_table_markdown() -> str:
    """The default parameters as a Markdown table (name, value, unit, meaning, source).

    Examples
    --------
    >>> parameter_table_markdown().splitlines()[0]
    '| Parameter | Value | Unit | Meaning | Source |'
    """
    lines = ["| Parameter | Value | Unit | Meaning | Source |", "|---|---|---|---|---|"]
    for par in PARAMETERS:
        value = f"{par.value:g}"
        lines.append(
            f"| `{par.name}` | {value} | {_markdown_cell(par.unit)} | "
            f"{_markdown_cell(par.meaning)} | {_markdown_cell(par.source)} |"
        )
    return "\n".join(lines)


def _data_card(truth: dict[str, Any], export: pd.DataFrame, seed: int) -> str:
    design, sample, pop = truth["design"], truth["sample"], truth["population"]
    faults = [f for f in truth["faults"] if f["type"] != "missing_codes"]
    codes = next(f for f in truth["faults"] if f["type"] == "missing_codes")
    fault_lines = ["| Type | Patient | Session | CSV row | Column | Original → new |",
                   "|---|---|---|---|---|---|"]  # fmt: skip
    for f in faults:
        if f["type"] == "conflicting_duplicate":
            change = "; ".join(f"{c['column']}: {c['original']} → {c['new']}" for c in f["changes"])
            column = "(copy of row " + str(f["row_original"]) + ")"
        elif f["type"] == "exact_duplicate":
            change, column = "identical copy of row " + str(f["row_original"]), ""
        else:
            original = "missing" if f["type"] == "missing_code_dot" else f["original"]
            change, column = f"{original} → {f['new']}", f["column"]
        fault_lines.append(
            f"| {f['type']} | {f['patient']} | {f['session']} | {f['row']} | {column} | {change} |"
        )
    code_counts = ", ".join(f'"{k}": {v}' for k, v in codes["counts"].items())
    n_rows = len(export)
    caseload_mean = design["patients_per_therapist"] - 1
    files_table = "\n".join(
        [
            "| File | Content |",
            "|---|---|",
            f"| `sessions.csv` | the clinic export: {n_rows} data rows, one per patient-session "
            "(session 0 = intake), with the data-entry faults listed below |",
            "| `study.yml` | the study config that maps these columns onto the suite's schema |",
            "| `truth.json` | every generating parameter, the true effects, the true "
            "rupture–repair episodes, the true random effects per therapist and patient, "
            "and the injected faults |",
            "| `README.md` | this data card |",
            "| `MANIFEST.sha256` | SHA-256 checksums of the four files above "
            "(`sha256sum -c MANIFEST.sha256`) |",
        ]
    )
    definitions, effects = truth["definitions"], truth["effects"]
    effect_rows = [
        ("patient-level alliance–outcome r", pop["alliance_outcome_r_patient"],
         ".278 (Flückiger et al. 2018)", "alliance_outcome_r_patient"),
        ("client–therapist alliance r", pop["client_therapist_alliance_r"],
         ".36 (Tryon et al. 2007)", "client_therapist_alliance_r"),
        ("therapist share of PHQ-9 variance", pop["therapist_share_outcome"],
         ".05 (Wampold & Brown 2005; Baldwin & Imel 2013)", "therapist_share_outcome"),
        ("therapist variance of PHQ-9", effects["therapist_variance_outcome"], "",
         "therapist_variance_outcome"),
        ("lagged within-patient effect", effects["alliance_within_lag1_effect"], "",
         "alliance_within_lag1_effect"),
        ("between-patient effect", effects["alliance_between_effect"], "",
         "alliance_between_effect"),
        ("rupture rate per at-risk session", effects["rupture_rate_per_session"], "",
         "rupture_rate_per_session"),
    ]  # fmt: skip
    effects_table = "\n".join(
        ["| Quantity | True value | Target | Definition |", "|---|---|---|---|"]
        + [f"| {a} | {b} | {c} | {definitions[d]} |" for a, b, c, d in effect_rows]
    )
    return f"""\
# Demo study (SIMULATED)

**Every value in this folder is simulated. The study contains no real person,
no real therapist and no real clinic**: identifiers are sequential labels
(`T01`…, `P0001`…), there are no names and no dates.  The data were drawn by
`helpers.simulate.simulate_study` (seed {seed}) from a generating process whose
parameters come from the published literature, so every effect that the
notebooks estimate is known (`truth.json`).

## Files

{files_table}

## Design

{design["n_therapists"]} therapists (modality CBT, Psychodynamic or Humanistic, in
equal shares), {design["n_patients"]} patients (caseloads 1 + Poisson({caseload_mean}),
so unequal), up to {design["max_sessions"]} treatment sessions (mean
{sample["mean_sessions"]:.1f}; dropout leaves some patients with 1–2 sessions).
Session 0 is the intake assessment (PHQ-9 only).  Patient covariates: age in
years and gender (F, M, other).

Columns of `sessions.csv`: `therapist`, `patient`, `session`, `modality`, `age`,
`gender`, `wai_1`…`wai_12` (client-rated WAI-SR items, 1–5; Task 1, 2, 10, 12;
Bond 3, 5, 7, 9; Goal 4, 6, 8, 11; Hatcher & Gillaspy 2006),
`therapist_wai_total` (therapist-rated alliance total, 12–60), `phq_1`…`phq_9`
(PHQ-9 items, 0–3, total 0–27; Kroenke, Spitzer & Williams 2001).

## Generating process

Latent client alliance (WAI-SR total) at treatment session t of patient i
treated by therapist j:

    A_it = mu_A + g (t-1) + u_j + v_i + d_it
    d_it = s_it + R_it + gamma r_i,t-1
    s_it = phi s_i,t-1 + sigma_s sqrt(1 - phi^2) z        (state-like AR(1))

tau_i = u_j + v_i is the patient's true alliance level; R_it is the rupture
effect: at a session t >= 2 with no episode in progress a rupture starts with
probability `rupture_rate` and lowers the alliance by D = `rupture_drop`; with
probability `repair_probability` it is repaired linearly over k = 1..3 sessions
(back at the pre-rupture level at session t + k), otherwise it lasts.

Latent PHQ-9 total:

    Y_i0 = mu_Y + c0_i + e_i0                                           (intake)
    Y_it = mu_Y + c0_i + b_j + (beta_1 + c1_i) log(1 + t)
           + beta_B tau_i + beta_W d_i,t-1 + e_it                       (t >= 1)
    r_it = beta_W d_i,t-1 + e_it            (symptom deviation, feeds gamma)

Therapist-rated alliance:

    T_it = mu_T + g (t-1) + kappa (tau_i + d_it) + l_j + w_i + omega_it

Observed totals are the latent values rounded and clipped to the instrument
range (clipped share: client alliance {truth["clipping"]["alliance_client_share_clipped"]:.2%},
therapist alliance {truth["clipping"]["alliance_therapist_share_clipped"]:.2%},
PHQ-9 {truth["clipping"]["outcome_share_clipped"]:.2%}).  Items are generated so that
they add up exactly to the observed total.  Then {PARAMETERS[2].value:.0%} of items are
missing at random, and {PARAMETERS[3].value:.0%} of questionnaires are missed entirely
(never the intake PHQ-9).  Dropout is independent of alliance and symptoms.

## Parameters

{parameter_table_markdown()}

## True derived effects (large sample)

{effects_table}

In this sample: {sample["n_ruptures"]} rupture episodes in {sample["n_patients_with_rupture"]}
patients; patient-level r = {sample["alliance_outcome_r_patient"]:.3f}; client–therapist
r = {sample["client_therapist_alliance_r"]:.3f}.

## Data-entry faults (for the cleaning step to catch)

{chr(10).join(fault_lines)}

Missing values are written in three ways ({code_counts} cells): {codes["rule"]}.
Row numbers are the CSV line numbers a spreadsheet shows (the header is row 1, the
first record row 2), as in the cleaning step's `source_row`.

## Regenerate

    make data        # = python -m helpers simulate --out data/raw/demo

The files are byte-identical on every run (`tests/test_simulate.py` checks it).
"""


def write_demo_study(out_dir: Path, seed: int = 2026) -> dict:
    """Write the simulated demo study: sessions.csv, truth.json, README.md, study.yml, MANIFEST.

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder to write into (created if needed; existing files are replaced,
        each written under a temporary name and renamed into place when
        complete).
    seed : int
        Seed of the simulation and of the faults.

    Returns
    -------
    dict
        ``files`` (file name → SHA-256), ``n_rows`` (data rows of sessions.csv),
        ``n_patients``, ``n_therapists`` and ``n_faults``.

    Raises
    ------
    ValueError
        If ``out_dir`` exists and is not a folder.

    Notes
    -----
    Running it twice gives byte-identical files: no time stamps or absolute
    paths are written, floats in truth.json are rounded to 6 significant
    digits, keys are sorted and lines end in ``"\\n"``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SettingsError(
            f"write_demo_study: {out_dir} exists and is not a folder; pass a folder path."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    data, truth = simulate_study(seed=seed)
    export, faults = export_clinic_file(data, seed)
    truth["faults"] = faults
    truth["export"] = {
        "file": "sessions.csv",
        "columns": export_columns(),
        "n_rows": len(export),
        "missing_codes": list(MISSING_CODES),
        "modality_labels": dict(EXPORT_MODALITY_LABELS),
    }
    truth = _round_floats(truth)
    texts = {
        "sessions.csv": _csv_text(export),
        "truth.json": json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n",
        "README.md": _data_card(truth, export, seed),
        "study.yml": STUDY_CONFIG_TEXT,
    }
    hashes = {}
    for name in DEMO_FILES:
        payload = texts[name].encode("utf-8")
        atomic_write_bytes(out_dir / name, payload)
        hashes[name] = hashlib.sha256(payload).hexdigest()
    manifest = "".join(f"{hashes[name]}  {name}\n" for name in DEMO_FILES)
    atomic_write_bytes(out_dir / MANIFEST_NAME, manifest.encode("utf-8"))
    return {
        "files": hashes,
        "n_rows": len(export),
        "n_patients": truth["design"]["n_patients"],
        "n_therapists": truth["design"]["n_therapists"],
        "n_faults": sum(f["type"] != "missing_codes" for f in faults),
    }
