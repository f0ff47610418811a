"""Vectorised REML/ML engine for nested Gaussian linear mixed models.

Model
-----
``y = X beta + Z_t b_t + Z_p b_p + e`` with ``e ~ N(0, sigma^2 I)``, patients nested in
therapists (or a single grouping factor), and at each level random intercepts and slopes
with an unstructured (or diagonal) covariance::

    b_p,i ~ N(0, sigma^2 Lambda_p Lambda_p')      one vector per patient
    b_t,j ~ N(0, sigma^2 Lambda_t Lambda_t')      one vector per therapist

``Lambda`` is lower triangular; its elements, level by level and column by column, form
``theta`` exactly as in lme4 (diagonal elements bounded below by 0).

Method
------
lme4's profiled deviance (Bates, Maechler, Bolker & Walker 2015, J Stat Softw 67(1),
sections 3.1-3.6): for a given ``theta`` the penalised least-squares problem in the
spherical random effects ``u`` and ``beta`` is solved through the Cholesky factor of::

    [ Lambda' Z'Z Lambda + I    Lambda' Z'X ]
    [ X'Z Lambda                X'X         ]

and ``beta`` and ``sigma^2`` are profiled out.  For the nested design the random-effects
block is block structured: patient blocks (``q_p x q_p``) are block-diagonal within a
therapist and bordered by that therapist's ``q_t x q_t`` block.  The factorisation
eliminates all patient blocks at once (batched small Cholesky factors and triangular solves
on arrays stacked over patients, loops only over the ``q`` dimensions), adds the Schur
complements into the therapist blocks by segment sums (``numpy.add.reduceat``), eliminates
the therapist blocks the same way and ends with the ``(p+1) x (p+1)`` block of the fixed
effects augmented by the response, whose last pivot is the penalised residual sum of
squares.  Per-group sufficient statistics (``Z_p'Z_p``, ``Z_p'[Z_t X y]`` per patient,
``Z_t'[Z_t X y]`` per therapist, ``[X y]'[X y]``) are computed once, so a deviance
evaluation costs O(number of groups), not O(rows).

The deviance is minimised over ``theta`` (diagonal elements >= 0) by a projected BFGS
with forward-difference gradients, from lme4's start (``Lambda = I``).  The deviance is
even in the last diagonal element of a ``Lambda``, so its gradient there is exactly zero at
the bound; a run that stops with such an element at 0 probes a few points off the bound
and restarts if one is better.  The optimum is then refined by projected Newton steps
(central-difference gradient, finite-difference Hessian) and checked: the scaled gradient
``max |H^-1 g|`` (lme4's ``check.conv.grad`` measure), a second optimiser run from another
start that must reach the same deviance, the Hessian's definiteness, and lme4's
singularity rule (a diagonal element of ``Lambda`` below ``1e-4``).

Precision: the statistics are accumulated in float64 after centring the response and the
non-constant fixed-effect columns (when there is an intercept), so the penalised residual
sum of squares loses about ``eps * y'y / pwrss`` relative precision to cancellation; this
is negligible unless the model fits the data almost exactly (``sigma -> 0``).

Public API
----------
:class:`NestedLMM` (design prepared once, ``fit`` per response, ``simulate``),
:func:`fit_nested_lmm` (arrays), :func:`fit_nested_lmm_frame` (a data frame),
:func:`warm_started_bootstrap`, :class:`EngineResult`, :class:`BootstrapResult`.
A fit of :func:`helpers.models.fit_mixed` is bootstrapped with
:func:`helpers.effects.parametric_bootstrap`, which routes engine fits here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from helpers.errors import EngineInputError, SettingsError
from helpers.pls_kernel import factor_pls

#: lme4's ``isSingular`` tolerance on the diagonal elements of ``Lambda``.
SINGULAR_TOL = 1e-4
#: Largest accepted Newton step ``max |H^-1 g|`` of the profiled deviance over ``theta``
#: (lme4's ``check.conv.grad`` measure and default tolerance).  Both fitting paths of
#: :func:`helpers.models.fit_mixed` use it: the step is the same on the deviance and the
#: log-likelihood scale, and statsmodels' packed parameters are the relative Cholesky
#: factor, i.e. lme4's ``theta`` up to order and sign.  Converged fits of the lme4
#: reference models and the demo study reach 1e-8 here (finite differences) and 1e-14 on
#: the statsmodels path (analytic gradient, Newton-polished): the tolerance only decides
#: fits that stopped early, where lme4's value keeps the verdicts comparable with lme4's.
SCALED_GRADIENT_TOL = 2e-3
#: Two optimiser runs agree when their deviances differ by at most this (absolute) ...
AGREEMENT_DEVIANCE_TOL = 1e-6
#: ... plus this fraction of the deviance (floating-point noise grows with the data).
AGREEMENT_DEVIANCE_RTOL = 1e-11
#: ... and their theta differ by at most this (absolute, or relative when |theta| > 1).
AGREEMENT_THETA_TOL = 1e-3
#: Relative tolerance of the aliasing check on fixed-effect columns (R's ``qr`` default).
ALIAS_TOL = 1e-7

_GRAD_STEP = 1e-6
_FORWARD_STEP = 1e-7
_HESS_STEP = 1e-4
_NEWTON_MAX_STEPS = 10
#: Relative Newton step below which the polish stops (far below lme4's agreement, 1e-7).
_NEGLIGIBLE_STEP = 1e-10
_MAX_RESTARTS = 6
_ESCAPE_STEPS = (1e-3, 1e-2, 0.1, 0.5)
_COVARIANCE_TYPES = ("unstructured", "diagonal")


class EngineWarning(UserWarning):
    """A diagnostic of the engine: singular fit, unconverged or disagreeing optimiser runs."""


# --------------------------------------------------------------------------------------
# Batched small linear algebra, "component-major" layout: a stack of G matrices q x r is
# stored as an array (q, r, G) or (q, G, r) so that every operation is on contiguous
# length-G vectors; Python loops run over the tiny q dimension only.
# --------------------------------------------------------------------------------------


def _batched_forward(low: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``L x = b`` for stacks ``L`` (q, q, G) and ``b`` (q, G, m); returns (q, G, m)."""
    q = low.shape[0]
    out = np.empty_like(rhs)
    for i in range(q):
        row = rhs[i].copy()
        for k in range(i):
            row -= low[i, k][:, None] * out[k]
        out[i] = row / low[i, i][:, None]
    return out


