"""Effect sizes and reporting for fitted mixed models (notebook 03).

- :func:`standardized_coefficients` — fixed effects in SD units of predictor and
  outcome.
- :func:`r_squared` — marginal and conditional R² (Nakagawa & Schielzeth 2013),
  with random slopes handled as in Johnson (2014).
- :func:`fit_quietly` — fit a model and keep every warning in the result
  (shown as a diagnostics table) instead of printing it on stderr.
- :func:`diagnostics_table` and :func:`fixed_table` — tidy, rounded tables for
  notebooks and ``results/``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from helpers.errors import SettingsError, UnsupportedModelError
from helpers.models import MixedResult, fit_mixed, with_ddf
from helpers.safety import atomic_path


def fit_quietly(data: pd.DataFrame, formula: str, reml: bool = True, **kwargs) -> MixedResult:
    """Fit with :func:`helpers.models.fit_mixed`, keeping warnings in the result only.

    ``fit_mixed`` records every warning raised while fitting in
    ``result.warnings`` and also re-emits it.  In a notebook the re-emitted
    copies would land on stderr, where they are easy to overlook and break the
    regression tests; here they are caught, and the notebook shows them from
    ``result.warnings`` with :func:`diagnostics_table`.  Nothing is dropped: a
    warning that ``fit_mixed`` did not record is re-raised.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_mixed(data, formula, reml, **kwargs)
    # a warning raised n times in one run is recorded once as "Category [run] (xn): message"
    recorded = re.sub(r" \(x\d+\):", ":", "\n".join(result.warnings))
    for w in caught:
        # re-emitted copies read "[run] message"; the record reads "Category [run]: message"
        text = str(w.message)
        if text.startswith("["):
            run, _, message = text[1:].partition("] ")
            text = f"[{run}]: {message}"
        if text not in recorded:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def _model_frame(result: MixedResult) -> pd.DataFrame:
    return result.model_frame


def _fixed_design(result: MixedResult) -> pd.DataFrame:
    return result.design.reset_index(drop=True)


def standardized_coefficients(result: MixedResult) -> pd.DataFrame:
    """Fixed effects in standard-deviation units: ``b · SD(x) / SD(y)``.

    SDs are taken over the rows the model used (total SDs, ignoring the
    nesting).  For a simple regression this is Pearson's r; in a multiple
    regression it is not a correlation, so compare it with r only with care.
    The intercept is left out.
    """
    design = _fixed_design(result)
    y = result.response_values
    sd_y = float(np.std(y, ddof=1))
    rows = []
    for term, row in result.fixed.iterrows():
        if term == "Intercept":
            continue
        sd_x = float(design[term].std(ddof=1))
        scale = sd_x / sd_y
        rows.append(
            {
                "term": term,
                "beta": row["estimate"] * scale,
                "ci_low": row["ci_low"] * scale,
                "ci_high": row["ci_high"] * scale,
                "sd_x": sd_x,
                "sd_y": sd_y,
            }
        )
    return pd.DataFrame(rows).set_index("term")


def _random_term_values(frame: pd.DataFrame, term: str) -> np.ndarray:
    if term == "Intercept":
        return np.ones(len(frame))
    return frame[term].to_numpy(dtype=float)


