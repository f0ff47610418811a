"""Profile-likelihood confidence intervals for linear mixed models, as lme4's profile.

:func:`profile_intervals` gives the intervals of lme4's ``confint(fit, method =
"profile")`` (Bates, Maechler, Bolker & Walker 2015, J Stat Softw 67(1), section 5.1) for
a :class:`helpers.models.MixedResult` fitted by the vectorised engine: standard deviations
and correlations of the random effects, the residual standard deviation ``sigma`` and the
fixed effects.  :func:`share_interval` gives a profile interval for a grouping factor's
share of the variance in a random-intercept model (the therapist share of
:func:`helpers.models.icc_from_null`), which lme4 does not offer.

Method
------
A profile-likelihood interval (Venzon & Moolgavkar 1988, Appl Stat 37(1), 87-94; Pawitan
2001, *In All Likelihood*, sections 3.4 and 10.7) holds the values ``v`` of one parameter
for which the deviance minimised over all other parameters with the parameter fixed at
``v``, ``D(v)``, is within ``chi2_1(level)`` of the overall minimum ``D0``; equivalently
``|zeta(v)| <= z_(1+level)/2`` for the signed root ``zeta(v) = sign(v - vhat) sqrt(D(v) -
D0)``.  As in lme4:

* the variance parameters are profiled on the standard-deviation/correlation scale: the
  deviance is written as a function of every random-effect sd and correlation and of
  ``sigma`` (lme4's ``devfun2``), the fixed effects profiled out; for a fixed sd the
  others are minimised over (sd >= 0, correlations in [-1, 1], sigma > 0);
* a fixed effect ``beta_j`` is profiled with the other fixed effects, the covariance
  parameters and ``sigma`` minimised over (lme4 refits with ``beta_j x_j`` as an offset);
  here the minimum over the other fixed effects and ``sigma`` is taken in closed form from
  the engine's factorisation and the covariance parameters are optimised numerically;
* every profile is of the **ML** deviance, REML fits included: lme4's ``devfun2`` refits a
  REML fit by ML (``refitML``) before profiling, so the intervals of a REML fit are centred
  on the ML estimates (``profile_centre``), while ``estimate`` is the fit's own;
* an interval ends at the parameter's bound (0 for an sd, -1 or 1 for a correlation) when
  the profile does not reach the cutoff before it; ``lower_at_bound``/``upper_at_bound``
  say so.

Unlike lme4, which evaluates the profile on a grid and interpolates it with splines, each
endpoint is found by root finding on ``zeta`` (secant steps to bracket it, then Brent's
method), so it is the likelihood-ratio endpoint up to the optimiser's tolerance.

The share of group ``g`` among the random intercepts, ``s = tau_g^2 / (sum of the
intercept variances + sigma^2)``, is profiled through the reparametrisation (share, total
variance, the other factor's proportion of the remaining variance): with ``s`` and that
proportion fixed the relative covariance factor ``theta`` is known and the total variance
is profiled out in closed form (the engine's profiled criterion), so the profile of ``s``
is a one-dimensional minimisation per point.  It covers ``s = 0``, where a Wald interval
(``estimate -+ z se``) breaks down.  The share profile uses the fit's criterion (REML for
REML fits) unless told otherwise.

The engine's private factorisation (``NestedLMM._factor`` and its centring attributes) is
read, not changed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from helpers.engine import NestedLMM
from helpers.errors import ModelSpecificationError, SettingsError

__all__ = [
    "INTERVAL_COLUMNS",
    "IntervalWarning",
    "ShareProfile",
    "engine_model",
    "profile_intervals",
    "share_interval",
    "share_profile",
    "share_profile_from_model",
]

#: Columns of the tables returned by :func:`profile_intervals` and :func:`share_interval`.
INTERVAL_COLUMNS = [
    "parameter",
    "group",
    "kind",
    "estimate",
    "lower",
    "upper",
    "level",
    "method",
    "criterion",
    "profile_centre",
    "lower_at_bound",
    "upper_at_bound",
]
#: A profile point whose deviance is below the fit's by more than this raises a warning.
LOWER_DEVIANCE_TOL = 1e-6
_GRAD_STEP = 2e-6
_ESCAPE_STEPS = (0.05, 0.3, 1.0)
_MAX_SEARCH_STEPS = 60
_MAX_STEP_GROWTH = 10.0
_OVERSHOOT = 1.25
_MAX_ITER = 500
#: Stop when the predicted decrease of the deviance (BFGS model) is below this.
_PREDICTED_TOL = 1e-10


class IntervalWarning(UserWarning):
    """A profile found a lower deviance than the fit, or an interval is unbounded."""


# --------------------------------------------------------------------------------------
# The engine model of a fit and its sd/correlation parameterisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """One grouping factor's random effects: terms, covariance type and theta slice."""

    group: str
    terms: tuple[str, ...]
    diagonal: bool
    offset: int
    pattern: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return len(self.pattern)