def _batched_backward(low: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``L' x = b`` for stacks ``L`` (q, q, G) and ``b`` (q, G, m); returns (q, G, m)."""
    q = low.shape[0]
    out = np.empty_like(rhs)
    for i in reversed(range(q)):
        row = rhs[i].copy()
        for k in range(i + 1, q):
            row -= low[k, i][:, None] * out[k]
        out[i] = row / low[i, i][:, None]
    return out


# --------------------------------------------------------------------------------------
# Bounded quasi-Newton optimiser
# --------------------------------------------------------------------------------------


def _projected_bfgs(
    fun,
    grad,
    x0: np.ndarray,
    lower: np.ndarray,
    max_iter: int = 2000,
    ftol: float = 1e-13,
    xtol: float = 1e-11,
    inverse_hessian: np.ndarray | None = None,
) -> tuple[np.ndarray, float, str]:
    """Minimise ``fun`` subject to ``x >= lower`` by projected BFGS with an active set.

    A small dense implementation (the problems have a handful of parameters): variables at
    their bound with a gradient pointing outwards are held fixed, the BFGS inverse-Hessian
    approximation drives the others, and a backtracking (Armijo) search runs along the
    projected path.  It avoids scipy's L-BFGS-B, whose calls into a multithreaded BLAS cost
    milliseconds each on a busy machine, i.e. more than a deviance evaluation.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float``.
    grad : callable
        ``grad(x, fun(x)) -> ndarray``.
    x0, lower : numpy.ndarray
        Start and lower bounds (``-inf`` for none).
    max_iter : int
        Iteration limit.
    ftol, xtol : float
        Stop when two successive iterations each lower ``fun`` by less than
        ``ftol * max(1, |fun|)``, or the step is below ``xtol * max(1, |x|)``.
    inverse_hessian : numpy.ndarray, optional
        Initial inverse-Hessian approximation (default: the identity, rescaled after the
        first step); a good one makes the first steps Newton steps.

    Returns
    -------
    tuple of (numpy.ndarray, float, str)
        The solution, its function value and a stopping message.
    """
    x = np.maximum(np.asarray(x0, dtype=float), lower)
    f = fun(x)
    if not np.isfinite(f):
        return x, f, "the start is not a valid point"
    g = grad(x, f)
    k = x.size
    scaled = inverse_hessian is not None
    inv_hess = inverse_hessian.copy() if scaled else np.eye(k)
    small_steps = 0
    for iteration in range(1, max_iter + 1):
        active = (x <= lower) & (g > 0.0)
        free = ~active
        if not free.any():
            return x, f, f"all parameters at their bounds after {iteration - 1} iterations"
        direction = np.zeros(k)
        sub = inv_hess[np.ix_(free, free)]
        direction[free] = -(sub @ g[free])
        slope = float(direction @ g)
        if not slope < 0.0:  # not a descent direction: restart from steepest descent
            inv_hess = np.eye(k)
            scaled = False
            direction = np.where(free, -g, 0.0)
            slope = float(direction @ g)
            if not slope < 0.0:
                return x, f, f"zero projected gradient after {iteration - 1} iterations"
        if not scaled:  # first step (or restart): at most 0.5 in any coordinate
            biggest = np.max(np.abs(direction))
            if biggest > 0.5:
                direction *= 0.5 / biggest
                slope = float(direction @ g)
        step = 1.0
        while True:
            trial = np.maximum(x + step * direction, lower)
            f_trial = fun(trial)
            if np.isfinite(f_trial) and f_trial <= f + 1e-4 * float(g @ (trial - x)):
                break
            step *= 0.5
            if step < 1e-14:
                return x, f, f"line search failed after {iteration - 1} iterations"
        g_trial = grad(trial, f_trial)
        s_vec = trial - x
        y_vec = g_trial - g
        decrease = f - f_trial
        x, f, g = trial, f_trial, g_trial
        sy = float(s_vec @ y_vec)
        if sy > 1e-12 * np.linalg.norm(s_vec) * np.linalg.norm(y_vec):
            if not scaled:
                inv_hess = np.eye(k) * (sy / float(y_vec @ y_vec))
                scaled = True
            rho = 1.0 / sy
            left = np.eye(k) - rho * np.outer(s_vec, y_vec)
            inv_hess = left @ inv_hess @ left.T + rho * np.outer(s_vec, s_vec)
        small = (
            decrease <= ftol * max(1.0, abs(f))
            or np.max(np.abs(s_vec) / np.maximum(1.0, np.abs(x))) <= xtol
        )
        small_steps = small_steps + 1 if small else 0
        if small_steps >= 2:
            return x, f, f"converged (relative reduction) after {iteration} iterations"
    return x, f, f"iteration limit ({max_iter}) reached"


def _seed_inverse_hessian(hessian: np.ndarray | None) -> np.ndarray | None:
    """Inverse of a positive definite Hessian for seeding BFGS; ``None`` if it is not PD."""
    if hessian is None:
        return None
    try:
        low = np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return None
    inverse = np.linalg.solve(low.T, np.linalg.solve(low, np.eye(hessian.shape[0])))
    return inverse if np.all(np.isfinite(inverse)) else None


def _deviance_tol(dev: float) -> float:
    """Deviance difference below which two optima count as the same."""
    return AGREEMENT_DEVIANCE_TOL + AGREEMENT_DEVIANCE_RTOL * abs(dev)


# --------------------------------------------------------------------------------------
# theta <-> Lambda
# --------------------------------------------------------------------------------------


def _theta_pattern(q: int, covariance: str) -> list[tuple[int, int]]:
    """Positions (row, column) of the free elements of Lambda, lme4's column-major order."""
    if covariance == "diagonal":
        return [(i, i) for i in range(q)]
    return [(i, j) for j in range(q) for i in range(j, q)]


def _lambda_from_theta(theta: np.ndarray, q: int, pattern: list[tuple[int, int]]) -> np.ndarray:
    lam = np.zeros((q, q))
    for value, (i, j) in zip(theta, pattern, strict=True):
        lam[i, j] = value
    return lam


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


def summary_text(
    header: Sequence[str],
    fixed: pd.DataFrame,
    varcomp: pd.DataFrame,
    notes: Sequence[str],
    digits: int,
) -> str:
    """The plain-text ``summary()`` of a fit: header lines, fixed effects, variance
    components and warnings, numbers to ``digits`` significant digits.

    Shared by :meth:`EngineResult.summary` and :meth:`helpers.models.MixedResult.summary`.
    """
    lines = [
        *header,
        "",
        fixed.to_string(float_format=lambda v: f"{v:.{digits}g}"),
        "",
        varcomp.to_string(index=False, float_format=lambda v: f"{v:.{digits}g}"),
    ]
    if notes:
        lines += ["", "Warnings:", *[f"  - {w}" for w in notes]]
    return "\n".join(lines)


@dataclass
class EngineResult:
    """Result of a nested linear mixed model fit, on lme4's scales.

    Attributes
    ----------
    reml : bool
        ``True`` for REML, ``False`` for ML.
    nobs : int
        Number of observations.
    ngroups : dict of str to int
        Levels per grouping factor (patient level first).
    fixed : pandas.DataFrame
        Indexed by fixed-effect name: ``estimate, se, ci_low, ci_high, z, p``.  ``se`` is
        lme4's ``sqrt(diag(vcov()))``, ``vcov = sigma^2 (X' V^-1 X)^-1`` at the estimates
        (``V`` relative to ``sigma^2``); Wald 95% interval and two-sided normal p-value.
    fixed_cov : pandas.DataFrame
        The fixed-effect covariance matrix (lme4's ``vcov()``).
    sigma2 : float
        Residual variance (REML: ``pwrss / (n - p)``, ML: ``pwrss / n``, as lme4).
    covariance : dict of str to pandas.DataFrame
        Per grouping factor, the covariance matrix of its random effects
        ``sigma^2 Lambda Lambda'`` (rows and columns named by term).
    varcomp : pandas.DataFrame
        lme4's ``as.data.frame(VarCorr())``: ``group, term, term2, variance_or_cov,
        sd_or_corr`` (``term2`` empty except for covariances, whose ``sd_or_corr`` is the
        correlation); the last row is the residual.
    loglik : float
        REML or ML log-likelihood, equal to lme4's ``logLik()`` (all constants included).
    deviance : float
        ``-2 * loglik``: lme4's ``REMLcrit()`` for REML fits and ``deviance()`` for ML fits.
    aic, bic : float
        ``deviance + 2 k`` and ``deviance + log(nobs) k`` with ``k = n_params`` (lme4
        convention: from the REML criterion for REML fits).
    n_params : int
        Fixed effects + covariance parameters + residual variance (``df`` of ``logLik``).
    theta : numpy.ndarray
        Optimum of the relative covariance factors, lme4's ``getME(fit, "theta")`` order
        (patient level first, each ``Lambda`` column by column).
    theta_names : list of str
        lme4-style names of ``theta`` (``"group.term"`` or ``"group.row.column"``).
    random_effects : dict of str to pandas.DataFrame
        Conditional modes (lme4's ``ranef()``), one frame per grouping factor, indexed by
        group label in sorted order, one column per term.
    random_effects_cov : dict of str to numpy.ndarray
        Conditional covariance of each group's random effects given the data at the
        estimates, array (n_groups, q, q) in the order of ``random_effects``: the diagonal
        blocks of ``sigma^2 Lambda (Lambda' Z'Z Lambda + I)^-1 Lambda'`` (coupling between
        patients and their therapist included).
    therapist_of_patient : pandas.Series or None
        Therapist label of each patient (index: patient label), for nested fits.
    converged : bool
        The optimum passed the checks: scaled gradient below
        :data:`SCALED_GRADIENT_TOL` and (if checked) the second start agrees.
    singular : bool
        Boundary fit: a diagonal element of ``Lambda`` below :data:`SINGULAR_TOL`
        (lme4's ``isSingular``).
    warnings : list of str
        Diagnostics of this fit, each also emitted as :class:`EngineWarning`.
    n_evaluations : int
        Profiled-deviance evaluations used (all runs, derivatives and checks).
    gradient : numpy.ndarray
        Central finite-difference gradient of the profiled deviance at ``theta``.
    scaled_gradient : float
        ``max |H^-1 g|`` over the parameters not held at a bound (NaN if the Hessian of
        those parameters is not positive definite).
    hessian_positive_definite : bool
        Whether the finite-difference Hessian over the free parameters is positive definite.
    optimizer_runs : pandas.DataFrame
        One row per optimiser run: ``run, start, deviance, n_evaluations, message``.
    """

    reml: bool
    nobs: int
    ngroups: dict[str, int]
    fixed: pd.DataFrame
    fixed_cov: pd.DataFrame
    sigma2: float
    covariance: dict[str, pd.DataFrame]
    varcomp: pd.DataFrame
    loglik: float
    deviance: float
    aic: float
    bic: float
    n_params: int
    theta: np.ndarray
    theta_names: list[str]
    random_effects: dict[str, pd.DataFrame]
    random_effects_cov: dict[str, np.ndarray] = field(repr=False)
    therapist_of_patient: pd.Series | None = field(repr=False)
    converged: bool
    singular: bool
    warnings: list[str]
    n_evaluations: int
    gradient: np.ndarray
    scaled_gradient: float
    hessian_positive_definite: bool
    optimizer_runs: pd.DataFrame

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        return math.sqrt(self.sigma2)

    @property
    def se_convention(self) -> str:
        """How ``fixed['se']`` was computed."""
        return "lme4 vcov(): sigma^2 (X' V^-1 X)^-1 at the estimates"

    def random_effect_intervals(self, group: str, coverage: float = 0.95) -> pd.DataFrame:
        """Conditional modes with normal intervals from their conditional variances.

        Parameters
        ----------
        group : str
            Grouping factor name (a key of ``random_effects``).
        coverage : float, default 0.95
            Coverage of the intervals ``mode -/+ z * sd``.

        Returns
        -------
        pandas.DataFrame
            Long frame ``group_label, term, mode, cond_sd, low, high``, for caterpillar
            plots.
        """
        if group not in self.random_effects:
            raise KeyError(f"No grouping factor {group!r}; have {list(self.random_effects)}.")
        if not 0.0 < coverage < 1.0:
            raise SettingsError(f"coverage must be in (0, 1); got {coverage!r}.")
        modes = self.random_effects[group]
        cov = self.random_effects_cov[group]
        z = float(stats.norm.ppf(0.5 + coverage / 2.0))
        pieces = []
        for k, term in enumerate(modes.columns):
            sd = np.sqrt(np.maximum(cov[:, k, k], 0.0))
            mode = modes[term].to_numpy()
            pieces.append(
                pd.DataFrame(
                    {
                        "group_label": modes.index.to_numpy(),
                        "term": term,
                        "mode": mode,
                        "cond_sd": sd,
                        "low": mode - z * sd,
                        "high": mode + z * sd,
                    }
                )
            )
        return pd.concat(pieces, ignore_index=True)

    def summary(self) -> str:
        """A short plain-text summary (fit criteria, fixed effects, variance components)."""
        header = [
            f"Nested linear mixed model ({'REML' if self.reml else 'ML'}), "
            f"nobs={self.nobs}, groups={self.ngroups}",
            f"logLik={self.loglik:.4f} (df={self.n_params}), AIC={self.aic:.4f}, "
            f"BIC={self.bic:.4f}, converged={self.converged}, singular={self.singular}, "
            f"evaluations={self.n_evaluations}",
        ]
        return summary_text(header, self.fixed, self.varcomp, self.warnings, digits=6)


@dataclass
class BootstrapResult:
    """Replicates of a parametric bootstrap (see :func:`warm_started_bootstrap`).

    Attributes
    ----------
    estimates : pandas.DataFrame
        One row per replicate: the fixed effects, ``sigma``, then per grouping factor the
        SD of each term (``"sd(group: term)"``) and each correlation
        (``"cor(group: term1, term2)"``).
    theta : numpy.ndarray
        Array (n_replicates, len(theta)) of the replicate optima.
    converged : numpy.ndarray
        Boolean per replicate.
    singular : numpy.ndarray
        Boolean per replicate.
    n_evaluations : int
        Deviance evaluations over all replicates.
    seed : int
        Seed of ``numpy.random.default_rng`` used to simulate the responses.
    n_warnings : numpy.ndarray
        Number of failed checks per replicate (did not converge; singular fit).
    """

    estimates: pd.DataFrame
    theta: np.ndarray
    converged: np.ndarray
    singular: np.ndarray
    n_evaluations: int
    seed: int
    n_warnings: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def percentile_intervals(self, coverage: float = 0.95) -> pd.DataFrame:
        """Percentile intervals of every column of ``estimates``.

        Parameters
        ----------
        coverage : float, default 0.95
            Central coverage of the interval.

        Returns
        -------
        pandas.DataFrame
            Indexed by quantity: ``low, high``.
        """
        if not 0.0 < coverage < 1.0:
            raise SettingsError(f"coverage must be in (0, 1); got {coverage!r}.")
        tail = (1.0 - coverage) / 2.0
        return pd.DataFrame(
            {
                "low": self.estimates.quantile(tail),
                "high": self.estimates.quantile(1.0 - tail),
            }
        )


@dataclass
class _Optimum:
    """What :meth:`NestedLMM.fit` found and checked, handed to :meth:`NestedLMM._result`.

    ``runs`` holds one ``(name, start, deviance, message, evaluations)`` per optimiser run.
    """

    theta: np.ndarray
    deviance: float
    gradient: np.ndarray
    scaled_gradient: float
    hessian_positive_definite: bool
    converged: bool
    notes: list[str]
    n_evaluations: int
    runs: list[tuple[str, np.ndarray, float, str, int]]
    hessian: np.ndarray


@dataclass(frozen=True)
class FixedEffectsFit:
    """The quick result of :meth:`NestedLMM.fit_fixed`: estimates only, as arrays.

    Attributes
    ----------
    beta : numpy.ndarray
        Fixed-effect estimates, in the order of ``NestedLMM.fixed_names``.
    cov_beta : numpy.ndarray
        Their covariance (lme4's ``vcov``).
    theta : numpy.ndarray
        Relative covariance parameters at the optimum.
    sigma2 : float
        Residual variance.
    covariances : dict of str to numpy.ndarray
        Covariance matrix of the random effects per grouping factor.
    deviance : float
        REML criterion or ML deviance at the optimum.
    converged, singular : bool
        As in :class:`EngineResult`.
    hessian : numpy.ndarray
        Finite-difference Hessian of the profiled deviance used by the convergence check;
        pass it as ``curvature=`` to later fits of similar data.
    n_evaluations : int
        Deviance evaluations.
    """

    beta: np.ndarray
    cov_beta: np.ndarray
    theta: np.ndarray
    sigma2: float
    covariances: dict[str, np.ndarray]
    deviance: float
    converged: bool
    singular: bool
    hessian: np.ndarray
    n_evaluations: int


def _runs_table(runs: list[tuple[str, np.ndarray, float, str, int]]) -> pd.DataFrame:
    """``EngineResult.optimizer_runs``: one row per optimiser run."""
    return pd.DataFrame(
        [
            {
                "run": name,
                "start": np.array2string(start, precision=4),
                "deviance": deviance,
                "n_evaluations": calls,
                "message": message,
            }
            for name, start, deviance, message, calls in runs
        ]
    )


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _row_text(row_labels: pd.Index, positions: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(row_labels[p]) for p in positions[:limit])
    more = f" and {len(positions) - limit} more" if len(positions) > limit else ""
    return shown + more


def _as_matrix(
    values: Any,
    name: str,
    nobs: int | None,
    row_labels: pd.Index | None,
    source: str,
    reference: str = "X (the fixed-effect design)",
) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise EngineInputError(
            f"{source}: {name} must be numeric; converting it to numbers failed ({err}). "
            "Recode text or categorical columns as numeric (e.g. dummy variables)."
        ) from err
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise EngineInputError(
            f"{source}: {name} must be a vector or a matrix (rows = observations); "
            f"got an array with {array.ndim} dimensions."
        )
    if nobs is not None and array.shape[0] != nobs:
        raise EngineInputError(
            f"{source}: {name} has {array.shape[0]} rows but {reference} has {nobs}; "
            "every input must have one row per observation."
        )
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        labels = row_labels if row_labels is not None else pd.RangeIndex(array.shape[0])
        raise EngineInputError(
            f"{source}: {name} has missing or infinite values in {len(rows)} rows "
            f"(rows {_row_text(labels, rows)}). Drop or impute those rows before fitting."
        )
    return array


def _default_names(matrix: np.ndarray, prefix: str) -> list[str]:
    names = []
    for k in range(matrix.shape[1]):
        column = matrix[:, k]
        is_one = column.size > 0 and np.all(column == 1.0)
        names.append("(Intercept)" if is_one else f"{prefix}{k}")
    return names


def _check_names(names: Sequence[str] | None, width: int, what: str, source: str) -> list[str]:
    if names is None:
        return []
    names = [str(n) for n in names]
    if len(names) != width:
        raise EngineInputError(
            f"{source}: {len(names)} names given for {width} {what} columns; give one name "
            "per column."
        )
    if len(set(names)) != len(names):
        raise EngineInputError(f"{source}: {what} names are not unique: {names}.")
    return names


def _find_aliased(x: np.ndarray, names: list[str]) -> list[str]:
    """Describe columns of ``x`` that are linear combinations of earlier columns."""
    norms = np.linalg.norm(x, axis=0)
    problems: list[str] = []
    kept: list[int] = []
    for j in range(x.shape[1]):
        if norms[j] == 0.0:
            problems.append(f"{names[j]!r} is all zeros")
            continue
        column = x[:, j] / norms[j]
        if kept:
            basis = x[:, kept] / norms[kept]
            coef, *_ = np.linalg.lstsq(basis, column, rcond=None)
            residual = np.linalg.norm(column - basis @ coef)
        else:
            coef = np.zeros(0)
            residual = 1.0
        if residual < ALIAS_TOL:
            scaled = coef * norms[j] / norms[kept]
            terms = [
                f"{c:+.6g}*{names[k]}" for c, k in zip(scaled, kept, strict=True) if abs(c) > 1e-10
            ]
            problems.append(f"{names[j]!r} = {' '.join(terms) if terms else '0'}")
        else:
            kept.append(j)
    return problems


def _factorize(labels: Any, name: str, nobs: int, row_labels: pd.Index, source: str):
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        if labels.size == nobs:  # integer codes (simulation loops): no missing values
            uniques, codes = np.unique(labels, return_inverse=True)
            return codes.astype(np.intp), pd.Index(uniques.astype(object), name=name)
    series = pd.Series(
        np.asarray(labels, dtype=object)
        if not isinstance(labels, pd.Series)
        else labels.to_numpy(dtype=object)
    )
    if len(series) != nobs:
        raise EngineInputError(
            f"{source}: {name} labels have {len(series)} entries but there are {nobs} "
            "observations; give one label per observation."
        )
    missing = series.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        raise EngineInputError(
            f"{source}: {name} label is missing in {len(rows)} rows (rows "
            f"{_row_text(row_labels, rows)}). Every observation needs a {name} id."
        )
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(series.astype(str), sort=True)
    return codes.astype(np.intp), pd.Index(uniques, name=name)


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


class NestedLMM:
    """A nested linear mixed model design, prepared once and fitted to any response.

    The design (fixed-effect matrix, random-effect matrices and grouping) is checked and
    its response-free sufficient statistics are computed on construction; :meth:`fit`
    then costs one pass over the rows for the response and O(groups) per deviance
    evaluation.  Reusing one instance for many responses (parametric bootstrap) avoids
    recomputing the design statistics.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Fixed-effect design matrix (include the intercept column yourself).
    patient : array_like, shape (n,)
        Patient label of each row (any hashable values; the inner grouping factor, or the
        only one of a two-level model).
    therapist : array_like, shape (n,), optional
        Therapist label of each row; each patient must belong to exactly one therapist.
    Z_patient : array_like, shape (n, q_p), optional
        Patient-level random-effect design (default: intercept only).
    Z_therapist : array_like, shape (n, q_t), optional
        Therapist-level random-effect design (default: intercept only, when ``therapist``
        is given).
    fixed_names, patient_terms, therapist_terms : sequence of str, optional
        Column names (default: ``"(Intercept)"`` for a column of ones, else ``x0, z1``...).
    patient_name, therapist_name : str
        Names of the grouping factors in the results (default ``"patient"`` and
        ``"therapist"``).
    patient_covariance, therapist_covariance : {"unstructured", "diagonal"}
        Covariance of each level's random effects; ``"diagonal"`` is lme4's ``||``.
    row_labels : pandas.Index, optional
        Labels of the rows used in error messages (default: positions 0, 1, ...).
    source : str, default "input"
        Name of the data used in error messages.

    Raises
    ------
    EngineInputError
        Mismatched lengths, non-finite values, missing group labels, patients under
        several therapists, a rank-deficient ``X`` (the message names the aliased
        columns), or too few observations.
    """

    def __init__(
        self,
        X: Any,
        *,
        patient: Any,
        therapist: Any = None,
        Z_patient: Any = None,
        Z_therapist: Any = None,
        fixed_names: Sequence[str] | None = None,
        patient_terms: Sequence[str] | None = None,
        therapist_terms: Sequence[str] | None = None,
        patient_name: str = "patient",
        therapist_name: str = "therapist",
        patient_covariance: str = "unstructured",
        therapist_covariance: str = "unstructured",
        row_labels: pd.Index | None = None,
        source: str = "input",
    ) -> None:
        self.source = source
        #: Notes on building the design from a data frame (rows dropped for missing values).
        self.frame_notes: list[str] = []
        x = _as_matrix(X, "X (fixed-effect design)", None, row_labels, source)
        nobs = x.shape[0]
        self.row_labels = row_labels if row_labels is not None else pd.RangeIndex(nobs)
        if len(self.row_labels) != nobs:
            raise EngineInputError(f"{source}: row_labels must have {nobs} entries.")
        for cov_name, cov in (
            ("patient_covariance", patient_covariance),
            ("therapist_covariance", therapist_covariance),
        ):
            if cov not in _COVARIANCE_TYPES:
                raise EngineInputError(
                    f"{cov_name} must be one of {_COVARIANCE_TYPES}; got {cov!r}."
                )
        self.nested = therapist is not None
        zp, zt = self._random_designs(Z_patient, Z_therapist, nobs)
        self._name_columns(
            (X, x, fixed_names),
            (Z_patient, zp, patient_terms),
            (Z_therapist, zt, therapist_terms),
            patient_name,
            therapist_name,
        )
        p = x.shape[1]
        if p == 0:
            raise EngineInputError(f"{source}: X has no columns; include at least an intercept.")
        if nobs <= p:
            raise EngineInputError(
                f"{source}: {nobs} observations for {p} fixed effects; need more observations "
                "than fixed effects."
            )
        self._group(patient, therapist, nobs)
        self._centre_fixed_effects(x)
        self.x = x
        self.zp = zp
        self.zt = zt
        self.nobs = nobs
        self.p = p
        self.qp = zp.shape[1]
        self.qt = zt.shape[1]
        self.patient_covariance = patient_covariance
        self.therapist_covariance = therapist_covariance
        self._pattern_p = _theta_pattern(self.qp, patient_covariance)
        self._pattern_t = _theta_pattern(self.qt, therapist_covariance) if self.nested else []
        self.n_theta = len(self._pattern_p) + len(self._pattern_t)
        lower_p = [0.0 if i == j else -np.inf for i, j in self._pattern_p]
        lower_t = [0.0 if i == j else -np.inf for i, j in self._pattern_t]
        self.theta_lower = np.array(lower_p + lower_t)
        self.theta_names = self._make_theta_names()
        self._design_statistics()

    # ---- construction helpers -----------------------------------------------------------

    def _random_designs(self, Z_patient: Any, Z_therapist: Any, nobs: int):
        """The random-effect matrices of both levels (therapist: no columns if not nested)."""
        source = self.source
        if not self.nested and Z_therapist is not None:
            raise EngineInputError(
                f"{source}: Z_therapist given without therapist labels; pass therapist=..."
            )
        zp = (
            np.ones((nobs, 1))
            if Z_patient is None
            else _as_matrix(Z_patient, "Z_patient", nobs, self.row_labels, source)
        )
        zt = np.zeros((nobs, 0))
        if self.nested:
            zt = (
                np.ones((nobs, 1))
                if Z_therapist is None
                else _as_matrix(Z_therapist, "Z_therapist", nobs, self.row_labels, source)
            )
        if zp.shape[1] == 0:
            raise EngineInputError(f"{source}: Z_patient has no columns.")
        if self.nested and zt.shape[1] == 0:
            raise EngineInputError(f"{source}: Z_therapist has no columns.")
        return zp, zt

    def _name_columns(self, fixed, patient, therapist, patient_name, therapist_name) -> None:
        """Names of the columns of X, Z_patient and Z_therapist and of the two factors.

        Each of ``fixed, patient, therapist`` is ``(input, matrix, names)``: names given,
        else the input's column names when it is a data frame, else defaults.
        """
        source = self.source
        named = []
        for (given, matrix, names), what, prefix in (
            (fixed, "fixed-effect", "x"),
            (patient, "Z_patient", "z"),
            (therapist, "Z_therapist", "z"),
        ):
            if what == "Z_therapist" and not self.nested:
                named.append([])  # therapist names are ignored without therapist labels
                continue
            if names is None and isinstance(given, pd.DataFrame):
                names = [str(c) for c in given.columns]
            named.append(
                _check_names(names, matrix.shape[1], what, source) or _default_names(matrix, prefix)
            )
        self.fixed_names, self.patient_terms = named[0], named[1]
        self.therapist_terms = named[2]
        self.patient_name = str(patient_name)
        self.therapist_name = str(therapist_name)
        if self.nested and self.patient_name == self.therapist_name:
            raise EngineInputError("patient_name and therapist_name must differ.")

    def _group(self, patient: Any, therapist: Any, nobs: int) -> None:
        """Codes of the grouping factors; patients ordered by therapist, then label."""
        source = self.source
        p_codes, p_labels = _factorize(patient, self.patient_name, nobs, self.row_labels, source)
        if self.nested:
            t_codes, t_labels = _factorize(
                therapist, self.therapist_name, nobs, self.row_labels, source
            )
            order = np.argsort(p_codes, kind="stable")
            sorted_p = p_codes[order]
            sorted_t = t_codes[order]
            starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
            t_min = np.minimum.reduceat(sorted_t, starts)
            t_max = np.maximum.reduceat(sorted_t, starts)
            crossed = np.flatnonzero(t_min != t_max)
            if crossed.size:
                self._raise_crossed(crossed, p_codes, t_codes, p_labels, t_labels)
            therapist_of_label = t_min  # therapist code of each patient (label order)
        else:
            t_labels = pd.Index([], name=self.therapist_name)
            therapist_of_label = np.zeros(len(p_labels), dtype=np.intp)

        # Internal patient order: by therapist, then label, so each therapist's patients
        # are a contiguous segment (for numpy.add.reduceat).
        internal_order = np.lexsort((np.arange(len(p_labels)), therapist_of_label))
        internal_of_label = np.empty_like(internal_order)
        internal_of_label[internal_order] = np.arange(len(internal_order))
        self.patient_labels = p_labels
        self.therapist_labels = t_labels
        self._label_of_internal = internal_order
        self._internal_of_label = internal_of_label
        self.row_patient = internal_of_label[p_codes]
        self.patient_therapist = therapist_of_label[internal_order]
        self.n_patients = len(p_labels)
        self.n_therapists = len(t_labels) if self.nested else 0
        if self.nested:
            self.row_therapist = t_codes
            self._therapist_starts = np.flatnonzero(
                np.r_[True, self.patient_therapist[1:] != self.patient_therapist[:-1]]
            )
        else:
            self.row_therapist = np.zeros(nobs, dtype=np.intp)
            self._therapist_starts = np.zeros(1, dtype=np.intp)

    def _centre_fixed_effects(self, x: np.ndarray) -> None:
        """Find the intercept column, centre the others on it, refuse aliased columns."""
        p = x.shape[1]
        self.intercept_column: int | None = None
        for k in range(p):
            column = x[:, k]
            if column[0] != 0.0 and np.all(column == column[0]):
                self.intercept_column = k
                break
        means = np.zeros(p)
        if self.intercept_column is not None:
            means = x.mean(axis=0)
            means[self.intercept_column] = 0.0
        aliased = _find_aliased(x, self.fixed_names)
        if aliased:
            raise EngineInputError(
                f"{self.source}: the fixed-effect design is rank deficient (aliased columns: "
                + "; ".join(aliased)
                + "). Each listed column is a linear combination of earlier columns; drop "
                "or recode it (lme4 would drop it silently)."
            )
        self._x_means = means
        self._x_centred = x - means

    def _raise_crossed(self, crossed, p_codes, t_codes, p_labels, t_labels) -> None:
        first = crossed[0]
        rows = np.flatnonzero(p_codes == first)
        therapists = sorted({str(t_labels[c]) for c in t_codes[rows]})
        examples = ", ".join(repr(str(p_labels[c])) for c in crossed[:5])
        raise EngineInputError(
            f"{self.source}: {len(crossed)} {self.patient_name} id(s) appear under more than "
            f"one {self.therapist_name} (e.g. {examples}); {self.patient_name} "
            f"{str(p_labels[first])!r} is under {self.therapist_name}s {therapists} (rows "
            f"{_row_text(self.row_labels, rows)}). Patients must be nested in therapists. If "
            f"ids are numbered within each {self.therapist_name}, make them unique, e.g. "
            f"{self.patient_name} = {self.therapist_name} + '_' + {self.patient_name} (what "
            f"lme4's (1 | {self.therapist_name}/{self.patient_name}) does); if one patient "
            f"really saw several {self.therapist_name}s, the factors are crossed, which this "
            "engine does not fit."
        )

    def _make_theta_names(self) -> list[str]:
        names = []
        for group, terms, pattern in (
            (self.patient_name, self.patient_terms, self._pattern_p),
            (self.therapist_name, self.therapist_terms, self._pattern_t),
        ):
            for i, j in pattern:
                if i == j:
                    names.append(f"{group}.{terms[i]}")
                else:
                    names.append(f"{group}.{terms[i]}.{terms[j]}")
        return names

    def _design_statistics(self) -> None:
        """Response-free sufficient statistics, component-major layout."""
        g, t = self.n_patients, self.n_therapists
        rp, rt = self.row_patient, self.row_therapist
        zp, zt, xc = self.zp, self.zt, self._x_centred
        qp, qt, p = self.qp, self.qt, self.p

        def group_sum(index, weights, size):
            return np.bincount(index, weights=weights, minlength=size)

        zpzp = np.empty((qp, qp, g))
        for a in range(qp):
            for b in range(a, qp):
                zpzp[a, b] = group_sum(rp, zp[:, a] * zp[:, b], g)
                zpzp[b, a] = zpzp[a, b]
        # Z_p'[Z_t X] per patient, (qp, G, qt + p); the response column is added per fit.
        zpw = np.empty((qp, g, qt + p))
        for a in range(qp):
            for b in range(qt):
                zpw[a, :, b] = group_sum(rp, zp[:, a] * zt[:, b], g)
            for b in range(p):
                zpw[a, :, qt + b] = group_sum(rp, zp[:, a] * xc[:, b], g)
        ztzt = np.empty((qt, qt, t))
        ztx = np.empty((qt, t, p))
        for a in range(qt):
            for b in range(a, qt):
                ztzt[a, b] = group_sum(rt, zt[:, a] * zt[:, b], t)
                ztzt[b, a] = ztzt[a, b]
            for b in range(p):
                ztx[a, :, b] = group_sum(rt, zt[:, a] * xc[:, b], t)
        self._zpzp = zpzp
        self._zpw = zpw
        self._ztzt = ztzt
        self._ztx = ztx
        self._xx = xc.T @ xc

    # ---- per-response statistics --------------------------------------------------------

    def _response_statistics(self, y: np.ndarray) -> dict[str, Any]:
        shift = float(y.mean()) if self.intercept_column is not None else 0.0
        yc = y - shift
        g, t, qp, qt, p = self.n_patients, self.n_therapists, self.qp, self.qt, self.p
        zpy = np.empty((qp, g, 1))
        for a in range(qp):
            zpy[a, :, 0] = np.bincount(self.row_patient, weights=self.zp[:, a] * yc, minlength=g)
        zty = np.empty((qt, t, 1))
        for a in range(qt):
            zty[a, :, 0] = np.bincount(self.row_therapist, weights=self.zt[:, a] * yc, minlength=t)
        xy = self._x_centred.T @ yc
        augmented = np.empty((p + 1, p + 1))
        augmented[:p, :p] = self._xx
        augmented[:p, p] = xy
        augmented[p, :p] = xy
        augmented[p, p] = float(yc @ yc)
        return {
            "shift": shift,
            "zpr": np.concatenate([self._zpw, zpy], axis=2),
            "ztr": np.concatenate([self._ztx, zty], axis=2),
            "xyxy": augmented,
        }

    # ---- the profiled deviance ----------------------------------------------------------

    def _lambdas(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(self._pattern_p)
        lam_p = _lambda_from_theta(theta[:k], self.qp, self._pattern_p)
        lam_t = _lambda_from_theta(theta[k:], self.qt, self._pattern_t)
        return lam_p, lam_t

    def _factor(self, theta: np.ndarray, suff: dict[str, Any]) -> dict[str, Any] | None:
        """Blocked Cholesky factorisation of the PLS system at ``theta`` (compiled kernel)."""
        p = self.p
        lam_p, lam_t = self._lambdas(theta)
        ok, logdet, chol_p, solved_p, chol_t, solved_t, chol_x = factor_pls(
            lam_p,
            lam_t,
            self._zpzp,
            suff["zpr"],
            self._ztzt,
            suff["ztr"],
            suff["xyxy"],
            self.patient_therapist,
        )
        if not ok:
            return None
        if not self.qt:
            chol_t = solved_t = None
        return {
            "lam_p": lam_p,
            "lam_t": lam_t,
            "chol_p": chol_p,
            "solved_p": solved_p,
            "chol_t": chol_t,
            "solved_t": solved_t,
            "chol_x": chol_x,
            "logdet_l": logdet,
            "logdet_rx": 2.0 * sum(math.log(chol_x[k, k]) for k in range(p)),
            "pwrss": float(chol_x[p, p] ** 2),
        }

    def _criterion(self, factor: dict[str, Any] | None, reml: bool) -> float:
        if factor is None:
            return math.inf
        n = self.nobs
        df = n - self.p if reml else n
        value = factor["logdet_l"] + df * (1.0 + math.log(2.0 * math.pi * factor["pwrss"] / df))
        if reml:
            value += factor["logdet_rx"]
        return value

    def deviance_function(self, y: Any, reml: bool = True):
        """The profiled deviance as a function of ``theta``, for response ``y``.

        Parameters
        ----------
        y : array_like, shape (n,)
            Response.
        reml : bool, default True
            REML criterion (lme4's ``REMLcrit``) or ML deviance.

        Returns
        -------
        callable
            ``f(theta) -> float``; ``inf`` where the factorisation fails.  The attribute
            ``f.calls`` counts evaluations.
        """
        suff = self._response_statistics(self._check_response(y))

        def deviance(theta: np.ndarray) -> float:
            deviance.calls += 1
            return self._criterion(self._factor(np.asarray(theta, dtype=float), suff), reml)

        deviance.calls = 0
        return deviance

    def _check_response(self, y: Any) -> np.ndarray:
        array = _as_matrix(y, "y (response)", self.nobs, self.row_labels, self.source)
        if array.shape[1] != 1:
            raise EngineInputError(f"{self.source}: y must be a single column.")
        return array[:, 0]

    # ---- optimisation -------------------------------------------------------------------

    def _default_start(self) -> np.ndarray:
        return np.array(
            [1.0 if i == j else 0.0 for i, j in self._pattern_p + self._pattern_t], dtype=float
        )

    def _check_start(self, start: Any) -> np.ndarray:
        theta = np.asarray(start, dtype=float).ravel()
        if theta.shape != (self.n_theta,):
            raise EngineInputError(
                f"start must have {self.n_theta} elements ({self.theta_names}); got {theta.size}."
            )
        if not np.all(np.isfinite(theta)):
            raise EngineInputError("start must be finite.")
        return np.maximum(theta, self.theta_lower)

    def fit(
        self,
        y: Any,
        *,
        reml: bool = True,
        start: Any = None,
        check: bool = True,
        emit_warnings: bool = True,
        curvature: Any = None,
    ) -> EngineResult:
        """Fit the model to response ``y`` by REML or ML.

        Parameters
        ----------
        y : array_like, shape (n,)
            Response.
        reml : bool, default True
            REML (lme4's default) or ML.
        start : array_like, optional
            Starting ``theta`` (default: lme4's, ``Lambda = I``).  A previous fit's
            ``theta`` is a good warm start.
        check : bool, default True
            Also run the optimiser from a second start and report disagreement (doubles the
            cost; switch off for bootstrap replicates).
        emit_warnings : bool, default True
            Emit each diagnostic as :class:`EngineWarning` (they are always stored in
            ``EngineResult.warnings``).
        curvature : array_like, optional
            The Hessian of the profiled deviance at a nearby optimum (``fit_fixed(...)
            .hessian`` of similar data, e.g. a pilot replicate of a simulation).  It seeds the
            quasi-Newton optimiser, replaces the finite-difference Hessian of the Newton
            polish and of the convergence check, and saves about half of the deviance
            evaluations when ``start`` is near the optimum too.

        Returns
        -------
        EngineResult
        """
        suff = self._response_statistics(self._check_response(y))
        optimum = self._optimise(suff, reml, start, check, curvature)
        result = self._result(optimum, suff, reml)
        if emit_warnings:
            for note in result.warnings:
                warnings.warn(note, EngineWarning, stacklevel=2)
        return result

    def fit_fixed(
        self,
        y: Any,
        *,
        reml: bool = True,
        start: Any = None,
        curvature: Any = None,
        check: bool = False,
    ) -> FixedEffectsFit:
        """Fit like :meth:`fit` (one optimiser run by default) but return only the estimates.

        The quick path for simulation loops (power studies, bootstraps): no conditional
        modes, no tables and no warnings (``converged`` and ``singular`` carry the checks).

        Parameters
        ----------
        y : array_like, shape (n,)
            Response.
        reml : bool, default True
            REML or ML.
        start, curvature : array_like, optional
            As in :meth:`fit`.
        check : bool, default False
            A second optimiser start, as in :meth:`fit`.

        Returns
        -------
        FixedEffectsFit
        """
        suff = self._response_statistics(self._check_response(y))
        optimum = self._optimise(suff, reml, start, check, curvature)
        factor = self._factor(optimum.theta, suff)
        sigma2 = self._sigma2(factor, reml)
        beta, cov_beta, _ = self._fixed_arrays(factor, sigma2, suff["shift"])
        covariances = self._covariance_arrays(factor["lam_p"], factor["lam_t"], sigma2)
        return FixedEffectsFit(
            beta=beta,
            cov_beta=cov_beta,
            theta=optimum.theta.copy(),
            sigma2=sigma2,
            covariances=covariances,
            deviance=optimum.deviance,
            converged=optimum.converged,
            singular=self._is_singular(optimum.theta),
            hessian=optimum.hessian,
            n_evaluations=optimum.n_evaluations,
        )

    def _is_singular(self, theta: np.ndarray) -> bool:
        return bool(np.any(theta[self.theta_lower == 0.0] < SINGULAR_TOL))

    def _optimise(self, suff, reml: bool, start, check: bool, curvature) -> _Optimum:
        """Minimise the profiled deviance and check the optimum (see :meth:`fit`)."""
        counter = {"calls": 0}

        def deviance(theta: np.ndarray) -> float:
            counter["calls"] += 1
            return self._criterion(self._factor(theta, suff), reml)

        given = hessian = self._check_curvature(curvature)
        first_start = self._default_start() if start is None else self._check_start(start)
        theta, dev, message = self._minimise(deviance, first_start, hessian)
        theta, dev, hessian, gradient = self._polish(deviance, theta, dev, hessian)
        runs = [("first", first_start, dev, message, counter["calls"])]
        notes: list[str] = []
        if check:
            before = counter["calls"]
            alt_start = self._alternative_start(first_start)
            theta2, dev2, message2 = self._minimise(deviance, alt_start, given)
            theta2, dev2, _, gradient2 = self._polish(deviance, theta2, dev2, hessian)
            runs.append(("second", alt_start, dev2, message2, counter["calls"] - before))
            agree, note = self._compare_runs(theta, dev, theta2, dev2)
            if note:
                notes.append(note)
            if dev2 < dev - _deviance_tol(dev):  # the second run did better: keep it
                theta, dev, gradient = theta2, dev2, gradient2
                hessian = self._hessian(deviance, theta, dev)
        else:
            agree = True
        if gradient is None:
            gradient = self._gradient(deviance, theta, dev)
        free = self._free_mask(theta, gradient)
        scaled, hess_pd = self._scaled_gradient(hessian, gradient, free)
        converged = bool(np.isfinite(dev)) and agree
        if not hess_pd:
            notes.append(
                "the Hessian of the profiled deviance over the free covariance parameters is "
                "not positive definite: the model may be over-parameterised or the optimum "
                "not a minimum."
            )
            converged = converged and bool(np.max(np.abs(gradient[free]), initial=0.0) < 1e-3)
        elif scaled > SCALED_GRADIENT_TOL:
            notes.append(
                f"convergence check failed: scaled gradient max|H^-1 g| = {scaled:.3g} > "
                f"{SCALED_GRADIENT_TOL}."
            )
            converged = False
        return _Optimum(
            theta=theta,
            deviance=dev,
            gradient=gradient,
            scaled_gradient=scaled,
            hessian_positive_definite=hess_pd,
            converged=converged,
            notes=notes,
            n_evaluations=counter["calls"],
            runs=runs,
            hessian=hessian,
        )

    def _compare_runs(self, theta, dev, theta2, dev2) -> tuple[bool, str]:
        """Whether two optimiser runs agree, and a note saying how they differ."""
        tol = _deviance_tol(dev)
        theta_gap = float(np.max(np.abs(theta2 - theta) / np.maximum(1.0, np.abs(theta))))
        if dev2 < dev - tol:
            return False, (
                f"optimiser runs disagree: the second start reached a lower deviance "
                f"({dev2:.10g} < {dev:.10g}, theta differs by up to {theta_gap:.3g}); the "
                "better optimum is kept, but the first run had stopped early."
            )
        if dev2 > dev + tol:
            return False, (
                f"optimiser runs disagree: the second start stopped at a higher deviance "
                f"({dev2:.10g} > {dev:.10g}); the likelihood may have several local optima."
            )
        if theta_gap > AGREEMENT_THETA_TOL:
            return False, (
                f"optimiser runs reached the same deviance but theta differs by up to "
                f"{theta_gap:.3g}: the covariance parameters are weakly identified."
            )
        return True, ""

    def _check_curvature(self, curvature: Any) -> np.ndarray | None:
        if curvature is None:
            return None
        hessian = np.asarray(curvature, dtype=float)
        if hessian.shape != (self.n_theta, self.n_theta) or not np.all(np.isfinite(hessian)):
            raise EngineInputError(
                f"curvature must be a finite {self.n_theta} x {self.n_theta} matrix (the "
                f"Hessian of an earlier fit's deviance over {self.theta_names}); got shape "
                f"{hessian.shape}."
            )
        return hessian

    def _alternative_start(self, first: np.ndarray) -> np.ndarray:
        default = self._default_start()
        if not np.allclose(first, default):
            return default
        return 0.2 * default

    def _minimise(self, deviance, start: np.ndarray, hessian=None) -> tuple[np.ndarray, float, str]:
        """Projected BFGS from ``start`` (seeded with ``hessian``'s inverse when given)."""

        def gradient(theta: np.ndarray, f0: float) -> np.ndarray:
            return self._gradient(deviance, theta, f0, central=False)

        inverse = _seed_inverse_hessian(hessian)
        theta = start
        messages = []
        for _restart in range(_MAX_RESTARTS):
            theta, dev, message = _projected_bfgs(
                deviance, gradient, theta, self.theta_lower, inverse_hessian=inverse
            )
            messages.append(message)
            escaped = self._escape_bound(deviance, theta, dev)
            if escaped is None:
                break
            theta = escaped
            messages.append("restarted away from the bound")
        return theta, dev, "; ".join(messages)

    def _escape_bound(self, deviance, theta: np.ndarray, dev: float) -> np.ndarray | None:
        """A better point off the bound, for diagonal elements stuck at 0.

        The deviance is even in the last diagonal element of each ``Lambda`` column block,
        so its gradient there is exactly zero at 0 and a gradient method cannot leave the
        bound even when the deviance decreases away from it; probe a few steps instead.
        """
        stuck = np.flatnonzero(self.theta_lower == 0.0)
        # Not only exactly at 0: the run can stop a hair off the bound (e.g. 2e-7, where
        # the forward-difference gradient is ~0 as well), 1+ deviance units above the optimum.
        stuck = stuck[theta[stuck] < SINGULAR_TOL]
        if stuck.size == 0:
            return None
        scale = max(1.0, float(np.max(np.abs(theta))))
        best, best_dev = None, dev - _deviance_tol(dev)
        for i in stuck:
            for step in _ESCAPE_STEPS:
                trial = theta.copy()
                trial[i] = step * scale
                trial_dev = deviance(trial)
                if trial_dev < best_dev:
                    best, best_dev = trial, trial_dev
        return best

    def _steps(self, theta: np.ndarray, scale: float) -> np.ndarray:
        return scale * np.maximum(1.0, np.abs(theta))

    def _gradient(self, deviance, theta: np.ndarray, f0: float, central: bool = True) -> np.ndarray:
        """Finite-difference gradient: forward (optimiser) or central (checks, Newton)."""
        steps = self._steps(theta, _GRAD_STEP if central else _FORWARD_STEP)
        grad = np.empty_like(theta)
        for i, h in enumerate(steps):
            up = theta.copy()
            up[i] += h
            if central:
                down = theta.copy()
                down[i] -= h
                grad[i] = (deviance(up) - deviance(down)) / (2.0 * h)
            else:
                grad[i] = (deviance(up) - f0) / h
        return grad

    def _hessian(self, deviance, theta: np.ndarray, f0: float) -> np.ndarray:
        k = theta.size
        steps = self._steps(theta, _HESS_STEP)
        hess = np.empty((k, k))
        for i in range(k):
            up = theta.copy()
            up[i] += steps[i]
            down = theta.copy()
            down[i] -= steps[i]
            hess[i, i] = (deviance(up) - 2.0 * f0 + deviance(down)) / steps[i] ** 2
            for j in range(i):
                corners = []
                for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    point = theta.copy()
                    point[i] += si * steps[i]
                    point[j] += sj * steps[j]
                    corners.append(deviance(point))
                hess[i, j] = hess[j, i] = (corners[0] - corners[1] - corners[2] + corners[3]) / (
                    4.0 * steps[i] * steps[j]
                )
        return hess

    def _free_mask(self, theta: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        at_bound = (theta <= self.theta_lower) & (gradient >= 0.0)
        return ~at_bound

    @staticmethod
    def _scaled_gradient(hessian, gradient, free) -> tuple[float, bool]:
        if not free.any():
            return 0.0, True
        step = NestedLMM._free_solve(hessian, gradient, free)
        if step is None:
            return math.nan, False
        return float(np.max(np.abs(step))), True

    @staticmethod
    def _free_solve(hessian, vector, free) -> np.ndarray | None:
        """``H^-1 v`` over the free parameters; None when H is not positive definite there."""
        try:
            chol = np.linalg.cholesky(hessian[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            return None
        return np.linalg.solve(chol.T, np.linalg.solve(chol, vector[free]))

    def _polish(self, deviance, theta: np.ndarray, dev: float, hessian=None):
        """Projected Newton steps with one finite-difference Hessian (or a given one).

        Returns ``(theta, deviance, hessian, gradient)``; ``gradient`` is the central
        gradient at the returned ``theta`` when the last step computed it there, else None.
        A step below ``_NEGLIGIBLE_STEP`` (relative to ``theta``) is not tried or halved
        further: at an optimum the trial deviances are rounding noise, and halving down
        to nothing cost up to 30 evaluations per fit.
        """
        if not np.isfinite(dev):
            return theta, dev, np.full((theta.size, theta.size), np.nan), None
        if hessian is None or not np.all(np.isfinite(hessian)):
            hessian = self._hessian(deviance, theta, dev)
        gradient = None
        for _ in range(_NEWTON_MAX_STEPS):
            gradient = self._gradient(deviance, theta, dev)
            step = self._newton_step(hessian, theta, gradient)
            if step is None:
                break
            improved = False
            for _half in range(30):
                if np.max(np.abs(step) / np.maximum(1.0, np.abs(theta))) < _NEGLIGIBLE_STEP:
                    break
                trial = np.maximum(theta + step, self.theta_lower)
                trial_dev = deviance(trial)
                if trial_dev <= dev:
                    improved = trial_dev < dev
                    theta, dev, gradient = trial, trial_dev, None
                    break
                step /= 2.0
            if not improved or np.max(np.abs(step)) < 1e-10:
                break
        return theta, dev, hessian, gradient

    def _newton_step(self, hessian, theta, gradient) -> np.ndarray | None:
        """Newton step over the free parameters; None when none is free or H is not PD."""
        free = self._free_mask(theta, gradient)
        solved = self._free_solve(hessian, gradient, free) if free.any() else None
        if solved is None:
            return None
        step = np.zeros_like(theta)
        step[free] = -solved
        return step

    # ---- outputs ------------------------------------------------------------------------

    def _result(self, optimum: _Optimum, suff: dict[str, Any], reml: bool) -> EngineResult:
        """The :class:`EngineResult` at a checked optimum (estimates on lme4's scales)."""
        theta, dev, notes = optimum.theta, optimum.deviance, optimum.notes
        factor = self._factor(theta, suff)
        if factor is None:  # pragma: no cover - the optimum always factorises
            raise RuntimeError("The PLS system could not be factorised at the optimum.")
        p, n = self.p, self.nobs
        sigma2 = self._sigma2(factor, reml)
        fixed, fixed_cov, gamma = self._fixed_effects(factor, sigma2, suff["shift"])
        modes, conditional_cov = self._conditional_modes(factor, gamma, sigma2)
        covariance, varcomp = self._variance_components(factor["lam_p"], factor["lam_t"], sigma2)
        singular = self._is_singular(theta)
        if singular:
            notes.append(
                "boundary (singular) fit: a diagonal element of a relative covariance factor is "
                f"below {SINGULAR_TOL} (lme4's isSingular); a variance is ~0 or a correlation "
                "~+-1. Consider simplifying the random-effects structure."
            )
        n_params = p + self.n_theta + 1
        ngroups = {self.patient_name: self.n_patients}
        therapist_of_patient = None
        if self.nested:
            ngroups[self.therapist_name] = self.n_therapists
            therapist_of_patient = pd.Series(
                np.asarray(self.therapist_labels)[self.patient_therapist[self._internal_of_label]],
                index=self.patient_labels,
                name=self.therapist_name,
            )
        return EngineResult(
            reml=reml,
            nobs=n,
            ngroups=ngroups,
            fixed=fixed,
            fixed_cov=fixed_cov,
            sigma2=sigma2,
            covariance=covariance,
            varcomp=varcomp,
            loglik=-dev / 2.0,
            deviance=dev,
            aic=dev + 2.0 * n_params,
            bic=dev + math.log(n) * n_params,
            n_params=n_params,
            theta=theta.copy(),
            theta_names=list(self.theta_names),
            random_effects=modes,
            random_effects_cov=conditional_cov,
            therapist_of_patient=therapist_of_patient,
            converged=optimum.converged,
            singular=singular,
            warnings=notes,
            n_evaluations=optimum.n_evaluations,
            gradient=optimum.gradient,
            scaled_gradient=optimum.scaled_gradient,
            hessian_positive_definite=optimum.hessian_positive_definite,
            optimizer_runs=_runs_table(optimum.runs),
        )

    def _fixed_effects(self, factor: dict[str, Any], sigma2: float, shift: float):
        """Fixed effects (Wald table), their covariance and the centred-scale ``gamma``."""
        beta, cov_beta, gamma = self._fixed_arrays(factor, sigma2, shift)
        se = np.sqrt(np.diag(cov_beta))
        z_crit = float(stats.norm.ppf(0.975))
        z_val = beta / se
        fixed = pd.DataFrame(
            {
                "estimate": beta,
                "se": se,
                "ci_low": beta - z_crit * se,
                "ci_high": beta + z_crit * se,
                "z": z_val,
                "p": 2.0 * stats.norm.sf(np.abs(z_val)),
            },
            index=pd.Index(self.fixed_names, name="term"),
        )
        fixed_cov = pd.DataFrame(cov_beta, index=self.fixed_names, columns=self.fixed_names)
        return fixed, fixed_cov, gamma

    def _fixed_arrays(self, factor: dict[str, Any], sigma2: float, shift: float):
        """``beta``, its covariance and ``gamma`` (the centred parameterisation) as arrays."""
        p = self.p
        chol_x = factor["chol_x"]
        lx = chol_x[:p, :p]
        # Fixed effects in the centred parameterisation, then mapped back.
        gamma = np.linalg.solve(lx.T, chol_x[p, :p])
        lx_inv = np.linalg.solve(lx, np.eye(p))
        cov_gamma = sigma2 * (lx_inv.T @ lx_inv)
        transform = np.eye(p)
        if self.intercept_column is not None:
            transform[self.intercept_column, :] -= self._x_means
            transform[self.intercept_column, self.intercept_column] = 1.0
        beta = transform @ gamma
        if self.intercept_column is not None:
            beta[self.intercept_column] += shift
        cov_beta = transform @ cov_gamma @ transform.T
        return beta, cov_beta, gamma

    def _conditional_modes(self, factor: dict[str, Any], gamma: np.ndarray, sigma2: float):
        """Conditional modes and covariances per factor (patient level first).

        Back substitution through the blocked factor; the conditional covariance of each
        patient's effects includes the coupling with its therapist's.
        """
        qp, qt, p = self.qp, self.qt, self.p
        lam_p, lam_t = factor["lam_p"], factor["lam_t"]
        solved_p, chol_p = factor["solved_p"], factor["chol_p"]
        rhs_p = solved_p[:, :, -1] - solved_p[:, :, qt : qt + p] @ gamma  # (qp, G)
        modes: dict[str, pd.DataFrame] = {}
        cond: dict[str, np.ndarray] = {}
        if qt:
            chol_t, solved_t = factor["chol_t"], factor["solved_t"]
            rhs_t = solved_t[:, :, -1] - solved_t[:, :, :p] @ gamma  # (qt, T)
            u_t = _batched_backward(chol_t, rhs_t[:, :, None])[:, :, 0]
            u_t_of_patient = u_t[:, self.patient_therapist]  # (qt, G)
            for k in range(qp):
                for a in range(qt):
                    rhs_p[k] -= solved_p[k, :, a] * u_t_of_patient[a]
            b_t = lam_t @ u_t  # (qt, T)
            # (L_t L_t')^-1 per therapist, from L_t^-1.
            eye_t = np.broadcast_to(np.eye(qt)[:, None, :], (qt, self.n_therapists, qt))
            inv_t = _batched_forward(chol_t, np.ascontiguousarray(eye_t))  # L_t^-1, (qt, T, qt)
            minv_t = np.einsum("kta,ktb->tab", inv_t, inv_t)  # (T, qt, qt)
            cond_t = sigma2 * np.einsum("ia,tab,jb->tij", lam_t, minv_t, lam_t)
            modes[self.therapist_name] = pd.DataFrame(
                b_t.T, index=self.therapist_labels, columns=self.therapist_terms
            )
            cond[self.therapist_name] = cond_t
            # K_i = B_i L_t^-T with B_i = solved_p[:, i, :qt] (qp x qt).
            inv_t_of_patient = inv_t[:, self.patient_therapist, :]  # (qt, G, qt): [c, i, a]
            kmat = np.einsum("kia,cia->kic", solved_p[:, :, :qt], inv_t_of_patient)
            augmented = np.concatenate(
                [np.broadcast_to(np.eye(qp)[:, None, :], (qp, self.n_patients, qp)), kmat],
                axis=2,
            )
        else:
            augmented = np.ascontiguousarray(
                np.broadcast_to(np.eye(qp)[:, None, :], (qp, self.n_patients, qp))
            )
        u_p = _batched_backward(chol_p, rhs_p[:, :, None])[:, :, 0]
        b_p = (lam_p @ u_p)[:, self._internal_of_label]
        modes_p = pd.DataFrame(b_p.T, index=self.patient_labels, columns=self.patient_terms)
        f_mat = _batched_backward(chol_p, np.ascontiguousarray(augmented))  # (qp, G, qp+qt)
        minv_p = np.einsum("aic,bic->iab", f_mat, f_mat)
        cond_p = sigma2 * np.einsum("ka,iab,lb->ikl", lam_p, minv_p, lam_p)
        cond_p = cond_p[self._internal_of_label]
        return {self.patient_name: modes_p, **modes}, {self.patient_name: cond_p, **cond}

    def _sigma2(self, factor: dict[str, Any], reml: bool) -> float:
        """Residual variance at a factorisation: pwrss / (n - p) (REML) or pwrss / n (ML)."""
        return factor["pwrss"] / (self.nobs - self.p if reml else self.nobs)

    def _covariance_arrays(
        self, lam_p: np.ndarray, lam_t: np.ndarray, sigma2: float
    ) -> dict[str, np.ndarray]:
        """``sigma^2 Lambda Lambda'`` per grouping factor with random effects."""
        levels = (
            (self.patient_name, lam_p, self.patient_terms),
            (self.therapist_name, lam_t, self.therapist_terms),
        )
        return {group: sigma2 * (lam @ lam.T) for group, lam, terms in levels if terms}

    def _terms_of(self) -> dict[str, list[str]]:
        """The random-effect terms of each grouping factor, by the factor's name."""
        return {self.patient_name: self.patient_terms, self.therapist_name: self.therapist_terms}

    def _variance_components(self, lam_p: np.ndarray, lam_t: np.ndarray, sigma2: float):
        """Covariance matrix per factor and lme4's ``as.data.frame(VarCorr())`` table."""
        covariance = {}
        varcomp_rows = []
        terms_of = self._terms_of()
        for group, cov in self._covariance_arrays(lam_p, lam_t, sigma2).items():
            terms = terms_of[group]
            covariance[group] = pd.DataFrame(cov, index=terms, columns=terms)
            sds = np.sqrt(np.diag(cov))
            for i, term in enumerate(terms):
                varcomp_rows.append((group, term, "", cov[i, i], sds[i]))
            for j in range(len(terms)):
                for i in range(j + 1, len(terms)):
                    if self._is_diagonal(group):
                        continue
                    denom = sds[i] * sds[j]
                    corr = cov[i, j] / denom if denom > 0 else math.nan
                    varcomp_rows.append((group, terms[j], terms[i], cov[i, j], corr))
        varcomp_rows.append(("Residual", "", "", sigma2, math.sqrt(sigma2)))
        varcomp = pd.DataFrame(
            varcomp_rows, columns=["group", "term", "term2", "variance_or_cov", "sd_or_corr"]
        )
        return covariance, varcomp

    def _is_diagonal(self, group: str) -> bool:
        if group == self.patient_name:
            return self.patient_covariance == "diagonal"
        return self.therapist_covariance == "diagonal"

    # ---- simulation ---------------------------------------------------------------------

    def simulate(self, result: EngineResult, rng: np.random.Generator) -> np.ndarray:
        """Simulate a response from a fitted model (new random effects and residuals).

        Parameters
        ----------
        result : EngineResult
            A fit of this design (its ``fixed``, ``theta`` and ``sigma2`` are used).
        rng : numpy.random.Generator
            Random generator.

        Returns
        -------
        numpy.ndarray
            Simulated response, shape (n,).
        """
        if list(result.fixed.index) != self.fixed_names or result.theta.size != self.n_theta:
            raise EngineInputError("result does not belong to this design (other columns).")
        sigma = result.sigma
        lam_p, lam_t = self._lambdas(result.theta)
        y = self.x @ result.fixed["estimate"].to_numpy()
        b_p = sigma * rng.standard_normal((self.n_patients, self.qp)) @ lam_p.T
        y += np.einsum("nk,nk->n", self.zp, b_p[self.row_patient])
        if self.nested:
            b_t = sigma * rng.standard_normal((self.n_therapists, self.qt)) @ lam_t.T
            y += np.einsum("nk,nk->n", self.zt, b_t[self.row_therapist])
        y += sigma * rng.standard_normal(self.nobs)
        return y


# --------------------------------------------------------------------------------------
# Convenience functions
# --------------------------------------------------------------------------------------


def fit_nested_lmm(
    y: Any,
    X: Any,
    *,
    patient: Any,
    therapist: Any = None,
    Z_patient: Any = None,
    Z_therapist: Any = None,
    reml: bool = True,
    start: Any = None,
    check: bool = True,
    **design: Any,
) -> EngineResult:
    """Fit a nested (or two-level) Gaussian linear mixed model from arrays.

    Parameters
    ----------
    y : array_like, shape (n,)
        Response.
    X : array_like, shape (n, p)
        Fixed-effect design matrix, intercept column included.
    patient : array_like, shape (n,)
        Patient label per row (the only grouping factor of a two-level model).
    therapist : array_like, shape (n,), optional
        Therapist label per row; patients must be nested in therapists.
    Z_patient, Z_therapist : array_like, optional
        Random-effect design of each level (default: intercept only).
    reml : bool, default True
        REML or ML.
    start : array_like, optional
        Starting ``theta``.
    check : bool, default True
        Second optimiser run from another start (see :meth:`NestedLMM.fit`).
    **design
        Further keyword arguments of :class:`NestedLMM` (``fixed_names``,
        ``patient_terms``, ``therapist_terms``, ``patient_name``, ``therapist_name``,
        ``patient_covariance``, ``therapist_covariance``, ``row_labels``, ``source``).

    Returns
    -------
    EngineResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(30), 5)
    >>> y = 1.0 + rng.normal(size=30)[g] + rng.normal(size=150)
    >>> fit = fit_nested_lmm(y, np.ones((150, 1)), patient=g)
    >>> fit.fixed.index.tolist()
    ['(Intercept)']
    """
    model = NestedLMM(
        X,
        patient=patient,
        therapist=therapist,
        Z_patient=Z_patient,
        Z_therapist=Z_therapist,
        **design,
    )
    return model.fit(y, reml=reml, start=start, check=check)


def _frame_columns(
    data: pd.DataFrame,
    numeric_columns: list[str],
    group_columns: list[str],
    data_name: str,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Complete rows of the used columns, the numeric ones as floats, and a note on drops."""
    needed = numeric_columns + group_columns
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise EngineInputError(
            f"{data_name}: column(s) {missing} not found. Available columns: "
            f"{list(data.columns)}. Check the spelling or rename the columns."
        )
    non_numeric = [
        c
        for c in numeric_columns
        if not pd.api.types.is_numeric_dtype(data[c].dtype)
        or pd.api.types.is_bool_dtype(data[c].dtype)
    ]
    bad_columns = []
    for column in non_numeric:
        converted = pd.to_numeric(data[column], errors="coerce")
        bad = converted.isna() & data[column].notna()
        if bad.any() or pd.api.types.is_bool_dtype(data[column].dtype):
            rows = list(data.index[bad.to_numpy()][:5])
            example = data.loc[bad, column].iloc[:3].tolist() if bad.any() else "booleans"
            bad_columns.append(f"{column!r} (e.g. {example} in rows {rows})")
    if bad_columns:
        raise EngineInputError(
            f"{data_name}: column(s) must be numeric but are not: "
            + "; ".join(bad_columns)
            + ". Recode them as numbers (dummy variables for categories)."
        )
    frame = data[needed]
    complete = frame.notna().all(axis=1).to_numpy()
    notes = []
    if not complete.all():
        counts = frame.isna().sum()
        detail = ", ".join(f"{c}: {int(v)}" for c, v in counts.items() if v)
        notes.append(
            f"{data_name}: dropped {int((~complete).sum())} of {len(frame)} rows with missing "
            f"values ({detail}), as lme4's na.omit does."
        )
        frame = frame.loc[complete]
    if len(frame) == 0:
        raise EngineInputError(f"{data_name}: no complete rows for columns {needed}.")
    numbers = frame[numeric_columns].apply(pd.to_numeric).astype(float)
    return frame, numbers, notes


def _z_matrix(numbers: pd.DataFrame, terms: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Random-effect design of one level from its terms (``"1"`` intercept, ``"0"`` none)."""
    columns, names = [], []
    for term in terms:
        if term == "0":
            continue
        if term == "1":
            columns.append(np.ones(len(numbers)))
            names.append("(Intercept)")
        else:
            columns.append(numbers[term].to_numpy())
            names.append(term)
    if not columns:
        raise EngineInputError(f"random-effect terms {list(terms)} define no columns.")
    return np.column_stack(columns), names


def _frame_design(
    data: pd.DataFrame,
    fixed: Sequence[str],
    intercept: bool,
    patient: str,
    patient_terms: Sequence[str],
    therapist: str | None,
    therapist_terms: Sequence[str],
    response: str,
    data_name: str,
    patient_covariance: str,
    therapist_covariance: str,
) -> tuple[NestedLMM, np.ndarray, list[str]]:
    if not isinstance(data, pd.DataFrame):
        raise EngineInputError(f"{data_name}: data must be a pandas DataFrame.")
    for what, terms in (("patient_terms", patient_terms), ("therapist_terms", therapist_terms)):
        if isinstance(terms, str):
            raise EngineInputError(f"{what} must be a list of terms, e.g. ['1', 'session'].")
    if isinstance(fixed, str):
        raise EngineInputError("fixed must be a list of column names, e.g. ['x_within'].")

    def term_columns(terms: Sequence[str]) -> list[str]:
        return [t for t in terms if t not in ("1", "0")]

    group_columns = [patient] + ([therapist] if therapist is not None else [])
    numeric_columns = list(
        dict.fromkeys(
            [response, *fixed, *term_columns(patient_terms)]
            + (term_columns(therapist_terms) if therapist is not None else [])
        )
    )
    frame, numbers, notes = _frame_columns(data, numeric_columns, group_columns, data_name)
    x_columns = (["(Intercept)"] if intercept else []) + list(fixed)
    x = (
        np.column_stack(
            ([np.ones(len(frame))] if intercept else []) + [numbers[c].to_numpy() for c in fixed]
        )
        if x_columns
        else np.zeros((len(frame), 0))
    )
    zp, zp_names = _z_matrix(numbers, patient_terms)
    kwargs: dict[str, Any] = {}
    if therapist is not None:
        zt, zt_names = _z_matrix(numbers, therapist_terms)
        kwargs = {
            "therapist": frame[therapist],
            "Z_therapist": zt,
            "therapist_terms": zt_names,
            "therapist_name": therapist,
            "therapist_covariance": therapist_covariance,
        }
    model = NestedLMM(
        x,
        patient=frame[patient],
        Z_patient=zp,
        fixed_names=x_columns,
        patient_terms=zp_names,
        patient_name=patient,
        patient_covariance=patient_covariance,
        row_labels=frame.index,
        source=data_name,
        **kwargs,
    )
    return model, numbers[response].to_numpy(), notes


def fit_nested_lmm_frame(
    data: pd.DataFrame,
    fixed: Sequence[str],
    *,
    response: str = "y",
    intercept: bool = True,
    patient: str = "patient_id",
    patient_terms: Sequence[str] = ("1",),
    therapist: str | None = None,
    therapist_terms: Sequence[str] = ("1",),
    reml: bool = True,
    start: Any = None,
    check: bool = True,
    patient_covariance: str = "unstructured",
    therapist_covariance: str = "unstructured",
    data_name: str = "data",
) -> EngineResult:
    """Fit a nested linear mixed model to columns of a data frame.

    ``fit_nested_lmm_frame(d, ["x_within", "x_between", "session"], patient="patient_id",
    patient_terms=["1", "session"], therapist="therapist_id")`` is lme4's
    ``lmer(y ~ x_within + x_between + session + (1 + session | patient_id) +
    (1 | therapist_id), d)``.

    Parameters
    ----------
    data : pandas.DataFrame
        Long data, one row per observation.
    fixed : sequence of str
        Numeric columns with fixed effects (besides the intercept).
    response : str, default "y"
        Response column.
    intercept : bool, default True
        Include a fixed intercept ``(Intercept)``.
    patient : str, default "patient_id"
        Column of the inner grouping factor (the only one of a two-level model).
    patient_terms : sequence of str, default ("1",)
        Random terms at the patient level: ``"1"`` for the intercept, column names for
        slopes (``"0"`` is ignored; leave out ``"1"`` for slopes without intercept).
    therapist : str, optional
        Column of the outer grouping factor (patients nested in it).
    therapist_terms : sequence of str, default ("1",)
        Random terms at the therapist level.
    reml : bool, default True
        REML or ML.
    start : array_like, optional
        Starting ``theta``.
    check : bool, default True
        Second optimiser run from another start.
    patient_covariance, therapist_covariance : {"unstructured", "diagonal"}
        Covariance structure per level (``"diagonal"`` is lme4's ``||``).
    data_name : str, default "data"
        Name of the data in error messages.

    Returns
    -------
    EngineResult
        Rows with a missing value in a used column are dropped (lme4's ``na.omit``); the
        count is in ``warnings``.

    Raises
    ------
    EngineInputError
        Missing or non-numeric columns, non-nested ids, aliased fixed effects, ...
    """
    model, y = nested_lmm_from_frame(
        data,
        fixed,
        response=response,
        intercept=intercept,
        patient=patient,
        patient_terms=patient_terms,
        therapist=therapist,
        therapist_terms=therapist_terms,
        patient_covariance=patient_covariance,
        therapist_covariance=therapist_covariance,
        data_name=data_name,
        _stacklevel=3,
    )
    result = model.fit(y, reml=reml, start=start, check=check)
    result.warnings[:0] = model.frame_notes
    return result


def nested_lmm_from_frame(
    data: pd.DataFrame,
    fixed: Sequence[str],
    *,
    response: str = "y",
    intercept: bool = True,
    patient: str = "patient_id",
    patient_terms: Sequence[str] = ("1",),
    therapist: str | None = None,
    therapist_terms: Sequence[str] = ("1",),
    patient_covariance: str = "unstructured",
    therapist_covariance: str = "unstructured",
    data_name: str = "data",
    _stacklevel: int = 2,
) -> tuple[NestedLMM, np.ndarray]:
    """Build the :class:`NestedLMM` design and response of :func:`fit_nested_lmm_frame`.

    Parameters
    ----------
    data, fixed, response, intercept, patient, patient_terms, therapist, therapist_terms,
    patient_covariance, therapist_covariance, data_name
        As in :func:`fit_nested_lmm_frame`.

    Returns
    -------
    tuple of (NestedLMM, numpy.ndarray)
        The design and the response (complete rows only; dropping rows is warned about,
        and the warnings are kept in the design's ``frame_notes``).
    """
    model, y, notes = _frame_design(
        data,
        fixed,
        intercept,
        patient,
        patient_terms,
        therapist,
        therapist_terms,
        response,
        data_name,
        patient_covariance,
        therapist_covariance,
    )
    for note in notes:
        warnings.warn(note, EngineWarning, stacklevel=_stacklevel)
    model.frame_notes = notes
    return model, y


def _replicate_row(model: NestedLMM, fit: FixedEffectsFit) -> dict[str, float]:
    """One bootstrap replicate as a row: fixed effects, sigma, then SDs and correlations."""
    row = dict(zip(model.fixed_names, fit.beta, strict=True))
    row["sigma"] = math.sqrt(fit.sigma2)
    terms_of = model._terms_of()
    for group, values in fit.covariances.items():
        sds = np.sqrt(np.diag(values))
        terms = list(terms_of[group])
        for i, term in enumerate(terms):
            row[f"sd({group}: {term})"] = sds[i]
        if not model._is_diagonal(group):
            for j in range(len(terms)):
                for i in range(j + 1, len(terms)):
                    denom = sds[i] * sds[j]
                    row[f"cor({group}: {terms[j]}, {terms[i]})"] = (
                        values[i, j] / denom if denom > 0 else math.nan
                    )
    return row


def warm_started_bootstrap(
    model: NestedLMM,
    result: EngineResult,
    n_replicates: int = 1000,
    *,
    seed: int = 20240611,
    check: bool = False,
    progress: bool = False,
) -> BootstrapResult:
    """Parametric bootstrap: simulate from the fitted model and refit, warm-started.

    The engine's path of :func:`helpers.effects.parametric_bootstrap` (the entry point for
    fits of :func:`helpers.models.fit_mixed`); call it directly for a :class:`NestedLMM`
    design built from arrays or with :func:`nested_lmm_from_frame`.  Every replicate is
    refitted on the same design with :meth:`NestedLMM.fit_fixed` (estimates only), starting
    from ``result.theta``; the curvature of the first replicate that converged seeds the
    optimiser of the later ones (``curvature=``), which then need about half the deviance
    evaluations.  The replicates are a fixed sequence, so the result is reproducible.

    Parameters
    ----------
    model : NestedLMM
        The design ``result`` was fitted on.
    result : EngineResult
        The fit to simulate from (its ``reml`` is used for the refits).
    n_replicates : int, default 1000
        Number of simulated data sets.
    seed : int, default 20240611
        Seed of ``numpy.random.default_rng``.
    check : bool, default False
        Second optimiser start for every replicate (slower).
    progress : bool, default False
        Show a ``tqdm`` progress bar.

    Returns
    -------
    BootstrapResult
        Replicate estimates; replicates that did not converge or were singular are kept and
        flagged (one summary :class:`EngineWarning` is emitted when there are any).
    """
    if int(n_replicates) < 1:
        raise SettingsError(f"n_replicates must be at least 1; got {n_replicates!r}.")
    rng = np.random.default_rng(seed)
    rows, thetas, converged, singular, n_warnings = [], [], [], [], []
    evaluations = 0
    iterator = range(int(n_replicates))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="bootstrap")
    curvature = None
    for _ in iterator:
        y_star = model.simulate(result, rng)
        fit = model.fit_fixed(
            y_star, reml=result.reml, start=result.theta, curvature=curvature, check=check
        )
        if curvature is None and fit.converged:
            curvature = fit.hessian  # of the first replicate that converged: seeds the rest
        rows.append(_replicate_row(model, fit))
        thetas.append(fit.theta)
        converged.append(fit.converged)
        singular.append(fit.singular)
        n_warnings.append(int(not fit.converged) + int(fit.singular))
        evaluations += fit.n_evaluations
    converged_arr = np.array(converged)
    singular_arr = np.array(singular)
    if (~converged_arr).any() or singular_arr.any():
        warnings.warn(
            f"parametric bootstrap: {int((~converged_arr).sum())} of {n_replicates} "
            f"replicates did not pass the convergence checks and {int(singular_arr.sum())} "
            "were singular fits (kept and flagged in BootstrapResult).",
            EngineWarning,
            stacklevel=2,
        )
    return BootstrapResult(
        estimates=pd.DataFrame(rows),
        theta=np.array(thetas),
        converged=converged_arr,
        singular=singular_arr,
        n_evaluations=evaluations,
        seed=seed,
        n_warnings=np.array(n_warnings, dtype=int),
    )