def r_squared(result: MixedResult) -> pd.Series:
    """Marginal and conditional R² of a linear mixed model.

    Marginal R² is the share of variance explained by the fixed effects,
    conditional R² by fixed and random effects together (Nakagawa &
    Schielzeth 2013, Methods Ecol Evol 4:133–142):

        R²_m = σ²_f / (σ²_f + σ²_r + σ²_e),   R²_c = (σ²_f + σ²_r) / (σ²_f + σ²_r + σ²_e)

    with σ²_f the variance of the fixed-effect predictions Xβ.  With random
    slopes, σ²_r is the mean over observations of zᵢᵀ Σ zᵢ for each grouping
    factor (Johnson 2014, Methods Ecol Evol 5:944–946), where zᵢ holds the
    observation's random-effect covariates (1 for an intercept) and Σ the
    factor's covariance matrix; for intercept-only models this is the sum of
    the variances.

    A fit without random terms (least squares, ``result.engine == "ols"``)
    has σ²_r = 0, so R²_m = R²_c = σ²_f / (σ²_f + σ̂²).  This equals the
    ordinary R² = 1 − RSS/TSS only up to the variance convention: under ML
    (σ̂² = RSS/n, and σ²_f = SSR/n with SSR + RSS = TSS) exactly; under REML
    (σ̂² = RSS/(n − p)) it is SSR / (SSR + RSS·n/(n − p)), slightly smaller
    (and not the adjusted R² either).
    """
    design = _fixed_design(result)
    beta = result.fixed["estimate"].reindex(design.columns).to_numpy()
    sigma2_f = float(np.var(design.to_numpy() @ beta, ddof=0))
    frame = _model_frame(result)
    vc = result.varcomp
    sigma2_e = float(vc.loc[vc["group"] == "Residual", "variance_or_cov"].iloc[0])
    sigma2_r = 0.0
    for _, row in vc.loc[vc["group"] != "Residual"].iterrows():
        z1 = _random_term_values(frame, row["term"])
        if row["term2"]:
            z2 = _random_term_values(frame, row["term2"])
            sigma2_r += 2 * row["variance_or_cov"] * float(np.mean(z1 * z2))
        else:
            sigma2_r += row["variance_or_cov"] * float(np.mean(z1 * z1))
    total = sigma2_f + sigma2_r + sigma2_e
    return pd.Series(
        {
            "R2_marginal": sigma2_f / total,
            "R2_conditional": (sigma2_f + sigma2_r) / total,
            "var_fixed": sigma2_f,
            "var_random": sigma2_r,
            "var_residual": sigma2_e,
        }
    )


def fixed_table(results: Mapping[str, MixedResult], terms: Sequence[str] | None = None):
    """Fixed effects of several models side by side in one tidy, rounded table.

    ``p`` stays numeric; :func:`helpers.present.format_table` prints it ("< .001").
    """
    frames = []
    for name, result in results.items():
        f = result.fixed.copy()
        if terms is not None:
            f = f.loc[[t for t in terms if t in f.index]]
        f.insert(0, "model", name)
        frames.append(f.reset_index())
    table = pd.concat(frames, ignore_index=True)
    rounding = {"estimate": 3, "se": 3, "ci_low": 3, "ci_high": 3, "z": 2, "t": 2, "df": 1}
    return table.round(rounding)


def varcomp_table(results: Mapping[str, MixedResult]) -> pd.DataFrame:
    """Variance components of several models, rounded (SDs and correlations)."""
    frames = []
    for name, result in results.items():
        v = result.varcomp.copy()
        v.insert(0, "model", name)
        frames.append(v)
    return pd.concat(frames, ignore_index=True).round({"variance_or_cov": 3, "sd_or_corr": 3})


def diagnostics_table(results: Mapping[str, MixedResult]) -> pd.DataFrame:
    """One row per model: fit, convergence checks and how many warnings were raised.

    ``converged`` is the suite's own check of the optimum (gradient of the
    profiled likelihood, agreement of several optimisers), not statsmodels'
    flag; ``singular`` marks a boundary fit as lme4's ``isSingular`` does.
    """
    rows = []
    for name, r in results.items():
        rows.append(
            {
                "model": name,
                "method": "REML" if r.reml else "ML",
                "nobs": r.nobs,
                "dropped (missing)": r.n_dropped_missing,
                "logLik": round(r.loglik, 2),
                "converged": r.converged,
                "singular": r.singular,
                "Hessian PD": r.hessian_positive_definite,
                "optimiser kept": r.optimizer,
                "warnings": len(r.warnings),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def warnings_table(results: Mapping[str, MixedResult]) -> pd.DataFrame:
    """Every warning of every model, one per row (category, optimiser run, message).

    Identical messages of one model are counted once, with their number.
    """
    rows = []
    for name, r in results.items():
        for text in r.warnings:
            head, _, message = text.partition("]: ")
            category, _, run = head.partition(" [")
            rows.append((name, category, run, message))
    table = pd.DataFrame(rows, columns=["model", "category", "run", "message"])
    if table.empty:
        return table
    # numbers in messages (gradients, log-likelihoods) vary in the last digits between
    # machines: keep four significant digits so stored notebook outputs are stable
    table["message"] = table["message"].str.replace(
        r"\d+\.\d{5,}", lambda m: f"{float(m.group()):.4g}", regex=True
    )
    return table


# ---------------------------------------------------------------------------
# Parametric bootstrap
# ---------------------------------------------------------------------------


def _group_covariances(result: MixedResult) -> dict[str, tuple[list[str], np.ndarray]]:
    """Random-effect covariance matrix per grouping factor, from ``result.varcomp``."""
    vc = result.varcomp.loc[result.varcomp["group"] != "Residual"]
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for group, rows in vc.groupby("group", sort=False):
        terms = list(dict.fromkeys(rows.loc[rows["term2"] == "", "term"]))
        cov = np.zeros((len(terms), len(terms)))
        for _, row in rows.iterrows():
            i = terms.index(row["term"])
            j = terms.index(row["term2"]) if row["term2"] else i
            cov[i, j] = cov[j, i] = row["variance_or_cov"]
        out[str(group)] = (terms, cov)
    return out


def simulate_response(result: MixedResult, rng: np.random.Generator) -> np.ndarray:
    """Draw a new response vector from the fitted model (for the parametric bootstrap).

    y* = Xβ̂ + Σ_factors Z b* + ε*, with b* drawn from each factor's estimated
    covariance matrix (independently per level) and ε* ~ N(0, σ̂²).  A fit
    without random terms (least squares) has no factor: y* = Xβ̂ + ε*.
    """
    frame = _model_frame(result)
    design = _fixed_design(result)
    beta = result.fixed["estimate"].reindex(design.columns).to_numpy()
    y = design.to_numpy() @ beta
    for group, (terms, cov) in _group_covariances(result).items():
        if group not in frame.columns:
            raise UnsupportedModelError(
                f"cannot simulate from {result.formula!r}: grouping factor {group!r} is not "
                "a column of the model data (nested ids written g1/g2 are not supported here)"
            )
        codes, levels = pd.factorize(frame[group], sort=True)
        draws = rng.multivariate_normal(np.zeros(len(terms)), cov, size=len(levels))
        z = np.column_stack([_random_term_values(frame, t) for t in terms])
        y = y + np.einsum("ij,ij->i", z, draws[codes])
    vc = result.varcomp
    sigma = float(vc.loc[vc["group"] == "Residual", "sd_or_corr"].iloc[0])
    return y + rng.normal(0.0, sigma, len(y))


#: Values of ``parametric_bootstrap(method=...)``.
BOOTSTRAP_METHODS = ("auto", "engine", "refit")


def parametric_bootstrap(
    result: MixedResult,
    n_boot: int,
    seed: int,
    *,
    terms: Sequence[str] | None = None,
    progress: bool = True,
    method: str = "auto",
    **fit_kwargs,
) -> pd.DataFrame:
    """Refit the model to ``n_boot`` responses simulated from it.

    The one entry point for a parametric bootstrap of a :func:`helpers.models.fit_mixed`
    result.  Two paths:

    * ``"engine"``: a fit of the vectorised engine (``result.engine == "engine"``) is
      refitted on its own design, each replicate warm-started from the fitted ``theta``
      with one optimiser start (:func:`helpers.engine.warm_started_bootstrap`; responses
      drawn by :meth:`helpers.engine.NestedLMM.simulate`).  About a hundred times faster
      than refitting from the formula.
    * ``"refit"``: any fit (statsmodels path, least squares, engine) is refitted from its
      formula with :func:`fit_quietly` for each response drawn by
      :func:`simulate_response`; ``fit_kwargs`` go to ``fit_mixed``.

    ``"auto"`` (the default) takes the engine path for engine fits when no ``fit_kwargs``
    are given, else the refit path.  The two paths draw their responses differently, so
    the same ``seed`` gives different (equally valid) replicates on each.

    Returns one row per replicate with the fixed-effect estimates of ``terms`` (all terms
    by default), the replicate's ``converged`` flag, its number of warnings and the error
    of a failed refit (``""`` if none).  Seeded: the same ``seed`` gives the same
    replicates.  A progress bar (tqdm) is written to stdout when ``progress`` is true.
    """
    if method not in BOOTSTRAP_METHODS:
        raise SettingsError(f"method must be one of {BOOTSTRAP_METHODS}; got {method!r}.")
    warm = result.engine == "engine" and result._engine_model is not None
    if method == "engine" and not warm:
        raise SettingsError(
            f"method='engine' needs a fit of the vectorised engine; this fit was made by "
            f"{result.engine!r}. Use method='refit' (or 'auto')."
        )
    if method == "engine" and fit_kwargs:
        raise SettingsError(
            f"fit_mixed arguments {sorted(fit_kwargs)} apply to method='refit' only.",
            fix="Use method='refit' to pass them.",
        )
    if method == "engine" or (method == "auto" and warm and not fit_kwargs):
        return _engine_bootstrap(result, n_boot, seed, terms, progress)
    return _refit_bootstrap(result, n_boot, seed, terms, progress, fit_kwargs)


def _engine_bootstrap(
    result: MixedResult,
    n_boot: int,
    seed: int,
    terms: Sequence[str] | None,
    progress: bool,
) -> pd.DataFrame:
    """:func:`parametric_bootstrap` on the engine's warm-started path."""
    from helpers.engine import EngineWarning, warm_started_bootstrap

    with warnings.catch_warnings():
        # its one summary warning is the table's converged column, counted by bootstrap_ci
        warnings.simplefilter("ignore", EngineWarning)
        boot = warm_started_bootstrap(
            result._engine_model, result.engine_result, n_boot, seed=seed, progress=progress
        )
    columns = list(result.fixed.index) if terms is None else list(terms)
    table = boot.estimates[columns].copy()
    table["converged"] = boot.converged
    table["warnings"] = boot.n_warnings
    table["error"] = ""
    return table


def _refit_bootstrap(
    result: MixedResult,
    n_boot: int,
    seed: int,
    terms: Sequence[str] | None,
    progress: bool,
    fit_kwargs: dict[str, Any],
) -> pd.DataFrame:
    """:func:`parametric_bootstrap` by refitting the formula to each simulated response."""
    import sys

    from tqdm import tqdm

    frame = _model_frame(result).copy()
    response = result.response
    rng = np.random.default_rng(seed)
    rows = []
    for _ in tqdm(range(n_boot), disable=not progress, file=sys.stdout, desc="bootstrap"):
        frame[response] = simulate_response(result, rng)
        try:
            refit = fit_quietly(frame, result.formula, result.reml, **fit_kwargs)
        except (RuntimeError, np.linalg.LinAlgError) as err:
            # a failed refit is kept as a failed replicate, never dropped silently
            rows.append({"converged": False, "warnings": 0, "error": str(err)[:200]})
            continue
        estimates = refit.fixed["estimate"]
        if terms is not None:
            estimates = estimates.loc[list(terms)]
        row = estimates.to_dict()
        row["converged"] = refit.converged
        row["warnings"] = len(refit.warnings)
        row["error"] = ""
        rows.append(row)
    return pd.DataFrame(rows)


def bootstrap_ci(
    replicates: pd.DataFrame, result: MixedResult, level: float = 0.95
) -> pd.DataFrame:
    """Percentile intervals from :func:`parametric_bootstrap`, beside the Wald intervals.

    Only converged replicates enter the interval; the number of failed or
    unconverged replicates is reported in ``failed_or_unconverged``.
    """
    alpha = (1 - level) / 2
    terms = [c for c in replicates.columns if c in result.fixed.index]
    rows = []
    usable = replicates["converged"].astype(bool)
    for term in terms:
        values = replicates.loc[usable, term].to_numpy(dtype=float)
        rows.append(
            {
                "term": term,
                "estimate": result.fixed.loc[term, "estimate"],
                "boot_se": float(np.std(values, ddof=1)),
                "boot_ci_low": float(np.quantile(values, alpha)),
                "boot_ci_high": float(np.quantile(values, 1 - alpha)),
                "wald_se": result.fixed.loc[term, "se"],
                "wald_ci_low": result.fixed.loc[term, "ci_low"],
                "wald_ci_high": result.fixed.loc[term, "ci_high"],
                "replicates": len(values),
                "failed_or_unconverged": int((~usable).sum()),
            }
        )
    return pd.DataFrame(rows).set_index("term")


def save_table(table: pd.DataFrame, name: str, folder, decimals: int = 6) -> None:
    """Write a result table as CSV with fixed rounding, so reruns are byte-identical."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rounded = table.copy()
    numeric = rounded.select_dtypes("number").columns
    rounded[numeric] = rounded[numeric].round(decimals)
    with atomic_path(folder / f"{name}.csv") as tmp:  # renamed into place when complete
        rounded.to_csv(tmp, lineterminator="\n")


def compare_with_truth(result: MixedResult, truth: Mapping[str, float]) -> pd.DataFrame:
    """Estimates beside known true values (simulated data only).

    Parameters
    ----------
    truth
        Term → true value, e.g. ``{"alliance_within_lag": -0.15}``.
    """
    rows = []
    for term, value in truth.items():
        est = result.fixed.loc[term]
        rows.append(
            {
                "term": term,
                "truth": value,
                "estimate": est["estimate"],
                "ci_low": est["ci_low"],
                "ci_high": est["ci_high"],
                "CI covers truth": bool(est["ci_low"] <= value <= est["ci_high"]),
            }
        )
    return pd.DataFrame(rows).set_index("term").round(3)


_TREATMENT_TERM = re.compile(r'Treatment\("(?P<reference>[^"]+)"\)\)\[T\.(?P<level>[^\]]+)\]')


def treatment_level(term: str) -> tuple[str, str] | None:
    """``(reference, level)`` of a ``C(x, Treatment("REF"))[T.level]`` term, else ``None``.

    >>> treatment_level('C(modality, Treatment("CBT"))[T.humanistic]')
    ('CBT', 'humanistic')
    """
    match = _TREATMENT_TERM.search(term)
    return None if match is None else (match["reference"], match["level"])


def modality_truth(truth_effects: Mapping[str, Any], result: MixedResult) -> dict[str, float]:
    """True values of a modality-interaction model's modality terms (simulated data only).

    Parameters
    ----------
    truth_effects
        ``truth.json``'s ``effects``: ``modality_effect`` (the slope differences, 0 in the
        suite's simulations) and, when the study was simulated with one,
        ``modality_outcome_effects`` (modality -> shift of the outcome).
    result
        A fit whose modality terms are written ``C(modality, Treatment("REF"))[T.level]``.

    Returns
    -------
    dict of str to float
        Term -> truth: a main-effect term gets the level's shift minus the reference's;
        an interaction term (``…:…``) gets ``modality_effect``.
    """
    shifts = truth_effects.get("modality_outcome_effects") or {}
    slope_difference = float(truth_effects.get("modality_effect", 0.0))
    out: dict[str, float] = {}
    for term in result.fixed.index:
        levels = treatment_level(term)
        if levels is None:
            continue
        if ":" in term:
            out[term] = slope_difference
        else:
            reference, level = levels
            out[term] = float(shifts.get(level, 0.0)) - float(shifts.get(reference, 0.0))
    return out


def ddf_table(result: MixedResult, alpha: float = 0.05) -> pd.DataFrame:
    """Each fixed effect's test three ways: Wald z, Satterthwaite t and Kenward–Roger t.

    The estimates are the fit's; only the reference distribution (and, for
    Kenward–Roger, the adjusted standard error) differ.  Kenward–Roger needs a
    REML fit; for an ML fit its columns are missing.  A least-squares fit (no
    random term) has ``n − p`` df under both.

    Returns
    -------
    pandas.DataFrame
        Indexed by term: ``estimate, se, p (z), df (Satterthwaite), p (Satterthwaite),
        se (KR), df (KR), p (KR), same conclusion`` (whether all three p-values
        fall on the same side of ``alpha``).
    """
    wald = with_ddf(result, "asymptotic").fixed
    satterthwaite = with_ddf(result, "satterthwaite").fixed
    table = pd.DataFrame(
        {
            "estimate": wald["estimate"],
            "se": wald["se"],
            "p (z)": wald["p"],
            "df (Satterthwaite)": satterthwaite["df"],
            "p (Satterthwaite)": satterthwaite["p"],
        }
    )
    if result.reml:
        kr = with_ddf(result, "kenward-roger").fixed
        table["se (KR)"], table["df (KR)"], table["p (KR)"] = kr["se"], kr["df"], kr["p"]
    p_columns = [c for c in table.columns if c.startswith("p (")]
    below = table[p_columns].lt(alpha)
    table["same conclusion"] = below.all(axis=1) | (~below).all(axis=1)
    return table