def engine_model(result) -> NestedLMM:
    """The :class:`helpers.engine.NestedLMM` of an engine fit (same rows, design, groups).

    Parameters
    ----------
    result : helpers.models.MixedResult
        A fit with ``result.engine == "engine"`` (``fit_mixed``'s default for the models
        of the engine's class).

    Returns
    -------
    helpers.engine.NestedLMM
        Its criterion at ``result.theta`` is ``-2 * result.loglik``.

    Raises
    ------
    ValueError
        If the fit is not an engine fit.
    """
    if getattr(result, "engine", None) != "engine" or result.engine_result is None:
        raise ModelSpecificationError(
            "profile intervals need a fit by the engine; refit with fit_mixed(..., "
            f"engine='engine') (this fit used {getattr(result, 'engine', '?')!r})."
        )
    fit = result.engine_result
    groups = list(fit.random_effects)  # the patient (inner or only) factor first
    frame, design = result.model_frame, result._random_design
    terms = {g: list(fit.covariance[g].index) for g in groups}
    correlated = set(result.varcomp.loc[result.varcomp["term2"] != "", "group"])
    kinds = {
        g: "unstructured" if g in correlated or len(terms[g]) == 1 else "diagonal" for g in groups
    }
    patient, therapist = groups[0], (groups[1] if len(groups) > 1 else None)
    return NestedLMM(
        result.design.to_numpy(dtype=float),
        patient=frame[patient].to_numpy(),
        therapist=None if therapist is None else frame[therapist].to_numpy(),
        Z_patient=design[patient][terms[patient]].to_numpy(dtype=float),
        Z_therapist=None
        if therapist is None
        else design[therapist][terms[therapist]].to_numpy(dtype=float),
        fixed_names=list(result.fixed.index),
        patient_terms=terms[patient],
        therapist_terms=None if therapist is None else terms[therapist],
        patient_name=patient,
        therapist_name=therapist or "therapist",
        patient_covariance=kinds[patient],
        therapist_covariance=kinds[therapist] if therapist else "unstructured",
        row_labels=frame.index,
    )


def _blocks(model: NestedLMM) -> list[_Block]:
    """The random-effect blocks of ``model`` in theta order (patient, then therapist)."""
    blocks, offset = [], 0
    levels = [(model.patient_name, model.patient_terms, model._pattern_p)]
    if model.nested:
        levels.append((model.therapist_name, model.therapist_terms, model._pattern_t))
    for group, terms, pattern in levels:
        diagonal = len(terms) > 1 and all(i == j for i, j in pattern)
        blocks.append(_Block(group, tuple(terms), diagonal, offset, tuple(pattern)))
        offset += len(pattern)
    return blocks


def _lme4_term(term: str) -> str:
    return "(Intercept)" if term == "Intercept" else term


def _variance_parameters(blocks: Sequence[_Block]) -> list[tuple[str, str, str]]:
    """``(name, kind, group)`` of each sd/correlation in theta order, then ``sigma``.

    Names follow lme4's ``confint(..., oldNames = FALSE)``: ``sd_(Intercept)|g``,
    ``cor_x.(Intercept)|g`` (row term, then column term), ``sigma``.
    """
    out = []
    for block in blocks:
        for i, j in block.pattern:
            if i == j:
                out.append((f"sd_{_lme4_term(block.terms[i])}|{block.group}", "sd", block.group))
            else:
                pair = f"{_lme4_term(block.terms[i])}.{_lme4_term(block.terms[j])}"
                out.append((f"cor_{pair}|{block.group}", "cor", block.group))
    out.append(("sigma", "sigma", "Residual"))
    return out


def _lambda(block: _Block, theta: np.ndarray) -> np.ndarray:
    q = len(block.terms)
    lam = np.zeros((q, q))
    values = theta[block.offset : block.offset + block.size]
    for value, (i, j) in zip(values, block.pattern, strict=True):
        lam[i, j] = value
    return lam


