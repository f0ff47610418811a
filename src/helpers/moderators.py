r"""Moderators of the alliance–outcome association (notebooks 04 and 05).

Four groups of tools:

* **Rater perspective** -- :func:`add_rater_features` splits each rater's
  alliance (client, therapist) into a patient mean and session deviations, with
  the lagged deviation, so that the two ratings can enter a session-level model
  side by side, each with its within- and between-patient part.
* **Combinations of fixed effects** -- :func:`fixed_effects_covariance` (the
  covariance matrix of the fixed effects of a :func:`helpers.models.fit_mixed`
  result), :func:`linear_combination` (an estimate such as
  :math:`b_1 + b_3` with its standard error and Wald interval),
  :func:`simple_slopes` (the slope of a predictor at each level of a
  categorical moderator) and :func:`wald_test` (do several coefficients all
  equal zero?).
* **Timing** -- :func:`early_late_alliance`: each patient's mean alliance in
  the first sessions and later, as patient-level predictors.
* **Reporting** -- :func:`readable_term` (patsy term names for tables).  The
  rupture-episode summaries are in :mod:`helpers.ruptures`
  (:func:`~helpers.ruptures.episode_summary`,
  :func:`~helpers.ruptures.episode_count_distribution`).

Simple slopes
-------------
In a model with an interaction between a numeric predictor :math:`x` and a
categorical moderator with treatment (dummy) coding,

.. math:: y = b_0 + b_x x + \sum_{j \ne r} c_j D_j + \sum_{j \ne r} g_j\, x D_j + \dots

the slope of :math:`x` in the reference level :math:`r` is :math:`b_x`, and in
level :math:`j` it is :math:`b_x + g_j`.  Its variance is
:math:`\operatorname{Var}(b_x) + \operatorname{Var}(g_j) + 2\operatorname{Cov}(b_x,
g_j)`, the quadratic form :math:`w^\top \Sigma w` of the weight vector
:math:`w` (1 for :math:`b_x` and :math:`g_j`, 0 elsewhere) with the
covariance matrix :math:`\Sigma` of the fixed effects (Aiken & West, 1991;
Preacher, Curran & Bauer, 2006).  The interval is the Wald interval
:math:`\hat\theta \pm z_{1-\alpha/2}\,\mathrm{SE}`, on the same footing as the
intervals of ``MixedResult.fixed``.  Refitting the model with level :math:`j`
as the reference gives the same slope and standard error as the main effect of
:math:`x` (``tests/test_moderators.py`` checks this).

References
----------
Aiken, L. S., & West, S. G. (1991). *Multiple regression: Testing and
interpreting interactions*. Sage.

Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
between-person effects in longitudinal models of change. *Annual Review of
Psychology, 62*, 583–619.

Preacher, K. J., Curran, P. J., & Bauer, D. J. (2006). Computational tools for
probing interactions in multiple linear regression, multilevel modeling, and
latent curve analysis. *Journal of Educational and Behavioral Statistics,
31*(4), 437–448.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from helpers.errors import DataInputError, ModelSpecificationError, SettingsError
from helpers.features import grand_mean_center, lag_within_patient, person_mean_center
from helpers.models import MixedResult, contrast_test
from helpers.schema import PATIENT_ID, SESSION
from helpers.validation import describe_rows, require_frame

__all__ = [
    "RATER_FEATURE_SUFFIXES",
    "add_rater_features",
    "early_late_alliance",
    "fixed_effects_covariance",
    "interaction_terms",
    "linear_combination",
    "readable_term",
    "simple_slopes",
    "wald_test",
]

#: Columns :func:`add_rater_features` adds for each rater column ``<rater>``.
RATER_FEATURE_SUFFIXES: tuple[str, ...] = ("_between", "_within", "_within_lag", "_between_c")

# A treatment-coded factor level in a patsy column name, e.g. ``modality[T.CBT]`` or
# ``C(modality, Treatment("CBT"))[T.humanistic]``.
_TREATMENT_LEVEL = re.compile(r"^(?P<factor>.+)\[T\.(?P<level>.*)\]$")
_C_CALL = re.compile(
    r"C\(\s*(?P<var>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?:,\s*Treatment\(\s*(?:reference\s*=\s*)?(?P<quote>[\"'])(?P<ref>.*?)(?P=quote)\s*\))?"
    r"\s*\)"
)


def _z_critical(level: float, where: str) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise SettingsError(
            f"{where}: level is the confidence level as a proportion (e.g. 0.95), got {level!r}."
        )
    return float(stats.norm.ppf(0.5 + level / 2))


# ---------------------------------------------------------------------------
# Rater perspective
# ---------------------------------------------------------------------------
def add_rater_features(
    sessions: pd.DataFrame,
    raters: Sequence[str] = ("alliance_client", "alliance_therapist"),
    *,
    by: str = PATIENT_ID,
    session: str = SESSION,
) -> pd.DataFrame:
    """Within- and between-patient parts of each rater's alliance, for session-level models.

    For every rating column ``<rater>`` (e.g. ``alliance_client``,
    ``alliance_therapist``) four columns are added, as
    :func:`helpers.features.add_model_features` does for the primary alliance:

    ``<rater>_between``
        The patient's mean rating over the patient's rated sessions
        (:func:`helpers.features.person_mean_center`).
    ``<rater>_within``
        The session's rating minus that mean: the deviation from the patient's
        usual level (NaN where the session is unrated).
    ``<rater>_within_lag``
        ``<rater>_within`` at session t − 1 of the same patient, NaN at the
        first session, after a gap or an unrated session
        (:func:`helpers.features.lag_within_patient`).
    ``<rater>_between_c``
        ``<rater>_between`` minus the mean of the patient means, each patient
        counted once (:func:`helpers.features.grand_mean_center`).

    Each rater is centred on its own patient mean, so a client who rates
    generously and a therapist who rates strictly do not mix: the within parts
    describe each rater's session-to-session movement, the between parts each
    rater's view of the patient's general level (Curran & Bauer, 2011).

    Parameters
    ----------
    sessions : pandas.DataFrame
        Session-level data, one row per patient and session (``sessions.parquet``).
    raters : sequence of str, default ("alliance_client", "alliance_therapist")
        The rating columns.
    by : str, default "patient_id"
        Patient identifier column.
    session : str, default "session"
        Whole session numbers.

    Returns
    -------
    pandas.DataFrame
        A copy of ``sessions`` (same rows, order and index) with the added columns.

    Raises
    ------
    ValueError
        If a column is absent, an output column exists already, no rater is
        named, or (from :mod:`helpers.features`) a rating is not numeric, an id is
        missing or a patient has two rows for one session.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a", "a", "a", "b"], "session": [1, 2, 3, 1],
    ...                    "r": [40.0, 42.0, 44.0, 50.0]})
    >>> add_rater_features(df, ["r"])[["r_within", "r_within_lag", "r_between_c"]].values.tolist()
    [[-2.0, nan, -4.0], [0.0, -2.0, -4.0], [2.0, 0.0, -4.0], [0.0, nan, 4.0]]
    """
    where = "add_rater_features"
    if isinstance(raters, str):
        raters = [raters]
    raters = list(raters)
    if not raters:
        raise SettingsError(f"{where}: name at least one rating column in raters.")
    require_frame(sessions, [by, session, *raters], where, "the session-level frame")
    added = [f"{r}{suffix}" for r in raters for suffix in RATER_FEATURE_SUFFIXES]
    clash = [c for c in added if c in sessions.columns]
    if clash:
        raise DataInputError(
            f"{where}: the frame already has the column(s) {clash}. Drop them (or start from "
            "sessions.parquet) so that no stale feature is mistaken for a fresh one."
        )
    out = sessions.copy()
    for rater in raters:
        work = person_mean_center(sessions[[by, session, rater]], rater, by=by)
        out[f"{rater}_between"] = work[f"{rater}_between"].to_numpy()
        out[f"{rater}_within"] = work[f"{rater}_within"].to_numpy()
        out[f"{rater}_within_lag"] = lag_within_patient(
            work, f"{rater}_within", by=by, session=session
        ).to_numpy()
        out[f"{rater}_between_c"] = grand_mean_center(
            work[f"{rater}_between"], by=work[by].to_numpy()
        ).to_numpy()
    return out


# ---------------------------------------------------------------------------
# Combinations of fixed effects
# ---------------------------------------------------------------------------
def fixed_effects_covariance(result: MixedResult) -> pd.DataFrame:
    """Covariance matrix of the fixed effects of a :func:`~helpers.models.fit_mixed` result.

    The matrix behind ``result.fixed["se"]``: lme4's ``vcov()``,
    :math:`\\hat\\sigma^2 (X^\\top V^{-1} X)^{-1}` with :math:`V` built from the
    estimated variance components, as stored by :func:`~helpers.models.fit_mixed`
    in ``result.cov_fixed``.

    Returns
    -------
    pandas.DataFrame
        Square, indexed and labelled by the fixed-effect terms in the order of
        ``result.fixed`` (a copy).

    Raises
    ------
    TypeError
        If ``result`` is not a fit of :func:`~helpers.models.fit_mixed`.
    """
    cov = getattr(result, "cov_fixed", None)
    if not isinstance(cov, pd.DataFrame):
        raise TypeError(
            "fixed_effects_covariance expects a MixedResult from helpers.models.fit_mixed, "
            f"got {type(result).__name__}."
        )
    return cov.copy()


def _estimates_and_covariance(
    result: MixedResult, covariance: pd.DataFrame | None, where: str
) -> tuple[pd.Series, pd.DataFrame]:
    fixed = getattr(result, "fixed", None)
    if not isinstance(fixed, pd.DataFrame) or "estimate" not in fixed.columns:
        raise TypeError(
            f"{where} expects a MixedResult (with a 'fixed' table of estimates), got "
            f"{type(result).__name__}."
        )
    estimates = fixed["estimate"].astype(float)
    if covariance is None:
        covariance = fixed_effects_covariance(result)
    elif not isinstance(covariance, pd.DataFrame):
        raise TypeError(f"{where}: covariance must be a DataFrame indexed by term on both axes.")
    missing = [t for t in estimates.index if t not in covariance.index or t not in covariance]
    if missing:
        raise ModelSpecificationError(
            f"{where}: the covariance matrix has no row/column for terms {missing}.",
            fix="Pass the covariance matrix of the same fit.",
        )
    return estimates, covariance.loc[estimates.index, estimates.index]


def _check_terms(terms: Sequence[str], available: Sequence[str], where: str) -> None:
    unknown = [t for t in terms if t not in available]
    if unknown:
        raise ModelSpecificationError(
            f"{where}: term(s) {unknown} are not fixed effects of the model. Terms: "
            f"{list(available)}. Write them as in result.fixed.index."
        )


def _combination(
    estimates: pd.Series, covariance: pd.DataFrame, weights: Mapping[str, float], z_crit: float
) -> dict[str, float]:
    w = pd.Series(0.0, index=estimates.index)
    for term, weight in weights.items():
        w[term] += float(weight)
    vector = w.to_numpy()
    estimate = float(vector @ estimates.to_numpy())
    variance = float(vector @ covariance.to_numpy() @ vector)
    se = math.sqrt(max(variance, 0.0))
    z = estimate / se if se > 0 else math.nan
    p = float(2 * stats.norm.sf(abs(z))) if se > 0 else math.nan
    return {
        "estimate": estimate,
        "se": se,
        "ci_low": estimate - z_crit * se,
        "ci_high": estimate + z_crit * se,
        "z": z,
        "p": p,
    }


def linear_combination(
    result: MixedResult,
    weights: Mapping[str, float],
    *,
    level: float = 0.95,
    covariance: pd.DataFrame | None = None,
) -> pd.Series:
    """A weighted sum of fixed effects with its standard error and Wald interval.

    For weights :math:`w`, the estimate is :math:`w^\\top \\hat\\beta` and its
    standard error :math:`\\sqrt{w^\\top \\Sigma w}`, with :math:`\\Sigma` the
    covariance matrix of the fixed effects.  The interval is
    :math:`\\hat\\theta \\pm z_{1-\\alpha/2}\\,\\mathrm{SE}` and the p value the
    two-sided normal one, as in ``MixedResult.fixed``.

    Parameters
    ----------
    result : MixedResult
        A fitted model.
    weights : mapping of str to float
        Term → weight, e.g. ``{"x": 1, "x:g[T.b]": 1}`` for a slope in level b,
        or ``{"early": 1, "late": -1}`` for a difference of two coefficients.
        Terms not named have weight 0.
    level : float, default 0.95
        Confidence level.
    covariance : pandas.DataFrame, optional
        The fixed-effect covariance matrix; computed with
        :func:`fixed_effects_covariance` when not given.

    Returns
    -------
    pandas.Series
        ``estimate, se, ci_low, ci_high, z, p``.

    Raises
    ------
    ValueError
        If no weight is given or a term is not a fixed effect of the model.
    """
    where = "linear_combination"
    z_crit = _z_critical(level, where)
    if not isinstance(weights, Mapping) or not weights:
        raise SettingsError(f"{where}: weights must map at least one term to its weight.")
    estimates, cov = _estimates_and_covariance(result, covariance, where)
    _check_terms(list(weights), list(estimates.index), where)
    return pd.Series(_combination(estimates, cov, weights, z_crit))


def _interaction_levels(terms: Sequence[str], focal: str) -> dict[str, dict[str, str]]:
    """factor expression -> {level: term} for the terms ``focal:factor[T.level]``."""
    found: dict[str, dict[str, str]] = {}
    for term in terms:
        parts = term.split(":")
        if len(parts) != 2 or focal not in parts:
            continue
        other = parts[1] if parts[0] == focal else parts[0]
        match = _TREATMENT_LEVEL.match(other)
        if match:
            found.setdefault(match["factor"], {})[match["level"]] = term
    return found


def _factor_categories(result: MixedResult, factor: str) -> list[str] | None:
    """All levels of a categorical factor of the fixed part (from patsy's design info)."""
    design_info = getattr(result, "design_info", None)
    if not hasattr(design_info, "factor_infos"):
        return None
    for evaluation_factor, info in design_info.factor_infos.items():
        if evaluation_factor.name() == factor and info.categories is not None:
            return [str(c) for c in info.categories]
    return None


def _resolve_moderator(
    terms: Sequence[str], focal: str, moderator: str | None, where: str, hint: str = ""
) -> tuple[str, dict[str, str]]:
    """The factor ``focal`` interacts with, and its non-reference level -> interaction term.

    ``moderator`` may be omitted when there is one such factor; ``hint`` ends the
    message when there is none.
    """
    by_factor = _interaction_levels(terms, focal)
    if not by_factor:
        raise ModelSpecificationError(
            f"{where}: the model has no interaction of {focal!r} with a treatment-coded "
            f"factor (terms such as '{focal}:factor[T.level]'). Terms: {list(terms)}.{hint}"
        )
    if moderator is None:
        if len(by_factor) > 1:
            raise SettingsError(
                f"{where}: {focal!r} interacts with several factors {list(by_factor)}; "
                "choose one with moderator=."
            )
        moderator = next(iter(by_factor))
    if moderator not in by_factor:
        raise ModelSpecificationError(
            f"{where}: {focal!r} has no interaction with {moderator!r}; factors it "
            f"interacts with: {list(by_factor)}.",
            fix="Pass one of those factors as moderator=.",
        )
    return moderator, by_factor[moderator]


def _slope_plan_from_mapping(
    moderator_levels: Mapping[str, Sequence[str]], terms: list[str], focal: str, where: str
) -> tuple[dict[str, list[str]], set[str]]:
    """Level -> terms added to ``focal`` as given, and the interaction terms accounted for."""
    plan = {str(lv): list(extra) for lv, extra in moderator_levels.items()}
    for extra in plan.values():
        _check_terms(extra, terms, where)
    used = {t for extra in plan.values() for t in extra}
    # other levels of the same factors are 0 at every level reported: not a caveat
    named = {f for f, levels in _interaction_levels(sorted(used), focal).items() if levels}
    used |= {
        term
        for f, levels in _interaction_levels(terms, focal).items()
        if f in named
        for term in levels.values()
    }
    return plan, used


def _slope_plan_from_factor(
    result: MixedResult,
    terms: list[str],
    focal: str,
    moderator: str | None,
    moderator_levels: Sequence[str] | str | None,
    where: str,
) -> tuple[dict[str, list[str]], set[str]]:
    """Level -> terms added to ``focal`` for the levels of a treatment-coded factor."""
    moderator, non_reference = _resolve_moderator(
        terms,
        focal,
        moderator,
        where,
        hint=f" Fit e.g. 'y ~ {focal} * C(moderator, Treatment(\"reference\")) + ...', or "
        "pass moderator_levels as a mapping level -> interaction terms.",
    )
    categories = _factor_categories(result, moderator)
    if categories is None:
        raise ModelSpecificationError(
            f"{where}: cannot read the levels of {moderator!r} from the fitted model; "
            "pass moderator_levels as a mapping level -> interaction terms "
            f"(non-reference levels: {list(non_reference)})."
        )
    reference = [c for c in categories if c not in non_reference]
    if moderator_levels is None:
        moderator_levels = reference + [c for c in categories if c in non_reference]
    if isinstance(moderator_levels, str):
        moderator_levels = [moderator_levels]
    plan: dict[str, list[str]] = {}
    for lv in moderator_levels:
        lv = str(lv)
        if lv in non_reference:
            plan[lv] = [non_reference[lv]]
        elif lv in reference:
            plan[lv] = []
        else:
            raise SettingsError(
                f"{where}: {lv!r} is not a level of {moderator!r}; its levels are "
                f"{categories} (reference: {reference})."
            )
    return plan, set(non_reference.values())


def interaction_terms(result: MixedResult, focal: str, moderator: str | None = None) -> list[str]:
    """The fixed-effect names of the interaction of ``focal`` with a treatment-coded factor.

    For ``y ~ x * C(modality, Treatment("CBT"))`` these are
    ``x:C(modality, Treatment("CBT"))[T.humanistic]`` and
    ``x:C(modality, Treatment("CBT"))[T.psychodynamic]``: the differences between
    each level's slope and the reference level's.  Pass them to :func:`wald_test`
    to ask whether the slope differs between the levels at all.

    Parameters
    ----------
    result : MixedResult
        The fitted model.
    focal : str
        The numeric predictor, as in ``result.fixed.index``.
    moderator : str, optional
        The factor as written in the term names; needed only when ``focal``
        interacts with more than one factor.

    Returns
    -------
    list of str
        In the order of ``result.fixed``.

    Raises
    ------
    ValueError
        If ``focal`` interacts with no treatment-coded factor, with several and
        ``moderator`` is not given, or not with ``moderator``.
    """
    where = "interaction_terms"
    fixed = getattr(result, "fixed", None)
    if not isinstance(fixed, pd.DataFrame):
        raise TypeError(f"{where} expects a MixedResult, got {type(result).__name__}.")
    terms = list(fixed.index)
    _, non_reference = _resolve_moderator(terms, focal, moderator, where)
    chosen = set(non_reference.values())
    return [t for t in terms if t in chosen]


def simple_slopes(
    result: MixedResult,
    focal: str,
    moderator_levels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    *,
    moderator: str | None = None,
    level: float = 0.95,
    covariance: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Slope of ``focal`` at each level of a categorical moderator, with Wald intervals.

    The model must contain ``focal`` and its interaction with a treatment-coded
    factor (patsy's default coding: a string column, ``C(x)`` or
    ``C(x, Treatment("ref"))``), as in ``y ~ focal * C(modality, Treatment("CBT"))``.
    The slope in the reference level is the coefficient of ``focal``; in any
    other level it is that coefficient plus the interaction coefficient of
    the level, with the standard error from the fixed-effect covariance matrix
    (see the module docstring).

    If ``focal`` also interacts with other variables (say ``session_c``), the
    slopes are those where the other variables are 0; a warning names them.

    Parameters
    ----------
    result : MixedResult
        The fitted model.
    focal : str
        The numeric predictor whose slope is wanted, as in ``result.fixed.index``.
    moderator_levels : sequence of str, mapping, or None
        The levels to report, in this order (default: every level of the
        factor, reference first).  A mapping ``level -> interaction terms``
        names the terms added to ``focal`` explicitly (an empty list for the
        reference level); use it for codings other than treatment coding.
    moderator : str, optional
        The factor as written in the term names (e.g.
        ``'C(modality, Treatment("CBT"))'`` or ``"modality"``); needed only when
        ``focal`` interacts with more than one factor.
    level : float, default 0.95
        Confidence level.
    covariance : pandas.DataFrame, optional
        The fixed-effect covariance matrix (default: :func:`fixed_effects_covariance`).

    Returns
    -------
    pandas.DataFrame
        One row per level: ``level, reference`` (whether it is the reference
        level), ``estimate, se, ci_low, ci_high, z, p`` and ``terms`` (the
        coefficients summed).

    Raises
    ------
    ValueError
        If ``focal`` is not a term, it interacts with no treatment-coded factor
        (or with several and ``moderator`` is not given), or a requested level
        is not a level of the factor.
    """
    where = "simple_slopes"
    z_crit = _z_critical(level, where)
    estimates, cov = _estimates_and_covariance(result, covariance, where)
    terms = list(estimates.index)
    _check_terms([focal], terms, where)

    if isinstance(moderator_levels, Mapping):
        plan, used = _slope_plan_from_mapping(moderator_levels, terms, focal, where)
    else:
        plan, used = _slope_plan_from_factor(
            result, terms, focal, moderator, moderator_levels, where
        )
    others = [t for t in terms if focal in t.split(":") and t != focal and t not in used]
    if others:
        warnings.warn(
            f"{where}: {focal!r} also appears in {others}; the slopes are those where the "
            "other variables of these terms are 0 (for a factor: at its reference level).",
            UserWarning,
            stacklevel=2,
        )
    rows = []
    for lv, extra in plan.items():
        weights = {focal: 1.0, **{t: 1.0 for t in extra}}
        row = {"level": lv, "reference": not extra}
        row |= _combination(estimates, cov, weights, z_crit)
        row["terms"] = " + ".join([focal, *extra])
        rows.append(row)
    return pd.DataFrame(rows)


def wald_test(
    result: MixedResult,
    terms: Sequence[str],
    *,
    covariance: pd.DataFrame | None = None,
    ddf: str | None = None,
) -> pd.Series:
    """Joint Wald test that several fixed effects are all zero.

    :math:`W = \\hat\\beta_S^\\top \\Sigma_S^{-1} \\hat\\beta_S` for the
    coefficients :math:`S`, referred to a :math:`\\chi^2` distribution with
    :math:`|S|` degrees of freedom.  For the interaction terms of a factor with
    *k* levels it asks whether the slope of the focal predictor differs between
    the levels at all (k − 1 df), without testing each pair.  Like the Wald
    intervals of ``MixedResult.fixed`` it treats the variance components as
    known; with few groups (e.g. therapists) it is somewhat liberal.

    Parameters
    ----------
    result : MixedResult
        The fitted model.
    terms : sequence of str
        The coefficients tested, as in ``result.fixed.index``.
    covariance : pandas.DataFrame, optional
        The fixed-effect covariance matrix (default: :func:`fixed_effects_covariance`).
        Not combined with ``ddf``.
    ddf : {"asymptotic", "satterthwaite", "kenward-roger"}, optional
        Default ``None``: the chi-square test above with ``result.cov_fixed``.  Otherwise
        the F test of :func:`helpers.models.contrast_test` (Satterthwaite as lmerTest,
        Kenward-Roger as pbkrtest, or ``"asymptotic"``: the chi-square test with lme4's
        ``vcov()``); ``statistic`` is then ``F`` (``chi2`` for ``"asymptotic"``), ``df``
        its numerator df and ``ddf`` the denominator df.

    Returns
    -------
    pandas.Series
        ``statistic``, ``df``, ``p`` (and ``ddf`` when ``ddf`` is given).

    Raises
    ------
    ValueError
        If no term is given, a term is unknown or repeated, or the covariance
        matrix of the terms is singular.
    """
    where = "wald_test"
    if isinstance(terms, str):
        terms = [terms]
    terms = list(terms)
    if not terms:
        raise SettingsError(f"{where}: name at least one term.")
    if len(set(terms)) != len(terms):
        raise SettingsError(f"{where}: terms are repeated: {terms}.", fix="Name each term once.")
    if ddf is not None:
        if covariance is not None:
            raise SettingsError(f"{where}: give either covariance= or ddf=, not both.")
        test = contrast_test(result, terms, ddf=ddf)
        statistic = test["chi2"] if ddf == "asymptotic" else test["F"]
        return pd.Series(
            {"statistic": statistic, "df": test["ndf"], "ddf": test["ddf"], "p": test["p"]}
        )
    estimates, cov = _estimates_and_covariance(result, covariance, where)
    _check_terms(terms, list(estimates.index), where)
    b = estimates.loc[terms].to_numpy()
    sub = cov.loc[terms, terms].to_numpy()
    try:
        statistic = float(b @ np.linalg.solve(sub, b))
    except np.linalg.LinAlgError as err:
        raise ModelSpecificationError(
            f"{where}: the covariance matrix of {terms} is singular; the terms are not "
            "separately estimable.",
            fix="Drop terms that are combinations of others.",
        ) from err
    return pd.Series(
        {"statistic": statistic, "df": len(terms), "p": float(stats.chi2.sf(statistic, len(terms)))}
    )


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------
def early_late_alliance(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    column: str = "alliance",
    early_until: int = 3,
    *,
    by: str = PATIENT_ID,
    session: str = SESSION,
) -> pd.DataFrame:
    """Each patient's mean alliance early in treatment and later, on the patient table.

    Early = the mean of the patient's rated sessions 1 … ``early_until``; late =
    the mean of the rated sessions after ``early_until`` (to the end of the
    patient's treatment).  A patient without a rated session in a period gets
    NaN for it.  Centred copies (``_c``: minus the mean over the patients who
    have a value, each patient once) make model intercepts refer to an average
    patient.

    The late mean overlaps in time with the symptom change it is compared
    with: a patient who is already improving may rate the alliance higher
    (the reverse path), so a late–outcome association is not evidence that the
    alliance came first.

    Parameters
    ----------
    sessions : pandas.DataFrame
        Session-level data (one row per patient and session).
    patients : pandas.DataFrame
        Patient-level table, one row per patient (``patients.csv``).
    column : str, default "alliance"
        The alliance column of ``sessions``.
    early_until : int, default 3
        Last session of the early period.
    by : str, default "patient_id"
        Patient identifier column of both tables.
    session : str, default "session"
        Whole session numbers.

    Returns
    -------
    pandas.DataFrame
        A copy of ``patients`` with ``<column>_early_mean``,
        ``<column>_late_mean``, ``n_early_ratings``, ``n_late_ratings`` and
        the centred ``<column>_early_mean_c`` and ``<column>_late_mean_c``.

    Raises
    ------
    ValueError
        If a column is absent, ``early_until`` is not a whole number >= 1, a
        patient is on two rows of ``patients``, an output column exists
        already, or the alliance or session column is not numeric.

    Examples
    --------
    >>> sessions = pd.DataFrame({"patient_id": ["a"] * 5, "session": [1, 2, 3, 4, 5],
    ...                          "alliance": [40.0, 42.0, None, 50.0, 52.0]})
    >>> out = early_late_alliance(sessions, pd.DataFrame({"patient_id": ["a"]}))
    >>> out[["alliance_early_mean", "alliance_late_mean"]].values.tolist()
    [[41.0, 51.0]]
    >>> out[["n_early_ratings", "n_late_ratings"]].values.tolist()
    [[2, 2]]
    """
    where = "early_late_alliance"
    if isinstance(early_until, bool) or not isinstance(early_until, (int, np.integer)):
        raise SettingsError(
            f"{where}: early_until must be a whole session number, got {early_until!r}."
        )
    if early_until < 1:
        raise SettingsError(f"{where}: early_until must be >= 1, got {early_until}.")
    require_frame(sessions, [by, session, column], where, "the session-level frame")
    require_frame(patients, [by], where, "the patient table")
    names = {
        "early": f"{column}_early_mean",
        "late": f"{column}_late_mean",
        "n_early": "n_early_ratings",
        "n_late": "n_late_ratings",
    }
    added = [*names.values(), f"{names['early']}_c", f"{names['late']}_c"]
    clash = [c for c in added if c in patients.columns]
    if clash:
        raise DataInputError(
            f"{where}: the patient table already has the column(s) {clash}; drop them first."
        )
    twice = patients[by].duplicated(keep=False).to_numpy()
    if twice.any():
        raise DataInputError(
            f"{where}: the patient table has more than one row for patients "
            f"{describe_rows(sorted(set(patients.loc[twice, by].tolist()), key=str))}; "
            "it must have one row per patient (patients.csv, not the session-level data)."
        )
    values = pd.to_numeric(sessions[column], errors="coerce")
    bad = sessions[column].notna() & values.isna()
    if bad.any():
        raise DataInputError(
            f"{where}: column {column!r} holds values that are not numbers in rows "
            f"{describe_rows(list(sessions.index[bad.to_numpy()]))}. "
            "Score and clean the data first."
        )
    number = pd.to_numeric(sessions[session], errors="coerce")
    if number.isna().any():
        raise DataInputError(
            f"{where}: column {session!r} must hold session numbers; rows "
            f"{describe_rows(list(sessions.index[number.isna().to_numpy()]))} do not.",
            fix="Pass the column of session numbers (1, 2, ...).",
        )
    work = pd.DataFrame({"p": sessions[by].to_numpy(), "v": values.to_numpy(dtype=float)})
    early = (number <= early_until).to_numpy()
    summary = {}
    for period, mask in (("early", early), ("late", ~early)):
        grouped = work.loc[mask].groupby("p", sort=False)["v"]
        summary[period] = grouped.mean()
        summary[f"n_{period}"] = grouped.count()
    out = patients.copy()
    ids = out[by]
    for key, name in names.items():
        mapped = ids.map(summary[key])
        if key.startswith("n_"):
            out[name] = mapped.fillna(0).astype("int64").to_numpy()
        else:
            out[name] = mapped.astype("float64").to_numpy()
    for key in ("early", "late"):
        out[f"{names[key]}_c"] = out[names[key]] - out[names[key]].mean()
    return out


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def readable_term(term: str) -> str:
    """A patsy term name made readable for a table.

    ``C(modality, Treatment("CBT"))[T.humanistic]`` and ``modality[T.humanistic]``
    become ``modality[humanistic]``; an interaction ``a:b`` becomes ``a × b``.
    Other names are unchanged.

    Parameters
    ----------
    term : str
        A fixed-effect name as in ``MixedResult.fixed.index``.

    Returns
    -------
    str

    Examples
    --------
    >>> readable_term('alliance_within_lag:C(modality, Treatment("CBT"))[T.humanistic]')
    'alliance_within_lag × modality[humanistic]'
    """
    text = _C_CALL.sub(lambda m: m["var"], str(term))
    text = re.sub(r"\[T\.([^\]]*)\]", r"[\1]", text)
    return " × ".join(part.strip() for part in _split_interaction(text))


def _split_interaction(text: str) -> list[str]:
    """Split on ':' outside brackets and quotes (a level may contain a colon)."""
    parts, depth, current, quote = [], 0, [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == ":" and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts
