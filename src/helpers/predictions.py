"""Tables derived from a fitted mixed model, for figures and reports (notebooks 03 and 06).

- :func:`random_effects_table` — conditional modes (BLUPs) of the random effects of one
  grouping factor, with conditional SDs and 95% intervals (lme4's ``ranef(condVar = TRUE)``);
- :func:`predicted_trajectories` — population-level predicted outcome over sessions at low,
  average and high between-patient alliance, with confidence bands;
- :func:`residuals_table` — conditional fitted values and residuals, one row per model row.

Everything is computed at the estimates :func:`helpers.models.fit_mixed` reports (its final
variance parameters and fixed effects ``MixedResult.fixed``), from the generic fields
``MixedResult.model_frame``, ``design`` and ``response_values``, on both fitting paths: on
the statsmodels path the variance parameters are ``MixedResult.theta`` (not those of
``MixedResult.statsmodels_result``, which are the optimiser run's *before* the final Newton
refinement); on the engine path they are the engine's covariance matrices
(``MixedResult.engine_result.covariance``), and the random-effects designs are those the
engine fitted.

Notation and formulas
---------------------
For one group of the outer grouping factor (all rows of one therapist, say) with response
``y``, fixed-effects design ``X`` and random-effects design ``Z`` (the therapist's own
effects and, for a nested model, those of each of their patients), the random effects
``b ~ N(0, G)`` with ``G = sigma^2 Psi`` and ``y | b ~ N(X beta + Z b, sigma^2 I)``, so
``V = Var(y) = Z G Z' + sigma^2 I``.  With any factor ``Lambda Lambda' = Psi`` (lme4's
relative covariance factor) and ``A = Lambda' Z' Z Lambda + I``:

* conditional mode  ``E[b | y] = G Z' V^-1 (y - X beta) = Lambda A^-1 Lambda' Z' (y - X beta)``;
* conditional variance  ``Var(b | y) = G - G Z' V^-1 Z G = sigma^2 Lambda A^-1 Lambda'``;
* ``X' V^-1 X = (X'X - X' Z Lambda A^-1 Lambda' Z' X) / sigma^2``.

The right-hand forms (the Woodbury identity) need only ``q x q`` matrices, ``q`` being the
number of random effects in the group, and stay valid when a variance is estimated at zero.
Because ``V`` is block-diagonal over the outer groups, a nested model is handled exactly:
a patient's mode borrows from the therapist's other patients through the shared therapist
effect.

Which uncertainty the intervals describe
----------------------------------------
By default the conditional SDs follow **lme4's condVar convention**: the variance of ``b``
given the data at the estimated variance components *and fixed effects*, ignoring the
uncertainty in ``beta_hat``.  ``include_fixed_uncertainty=True`` adds it (Henderson's
prediction-error variance ``Var(b_hat - b)``), ``C Var(beta_hat) C'`` with
``C = G Z' V^-1 X``, which is never smaller.  Neither accounts for the uncertainty of the
variance components themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats

from helpers.errors import DataInputError, ModelDataError, ModelSpecificationError, SettingsError
from helpers.models import MixedResult, names_in_code

__all__ = [
    "ALLIANCE_LEVEL_LABELS",
    "predicted_trajectories",
    "random_effects_table",
    "residuals_table",
]

#: Labels of the default alliance levels of :func:`predicted_trajectories` (mean − SD, mean,
#: mean + SD of the between-patient alliance); the plot functions recognise them.
ALLIANCE_LEVEL_LABELS: tuple[str, str, str] = ("low (−1 SD)", "average", "high (+1 SD)")


# --------------------------------------------------------------------------------------
# The model, group by group, at the reported estimates
# --------------------------------------------------------------------------------------


@dataclass
class _Group:
    """One group of the outer grouping factor, with its designs and relative factor."""

    rows: np.ndarray  # positions of its rows among the model's rows
    y: np.ndarray
    x: np.ndarray
    z_lambda: np.ndarray  # Z @ Lambda
    lam: np.ndarray  # relative covariance factor Lambda (q x q)
    effects: list[tuple[str, Any, str]]  # (grouping factor, level, term) per column of Z


def _check_result(result: Any, func: str) -> MixedResult:
    if not isinstance(result, MixedResult):
        raise TypeError(
            f"{func} needs a MixedResult from helpers.models.fit_mixed (or "
            f"helpers.effects.fit_quietly), got {type(result).__name__}."
        )
    return result


def _grouping_factors(result: MixedResult) -> list[str]:
    """The model's grouping factors, outer first (none for a fit without random terms)."""
    return [g for g in dict.fromkeys(result.varcomp["group"]) if g != "Residual"]


def _residual_variance(result: MixedResult) -> float:
    vc = result.varcomp
    return float(vc.loc[vc["group"] == "Residual", "variance_or_cov"].iloc[0])


def _factor(matrix: np.ndarray) -> np.ndarray:
    """A matrix ``L`` with ``L L' = matrix`` for a positive semi-definite ``matrix``."""
    if matrix.size == 0:
        return np.zeros_like(matrix, dtype=float)
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def _level_labels(result: MixedResult, group: str) -> dict[Any, Any]:
    """Display label of each level of ``group``: ``"p:t"`` strings for a nested key."""
    frame = result.model_frame
    if ":" not in group:
        return {}
    parts = group.split(":")
    first = frame.drop_duplicates(group)
    return {
        code: ":".join(str(v) for v in values)
        for code, values in zip(
            first[group], first[list(parts)].itertuples(index=False), strict=True
        )
    }


def _inner_levels(result: MixedResult, name: str, effect: str, columns: list[str]) -> list[Any]:
    """Levels of the inner factor named by the patsy columns of variance component ``name``."""
    spec = result.spec
    frame = result.model_frame
    factor = spec.vc_formula[name].removeprefix("0 + ")
    suffix = "" if effect == "Intercept" else f":{effect}"
    if suffix:
        factor = factor.removesuffix(suffix)
    known = {str(v): v for v in pd.unique(frame[spec.inner])}
    levels = []
    for column in columns:
        head, tail = f"{factor}[", f"]{suffix}"
        text = column[len(head) : len(column) - len(tail)]
        if not (column.startswith(head) and column.endswith(tail)) or text not in known:
            raise RuntimeError(
                f"Cannot read the level of {spec.inner!r} from statsmodels' column {column!r} "
                f"(variance component {name!r}); please report this with the formula "
                f"{result.formula!r}."
            )
        levels.append(known[text])
    return levels


def _engine_groups(result: MixedResult) -> list[_Group]:
    """Per outer group of an engine fit: response, designs and the relative factor.

    The relative covariance of each factor is the engine's covariance matrix over
    ``sigma^2``; the random-effect designs are the columns the engine fitted.
    """
    fit = result.engine_result
    frame = result.model_frame
    factors = _grouping_factors(result)
    outer, inner = factors[0], (factors[1] if len(factors) > 1 else None)
    sigma2 = float(fit.sigma2)
    lams = {g: _factor(fit.covariance[g].to_numpy(dtype=float) / sigma2) for g in factors}
    terms = {g: [str(t) for t in fit.covariance[g].columns] for g in factors}
    z_all = {g: result._random_design[g].to_numpy(dtype=float) for g in factors}
    x_all = result.design.to_numpy(dtype=float)
    y_all = np.asarray(result.response_values, dtype=float)
    groups = []
    for label, rows in frame.groupby(outer, sort=True).indices.items():
        rows = np.asarray(rows)
        blocks = [z_all[outer][rows] @ lams[outer]]
        lam_blocks = [lams[outer]]
        effects: list[tuple[str, Any, str]] = [(outer, label, t) for t in terms[outer]]
        if inner is not None:
            codes, levels = pd.factorize(frame[inner].to_numpy()[rows], sort=True)
            z_inner = z_all[inner][rows]
            for j, level in enumerate(levels):
                zj = np.where((codes == j)[:, None], z_inner, 0.0)
                blocks.append(zj @ lams[inner])
                lam_blocks.append(lams[inner])
                effects += [(inner, level, t) for t in terms[inner]]
        size = sum(b.shape[0] for b in lam_blocks)
        lam = np.zeros((size, size))
        start = 0
        for block in lam_blocks:
            stop = start + block.shape[0]
            lam[start:stop, start:stop] = block
            start = stop
        groups.append(
            _Group(
                rows=rows,
                y=y_all[rows],
                x=x_all[rows],
                z_lambda=np.hstack(blocks),
                lam=lam,
                effects=effects,
            )
        )
    return groups


def _groups(result: MixedResult) -> list[_Group]:
    """Per outer group: response, designs and the relative factor at ``result.theta``."""
    if result.engine == "engine":
        return _engine_groups(result)
    from statsmodels.regression.mixed_linear_model import MixedLMParams  # statsmodels fits only

    model = result.statsmodels_result.model
    spec = result.spec
    params = MixedLMParams.from_packed(
        np.asarray(result.theta, dtype=float), model.k_fe, model.k_re, True, has_fe=False
    )
    psi_re = np.atleast_2d(np.asarray(params.cov_re, dtype=float))
    vcomp = np.asarray(params.vcomp, dtype=float)
    lam_re = _factor(psi_re) if model.k_re else np.zeros((0, 0))
    groups = []
    for i, label in enumerate(model.group_labels):
        blocks = []
        scales = []
        effects: list[tuple[str, Any, str]] = []
        if model.k_re:
            blocks.append(np.asarray(model.exog_re_li[i], dtype=float))
            effects += [(spec.outer, label, e) for e in spec.re_effects]
        for j, name in enumerate(model.exog_vc.names):
            mat = model.exog_vc.mats[j][i]
            mat = np.asarray(mat.toarray() if hasattr(mat, "toarray") else mat, dtype=float)
            group, effect = spec.vc_effects[name]
            if group == spec.outer:
                effects.append((group, label, effect))
            else:
                levels = _inner_levels(result, name, effect, list(model.exog_vc.colnames[j][i]))
                effects += [(group, level, effect) for level in levels]
            blocks.append(mat)
            scales.append(np.full(mat.shape[1], np.sqrt(max(vcomp[j], 0.0))))
        z = np.hstack(blocks) if blocks else np.zeros((len(model.endog_li[i]), 0))
        q_re = lam_re.shape[0]
        lam = np.zeros((z.shape[1], z.shape[1]))
        lam[:q_re, :q_re] = lam_re
        if scales:
            vc_diag = np.concatenate(scales)
            lam[q_re:, q_re:] = np.diag(vc_diag)
        groups.append(
            _Group(
                rows=np.asarray(model.row_indices[label]),
                y=np.asarray(model.endog_li[i], dtype=float),
                x=np.asarray(model.exog_li[i], dtype=float),
                z_lambda=z @ lam,
                lam=lam,
                effects=effects,
            )
        )
    return groups


def _beta(result: MixedResult) -> np.ndarray:
    names = list(result.design.columns)
    return result.fixed["estimate"].reindex(names).to_numpy(dtype=float)


def _covariance_from_groups(groups: list[_Group], sigma2: float, k_fe: int) -> np.ndarray:
    information = np.zeros((k_fe, k_fe))
    for g in groups:
        a = g.z_lambda.T @ g.z_lambda + np.eye(g.lam.shape[0])
        zlx = g.z_lambda.T @ g.x
        information += g.x.T @ g.x - zlx.T @ np.linalg.solve(a, zlx)
    return sigma2 * np.linalg.inv(information)


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def random_effects_table(
    result: MixedResult,
    group: str,
    *,
    level: float = 0.95,
    include_fixed_uncertainty: bool = False,
) -> pd.DataFrame:
    """Conditional modes (BLUPs) of one grouping factor's random effects, with intervals.

    Parameters
    ----------
    result : MixedResult
        A fit from :func:`helpers.models.fit_mixed`.
    group : str
        The grouping factor as named in ``result.varcomp["group"]``, e.g.
        ``"therapist_id"``, ``"patient_id"``, or ``"patient_id:therapist_id"`` for a
        nested term written ``(1 | therapist_id/patient_id)``.
    level : float, default 0.95
        Coverage of the interval ``estimate ± z * se``.
    include_fixed_uncertainty : bool, default False
        ``False``: ``se`` is the conditional SD as lme4's ``ranef(condVar = TRUE)``
        computes it (fixed effects treated as known).  ``True``: the prediction-error SD,
        which adds the uncertainty of the fixed-effect estimates (see the module notes).

    Returns
    -------
    pandas.DataFrame
        One row per level and random effect, sorted by level then term: columns
        ``<group>`` (the level; ``"patient:therapist"`` text for a nested key, as lme4
        prints it), ``term`` (``"Intercept"`` or the slope's name), ``estimate`` (the
        conditional mode at the reported estimates), ``se``, ``ci_low``, ``ci_high``.

    Raises
    ------
    ModelDataError
        If the model has no random effects (a formula without random terms, fitted by least
        squares), or ``group`` is not one of its grouping factors, e.g. ``"therapist_id"``
        for a two-level study's model with ``patient_id`` only (the message names the
        factors the model has).  A subclass of ``ValueError``.
    SettingsError
        If ``level`` is not in (0, 1) (a ``ValueError``).

    Notes
    -----
    The interval describes where the level's effect lies given the data and the estimated
    model; it is not a confidence interval of a fixed parameter, and the variance
    components are treated as known.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from helpers.models import fit_mixed
    >>> rng = np.random.default_rng(1)
    >>> therapist = np.repeat(np.arange(8), 10)
    >>> y = rng.normal(size=8)[therapist] + rng.normal(size=80)
    >>> data = pd.DataFrame({"y": y, "therapist_id": [f"T{k}" for k in therapist]})
    >>> fit = fit_mixed(data, "y ~ 1 + (1 | therapist_id)")
    >>> table = random_effects_table(fit, "therapist_id")
    >>> list(table.columns)
    ['therapist_id', 'term', 'estimate', 'se', 'ci_low', 'ci_high']
    >>> len(table)
    8
    """
    func = "random_effects_table"
    result = _check_result(result, func)
    factors = _grouping_factors(result)
    if not factors:
        raise ModelDataError(
            f"{func}: the model {result.formula!r} has no random effects (no random terms: "
            "it was fitted by least squares), so there are no conditional modes to tabulate. "
            "Its fitted values and residuals are in residuals_table."
        )
    if group not in factors:
        raise ModelDataError(
            f"{func}: {group!r} is not a grouping factor of the model {result.formula!r}; "
            f"its grouping factors are {factors}. (A study without {group!r} fits no random "
            "effect for it: ask for one of those factors instead.)"
        )
    z_crit = _critical_value(level, func)
    sigma2 = _residual_variance(result)
    groups = _groups(result)
    beta = _beta(result)
    cov_beta = (
        _covariance_from_groups(groups, sigma2, len(beta)) if include_fixed_uncertainty else None
    )
    rows = []
    for g in groups:
        a = g.z_lambda.T @ g.z_lambda + np.eye(g.lam.shape[0])
        lam_ainv = np.linalg.solve(a, g.lam.T).T  # Lambda A^-1 (A is symmetric)
        modes = lam_ainv @ (g.z_lambda.T @ (g.y - g.x @ beta))
        variances = sigma2 * np.einsum("ij,ij->i", lam_ainv, g.lam)
        if cov_beta is not None:
            c = lam_ainv @ (g.z_lambda.T @ g.x)  # G Z' V^-1 X
            variances = variances + np.einsum("ij,jk,ik->i", c, cov_beta, c)
        for (factor, lvl, term), mode, var in zip(g.effects, modes, variances, strict=True):
            if factor == group:
                rows.append((lvl, term, float(mode), float(np.sqrt(max(var, 0.0)))))
    labels = _level_labels(result, group)
    table = pd.DataFrame(rows, columns=[group, "term", "estimate", "se"])
    if labels:
        table[group] = table[group].map(labels)
    term_order = {t: i for i, t in enumerate(dict.fromkeys(table["term"]))}
    table = table.sort_values(
        [group, "term"],
        key=lambda s: s.map(term_order) if s.name == "term" else s,
        kind="mergesort",
        ignore_index=True,
    )
    table["ci_low"] = table["estimate"] - z_crit * table["se"]
    table["ci_high"] = table["estimate"] + z_crit * table["se"]
    return table


def residuals_table(result: MixedResult) -> pd.DataFrame:
    """Conditional fitted values and residuals, one row per row the model used.

    ``fitted = X beta_hat + Z b_hat`` (fixed effects plus the conditional modes of every
    grouping factor) and ``residual = y - fitted``, at the reported estimates.  For a fit
    without random terms (least squares) ``fitted`` is the fixed part ``X beta_hat``.

    Parameters
    ----------
    result : MixedResult
        A fit from :func:`helpers.models.fit_mixed`.

    Returns
    -------
    pandas.DataFrame
        Columns ``fitted, residual``, no identifiers; the index holds the row labels of the
        data passed to the fit (rows with a missing model variable were dropped), in the
        same order.
    """
    result = _check_result(result, "residuals_table")
    beta = _beta(result)
    y = np.asarray(result.response_values, dtype=float)
    fitted = result.design.to_numpy(dtype=float) @ beta  # fixed part; modes added below
    groups = _groups(result) if _grouping_factors(result) else []  # none: least squares
    for g in groups:
        a = g.z_lambda.T @ g.z_lambda + np.eye(g.lam.shape[0])
        u = np.linalg.solve(a, g.z_lambda.T @ (g.y - g.x @ beta))
        fitted[g.rows] = g.x @ beta + g.z_lambda @ u
    return pd.DataFrame(
        {"fitted": fitted, "residual": y - fitted}, index=result.model_frame.index.copy()
    )


def _critical_value(level: float, func: str) -> float:
    if not isinstance(level, int | float) or not 0 < level < 1:
        raise SettingsError(f"{func}: level must be a number between 0 and 1, got {level!r}.")
    return float(stats.norm.ppf(0.5 + level / 2))


def _variables_in_design(design_info: patsy.DesignInfo, columns: Iterable[str]) -> list[str]:
    """Data columns used by the factors of a patsy design (``x``, ``I(x**2)``, ``Q("a b")``)."""
    names: set[str] = set()
    for factor in design_info.factor_infos:
        names |= names_in_code(factor.code)
    return [c for c in columns if c in names]


def _default_alliance_levels(data: pd.DataFrame, alliance: str, unit: str) -> dict[str, float]:
    func = "predicted_trajectories"
    for column in (alliance, unit):
        if column not in data.columns:
            raise DataInputError(
                f"{func}: data has no column {column!r}, needed for the default alliance "
                f"levels (mean ± 1 SD over {unit} units). Pass alliance_levels={{label: value}} "
                "or the right unit=/alliance= names."
            )
    values = pd.to_numeric(data[alliance], errors="coerce")
    frame = pd.DataFrame({"unit": data[unit].to_numpy(), "value": values.to_numpy()})
    frame = frame.loc[frame["value"].notna() & frame["unit"].notna()]
    spread = frame.groupby("unit", sort=True)["value"].agg(["min", "max"])
    varying = spread.index[(spread["max"] - spread["min"]).abs() > 1e-9]
    if len(varying):
        raise DataInputError(
            f"{func}: {alliance!r} varies within {unit} (e.g. {list(varying[:3])}), so it is "
            "not a between-patient value and the default levels (mean ± 1 SD over patients) "
            "are undefined. Pass alliance_levels={label: value} explicitly."
        )
    per_unit = spread["min"]
    if len(per_unit) < 2:
        raise DataInputError(
            f"{func}: {alliance!r} has values for {len(per_unit)} {unit} unit(s); the SD "
            "needs at least 2. Pass alliance_levels={label: value} explicitly."
        )
    mean, sd = float(per_unit.mean()), float(per_unit.std(ddof=1))
    low, average, high = ALLIANCE_LEVEL_LABELS
    return {low: mean - sd, average: mean, high: mean + sd}


def predicted_trajectories(
    result: MixedResult,
    data: pd.DataFrame,
    *,
    alliance: str = "alliance_between_c",
    alliance_levels: Mapping[str, float] | None = None,
    sessions: Iterable[int] | None = None,
    session: str = "session",
    session_term: str = "session_c",
    unit: str = "patient_id",
    at: Mapping[str, float] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Population-level predicted outcome over sessions at several alliance levels.

    The prediction is the fixed part of the model, ``x' beta_hat``, for a patient with the
    given between-patient alliance at each session (random effects at their mean, 0); its
    confidence band is ``x' beta_hat ± z sqrt(x' Var(beta_hat) x)`` with ``Var(beta_hat)``
    from ``result.cov_fixed``.  It describes the *average* trajectory, not the
    spread of individual patients around it.

    Parameters
    ----------
    result : MixedResult
        A fit from :func:`helpers.models.fit_mixed` whose fixed part uses ``alliance`` and
        ``session_term`` (e.g. the main model of notebook 03).
    data : pandas.DataFrame
        The data the model was fitted to (one row per patient and session): used for the
        default ``alliance_levels``, the default ``sessions`` and how ``session_term``
        relates to ``session``.
    alliance : str, default "alliance_between_c"
        The between-patient alliance variable of the model.
    alliance_levels : mapping of str to float, optional
        Label → value of ``alliance`` (on its own scale), in drawing order.  Default: the
        mean over patients (``unit``) and the mean ± 1 SD of the patient values, labelled
        :data:`ALLIANCE_LEVEL_LABELS` ("low (−1 SD)", "average", "high (+1 SD)").
    sessions : iterable of int, optional
        Session numbers to predict at.  Default: every whole session from the first to the
        last in ``data``.
    session, session_term : str
        The session number column of ``data`` and the time variable of the model; the
        model value is ``session - offset``, with the offset read from ``data`` (it must be
        the same on every row: ``session_c = session - 1`` gives 1).
    unit : str, default "patient_id"
        The patient column (for the default levels: one value per patient).
    at : mapping of str to float, optional
        Values for the model's other variables.  Those not given are held at 0, which for
        the suite's centred predictors (within-patient deviations, ``_c`` variables) is
        the usual session / average patient; a variable whose observed range excludes 0
        must be given here.
    level : float, default 0.95
        Coverage of the band.

    Returns
    -------
    pandas.DataFrame
        One row per level and session: ``session, alliance_level, alliance_value,
        predicted, se, ci_low, ci_high``.

    Raises
    ------
    ValueError
        If a named variable is not in the model or the data, ``session`` and
        ``session_term`` are not a constant shift apart, or a variable to be held at 0
        never takes a value near 0 (give it in ``at``).
    """
    func = "predicted_trajectories"
    result = _check_result(result, func)
    z_crit = _critical_value(level, func)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{func}: data must be a pandas DataFrame, got {type(data).__name__}.")
    design_info = result.design_info
    frame = result.model_frame
    variables = _variables_in_design(design_info, frame.columns)
    for name, role in ((alliance, "alliance"), (session_term, "session_term")):
        if name not in variables:
            raise ModelSpecificationError(
                f"{func}: {role}={name!r} is not a variable of the model's fixed part "
                f"({result.formula!r}); its variables are {variables}.",
                fix="Pass the names as written in the formula.",
            )
    at = dict(at or {})
    unknown = [k for k in at if k not in variables]
    if unknown:
        raise ModelSpecificationError(
            f"{func}: at= names {unknown}, which the model's fixed part does not use; its "
            f"variables are {variables}.",
            fix="Drop those names from at=.",
        )
    for column in {session, session_term}:
        if column not in data.columns:
            raise DataInputError(
                f"{func}: data has no column {column!r} (columns: {list(data)}).",
                fix="Pass the data the model was fitted on.",
            )
    session_values = pd.to_numeric(data[session], errors="coerce")
    offsets = (session_values - pd.to_numeric(data[session_term], errors="coerce")).dropna()
    if offsets.empty or (offsets.max() - offsets.min()) > 1e-9:
        raise DataInputError(
            f"{func}: {session_term!r} is not {session!r} minus one constant in data (the "
            f"differences range from {offsets.min()} to {offsets.max()}); pass the session "
            "column the model's time variable was made from."
        )
    offset = float(offsets.iloc[0])
    if sessions is None:
        observed = session_values.dropna()
        sessions = range(int(np.floor(observed.min())), int(np.ceil(observed.max())) + 1)
    sessions = [int(s) for s in sessions]
    if not sessions:
        raise SettingsError(f"{func}: sessions is empty.", fix="Pass at least one session number.")
    if alliance_levels is None:
        alliance_levels = _default_alliance_levels(data, alliance, unit)
    if not alliance_levels:
        raise SettingsError(f"{func}: alliance_levels is empty; give at least one label: value.")
    held = {}
    for name in variables:
        if name in (alliance, session_term):
            continue
        if name in at:
            held[name] = at[name]
            continue
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.isna().any() or not values.min() <= 0 <= values.max():
            raise SettingsError(
                f"{func}: {name!r} would be held at 0, but its values in the model data "
                f"{'are not numeric' if values.isna().any() else 'never include 0'}; give "
                f"the value to predict at with at={{{name!r}: ...}}."
            )
        held[name] = 0.0
    rows = []
    for value in alliance_levels.values():
        for s in sessions:
            rows.append({**held, alliance: float(value), session_term: s - offset})
    newdata = pd.DataFrame(rows)
    (design,) = patsy.build_design_matrices([design_info], newdata, return_type="dataframe")
    names = list(result.fixed.index)
    x = design[names].to_numpy(dtype=float)
    cov = result.cov_fixed.loc[names, names].to_numpy()
    predicted = x @ _beta(result)
    se = np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
    return pd.DataFrame(
        {
            "session": np.tile(sessions, len(alliance_levels)),
            "alliance_level": np.repeat(list(alliance_levels), len(sessions)),
            "alliance_value": np.repeat(
                np.asarray(list(alliance_levels.values()), dtype=float), len(sessions)
            ),
            "predicted": predicted,
            "se": se,
            "ci_low": predicted - z_crit * se,
            "ci_high": predicted + z_crit * se,
        }
    )