def _phi_from_theta(theta: np.ndarray, sigma: float, blocks: Sequence[_Block]) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: theta and sigma to sds, correlations and sigma."""
    phi = []
    for block in blocks:
        lam = _lambda(block, theta)
        cov = sigma**2 * (lam @ lam.T)
        sds = np.sqrt(np.diag(cov))
        for i, j in block.pattern:
            if i == j:
                phi.append(sds[i])
            else:
                denom = sds[i] * sds[j]
                phi.append(cov[i, j] / denom if denom > 0 else 0.0)
    return np.array([*phi, sigma])


def _correlation_cholesky(corr: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a correlation matrix, allowing singular (PSD) ones."""
    q = corr.shape[0]
    low = np.zeros((q, q))
    for j in range(q):
        pivot = corr[j, j] - low[j, :j] @ low[j, :j]
        if pivot < -1e-12:
            return None
        low[j, j] = math.sqrt(max(pivot, 0.0))
        for i in range(j + 1, q):
            entry = corr[i, j] - low[i, :j] @ low[j, :j]
            if low[j, j] > 0.0:
                low[i, j] = entry / low[j, j]
            elif abs(entry) > 1e-10:
                return None
    return low


def _theta_from_phi(phi: np.ndarray, blocks: Sequence[_Block]) -> np.ndarray | None:
    """lme4's ``Sv_to_Cv``: sds, correlations and sigma (last) to theta; None if invalid."""
    sigma = phi[-1]
    theta = np.empty(len(phi) - 1)
    for block in blocks:
        values = phi[block.offset : block.offset + block.size]
        q = len(block.terms)
        sds, corr = np.zeros(q), np.eye(q)
        for value, (i, j) in zip(values, block.pattern, strict=True):
            if i == j:
                sds[i] = value
            else:
                corr[i, j] = corr[j, i] = value
        low = _correlation_cholesky(corr)
        if low is None:
            return None
        lam = sds[:, None] * low / sigma
        theta[block.offset : block.offset + block.size] = [lam[i, j] for i, j in block.pattern]
    return theta


class _Deviance:
    """Deviances of one model and response, from the engine's factorisation."""

    def __init__(self, model: NestedLMM, y: np.ndarray) -> None:
        self.model = model
        self.suff = model._response_statistics(np.asarray(y, dtype=float))
        self.blocks = _blocks(model)
        p = model.p
        transform = np.eye(p)
        if model.intercept_column is not None:
            transform[model.intercept_column, :] -= model._x_means
            transform[model.intercept_column, model.intercept_column] = 1.0
        self.transform = transform

    def profiled(self, theta: np.ndarray, reml: bool) -> float:
        """lme4's criterion in theta (sigma and beta profiled out)."""
        return self.model._criterion(self.model._factor(theta, self.suff), reml)

    def sd_scale(self, phi: np.ndarray) -> float:
        """ML deviance at sds, correlations and sigma ``phi`` (beta profiled out)."""
        theta = _theta_from_phi(phi, self.blocks)
        sigma = phi[-1]
        if theta is None or not sigma > 0.0:
            return math.inf
        factor = self.model._factor(theta, self.suff)
        if factor is None:
            return math.inf
        n = self.model.nobs
        return (
            factor["logdet_l"] + factor["pwrss"] / sigma**2 + n * math.log(2.0 * math.pi * sigma**2)
        )

    def fixed(self, theta: np.ndarray, j: int, value: float) -> float:
        """ML deviance at theta with ``beta_j = value`` (other betas and sigma profiled)."""
        factor = self.model._factor(theta, self.suff)
        if factor is None:
            return math.inf
        beta_j, var_j = self.fixed_estimate(factor, j)
        n = self.model.nobs
        rss = factor["pwrss"] + (value - beta_j) ** 2 / var_j
        return factor["logdet_l"] + n * (1.0 + math.log(2.0 * math.pi * rss / n))

    def fixed_estimate(self, factor: dict, j: int) -> tuple[float, float]:
        """``beta_j`` at theta and its variance over sigma^2, ``[(X'V^-1 X)^-1]_jj``."""
        p = self.model.p
        chol = factor["chol_x"]
        lx = chol[:p, :p]
        gamma = np.linalg.solve(lx.T, chol[p, :p])
        row = self.transform[j]
        beta_j = float(row @ gamma)
        if j == self.model.intercept_column:
            beta_j += self.suff["shift"]
        w = np.linalg.solve(lx, row)
        return beta_j, float(w @ w)


# --------------------------------------------------------------------------------------
# Bounded minimisation and endpoint search
# --------------------------------------------------------------------------------------


