"""Compiled factorisation of the nested model's penalised least-squares (PLS) system.

The engine (:mod:`helpers.engine`) minimises the profiled deviance over the relative
covariance parameters ``theta``; every evaluation factorises the PLS system

    [ Λp'Zp'ZpΛp + I   Λp'Zp'ZtΛt        Λp'Zp'[X y] ]
    [       .          Λt'Zt'ZtΛt + I    Λt'Zt'[X y] ]
    [       .                .            [X y]'[X y] ]

block by block: one small Cholesky factor per patient, the patients' Schur complements
summed into one small factor per therapist, then the dense ``(p + 1) x (p + 1)`` Schur
complement of the fixed effects and response.  A fit takes one or two hundred
evaluations, and each is a few hundred small operations, so the work is written as plain
loops compiled by numba: a numpy version spends almost all its time in per-call
overhead (about 0.3 ms per evaluation for 160 patients against about 10 µs compiled).

Layouts are "component-major" as in :mod:`helpers.engine`: a stack of ``G`` matrices
``q x r`` is an array ``(q, r, G)`` (square blocks) or ``(q, G, r)`` (borders).
Compiled functions are cached on disk (``cache=True``), so a new process loads them
instead of compiling again.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _cholesky_block(a: np.ndarray, out: np.ndarray) -> bool:
    """Lower Cholesky factor of the small symmetric matrix ``a`` into ``out``; False if not PD."""
    q = a.shape[0]
    for j in range(q):
        pivot = a[j, j]
        for k in range(j):
            pivot -= out[j, k] * out[j, k]
        if not pivot > 0.0:
            return False
        diag = np.sqrt(pivot)
        out[j, j] = diag
        for i in range(j + 1, q):
            entry = a[i, j]
            for k in range(j):
                entry -= out[i, k] * out[j, k]
            out[i, j] = entry / diag
        for i in range(j):
            out[i, j] = 0.0
    return True


@njit(cache=True, inline="always")
def _congruence_block(lam: np.ndarray, stack: np.ndarray, g: int, out: np.ndarray) -> None:
    """``out = Λ' S Λ + I`` for the symmetric ``S = stack[:, :, g]`` (q x q)."""
    q = lam.shape[0]
    for a in range(q):
        for b in range(a, q):
            total = 0.0
            for k in range(q):
                for c in range(q):
                    total += lam[k, a] * stack[k, c, g] * lam[c, b]
            out[a, b] = total + (1.0 if a == b else 0.0)
            out[b, a] = out[a, b]


@njit(cache=True, inline="always")
def _forward_block(low: np.ndarray, rhs: np.ndarray, out: np.ndarray) -> None:
    """Solve ``L X = B`` for one lower-triangular ``L`` (q x q) and ``B`` (q x m)."""
    q, m = rhs.shape
    for c in range(m):
        for i in range(q):
            value = rhs[i, c]
            for k in range(i):
                value -= low[i, k] * out[k, c]
            out[i, c] = value / low[i, i]


