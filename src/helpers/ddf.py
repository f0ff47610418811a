r"""Small-sample inference for the fixed effects of nested linear mixed models.

Wald tests of fixed effects treat the variance components as known; with few groups (e.g.
40 therapists) they are liberal.  This module gives the two standard corrections, computed
as R's packages do:

* **Satterthwaite** (Satterthwaite 1946), as ``lmerTest`` (Kuznetsova, Brockhoff &
  Christensen 2017): for a contrast :math:`\ell` the denominator df are
  :math:`\nu = 2 V^2 / (g^\top A g)` with :math:`V = \ell^\top \operatorname{Cov}(\hat\beta)
  \ell`, :math:`g` its gradient in the covariance parameters :math:`\varphi = (\theta,
  \sigma)` (lme4's relative Cholesky factors and the residual SD) and :math:`A = 2 H^{+}`
  their asymptotic covariance, :math:`H` the Hessian of the REML (or ML) deviance in
  :math:`\varphi` (Moore-Penrose inverse over eigenvalues above ``1e-8``).  A test of
  several contrasts decomposes :math:`L \operatorname{Cov}(\hat\beta) L^\top` into
  eigenvectors, gives each its :math:`\nu_m` and combines them as ``lmerTest``'s
  ``contestMD`` does: :math:`E = \sum \nu_m / (\nu_m - 2)`, ``ddf = 2E / (E - q)`` (2 if any
  :math:`\nu_m \le 2`, the mean when all :math:`\nu_m` agree).
* **Kenward-Roger** (Kenward & Roger 1997), as ``pbkrtest`` (Halekoh & Højsgaard 2014): the
  covariance of :math:`\hat\beta` adjusted for the uncertainty of the variance parameters
  (``vcovAdj``: :math:`\Phi_A = \Phi + 2 \Phi U \Phi` with the expected REML information of
  the variance parameters :math:`\gamma`, i.e. the (co)variances of each random-effect block
  and the residual variance, in which :math:`V` is linear), and for a contrast matrix
  :math:`L` of rank :math:`q` the scaled statistic :math:`F = \lambda\, W / q` with
  :math:`W = (L\hat\beta)^\top (L \Phi_A L^\top)^{-1} L\hat\beta` and the denominator df
  ``4 + (q + 2) / (q rho - 1)`` of ``pbkrtest``'s ``.KR_adjust``.  REML fits only (as
  ``lmerTest``; ``pbkrtest`` refits an ML model by REML).

Unlike the R packages, nothing here is numerical differentiation: the Hessian of the
deviance and the Jacobian of :math:`\operatorname{Cov}(\hat\beta)` are analytic.  With
:math:`V = \sigma^2 W`, :math:`W = I + Z \Lambda\Lambda^\top Z^\top` and :math:`P` the REML
projection, every term is a trace or quadratic form in :math:`P` (or :math:`V^{-1}`) and
:math:`Z D Z^\top`-shaped derivative matrices (:math:`D = \partial(\Lambda\Lambda^\top)`).
The random structures are nested, so :math:`V` is block-diagonal by the outermost grouping
factor; per outer group only the small matrices :math:`Z_g^\top W_g^{-1} Z_g`,
:math:`Z_g^\top W_g^{-1} X_g` and :math:`Z_g^\top W_g^{-1} y_g` (dimension the number of
random effects in the group) are formed, from per-group sums of the data, and never an
``n x n`` matrix.  Cost: one pass over the rows, then O(G q^2 k^2) for G outer groups with
q random effects each and k covariance parameters.

References
----------
Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance
components. *Biometrics Bulletin, 2*(6), 110-114.

Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package: Tests in
linear mixed effects models. *Journal of Statistical Software, 82*(13), 1-26.

Kenward, M. G., & Roger, J. H. (1997). Small sample inference for fixed effects from
restricted maximum likelihood. *Biometrics, 53*(3), 983-997.

Halekoh, U., & Højsgaard, S. (2014). A Kenward-Roger approximation and parametric bootstrap
methods for tests in linear mixed models - the R package pbkrtest. *Journal of Statistical
Software, 59*(9), 1-32.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from helpers.errors import ModelDataError, ModelSpecificationError, SettingsError

__all__ = [
    "DDF_METHODS",
    "DdfWarning",
    "MixedDesign",
    "RandomLevel",
    "SmallSampleInference",
    "contrast_ftest",
    "fstat_ddf",
]

#: Values of ``ddf=`` accepted by :func:`helpers.models.fit_mixed` and the contrast tests.
DDF_METHODS: tuple[str, ...] = ("asymptotic", "satterthwaite", "kenward-roger")
#: Eigenvalues of the deviance Hessian at or below this are dropped (lmerTest's ``tol``).
HESSIAN_TOL = 1e-8
#: Relative tolerance on eigenvalues of ``L Cov L'`` (lmerTest's ``eps``, sqrt(machine eps)).
CONTRAST_EPS = math.sqrt(np.finfo(float).eps)


class DdfWarning(UserWarning):
    """The deviance Hessian is not positive definite (lmerTest warns the same way)."""


# --------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomLevel:
    """One grouping factor: its random-effect design and the blocks of its covariance.

    Attributes
    ----------
    name : str
        Name of the grouping factor.
    codes : numpy.ndarray
        Integer group code of each row (0 .. number of groups - 1).
    z : numpy.ndarray
        Random-effect design of this factor, shape (n, q).
    blocks : tuple of tuple of int
        Column indices of ``z`` that share one unstructured covariance block; a column in a
        block of its own is an uncorrelated effect (lme4's ``||``).
    """

    name: str
    codes: np.ndarray
    z: np.ndarray
    blocks: tuple[tuple[int, ...], ...]

    @property
    def q(self) -> int:
        """Number of random effects per group."""
        return int(self.z.shape[1])


@dataclass(frozen=True)
class MixedDesign:
    """Data of a nested linear mixed model, independent of the software that fitted it.

    Attributes
    ----------
    x : numpy.ndarray
        Fixed-effect design, shape (n, p).
    y : numpy.ndarray
        Response, shape (n,).
    levels : tuple of RandomLevel
        One grouping factor, or two with the second nested in the first (outer first).
    """

    x: np.ndarray
    y: np.ndarray
    levels: tuple[RandomLevel, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.levels) <= 2:
            raise SettingsError("MixedDesign takes one grouping factor or two nested ones.")
        if len(self.levels) == 2:
            outer, inner = self.levels
            n_inner = int(inner.codes.max()) + 1
            outer_of_inner = np.full(n_inner, -1)
            outer_of_inner[inner.codes] = outer.codes
            if np.any(outer_of_inner[inner.codes] != outer.codes):
                raise ModelDataError(
                    f"{inner.name!r} is not nested in {outer.name!r}.",
                    fix="Give each inner unit one outer unit (e.g. each patient one therapist).",
                )


def _cholesky_psd(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed)."""
    k = matrix.shape[0]
    low = np.zeros((k, k))
    for j in range(k):
        pivot = matrix[j, j] - low[j, :j] @ low[j, :j]
        if pivot <= 1e-14 * max(1.0, abs(matrix[j, j])):
            continue
        low[j, j] = math.sqrt(pivot)
        for i in range(j + 1, k):
            low[i, j] = (matrix[i, j] - low[i, :j] @ low[j, :j]) / low[j, j]
    return low


def _unit(q: int, i: int, j: int, symmetric: bool) -> np.ndarray:
    """``e_i e_j'`` (``+ e_j e_i'`` when ``symmetric`` and i != j), a q x q matrix."""
    out = np.zeros((q, q))
    out[i, j] = 1.0
    if symmetric:
        out[j, i] = 1.0
    return out


# --------------------------------------------------------------------------------------
# Per-outer-group statistics and the trace algebra
# --------------------------------------------------------------------------------------


@dataclass
class _Shared:
    """A block-diagonal q x q matrix shared by every outer group: ``diag(A_o, I_m x A_i)``."""

    outer: np.ndarray
    inner: np.ndarray


class _GroupAlgebra:
    """Per-outer-group ``S = Z'W^-1 Z``, ``F = Z'W^-1 X``, ``r = Z'W^-1 (y - X beta)``.

    Every outer group's random effects are laid out as the outer factor's ``q_o`` effects
    followed by ``m_max`` slots of ``q_i`` effects (one per inner group, unused slots zero),
    so all groups are stacked in arrays of shape (G, q, .) and a shared block-diagonal
    matrix (:class:`_Shared`) is applied slot by slot.
    """

    def __init__(self, design: MixedDesign, lambdas: Sequence[np.ndarray]) -> None:
        self.n, self.p = design.x.shape
        zr, ir = self._layout(design)
        c, zx, zy = self._group_sums(design, zr, ir)
        lam = _Shared(lambdas[0], lambdas[1] if len(lambdas) > 1 else np.zeros((0, 0)))
        self.relcov = _Shared(lam.outer @ lam.outer.T, lam.inner @ lam.inner.T)
        self._apply_inverse(design, lam, c, zx, zy)

    def _layout(self, design: MixedDesign) -> tuple[np.ndarray, np.ndarray]:
        """Random-effect values of each row and their column in its outer group's layout."""
        outer, n = design.levels[0], self.n
        self.q_o, self.g = outer.q, int(outer.codes.max()) + 1
        idx = [np.broadcast_to(np.arange(self.q_o), (n, self.q_o))]
        z_cols = [outer.z]
        self.q_i, self.m = 0, 0
        if len(design.levels) == 2:
            inner = design.levels[1]
            self.q_i = inner.q
            # Slot of each inner group within its outer group (0, 1, ... in code order).
            inner_outer = outer.codes[np.unique(inner.codes, return_index=True)[1]]
            order = np.lexsort((np.arange(len(inner_outer)), inner_outer))
            counts = np.bincount(inner_outer, minlength=self.g)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            slot = np.empty(len(inner_outer), dtype=np.intp)
            slot[order] = np.arange(len(order)) - starts[inner_outer[order]]
            self.m = int(counts.max())
            idx.append(self.q_o + slot[inner.codes][:, None] * self.q_i + np.arange(self.q_i))
            z_cols.append(inner.z)
        self.q = self.q_o + self.m * self.q_i
        return np.concatenate(z_cols, axis=1), np.concatenate(idx, axis=1)

    def _group_sums(self, design: MixedDesign, zr: np.ndarray, ir: np.ndarray):
        """Per outer group ``Z'Z`` (G, q, q), ``Z'X`` (G, q, p) and ``Z'y`` (G, q)."""
        x, y, codes = design.x, design.y, design.levels[0].codes
        g, q, p = self.g, self.q, self.p
        c, zx, zy = np.zeros(g * q * q), np.zeros(g * q * p), np.zeros(g * q)
        for a in range(zr.shape[1]):
            for b in range(zr.shape[1]):
                flat = (codes * q + ir[:, a]) * q + ir[:, b]
                c += np.bincount(flat, zr[:, a] * zr[:, b], minlength=g * q * q)
            flat = ((codes[:, None] * q + ir[:, a : a + 1]) * p + np.arange(p)).ravel()
            zx += np.bincount(flat, (zr[:, a : a + 1] * x).ravel(), minlength=g * q * p)
            zy += np.bincount(codes * q + ir[:, a], zr[:, a] * y, minlength=g * q)
        return c.reshape(g, q, q), zx.reshape(g, q, p), zy.reshape(g, q)

    def _apply_inverse(self, design, lam: _Shared, c, zx, zy) -> None:
        """``W^-1 = I - Z Lambda K^-1 Lambda' Z'`` with ``K = I + Lambda' Z'Z Lambda``."""
        x, y, q, p = design.x, design.y, self.q, self.p
        h = self.left(lam, np.concatenate([c, zx, zy[:, :, None]], axis=2), transpose=True)
        solved = np.linalg.solve(np.eye(q) + self.right(h[:, :, :q], lam), h)
        correction = np.einsum("gaj,gak->gjk", h[:, :, :q], solved)  # (Lambda'C)' K^-1 [.]
        self.s = c - correction[:, :, :q]
        self.f = zx - correction[:, :, q : q + p]
        hx, hy = h[:, :, q : q + p], h[:, :, q + p]
        self.xwx = x.T @ x - np.einsum("gaj,gak->jk", hx, solved[:, :, q : q + p])
        xwy = x.T @ y - np.einsum("gaj,ga->j", hx, solved[:, :, q + p])
        ywy = float(y @ y - np.einsum("ga,ga->", hy, solved[:, :, q + p]))
        m_inv = np.linalg.inv(self.xwx)  # M = (X'W^-1 X)^-1
        self.m_inv = (m_inv + m_inv.T) / 2
        self.beta = self.m_inv @ xwy
        self.pwrss = ywy - float(xwy @ self.beta)
        self.r = zy - correction[:, :, q + p] - self.f @ self.beta  # Z'P_W y

    # ---- shared block-diagonal products ------------------------------------------------

    def right(self, stack: np.ndarray, mat: _Shared) -> np.ndarray:
        """``stack @ B`` for a stack (G, a, q) and a shared block-diagonal B."""
        out = np.empty((*stack.shape[:2], self.q))
        out[:, :, : self.q_o] = stack[:, :, : self.q_o] @ mat.outer
        if self.m:
            g, a = stack.shape[:2]
            inner = stack[:, :, self.q_o :].reshape(g, a, self.m, self.q_i) @ mat.inner
            out[:, :, self.q_o :] = inner.reshape(g, a, self.m * self.q_i)
        return out

    def left(self, mat: _Shared, stack: np.ndarray, transpose: bool = False) -> np.ndarray:
        """``B @ stack`` (``B' @ stack`` if ``transpose``) for a stack (G, q, b)."""
        flip = _Shared(mat.outer, mat.inner) if transpose else _Shared(mat.outer.T, mat.inner.T)
        return np.transpose(self.right(np.transpose(stack, (0, 2, 1)), flip), (0, 2, 1))

    # ---- traces and quadratic forms ----------------------------------------------------

    def q_form(self, b: _Shared) -> np.ndarray:
        """``X'W^-1 Z B Z'W^-1 X = sum_g F_g' B F_g`` (p x p)."""
        return np.einsum("gaj,gak->jk", self.f, self.left(b, self.f))

    def r_form(self, a: _Shared, b: _Shared) -> np.ndarray:
        """``sum_g F_g' A S_g B F_g`` (p x p)."""
        af = self.left(a, self.f, transpose=True)  # A' F
        bf = self.left(b, self.f)
        return np.einsum("gaj,gab,gbk->jk", af, self.s, bf)

    def trace(self, b: _Shared, reml: bool) -> float:
        """``tr(P_W Z B Z')`` (REML) or ``tr(W^-1 Z B Z')`` (ML)."""
        value = float(np.einsum("gaa->", self.right(self.s, b)))
        if reml:
            value -= float(np.sum(self.m_inv * self.q_form(b)))
        return value

    def trace2(self, a: _Shared, b: _Shared, reml: bool) -> float:
        """``tr(P_W ZAZ' P_W ZBZ')`` (REML) or the same with ``W^-1`` for ``P_W`` (ML)."""
        sa, sb = self.right(self.s, a), self.right(self.s, b)
        value = float(np.einsum("gij,gji->", sa, sb))
        if reml:
            mixed = self.r_form(a, b) + self.r_form(b, a)
            value -= float(np.sum(self.m_inv * mixed))
            qa, qb = self.q_form(a), self.q_form(b)
            value += float(np.sum((self.m_inv @ qa) * (self.m_inv @ qb).T))
        return value

    def quad(self, b: _Shared) -> float:
        """``y'P_W Z B Z' P_W y = sum_g r_g' B r_g``."""
        return float(np.einsum("ga,ga->", self.r, self.left(b, self.r[:, :, None])[:, :, 0]))

    def quad2(self, a: _Shared, b: _Shared) -> float:
        """``y'P_W ZAZ' P_W ZBZ' P_W y``."""
        ar = self.left(a, self.r[:, :, None], transpose=True)[:, :, 0]
        br = self.left(b, self.r[:, :, None])[:, :, 0]
        value = float(np.einsum("ga,gab,gb->", ar, self.s, br))
        fa = np.einsum("gaj,ga->j", self.f, ar)
        fb = np.einsum("gaj,ga->j", self.f, br)
        return value - float(fa @ self.m_inv @ fb)


# --------------------------------------------------------------------------------------
# Satterthwaite and Kenward-Roger
# --------------------------------------------------------------------------------------


def fstat_ddf(nu: Sequence[float], tol: float = 1e-8) -> float:
    """Denominator df of an F statistic that averages ``q`` independent squared t's.

    ``lmerTest``'s rule (``get_Fstat_ddf``): one t gives its own df; df that all agree
    within ``tol`` give their mean; otherwise ``E = sum(nu / (nu - 2))`` and
    ``2 E / (E - q)``, or 2 when some ``nu <= 2``.

    Parameters
    ----------
    nu : sequence of float
        Denominator df of the t statistics.
    tol : float, default 1e-8
        Tolerance on consecutive differences for the "all equal" case.

    Returns
    -------
    float
        The denominator df.
    """
    values = np.asarray(nu, dtype=float)
    if values.size == 1:
        return float(values[0])
    if np.all(np.abs(np.diff(values)) < tol):
        return float(values.mean())
    if np.any(values <= 2):
        return 2.0
    expected = float(np.sum(values / (values - 2)))
    return 2 * expected / (expected - values.size)


@dataclass
class _KR:
    """Kenward-Roger pieces: adjusted covariance, ``P_r`` matrices and ``W``."""

    vcov_adj: np.ndarray
    p_mats: list[np.ndarray]
    w: np.ndarray


@dataclass
class _Satt:
    """Satterthwaite pieces: Hessian, covariance of ``(theta, sigma)``, Jacobians."""

    hessian: np.ndarray
    vcov_varpar: np.ndarray
    jacobians: list[np.ndarray]
    notes: list[str] = field(default_factory=list)


class SmallSampleInference:
    """Satterthwaite and Kenward-Roger tests of fixed effects at given covariance parameters.

    Parameters
    ----------
    design : MixedDesign
        Fixed-effect design, response and grouping (outer factor first).
    covariances : sequence of numpy.ndarray
        Per grouping factor, the covariance matrix of its random effects on the data scale
        (zero between effects of different blocks), in ``design.levels`` order.
    sigma2 : float
        Residual variance.
    reml : bool
        Whether the parameters are REML estimates (Satterthwaite then uses the REML
        deviance, as lmerTest; Kenward-Roger needs REML).

    Notes
    -----
    The covariance parameters are taken as given (the optimum of any fitter).  lme4's
    ``theta`` are the Cholesky factors of ``covariances[l] / sigma2``, block by block; a
    block on the boundary (zero variance) has zero columns, as in lme4.
    """

    def __init__(
        self,
        design: MixedDesign,
        covariances: Sequence[np.ndarray],
        sigma2: float,
        reml: bool,
    ) -> None:
        if len(covariances) != len(design.levels):
            raise SettingsError("Give one covariance matrix per grouping factor.")
        self.design, self.reml = design, bool(reml)
        self.sigma = math.sqrt(sigma2)
        self.lambdas: list[np.ndarray] = []
        for level, cov in zip(design.levels, covariances, strict=True):
            lam = np.zeros((level.q, level.q))
            for block in level.blocks:
                sub = np.asarray(cov, dtype=float)[np.ix_(block, block)] / sigma2
                lam[np.ix_(block, block)] = _cholesky_psd(sub)
            self.lambdas.append(lam)
        self.alg = _GroupAlgebra(design, self.lambdas)
        self._satt: _Satt | None = None
        self._kr: _KR | None = None

    # ---- basic quantities ------------------------------------------------------------

    @property
    def beta(self) -> np.ndarray:
        """GLS estimates of the fixed effects at the covariance parameters."""
        return self.alg.beta

    @property
    def vcov(self) -> np.ndarray:
        """lme4's ``vcov()``: ``sigma^2 (X'W^-1 X)^-1``."""
        return self.sigma**2 * self.alg.m_inv

    def _embed(self, level: int, mat: np.ndarray) -> _Shared:
        q_o, q_i = self.alg.q_o, self.alg.q_i
        if level == 0:
            return _Shared(mat, np.zeros((q_i, q_i)))
        return _Shared(np.zeros((q_o, q_o)), mat)

    def _theta_units(self) -> list[tuple[int, np.ndarray]]:
        """``(level, E_k)`` per lme4 ``theta`` element (``E_k = d Lambda / d theta_k``)."""
        units = []
        for index, level in enumerate(self.design.levels):
            for block in level.blocks:
                for c, col in enumerate(block):
                    for row in block[c:]:
                        units.append((index, _unit(level.q, row, col, symmetric=False)))
        return units

    # ---- Satterthwaite ---------------------------------------------------------------

    def _satterthwaite(self) -> _Satt:
        """Hessian of the deviance in ``(theta, sigma)`` and Jacobians of ``Cov(beta)``."""
        if self._satt is not None:
            return self._satt
        alg, sigma, reml = self.alg, self.sigma, self.reml
        units = self._theta_units()
        derivs = [
            self._embed(lv, e @ self.lambdas[lv].T + self.lambdas[lv] @ e.T) for lv, e in units
        ]
        k = len(units)
        hess = np.zeros((k + 1, k + 1))
        for a in range(k):
            for b in range(a, k):
                value = -alg.trace2(derivs[a], derivs[b], reml)
                value += 2 * alg.quad2(derivs[a], derivs[b]) / sigma**2
                (la, ea), (lb, eb) = units[a], units[b]
                if la == lb:
                    second = self._embed(la, ea @ eb.T + eb @ ea.T)
                    value += alg.trace(second, reml) - alg.quad(second) / sigma**2
                hess[a, b] = hess[b, a] = value
            hess[a, k] = hess[k, a] = 2 * alg.quad(derivs[a]) / sigma**3
        m = alg.n - alg.p if reml else alg.n
        hess[k, k] = -2 * m / sigma**2 + 6 * alg.pwrss / sigma**4
        values, vectors = np.linalg.eigh(hess)
        notes = []
        if np.any(values < -HESSIAN_TOL):
            notes.append(
                f"Model failed to converge with {int(np.sum(values < -HESSIAN_TOL))} negative "
                "eigenvalue(s) of the deviance Hessian in (theta, sigma)."
            )
        if np.any(np.abs(values) <= HESSIAN_TOL):
            notes.append(
                f"{int(np.sum(np.abs(values) <= HESSIAN_TOL))} eigenvalue(s) of the deviance "
                "Hessian are close to zero; those directions are dropped (Moore-Penrose "
                "inverse, as lmerTest)."
            )
        for note in notes:
            warnings.warn(note, DdfWarning, stacklevel=3)
        pos = values > HESSIAN_TOL
        vcov_varpar = 2 * (vectors[:, pos] / values[pos]) @ vectors[:, pos].T
        m_inv = alg.m_inv
        jac = [sigma**2 * m_inv @ alg.q_form(d) @ m_inv for d in derivs]
        jac.append(2 * sigma * m_inv)
        self._satt = _Satt(hess, vcov_varpar, jac, notes)
        return self._satt

    def satterthwaite_1d(self, ell: np.ndarray) -> tuple[float, float]:
        """Variance and Satterthwaite df of the contrast ``ell' beta``.

        Parameters
        ----------
        ell : numpy.ndarray
            Contrast weights, length p.

        Returns
        -------
        tuple of float
            ``(ell' Cov(beta) ell, df)``.
        """
        satt = self._satterthwaite()
        ell = np.asarray(ell, dtype=float)
        var = float(ell @ self.vcov @ ell)
        grad = np.array([ell @ j @ ell for j in satt.jacobians])
        return var, float(2 * var**2 / (grad @ satt.vcov_varpar @ grad))

    def satterthwaite(self, contrast: np.ndarray, rhs: np.ndarray | None = None) -> dict:
        """F test of ``L beta = rhs`` with Satterthwaite df (lmerTest's ``contestMD``).

        Parameters
        ----------
        contrast : numpy.ndarray
            Contrast matrix L, shape (r, p); rank-deficient L is reduced to its rank.
        rhs : numpy.ndarray, optional
            Hypothesised values (default 0).

        Returns
        -------
        dict
            ``F, ndf, ddf, p``.
        """
        lmat = np.atleast_2d(np.asarray(contrast, dtype=float))
        beta = self.beta.copy()
        if rhs is not None and np.any(np.asarray(rhs) != 0):
            beta = beta - np.linalg.pinv(lmat) @ np.broadcast_to(rhs, lmat.shape[:1])
        if lmat.shape[0] == 1:
            var, df = self.satterthwaite_1d(lmat[0])
            return _f_result(float(lmat[0] @ beta) ** 2 / var, 1, df)
        values, vectors = np.linalg.eigh(lmat @ self.vcov @ lmat.T)
        values, vectors = values[::-1], vectors[:, ::-1]
        pos = values > max(CONTRAST_EPS * values[0], 0.0)
        q = int(pos.sum())
        if q == 0:
            raise ModelSpecificationError(
                "The contrast matrix has no estimable direction (L Cov L' = 0).",
                fix="Give weights that combine fixed effects the model estimates.",
            )
        ptl = vectors[:, :q].T @ lmat
        satt = self._satterthwaite()
        nus = []
        for m in range(q):
            grad = np.array([ptl[m] @ j @ ptl[m] for j in satt.jacobians])
            nus.append(2 * values[m] ** 2 / float(grad @ satt.vcov_varpar @ grad))
        fvalue = float(np.sum((ptl @ beta) ** 2 / values[:q]) / q)
        return _f_result(fvalue, q, fstat_ddf(nus))

    # ---- Kenward-Roger ---------------------------------------------------------------

    def _kenward_roger(self) -> _KR:
        """pbkrtest's ``vcovAdj``: adjusted covariance, its ``P`` matrices and ``W``."""
        if self._kr is not None:
            return self._kr
        if not self.reml:
            raise ModelSpecificationError(
                "Kenward-Roger is defined for REML fits (lmerTest refuses ML fits, pbkrtest "
                "refits them by REML); refit with reml=True."
            )
        alg, s2 = self.alg, self.sigma**2
        # Variance parameters gamma: each block's (co)variances, then the residual variance.
        # Every G_r = dV/dgamma_r is written a W + Z B Z' (relative W = V / sigma^2).
        params: list[tuple[float, _Shared]] = []
        for index, level in enumerate(self.design.levels):
            for block in level.blocks:
                for c, col in enumerate(block):
                    for row in block[c:]:
                        unit = _unit(level.q, row, col, symmetric=True)
                        params.append((0.0, self._embed(index, unit)))
        relcov = alg.relcov
        params.append((1.0, _Shared(-relcov.outer, -relcov.inner)))
        k = len(params)
        n_resid = alg.n - alg.p
        traces = [alg.trace(b, reml=True) for _, b in params]
        q_forms = [alg.q_form(b) for _, b in params]
        info = np.zeros((k, k))
        for r in range(k):
            for s in range(r, k):
                (ar, br), (as_, bs) = params[r], params[s]
                value = ar * as_ * n_resid + ar * traces[s] + as_ * traces[r]
                value += alg.trace2(br, bs, reml=True)
                info[r, s] = info[s, r] = value / s2**2
        eigen = np.linalg.eigvalsh(info)
        w = 2 * (np.linalg.inv(info) if np.min(np.abs(eigen)) > 1e-10 else np.linalg.pinv(info))
        m_inv = alg.m_inv
        u = np.zeros_like(m_inv)
        for r in range(k):
            for s in range(k):
                y_rs = alg.r_form(params[r][1], params[s][1]) - q_forms[r] @ m_inv @ q_forms[s]
                u += w[r, s] * y_rs / s2**3
        phi = self.vcov
        vcov_adj = phi + 2 * phi @ u @ phi
        p_mats = [-(a * alg.xwx + qf) / s2**2 for (a, _), qf in zip(params, q_forms, strict=True)]
        self._kr = _KR((vcov_adj + vcov_adj.T) / 2, p_mats, w)
        return self._kr

    @property
    def vcov_kr(self) -> np.ndarray:
        """Kenward-Roger adjusted covariance of the fixed effects (pbkrtest's ``vcovAdj``)."""
        return self._kenward_roger().vcov_adj

    def _kr_scaling(self, lmat: np.ndarray, q: int) -> tuple[float, float]:
        """pbkrtest's ``.KR_adjust``: denominator df and F scaling for contrast ``L``."""
        kr, phi = self._kenward_roger(), self.vcov
        theta = lmat.T @ np.linalg.solve(lmat @ phi @ lmat.T, lmat)
        us = [theta @ phi @ p @ phi for p in kr.p_mats]
        tr = np.array([np.trace(u) for u in us])
        a1 = float(tr @ kr.w @ tr)
        a2 = float(
            sum(
                kr.w[i, j] * np.sum(us[i] * us[j].T) for i in range(len(us)) for j in range(len(us))
            )
        )
        b = (a1 + 6 * a2) / (2 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        denom = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
        v0 = 1 + c1 * b
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        v1, v2 = 1 - c2 * b, 1 - c3 * b
        top = 1 - a2 / q
        ratio = 1.0 if abs(top) < 1e-14 and abs(v1) < 1e-14 else top / v1
        rho = ratio**2 * v0 / v2 / q
        ddf = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(ddf - 2) < 1e-2 else ddf * (1 - a2 / q) / (ddf - 2)
        return ddf, scaling

    def kenward_roger_1d(self, ell: np.ndarray) -> tuple[float, float]:
        """Adjusted variance and Kenward-Roger df of ``ell' beta`` (pbkrtest's ``Lb_ddf``).

        Parameters
        ----------
        ell : numpy.ndarray
            Contrast weights, length p.

        Returns
        -------
        tuple of float
            ``(ell' vcovAdj ell, df)``.
        """
        ell = np.asarray(ell, dtype=float)
        ddf, _ = self._kr_scaling(ell[None, :], 1)
        return float(ell @ self.vcov_kr @ ell), ddf

    def kenward_roger(self, contrast: np.ndarray, rhs: np.ndarray | None = None) -> dict:
        """Scaled F test of ``L beta = rhs`` with Kenward-Roger df (pbkrtest's ``KRmodcomp``).

        Parameters
        ----------
        contrast : numpy.ndarray
            Contrast matrix L, shape (r, p), of full row rank.
        rhs : numpy.ndarray, optional
            Hypothesised values (default 0).

        Returns
        -------
        dict
            ``F`` (scaled), ``ndf``, ``ddf``, ``p``, ``F_unscaled`` and ``F_scaling``.
        """
        lmat = np.atleast_2d(np.asarray(contrast, dtype=float))
        q = int(np.linalg.matrix_rank(lmat))
        if q < lmat.shape[0]:
            raise ModelSpecificationError(
                f"The contrast matrix has rank {q} < {lmat.shape[0]} rows; Kenward-Roger "
                "needs linearly independent rows (drop the redundant ones)."
            )
        diff = lmat @ self.beta - (0.0 if rhs is None else np.asarray(rhs, dtype=float))
        wald = float(diff @ np.linalg.solve(lmat @ self.vcov_kr @ lmat.T, diff))
        ddf, scaling = self._kr_scaling(lmat, q)
        out = _f_result(scaling * wald / q, q, ddf)
        out.update(F_unscaled=wald / q, F_scaling=scaling)
        return out

    # ---- tables ----------------------------------------------------------------------

    def coefficient_table(self, method: str, level: float = 0.95) -> dict[str, np.ndarray]:
        """Per-coefficient ``estimate, se, df, t, p, ci_low, ci_high`` for ``method``.

        Parameters
        ----------
        method : {"satterthwaite", "kenward-roger"}
            Denominator df (and, for Kenward-Roger, the adjusted SEs).
        level : float, default 0.95
            Confidence level of the t intervals.

        Returns
        -------
        dict of str to numpy.ndarray
            Columns of the table, one entry per fixed effect.
        """
        p = self.alg.p
        pieces = [
            self.satterthwaite_1d(e) if method == "satterthwaite" else self.kenward_roger_1d(e)
            for e in np.eye(p)
        ]
        var = np.array([v for v, _ in pieces])
        df = np.array([d for _, d in pieces])
        se = np.sqrt(var)
        tval = self.beta / se
        crit = stats.t.ppf(0.5 + level / 2, df)
        return {
            "estimate": self.beta,
            "se": se,
            "ci_low": self.beta - crit * se,
            "ci_high": self.beta + crit * se,
            "df": df,
            "t": tval,
            "p": 2 * stats.t.sf(np.abs(tval), df),
        }


def _f_result(fvalue: float, ndf: int, ddf: float) -> dict:
    """``F, ndf, ddf, p`` with the upper-tail F probability."""
    return {"F": fvalue, "ndf": ndf, "ddf": ddf, "p": float(stats.f.sf(fvalue, ndf, ddf))}


def contrast_ftest(
    inference: SmallSampleInference | None,
    contrast: np.ndarray,
    method: str,
    *,
    beta: np.ndarray | None = None,
    vcov: np.ndarray | None = None,
    rhs: np.ndarray | None = None,
) -> dict:
    """Test ``L beta = rhs`` by the chosen method.

    Parameters
    ----------
    inference : SmallSampleInference or None
        Needed for ``"satterthwaite"`` and ``"kenward-roger"``.
    contrast : numpy.ndarray
        Contrast matrix L (r x p).
    method : {"asymptotic", "satterthwaite", "kenward-roger"}
        ``"asymptotic"``: Wald chi-square with ``rank(L)`` df from ``beta`` and ``vcov``,
        reported also as ``F = chi2 / ndf`` with ``ddf = inf``.
    beta, vcov : numpy.ndarray, optional
        Estimates and covariance for the asymptotic test.
    rhs : numpy.ndarray, optional
        Hypothesised values (default 0).

    Returns
    -------
    dict
        ``F, ndf, ddf, p`` (and ``chi2`` for asymptotic; ``F_unscaled, F_scaling`` for
        Kenward-Roger).
    """
    lmat = np.atleast_2d(np.asarray(contrast, dtype=float))
    if method == "satterthwaite":
        return inference.satterthwaite(lmat, rhs)
    if method == "kenward-roger":
        return inference.kenward_roger(lmat, rhs)
    if method != "asymptotic":
        raise SettingsError(f"ddf must be one of {DDF_METHODS}; got {method!r}.")
    diff = lmat @ beta - (0.0 if rhs is None else np.asarray(rhs, dtype=float))
    cov = lmat @ vcov @ lmat.T
    q = int(np.linalg.matrix_rank(cov))
    chi2 = float(diff @ np.linalg.pinv(cov) @ diff)
    return {
        "F": chi2 / q,
        "ndf": q,
        "ddf": math.inf,
        "p": float(stats.chi2.sf(chi2, q)),
        "chi2": chi2,
    }