def _gradient(fun, x: np.ndarray, f0: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Forward-difference gradient (backward at an upper bound)."""
    grad = np.empty_like(x)
    for i in range(x.size):
        h = _GRAD_STEP * max(1.0, abs(x[i]))
        if x[i] + h > upper[i]:
            h = -h
        shifted = x.copy()
        shifted[i] += h
        grad[i] = (fun(shifted) - f0) / h
    return grad


def _bfgs_box(fun, x0, lower, upper, inv_hess=None) -> tuple[np.ndarray, float, np.ndarray]:
    """Minimise ``fun`` in a box by projected BFGS with an active set.

    A small dense method for a handful of parameters, as the engine's optimiser (scipy's
    L-BFGS-B costs milliseconds per iteration in BLAS calls, more than a deviance).  A
    previous point's inverse Hessian ``inv_hess`` makes a warm start converge in a few
    iterations; the final one is returned for the next point.
    """
    x = np.clip(np.asarray(x0, dtype=float), lower, upper)
    f = fun(x)
    g = _gradient(fun, x, f, lower, upper)
    scaled = inv_hess is not None
    inv_hess = np.eye(x.size) if inv_hess is None else inv_hess
    quiet = 0
    for _ in range(_MAX_ITER):
        free = ~(((x <= lower) & (g > 0.0)) | ((x >= upper) & (g < 0.0)))
        direction = np.where(free, -(inv_hess @ np.where(free, g, 0.0)), 0.0)
        if not float(direction @ g) < 0.0:
            inv_hess, scaled = np.eye(x.size), False
            direction = np.where(free, -g, 0.0)
            if not float(direction @ g) < 0.0:
                break
        if not scaled:
            direction *= min(1.0, 0.5 / np.max(np.abs(direction)))
        step, trial, f_trial = 1.0, x, f
        while step > 1e-14:
            trial = np.clip(x + step * direction, lower, upper)
            f_trial = fun(trial)
            if f_trial <= f + 1e-4 * float(g @ (trial - x)):
                break
            step *= 0.5
        else:
            break
        g_trial = _gradient(fun, trial, f_trial, lower, upper)
        s_vec, y_vec = trial - x, g_trial - g
        quiet = quiet + 1 if f - f_trial <= 1e-14 * max(1.0, abs(f)) else 0
        x, f, g = trial, f_trial, g_trial
        sy = float(s_vec @ y_vec)
        if sy > 1e-12 * np.linalg.norm(s_vec) * np.linalg.norm(y_vec):
            if not scaled:
                inv_hess, scaled = np.eye(x.size) * sy / float(y_vec @ y_vec), True
            left = np.eye(x.size) - np.outer(s_vec, y_vec) / sy
            inv_hess = left @ inv_hess @ left.T + np.outer(s_vec, s_vec) / sy
        g_free = np.where(free, g, 0.0)
        if quiet >= 2 or (scaled and 0.5 * float(g_free @ inv_hess @ g_free) < _PREDICTED_TOL):
            break
    return x, f, inv_hess


def _minimise(fun, x0, lower, upper, escapable, inv_hess=None):
    """Minimise ``fun`` in a box; probe off the bound for parameters stuck at 0.

    ``escapable`` marks parameters (standard deviations, diagonal theta elements) in whose
    direction the deviance is flat at 0, where a gradient method cannot leave the bound.
    """
    x, f, inv_hess = _bfgs_box(fun, x0, lower, upper, inv_hess)
    for _ in range(3):
        best, best_f = None, f - 1e-9
        for i in np.flatnonzero(escapable & (x <= lower + 1e-7)):
            for step in _ESCAPE_STEPS:
                trial = x.copy()
                trial[i] = lower[i] + step
                trial_f = fun(trial)
                if trial_f < best_f:
                    best, best_f = trial, trial_f
        if best is None:
            break
        x, f, inv_hess = _bfgs_box(fun, best, lower, upper)
    return x, f, inv_hess


def _endpoint(
    zeta: Callable[[float], float],
    centre: float,
    direction: int,
    target: float,
    bound: float,
    first_step: float,
    xtol: float,
) -> tuple[float, bool]:
    """Where ``direction * zeta`` reaches ``target`` between ``centre`` and ``bound``.

    Secant steps on the (nearly linear) signed root bracket the crossing, then Brent's
    method refines it.  Returns ``(bound, True)`` when the profile stays below the target
    up to the bound (lme4's convention), ``(±inf, True)`` if no crossing is found.
    """
    if centre == bound:
        return bound, True

    def excess(v: float) -> float:
        return direction * zeta(v) - target

    def clip(v: float) -> float:
        return min(v, bound) if direction > 0 else max(v, bound)

    a, ga = centre, -target
    b = clip(centre + direction * first_step)
    for _ in range(_MAX_SEARCH_STEPS):
        gb = excess(b)
        if gb >= 0.0:
            lo, hi = (a, b) if a < b else (b, a)
            root = optimize.brentq(excess, lo, hi, xtol=xtol, rtol=1e-9)
            return float(root), False
        if b == bound:
            return bound, True
        width = abs(b - a)
        slope = (gb - ga) / width
        step = _MAX_STEP_GROWTH * width
        if slope > 0.0:
            step = min(step, _OVERSHOOT * (-gb) / slope)
        a, ga = b, gb
        b = clip(b + direction * step)
    return direction * math.inf, True


# --------------------------------------------------------------------------------------
# Profiles of the sd/correlation parameters and the fixed effects (ML deviance)
# --------------------------------------------------------------------------------------


class _Profile:
    """ML profiles of one fit: zeta functions of each parameter, with warm starts."""

    def __init__(self, model: NestedLMM, y: np.ndarray, theta_ml: np.ndarray) -> None:
        self.dev = _Deviance(model, y)
        self.theta_ml = theta_ml
        factor = model._factor(theta_ml, self.dev.suff)
        self.base = model._criterion(factor, False)
        self.lowest = self.base
        sigma_ml = math.sqrt(factor["pwrss"] / model.nobs)
        self.params = _variance_parameters(self.dev.blocks)
        self.phi_ml = _phi_from_theta(theta_ml, sigma_ml, self.dev.blocks)
        kinds = [kind for _, kind, _ in self.params]
        self.kinds = np.array(kinds)
        self.lower = np.array(
            [{"sd": 0.0, "cor": -1.0, "sigma": 1e-8 * sigma_ml}[k] for k in kinds]
        )
        self.upper = np.array([1.0 if k == "cor" else math.inf for k in kinds])
        floor = np.where(self.kinds == "cor", 0.5, 0.1 * sigma_ml)
        self.scale = np.where(
            (self.kinds != "cor") & (np.abs(self.phi_ml) > 1e-3 * sigma_ml), self.phi_ml, floor
        )
        self.fixed_ml = [self.dev.fixed_estimate(factor, j)[0] for j in range(model.p)]

    def _zeta(self, centre: float, nuisance, start: np.ndarray) -> Callable[[float], float]:
        """Memoised signed root of a profile, warm-started from the nearest point.

        ``nuisance(value, x0, inv_hess) -> (x, deviance, inv_hess)`` minimises over the
        other parameters with this one fixed at ``value``.
        """
        points: dict[float, tuple[np.ndarray, np.ndarray | None, float]] = {
            centre: (start, None, 0.0)
        }

        def zeta(value: float) -> float:
            if value in points:
                return points[value][2]
            nearest = min(points, key=lambda v: abs(v - value))
            x, deviance, inv_hess = nuisance(value, *points[nearest][:2])
            self.lowest = min(self.lowest, deviance)
            root = math.sqrt(max(deviance - self.base, 0.0))
            points[value] = (x, inv_hess, math.copysign(root, value - centre))
            return points[value][2]

        return zeta

    def variance_zeta(self, k: int) -> Callable[[float], float]:
        free = np.arange(self.phi_ml.size) != k
        scale = self.scale[free]
        lower, upper = self.lower[free] / scale, self.upper[free] / scale
        escapable = self.kinds[free] == "sd"

        def nuisance(value: float, start: np.ndarray, inv_hess):
            def fun(x):
                return self.dev.sd_scale(np.insert(x * scale, k, value))

            x, f, inv_hess = _minimise(fun, start / scale, lower, upper, escapable, inv_hess)
            return x * scale, f, inv_hess

        return self._zeta(float(self.phi_ml[k]), nuisance, self.phi_ml[free])

    def fixed_zeta(self, j: int) -> Callable[[float], float]:
        model = self.dev.model
        scale = np.maximum(np.abs(self.theta_ml), 0.05)
        lower, upper = model.theta_lower / scale, np.full(scale.size, math.inf)
        escapable = model.theta_lower == 0.0

        def nuisance(value: float, start: np.ndarray, inv_hess):
            def fun(x):
                return self.dev.fixed(x * scale, j, value)

            x, f, inv_hess = _minimise(fun, start / scale, lower, upper, escapable, inv_hess)
            return x * scale, f, inv_hess

        return self._zeta(float(self.fixed_ml[j]), nuisance, self.theta_ml)

    def interval(self, zeta, centre, target, bounds, first_step, xtol):
        low, low_bound = _endpoint(zeta, centre, -1, target, bounds[0], first_step, xtol)
        high, high_bound = _endpoint(zeta, centre, 1, target, bounds[1], first_step, xtol)
        return low, high, low_bound, high_bound

    def variance_interval(self, k: int, target: float):
        """Interval of sd, correlation or sigma number ``k`` (first steps ~ its scale)."""
        kind = self.kinds[k]
        centre, scale = float(self.phi_ml[k]), float(self.scale[k])
        bounds = (0.0 if kind == "sigma" else float(self.lower[k]), float(self.upper[k]))
        step = (0.02 if kind == "sigma" else 0.1) * scale
        return self.interval(self.variance_zeta(k), centre, target, bounds, step, 1e-7 * scale)

    def fixed_interval(self, j: int, target: float, se: float):
        """Interval of fixed effect ``j`` (first step half a standard error)."""
        centre = float(self.fixed_ml[j])
        bounds = (-math.inf, math.inf)
        return self.interval(self.fixed_zeta(j), centre, target, bounds, 0.5 * se, 1e-7 * se)


def _ml_theta(model: NestedLMM, result) -> np.ndarray:
    """lme4's ``refitML``: the ML optimum (the fit's own theta if it is an ML fit)."""
    if not result.reml:
        return np.asarray(result.theta, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(result.response_values, reml=False, start=result.theta, check=True)
    return np.asarray(fit.theta, dtype=float)


def _select(which, variance_names: list[str], fixed_names: list[str]) -> list[str]:
    """Parameters to profile: all, ``"theta_"`` (variance), ``"beta_"`` (fixed) or names."""
    everything = variance_names + fixed_names
    if which is None:
        return everything
    if isinstance(which, str):
        which = [which]
    chosen: list[str] = []
    for item in which:
        if item == "theta_":
            chosen += variance_names
        elif item == "beta_":
            chosen += fixed_names
        elif item in everything:
            chosen.append(item)
        else:
            raise SettingsError(
                f"unknown parameter {item!r}; choose from {everything}, 'theta_' or 'beta_'."
            )
    return [name for name in everything if name in set(chosen)]


def _row(parameter, group, kind, estimate, centre, interval, level) -> dict:
    low, high, low_bound, high_bound = interval
    return {
        "parameter": parameter,
        "group": group,
        "kind": kind,
        "estimate": float(estimate),
        "lower": float(low),
        "upper": float(high),
        "level": level,
        "method": "profile",
        "criterion": "ML",
        "profile_centre": float(centre),
        "lower_at_bound": bool(low_bound),
        "upper_at_bound": bool(high_bound),
    }


def profile_intervals(result, *, level: float = 0.95, which=None) -> pd.DataFrame:
    """Profile-likelihood confidence intervals, as lme4's ``confint(fit, "profile")``.

    Parameters
    ----------
    result : helpers.models.MixedResult
        An engine fit of :func:`helpers.models.fit_mixed` (REML or ML); the model is
        rebuilt from its ``model_frame``, ``design`` and ``response_values``.
    level : float, default 0.95
        Confidence level.
    which : None, str or sequence of str
        ``None`` for every parameter; ``"theta_"`` for the random-effect sds and
        correlations and ``sigma``; ``"beta_"`` for the fixed effects; or parameter names.

    Returns
    -------
    pandas.DataFrame
        One row per parameter, columns :data:`INTERVAL_COLUMNS`: ``parameter`` (lme4's
        names ``sd_(Intercept)|g``, ``cor_x.(Intercept)|g``, ``sigma``; fixed effects by
        their names in ``result.fixed``), ``group``, ``kind`` (``sd, cor, sigma, fixed``),
        ``estimate`` (the fit's, REML or ML), ``lower``, ``upper``, ``level``, ``method``
        (``"profile"``), ``criterion`` (``"ML"``: profiles are of the ML deviance, REML
        fits included, as in lme4), ``profile_centre`` (the ML estimate), and
        ``lower_at_bound``/``upper_at_bound`` (the profile did not reach the cutoff before
        the parameter's bound, which is then the endpoint: 0 for an sd, +-1 for a
        correlation).

    Warns
    -----
    IntervalWarning
        If a profile reaches a deviance lower than the fit's (the fit had not converged).
    """
    if not 0.0 < level < 1.0:
        raise SettingsError(f"level must be in (0, 1); got {level}.", fix="Pass e.g. level=0.95.")
    model = engine_model(result)
    prof = _Profile(model, result.response_values, _ml_theta(model, result))
    target = float(stats.norm.ppf(0.5 + level / 2.0))
    variance_names = [name for name, _, _ in prof.params]
    fixed_names = list(result.fixed.index)
    sigma = math.sqrt(float(result.varcomp["variance_or_cov"].iloc[-1]))
    estimates = _phi_from_theta(np.asarray(result.theta, dtype=float), sigma, prof.dev.blocks)
    rows = []
    for name in _select(which, variance_names, fixed_names):
        if name in variance_names:
            k = variance_names.index(name)
            _, kind, group = prof.params[k]
            interval = prof.variance_interval(k, target)
            rows.append(_row(name, group, kind, estimates[k], prof.phi_ml[k], interval, level))
        else:
            j = fixed_names.index(name)
            interval = prof.fixed_interval(j, target, float(result.fixed["se"].iloc[j]))
            estimate = result.fixed["estimate"].iloc[j]
            rows.append(_row(name, "fixed", "fixed", estimate, prof.fixed_ml[j], interval, level))
    table = pd.DataFrame(rows, columns=INTERVAL_COLUMNS)
    _warn(prof, table)
    return table


def _warn(prof: _Profile, table: pd.DataFrame) -> None:
    if prof.lowest < prof.base - LOWER_DEVIANCE_TOL:
        warnings.warn(
            f"profiling found an ML deviance {prof.lowest:.10g} below the fit's "
            f"{prof.base:.10g}: the fit had not reached the optimum (lme4 stops with "
            "'profiling detected new, lower deviance'); refit and profile again.",
            IntervalWarning,
            stacklevel=3,
        )
    endless = table.loc[np.isinf(table[["lower", "upper"]]).any(axis=1), "parameter"]
    if len(endless):
        warnings.warn(
            f"the profile of {list(endless)} did not reach the cutoff: the interval is "
            "unbounded (the data carry almost no information on the parameter).",
            IntervalWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------
# The share of variance of one grouping factor (random-intercept models)
# --------------------------------------------------------------------------------------


@dataclass
class ShareProfile:
    """Profile of one factor's share of the variance in a random-intercept model.

    With ``K`` random intercepts (one or two nested factors) the share of factor ``g`` is
    ``s = tau_g^2 / (sum_k tau_k^2 + sigma^2)``.  For fixed ``s`` the other factor's share
    of the remaining variance, ``r``, is the only free parameter besides the total
    variance (profiled out in closed form): ``theta_g^2 = s / ((1 - s)(1 - r))`` and
    ``theta_other^2 = r / (1 - r)``.  :meth:`deviance` minimises over ``r`` (none with a
    single factor).

    Attributes
    ----------
    group : str
        The factor whose share is profiled.
    reml : bool
        Whether the criterion is REML (else ML).
    estimate : float
        The share at the optimum.
    min_deviance : float
        The criterion at the optimum (``-2`` times the REML or ML log-likelihood).
    """

    group: str
    reml: bool
    estimate: float
    min_deviance: float
    _dev: _Deviance = field(repr=False)
    _position: int = field(repr=False)

    def _theta(self, share: float, rest: float) -> np.ndarray:
        theta = np.empty(len(self._dev.blocks))
        theta[self._position] = math.sqrt(share / ((1.0 - share) * (1.0 - rest)))
        if theta.size == 2:
            theta[1 - self._position] = math.sqrt(rest / (1.0 - rest))
        return theta

    def nuisance(self, share: float) -> float:
        """The other factor's share of the remaining variance that minimises the criterion."""
        if len(self._dev.blocks) == 1:
            return 0.0

        def fun(rest: float) -> float:
            return self._dev.profiled(self._theta(share, rest), self.reml)

        grid = np.linspace(0.0, 1.0, 11)[:-1]
        values = [fun(r) for r in grid]
        best = int(np.argmin(values))
        low, high = grid[max(best - 1, 0)], min(grid[best] + 0.1, 1.0 - 1e-12)
        res = optimize.minimize_scalar(
            fun, bounds=(low, high), method="bounded", options={"xatol": 1e-10}
        )
        return float(res.x) if res.fun <= values[best] else float(grid[best])

    def deviance(self, share: float) -> float:
        """The criterion minimised over the other parameters with the share fixed."""
        if not 0.0 <= share < 1.0:
            raise SettingsError(f"a share must be in [0, 1); got {share}.")
        return self._dev.profiled(self._theta(share, self.nuisance(share)), self.reml)

    def interval(self, level: float = 0.95) -> tuple[float, float, bool, bool]:
        """``(lower, upper, lower_at_bound, upper_at_bound)`` of the profile interval.

        The endpoints solve ``deviance(s) = min_deviance + chi2_1(level)``; the lower one is
        0 (``lower_at_bound``) when ``deviance(0)`` is below that cutoff.
        """
        cutoff = self.min_deviance + float(stats.chi2.ppf(level, 1))

        def excess(share: float) -> float:
            return self.deviance(share) - cutoff

        lower, lower_bound = 0.0, True
        if self.estimate > 0.0 and excess(0.0) > 0.0:
            lower = optimize.brentq(excess, 0.0, self.estimate, xtol=1e-10, rtol=1e-9)
            lower_bound = False
        below = self.estimate
        for k in range(1, _MAX_SEARCH_STEPS):
            trial = 1.0 - (1.0 - self.estimate) * 0.5**k
            if excess(trial) > 0.0:
                upper = optimize.brentq(excess, below, trial, xtol=1e-10, rtol=1e-9)
                return float(lower), float(upper), lower_bound, False
            below = trial
        return float(lower), 1.0, lower_bound, True

    def wald(self, level: float = 0.95) -> tuple[float, float]:
        """Wald interval ``estimate -+ z se``, se from the profile's curvature (comparison).

        ``se = sqrt(2 / D''(s))`` (the observed information on the share); ``NaN`` at an
        estimate of 0, where the Wald interval is undefined.
        """
        s, step = self.estimate, 1e-3 * max(self.estimate, 1e-3)
        if s <= step:
            return math.nan, math.nan
        second = self.deviance(s + step) - 2 * self.min_deviance + self.deviance(s - step)
        z = float(stats.norm.ppf(0.5 + level / 2.0))
        se = math.sqrt(2.0 / (second / step**2)) if second > 0 else math.nan
        return s - z * se, s + z * se


def _intercept_only(model: NestedLMM, where: str) -> None:
    columns = [(t, model.zp[:, i]) for i, t in enumerate(model.patient_terms)]
    columns += [(t, model.zt[:, i]) for i, t in enumerate(model.therapist_terms)]
    slopes = [t for t, z in columns if not np.all(z == z[0])]
    if slopes or len(columns) > len(_blocks(model)):
        raise ModelSpecificationError(
            f"{where} needs a random-intercept-only model such as 'y ~ 1 + (1 | therapist_id) "
            f"+ (1 | patient_id)'; this one has random slopes ({sorted(set(slopes))}), so a "
            "share of variance depends on the covariate values."
        )


def share_profile_from_model(
    model: NestedLMM, y, *, reml: bool = True, group: str | None = None, theta=None
) -> ShareProfile:
    """:class:`ShareProfile` of an engine model and response (no ``MixedResult`` needed).

    Parameters
    ----------
    model : helpers.engine.NestedLMM
        A random-intercept model (one factor, or two nested ones).
    y : array_like
        Response.
    reml : bool, default True
        Profile the REML criterion (else ML).
    group : str, optional
        Factor whose share is profiled (default: the outer factor, i.e. the therapist of a
        nested model, or the only factor).
    theta : array_like, optional
        The optimum of the criterion if known (else the model is fitted).
    """
    _intercept_only(model, "a share of variance")
    dev = _Deviance(model, np.asarray(y, dtype=float))
    names = [block.group for block in dev.blocks]
    group = names[-1] if group is None else group
    if group not in names:
        raise SettingsError(f"unknown grouping factor {group!r}; the model has {names}.")
    if theta is None:
        theta = model.fit(y, reml=reml, check=False, emit_warnings=False).theta
    theta = np.asarray(theta, dtype=float)
    position = names.index(group)
    estimate = float(theta[position] ** 2 / (1.0 + float(theta @ theta)))
    minimum = dev.profiled(theta, reml)
    return ShareProfile(group, reml, estimate, minimum, dev, position)


def share_profile(result, *, group: str | None = None, reml: bool | None = None) -> ShareProfile:
    """:class:`ShareProfile` of a random-intercept fit of :func:`helpers.models.fit_mixed`.

    Parameters
    ----------
    result : helpers.models.MixedResult
        An engine fit with random intercepts only, e.g. ``outcome ~ 1 + (1 | therapist_id)
        + (1 | patient_id)``; the share is that of :func:`helpers.models.icc_from_null`.
    group : str, optional
        Factor whose share is profiled (default: the outer, therapist, factor).
    reml : bool, optional
        Criterion to profile (default: the fit's).
    """
    model = engine_model(result)
    reml = result.reml if reml is None else reml
    theta = result.theta if reml == result.reml else None
    return share_profile_from_model(
        model, result.response_values, reml=reml, group=group, theta=theta
    )


def share_interval(
    result, *, group: str | None = None, level: float = 0.95, reml: bool | None = None
) -> pd.DataFrame:
    """Profile-likelihood interval of a factor's share of the variance.

    Parameters
    ----------
    result : helpers.models.MixedResult
        An engine fit with random intercepts only (see :func:`share_profile`).
    group : str, optional
        Factor whose share is profiled (default: the outer, therapist, factor).
    level : float, default 0.95
        Confidence level.
    reml : bool, optional
        Criterion to profile (default: the fit's, REML for lme4's default fits).

    Returns
    -------
    pandas.DataFrame
        One row, columns :data:`INTERVAL_COLUMNS`; ``parameter`` is ``share_<group>``,
        ``kind`` ``"share"``; ``lower_at_bound`` is true when the interval reaches 0.
    """
    prof = share_profile(result, group=group, reml=reml)
    interval = prof.interval(level)
    row = _row(
        f"share_{prof.group}", prof.group, "share", prof.estimate, prof.estimate, interval, level
    )
    row["criterion"] = "REML" if prof.reml else "ML"
    return pd.DataFrame([row], columns=INTERVAL_COLUMNS)