@njit(cache=True, inline="always")
def _workspace(q: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scratch arrays of one level: its block, factor, border and solved border."""
    return np.empty((q, q)), np.empty((q, q)), np.empty((q, width)), np.empty((q, width))


@njit(cache=True, inline="always")
def _solve_and_store(
    low: np.ndarray,
    border: np.ndarray,
    solved: np.ndarray,
    g: int,
    chol_stack: np.ndarray,
    solved_stack: np.ndarray,
) -> None:
    """Solve ``L X = B`` for group ``g`` and store ``L`` and ``X`` in the stacks."""
    _forward_block(low, border, solved)
    q, m = solved.shape
    for a in range(q):
        for b in range(q):
            chol_stack[a, b, g] = low[a, b]
        for c in range(m):
            solved_stack[a, g, c] = solved[a, c]


@njit(cache=True)
def _patient_blocks(
    lam_p: np.ndarray,
    lam_t: np.ndarray,
    zpzp: np.ndarray,
    zpr: np.ndarray,
    chol_p: np.ndarray,
    solved_p: np.ndarray,
) -> bool:
    """Factor every patient block; fill ``chol_p`` (qp, qp, G) and ``solved_p`` (qp, G, W)."""
    qp, n_patients, width_all = zpr.shape
    qt = lam_t.shape[0]
    block, low, border, solved = _workspace(qp, width_all)
    for i in range(n_patients):
        _congruence_block(lam_p, zpzp, i, block)
        if not _cholesky_block(block, low):
            return False
        for a in range(qp):  # Λp' Zp'[Zt X y]
            for c in range(width_all):
                total = 0.0
                for k in range(a, qp):
                    total += lam_p[k, a] * zpr[k, i, c]
                border[a, c] = total
        for a in range(qp):  # therapist columns times Λt
            for b in range(qt):
                total = 0.0
                for c in range(b, qt):
                    total += border[a, c] * lam_t[c, b]
                solved[a, b] = total
            for b in range(qt):
                border[a, b] = solved[a, b]
        _solve_and_store(low, border, solved, i, chol_p, solved_p)
    return True


@njit(cache=True)
def _therapist_blocks(
    lam_t: np.ndarray,
    ztzt: np.ndarray,
    ztr: np.ndarray,
    solved_p: np.ndarray,
    patient_therapist: np.ndarray,
    chol_t: np.ndarray,
    solved_t: np.ndarray,
) -> bool:
    """Factor every therapist block after subtracting its patients' Schur complements."""
    qt, n_therapists, width = ztr.shape
    qp, n_patients, _ = solved_p.shape
    coupling = np.zeros((n_therapists, qt, qt + width))
    for i in range(n_patients):
        t = patient_therapist[i]
        for a in range(qt):
            for c in range(qt + width):
                total = 0.0
                for k in range(qp):
                    total += solved_p[k, i, a] * solved_p[k, i, c]
                coupling[t, a, c] += total
    block, low, border, solved = _workspace(qt, width)
    for t in range(n_therapists):
        _congruence_block(lam_t, ztzt, t, block)
        for a in range(qt):
            for b in range(qt):
                block[a, b] -= coupling[t, b, a]
        if not _cholesky_block(block, low):
            return False
        for a in range(qt):
            for c in range(width):
                total = 0.0
                for k in range(a, qt):
                    total += lam_t[k, a] * ztr[k, t, c]
                border[a, c] = total - coupling[t, a, qt + c]
        _solve_and_store(low, border, solved, t, chol_t, solved_t)
    return True


@njit(cache=True)
def _fixed_schur(
    xyxy: np.ndarray, solved_p: np.ndarray, solved_t: np.ndarray, chol_x: np.ndarray
) -> bool:
    """Cholesky factor of ``[X y]'[X y]`` minus both levels' contributions."""
    width = xyxy.shape[0]
    qp, n_patients, width_all = solved_p.shape
    offset = width_all - width
    qt, n_therapists, _ = solved_t.shape
    schur = xyxy.copy()
    for a in range(width):
        for b in range(a, width):
            total = 0.0
            for k in range(qp):
                for i in range(n_patients):
                    total += solved_p[k, i, offset + a] * solved_p[k, i, offset + b]
            for k in range(qt):
                for t in range(n_therapists):
                    total += solved_t[k, t, a] * solved_t[k, t, b]
            schur[a, b] -= total
            schur[b, a] = schur[a, b]
    return _cholesky_block(schur, chol_x)


@njit(cache=True)
def factor_pls(
    lam_p: np.ndarray,
    lam_t: np.ndarray,
    zpzp: np.ndarray,
    zpr: np.ndarray,
    ztzt: np.ndarray,
    ztr: np.ndarray,
    xyxy: np.ndarray,
    patient_therapist: np.ndarray,
) -> tuple[bool, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blocked Cholesky factorisation of the PLS system at one ``(Λp, Λt)``.

    Parameters
    ----------
    lam_p, lam_t : numpy.ndarray
        Relative covariance factors, ``(qp, qp)`` and ``(qt, qt)`` (``qt = 0``: no
        therapist level).
    zpzp : numpy.ndarray, shape (qp, qp, G)
        ``Zp_i'Zp_i`` per patient.
    zpr : numpy.ndarray, shape (qp, G, qt + p + 1)
        ``Zp_i'[Zt X y]_i`` per patient.
    ztzt : numpy.ndarray, shape (qt, qt, T)
        ``Zt_j'Zt_j`` per therapist.
    ztr : numpy.ndarray, shape (qt, T, p + 1)
        ``Zt_j'[X y]_j`` per therapist.
    xyxy : numpy.ndarray, shape (p + 1, p + 1)
        ``[X y]'[X y]``.
    patient_therapist : numpy.ndarray of int
        Therapist code of each patient (zeros when there is no therapist level).

    Returns
    -------
    tuple
        ``(ok, logdet, chol_p, solved_p, chol_t, solved_t, chol_x)``: ``ok`` is False where
        a block is not positive definite (the deviance is then infinite); ``logdet`` is
        ``log det(Λ'Z'ZΛ + I)``, twice the sum of the log diagonals of both levels' factors.
    """
    qp, n_patients, width_all = zpr.shape
    qt, n_therapists, width = ztr.shape
    chol_p = np.zeros((qp, qp, n_patients))
    solved_p = np.zeros((qp, n_patients, width_all))
    chol_t = np.zeros((qt, qt, n_therapists))
    solved_t = np.zeros((qt, n_therapists, width))
    chol_x = np.zeros((width, width))
    ok = _patient_blocks(lam_p, lam_t, zpzp, zpr, chol_p, solved_p)
    if ok and qt > 0:
        ok = _therapist_blocks(lam_t, ztzt, ztr, solved_p, patient_therapist, chol_t, solved_t)
    if ok:
        ok = _fixed_schur(xyxy, solved_p, solved_t, chol_x)
    logdet = 0.0
    if ok:
        for i in range(n_patients):
            for a in range(qp):
                logdet += 2.0 * np.log(chol_p[a, a, i])
        for t in range(n_therapists):
            for a in range(qt):
                logdet += 2.0 * np.log(chol_t[a, a, t])
    return ok, logdet, chol_p, solved_p, chol_t, solved_t, chol_x


def warm_up() -> None:
    """Load the compiled kernel now (a fresh process's first fit otherwise pays for it).

    The first call of :func:`factor_pls` in a process loads its machine code from numba's
    on-disk cache (or compiles it, the first time after an edit): about 0.4 s, like R's
    ``library(lme4)``.  Benchmarks call this before timing a single fit.
    """
    q, groups, p = 1, 2, 1
    factor_pls(
        np.eye(q),
        np.eye(q),
        np.ones((q, q, groups)),
        np.zeros((q, groups, q + p + 1)),
        np.ones((q, q, 1)),
        np.zeros((q, 1, p + 1)),
        np.eye(p + 1),
        np.zeros(groups, dtype=np.intp),
    )
