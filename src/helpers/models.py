"""lme4-style linear mixed models, fitted by the vectorised engine or statsmodels' ``MixedLM``.

:func:`fit_mixed` takes an lme4 formula such as
``"outcome ~ alliance_within_lag + alliance_between + session + (1 + session | patient_id)"``
and returns a :class:`MixedResult` whose numbers follow lme4's conventions (log-likelihood,
standard errors, variance components).  With ``engine="auto"`` (the default) every model in
the class of :mod:`helpers.engine` (one grouping factor or two nested ones, each with one
correlated block or only uncorrelated effects, single-column random slopes) is fitted by that
engine, lme4's profiled deviance with its own optimiser checks, which also fits correlated
effects of an inner factor; other models, and all of them with ``engine="statsmodels"``, are
mapped *exactly* onto a ``statsmodels`` ``MixedLM.from_formula`` call, fitted with several
optimisers and checked as described below.  A formula without random terms (the
patient-level model of a study without therapist ids, ``outcome_last ~ alliance_early_c``)
is fitted by least squares and returned in the same form (``MixedResult.engine == "ols"``).

Formula mapping
---------------
lme4 expands ``(1 + x || g)`` into ``(1 | g) + (0 + x | g)`` and ``(1 | a/b)`` into
``(1 | a) + (1 | b:a)``; so does :func:`parse_formula`.  Each grouping factor then holds one
or more *blocks* of random effects (a correlated block, or single uncorrelated effects), and
:func:`map_to_statsmodels` translates them:

================================================  =========================================
lme4 formula (random part)                        statsmodels ``MixedLM.from_formula``
================================================  =========================================
``(1 | g)``                                       ``groups="g", re_formula="1"``
``(1 + x | g)``                                   ``groups="g", re_formula="1 + x"``
``(0 + x | g)``                                   ``groups="g", re_formula="0 + x"``
``(1 + x || g)``                                  ``groups="g", re_formula="1",
                                                  vc_formula={"g|x": "0 + x"}``
``(1 | t) + (1 | p)``, p nested in t              ``groups="t", re_formula="1",
                                                  vc_formula={"p|Intercept": "0 + C(p)"}``
``(1 + x | t) + (1 + s || p)``, p nested in t     ``groups="t", re_formula="1 + x",
                                                  vc_formula={"p|Intercept": "0 + C(p)",
                                                  "p|s": "0 + C(p):s"}``
``(1 | t/p)`` (p labels reused across t)          as above with the key ``p:t`` formed
                                                  from the pairs (t, p)
================================================  =========================================

A variance component (``vc_formula``) has a single variance shared by all its columns and is
independent of every other component, so it represents exactly one uncorrelated random
effect.  What statsmodels cannot express raises :class:`UnsupportedModelError` naming the
nearest exact alternative; a different model is never fitted silently:

* correlated random effects of the *inner* factor of a nested pair (e.g.
  ``(1 + session | patient_id) + (1 | therapist_id)``): use ``(1 + session || patient_id)``,
  or drop the therapist term;
* two correlated blocks on the same factor;
* crossed (non-nested) grouping factors, and more than two grouping factors.

Standard errors and log-likelihood
----------------------------------
``MixedResult.fixed["se"]`` follows lme4's ``vcov()``: the square roots of the diagonal of
``sigma^2 (X' V^-1 X)^-1`` evaluated at the estimates, with ``V`` built group by group from
the estimated (relative) covariance parameters.  statsmodels' ``bse_fe`` comes instead from
the inverse of the full observed information (fixed effects and covariance parameters
jointly) and differs by a fraction of a percent; it stays available on
``MixedResult.statsmodels_result``.  ``MixedResult.loglik`` is statsmodels' REML or ML
log-likelihood, which equals lme4's ``logLik()`` with no constant difference (checked
against lme4 in ``tests/test_models.py``).

Convergence
-----------
No single statsmodels optimiser is trusted.  The model is fitted with several optimisers (by
default ``lbfgs``, ``bfgs``, and Nelder-Mead followed by ``lbfgs`` from its solution); the
run with the highest log-likelihood is kept and refined by Newton steps on the profiled
log-likelihood (analytic gradient, Hessian by central differences of the gradient).  The
result reports the gradient at the optimum, whether the Hessian of the profiled deviance is
positive definite, whether the fit is singular (lme4's ``isSingular`` rule on the relative
Cholesky factor), and warns when optimisers disagree.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from scipy.linalg import solve_triangular

from helpers.ddf import DDF_METHODS, MixedDesign, RandomLevel, SmallSampleInference
from helpers.ddf import contrast_ftest as _contrast_ftest

# One home for the tolerances both fitting paths share: lme4's isSingular rule on the
# relative Cholesky diagonal, and lme4's check.conv.grad tolerance on the Newton step
# max |H^-1 g| over theta (the same measure on both paths; see engine.SCALED_GRADIENT_TOL).
from helpers.engine import (
    SCALED_GRADIENT_TOL,
    SINGULAR_TOL,
    EngineInputError,
    EngineResult,
    EngineWarning,
    NestedLMM,
    summary_text,
)
from helpers.errors import (
    FormulaError,
    ModelDataError,
    ModelSpecificationError,
    SettingsError,
    UnsupportedModelError,
)

if TYPE_CHECKING:  # statsmodels is imported where its path runs (about 0.4 s per process)
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "ENGINES",
    "FormulaError",
    "LikelihoodRatioTest",
    "MixedModelWarning",
    "MixedResult",
    "ModelDataError",
    "ParsedFormula",
    "RandomTerm",
    "StatsmodelsSpec",
    "UnsupportedModelError",
    "contrast_test",
    "fit_mixed",
    "icc_from_null",
    "likelihood_ratio_test",
    "map_to_statsmodels",
    "parse_formula",
    "with_ddf",
]

#: Optimiser runs tried by :func:`fit_mixed`; ``"a+b"`` runs ``b`` from ``a``'s solution.
DEFAULT_OPTIMIZERS: tuple[str, ...] = ("lbfgs", "bfgs", "nm+lbfgs")
#: Two runs disagree when their log-likelihoods differ by more than this ...
LOGLIK_AGREEMENT_TOL = 1e-4
#: ... or a fixed effect differs by more than this many standard errors.
FIXED_AGREEMENT_TOL_SE = 0.01
#: Largest accepted gradient on the log-likelihood scale when the Hessian is not definite.
ABS_GRADIENT_TOL = 1e-3
_NEWTON_MAX_STEPS = 8
_KNOWN_METHODS = ("lbfgs", "bfgs", "cg", "powell", "nm")
#: Values of ``fit_mixed(engine=...)``.
ENGINES: tuple[str, ...] = ("auto", "engine", "statsmodels")


class MixedModelWarning(UserWarning):
    """A diagnostic found by :func:`fit_mixed` (optimisers disagree, singular fit, ...)."""


# --------------------------------------------------------------------------------------
# Formula parsing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term after lme4's expansions of ``||`` and ``/``.

    Attributes
    ----------
    intercept : bool
        Whether the term has a random intercept.
    slopes : tuple of str
        Random slope expressions (patsy syntax), in formula order.
    grouping : tuple of str
        Column names whose combination is the grouping factor (``("t", "p")`` for ``t:p``).
    correlated : bool
        ``False`` for effects that came from a ``||`` term (each one a term of its own).
    source : str
        The parenthesised term as written in the formula.
    """

    intercept: bool
    slopes: tuple[str, ...]
    grouping: tuple[str, ...]
    correlated: bool
    source: str

    @property
    def group_label(self) -> str:
        """Name of the grouping factor as lme4 prints it (``"p:t"`` for a nested key)."""
        return ":".join(self.grouping)

    @property
    def effects(self) -> tuple[str, ...]:
        """Names of the random effects: ``"Intercept"`` and the slopes."""
        return (("Intercept",) if self.intercept else ()) + self.slopes


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into its fixed part and its random terms.

    Attributes
    ----------
    formula : str
        The formula as given.
    fixed_formula : str
        The fixed part in patsy syntax (``"y ~ x + z"``).
    response : str
        The left-hand side.
    random_terms : tuple of RandomTerm
        The random terms after expanding ``||`` and ``/``.
    """

    formula: str
    fixed_formula: str
    response: str
    random_terms: tuple[RandomTerm, ...]

    @property
    def group_labels(self) -> tuple[str, ...]:
        """Grouping factors in order of first appearance."""
        seen: dict[str, None] = {}
        for term in self.random_terms:
            seen.setdefault(term.group_label, None)
        return tuple(seen)


def _split_top_level(text: str, separators: str) -> list[tuple[str, str]]:
    """Split ``text`` at separators outside parentheses; return ``(sign, piece)`` pairs."""
    pieces: list[tuple[str, str]] = []
    depth, start, sign = 0, 0, "+"
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"Unbalanced ')' in formula part {text!r}.")
        elif depth == 0 and char in separators:
            pieces.append((sign, text[start:i].strip()))
            sign, start = char, i + 1
    if depth != 0:
        raise FormulaError(f"Unbalanced '(' in formula part {text!r}.")
    pieces.append((sign, text[start:].strip()))
    return pieces


def _is_random_term(piece: str) -> bool:
    """Whether ``piece`` is one parenthesised ``(lhs | group)`` term."""
    if not (piece.startswith("(") and piece.endswith(")")):
        return False
    depth = 0
    for i, char in enumerate(piece):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and i < len(piece) - 1:
            return False  # e.g. "(a)+(b)" or "(x)*(z)": not one term
    inner = piece[1:-1]
    return any(sep == "|" for sep, _ in _split_top_level(inner, "|")[1:])


_GROUP_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def _parse_random_term(piece: str) -> list[RandomTerm]:
    """Parse one ``(lhs | g)`` or ``(lhs || g)`` term into expanded :class:`RandomTerm`."""
    inner = piece[1:-1]
    parts = _split_top_level(inner, "|")
    if len(parts) == 2:
        correlated = True
        lhs, group = parts[0][1], parts[1][1]
    elif len(parts) == 3 and parts[1][1] == "":
        correlated = False
        lhs, group = parts[0][1], parts[2][1]
    else:
        raise FormulaError(f"Cannot read random term {piece}: expected (effects | group).")
    if not lhs:
        raise FormulaError(f"Random term {piece} has nothing before '|'.")
    intercept, slopes = True, []
    for position, (sign, token) in enumerate(_split_top_level(lhs, "+-")):
        if token == "":
            if position == 0 and sign == "+":
                continue  # a leading '-', as in "-1 + x"
            raise FormulaError(f"Empty effect in random term {piece}.")
        if token == "1":
            intercept = sign == "+"
            continue
        if token == "0":
            intercept = sign == "-"
            continue
        if sign == "-":
            raise FormulaError(
                f"Random term {piece}: removing {token!r} with '-' is not supported; "
                "list the random effects you want instead."
            )
        if token in slopes:
            raise FormulaError(f"Random term {piece} lists {token!r} twice.")
        slopes.append(token)
    if not intercept and not slopes:
        raise FormulaError(f"Random term {piece} has no random effect.")
    if "/" in group:
        nested = [g.strip() for g in group.split("/")]
        groupings = [tuple(reversed(nested[: k + 1])) for k in range(len(nested))]
    else:
        groupings = [tuple(g.strip() for g in group.split(":"))]
    for grouping in groupings:
        for name in grouping:
            if not _GROUP_NAME.match(name):
                raise FormulaError(
                    f"Random term {piece}: grouping factor {name!r} must be a column name "
                    "(letters, digits, '_' or '.'), optionally combined with ':' or '/'."
                )
    terms = []
    for grouping in groupings:
        if correlated:
            terms.append(RandomTerm(intercept, tuple(slopes), grouping, True, piece))
        else:
            if intercept:
                terms.append(RandomTerm(True, (), grouping, False, piece))
            for slope in slopes:
                terms.append(RandomTerm(False, (slope,), grouping, False, piece))
    return terms


def parse_formula(formula: str, *, require_random: bool = True) -> ParsedFormula:
    """Split an lme4 formula into its fixed part and its random-effects terms.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"y ~ x + session + (1 + session | patient_id)"``.  Random
        terms are ``(1 | g)``, ``(1 + x | g)`` (correlated), ``(1 + x || g)``
        (uncorrelated), ``(0 + x | g)``, and nested factors ``(1 | a/b)`` or ``(1 | a:b)``.
    require_random : bool, default True
        Refuse a formula without random terms.  :func:`fit_mixed` passes ``False``: it
        fits such a formula (e.g. a patient-level model of a study without therapist ids)
        by least squares, and ``random_terms`` is then empty.

    Returns
    -------
    ParsedFormula
        Fixed-part formula in patsy syntax and the expanded random terms.

    Raises
    ------
    FormulaError
        If the formula has no ``~``, no random term (unless ``require_random`` is false),
        unbalanced parentheses, or a random term that cannot be read.

    Examples
    --------
    >>> p = parse_formula("y ~ x + (1 + x || g)")
    >>> p.fixed_formula, [t.effects for t in p.random_terms]
    ('y ~ x', [('Intercept',), ('x',)])
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise FormulaError(
            f"Formula {formula!r} must be a string with exactly one '~', "
            "e.g. 'y ~ x + (1 | patient_id)'."
        )
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not lhs:
        raise FormulaError(f"Formula {formula!r} has no response before '~'.")
    fixed_pieces: list[str] = []
    random_terms: list[RandomTerm] = []
    for sign, piece in _split_top_level(rhs, "+"):
        if _is_random_term(piece):
            random_terms.extend(_parse_random_term(piece))
        elif "|" in piece:
            raise FormulaError(
                f"Formula {formula!r}: '|' in {piece!r} is not inside a random term; "
                "write random terms as (effects | group)."
            )
        elif piece:
            fixed_pieces.append(piece)
        elif sign == "+" and piece == "":
            raise FormulaError(f"Formula {formula!r} has an empty term ('+ +').")
    if not random_terms and require_random:
        raise FormulaError(
            f"Formula {formula!r} has no random-effects term such as (1 | patient_id); "
            "pass require_random=False to read it as a fixed-effects-only model (fit_mixed "
            "fits those by least squares)."
        )
    fixed_rhs = " + ".join(fixed_pieces) if fixed_pieces else "1"
    return ParsedFormula(formula, f"{lhs} ~ {fixed_rhs}", lhs, tuple(random_terms))


# --------------------------------------------------------------------------------------
# Mapping to statsmodels
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsmodelsSpec:
    """The exact ``MixedLM.from_formula`` call that an lme4 formula maps to.

    Attributes
    ----------
    fixed_formula : str
        Fixed part (patsy).
    groups : str
        Column of the (outer) grouping factor; a derived key column for ``a:b`` factors.
    re_formula : str or None
        Correlated random effects of the outer factor (``None``: none).
    vc_formula : dict of str to str
        Variance components: uncorrelated effects of the outer factor and all effects of
        the inner factor.  Keys are ``"<group>|<effect>"``.
    re_effects : tuple of str
        Effect names of ``re_formula`` (``"Intercept"`` first when present).
    vc_effects : dict of str to tuple of (str, str)
        For each variance component, its ``(group, effect)``.
    outer : str
        Outer grouping factor.
    inner : str or None
        Inner (nested) grouping factor, if any.
    derived_keys : dict of str to tuple of str
        Key columns formed from combinations of columns (``"p:t" -> ("p", "t")``).
    """

    fixed_formula: str
    groups: str
    re_formula: str | None
    vc_formula: dict[str, str]
    re_effects: tuple[str, ...]
    vc_effects: dict[str, tuple[str, str]]
    outer: str
    inner: str | None
    derived_keys: dict[str, tuple[str, ...]]

    def call(self, reml: bool = True) -> str:
        """The statsmodels call as text, e.g. for a methods section or a log."""
        args = [f"{self.fixed_formula!r}", "data", f"groups={self.groups!r}"]
        if self.re_formula is not None:
            args.append(f"re_formula={self.re_formula!r}")
        if self.vc_formula:
            args.append(f"vc_formula={self.vc_formula!r}")
        text = f"MixedLM.from_formula({', '.join(args)}).fit(reml={reml})"
        for key, parts in self.derived_keys.items():
            text += f"  # column {key!r} = one level per combination of {', '.join(parts)}"
        return text


def _patsy_name(column: str) -> str:
    """A column reference patsy can read (``Q("a:b")`` for names that are not identifiers)."""
    return column if column.isidentifier() else f"Q({column!r})"


def _blocks_by_group(parsed: ParsedFormula) -> dict[str, list[tuple[str, ...]]]:
    """Random-effect blocks per grouping factor; each block is one covariance block."""
    blocks: dict[str, list[tuple[str, ...]]] = {}
    for term in parsed.random_terms:
        group_blocks = blocks.setdefault(term.group_label, [])
        taken = {effect for block in group_blocks for effect in block}
        repeated = taken.intersection(term.effects)
        if repeated:
            raise FormulaError(
                f"Formula {parsed.formula!r}: random effect(s) {sorted(repeated)} appear "
                f"twice for grouping factor {term.group_label!r}."
            )
        group_blocks.append(term.effects)
    return blocks


def _effects_formula(effects: Sequence[str]) -> str:
    """patsy formula for a block of random effects (``"1 + x"`` or ``"0 + x"``)."""
    if effects[0] == "Intercept":
        return " + ".join(["1", *effects[1:]])
    return " + ".join(["0", *effects])


def map_to_statsmodels(parsed: ParsedFormula, outer: str | None = None) -> StatsmodelsSpec:
    """Map a parsed lme4 formula onto an exactly equivalent ``MixedLM.from_formula`` call.

    Parameters
    ----------
    parsed : ParsedFormula
        Output of :func:`parse_formula`.
    outer : str, optional
        With two grouping factors, the outer one (the other must be nested in it).  Not
        needed when one factor is a key built from the other (``(1 | t/p)``); otherwise
        :func:`fit_mixed` finds it from the data.

    Returns
    -------
    StatsmodelsSpec
        The statsmodels call (see the module docstring for the table of forms).

    Raises
    ------
    UnsupportedModelError
        If statsmodels cannot express the model exactly (the message names the nearest
        exact alternative), or the formula has no random terms.
    """
    if not parsed.random_terms:
        raise UnsupportedModelError(
            f"Formula {parsed.formula!r} has no random terms, so there is no MixedLM call; "
            "fit_mixed fits it by least squares (statsmodels' ols() gives the same fit)."
        )
    blocks = _blocks_by_group(parsed)
    labels = list(blocks)
    if len(labels) > 2:
        raise UnsupportedModelError(
            f"Formula {parsed.formula!r} has {len(labels)} grouping factors "
            f"({', '.join(labels)}); fit_mixed supports one factor or two nested factors. "
            "Nearest exact alternative: keep the two factors that matter most (e.g. "
            "therapist and patient) or fit the model with lme4."
        )
    derived = {label: tuple(label.split(":")) for label in labels if ":" in label}
    inner: str | None = None
    if len(labels) == 1:
        outer = labels[0]
    else:
        if outer is None:
            parts = {label: set(label.split(":")) for label in labels}
            a, b = labels
            if parts[a] < parts[b]:
                outer = a
            elif parts[b] < parts[a]:
                outer = b
            else:
                raise SettingsError(
                    f"map_to_statsmodels needs `outer` for factors {a!r} and {b!r}: which "
                    "one is nested in the other is decided from the data by fit_mixed."
                )
        if outer not in labels:
            raise SettingsError(f"outer={outer!r} is not one of the grouping factors {labels}.")
        inner = labels[1] if labels[0] == outer else labels[0]

    # Outer factor: the largest block is re_formula, the rest must be single effects.
    outer_blocks = sorted(blocks[outer], key=lambda blk: (-len(blk), blk[0] != "Intercept"))
    re_block = outer_blocks[0]
    if len(outer_blocks) > 1 and len(outer_blocks[1]) > 1:
        raise UnsupportedModelError(
            f"Formula {parsed.formula!r} has two correlated blocks of random effects for "
            f"{outer!r} ({' + '.join(re_block)} and {' + '.join(outer_blocks[1])}); "
            "statsmodels allows one correlated block per factor plus uncorrelated single "
            "effects. Nearest exact alternative: make all but one block uncorrelated "
            "with '||'."
        )
    vc_formula: dict[str, str] = {}
    vc_effects: dict[str, tuple[str, str]] = {}
    for (effect,) in outer_blocks[1:]:
        name = f"{outer}|{effect}"
        vc_formula[name] = "1" if effect == "Intercept" else f"0 + {effect}"
        vc_effects[name] = (outer, effect)

    if inner is not None:
        correlated = [blk for blk in blocks[inner] if len(blk) > 1]
        if correlated:
            effects = " + ".join(correlated[0]).replace("Intercept", "1")
            raise UnsupportedModelError(
                f"Formula {parsed.formula!r}: statsmodels cannot fit correlated random "
                f"effects ({effects} | {inner}) for {inner!r} nested inside {outer!r}: with "
                f"groups={outer!r}, the inner factor's effects can only be independent "
                "variance components. Nearest exact alternatives: the uncorrelated form "
                f"({effects} || {inner}) with the {outer!r} term kept, or "
                f"({effects} | {inner}) without the {outer!r} term."
            )
        key = _patsy_name(inner)
        for (effect,) in blocks[inner]:
            name = f"{inner}|{effect}"
            if effect == "Intercept":
                vc_formula[name] = f"0 + C({key})"
            else:
                vc_formula[name] = f"0 + C({key}):{effect}"
            vc_effects[name] = (inner, effect)

    return StatsmodelsSpec(
        fixed_formula=parsed.fixed_formula,
        groups=outer,
        re_formula=_effects_formula(re_block),
        vc_formula=vc_formula,
        re_effects=re_block,
        vc_effects=vc_effects,
        outer=outer,
        inner=inner,
        derived_keys=derived,
    )


# --------------------------------------------------------------------------------------
# Data preparation
# --------------------------------------------------------------------------------------


def names_in_code(code: str) -> set[str]:
    """Variable names (and ``Q("...")`` names) used in one patsy factor expression."""
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Q"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def _formula_columns(formula: str, columns: Sequence[str]) -> list[str]:
    """Data columns referenced by a patsy formula (either side)."""
    try:
        desc = patsy.ModelDesc.from_formula(formula)
    except patsy.PatsyError as err:
        raise FormulaError(f"Cannot read formula part {formula!r}: {err}") from err
    names: set[str] = set()
    for term in [*desc.lhs_termlist, *desc.rhs_termlist]:
        for factor in term.factors:
            names |= names_in_code(factor.code)
    return [c for c in columns if c in names]


def _row_list(index: pd.Index, limit: int = 5) -> str:
    """Readable list of the first few row labels."""
    shown = ", ".join(str(i) for i in index[:limit])
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return f"{shown}{more}"


@dataclass
class _Prepared:
    frame: pd.DataFrame
    n_dropped: int
    missing_by_column: dict[str, int]


def _prepare_data(data: pd.DataFrame, parsed: ParsedFormula, data_name: str) -> _Prepared:
    """Select model columns, drop incomplete rows (lme4's na.omit), form nested keys."""
    if not isinstance(data, pd.DataFrame):
        raise ModelDataError(
            f"fit_mixed expects a pandas DataFrame for {data_name}, got {type(data).__name__}."
        )
    group_columns = sorted({c for t in parsed.random_terms for c in t.grouping})
    slope_formula = "0 + " + " + ".join(
        sorted({s for t in parsed.random_terms for s in t.slopes}) or ["1"]
    )
    used = _formula_columns(parsed.fixed_formula, list(data.columns))
    used += _formula_columns(slope_formula, list(data.columns))
    response_cols = _formula_columns(parsed.fixed_formula.split("~")[0] + "~ 1", data.columns)
    missing_columns = [c for c in group_columns if c not in data.columns]
    if not response_cols:
        missing_columns.insert(0, parsed.response)
    for slope in {s for t in parsed.random_terms for s in t.slopes}:
        if slope.isidentifier() and slope not in data.columns:
            missing_columns.append(slope)
    if missing_columns:
        raise ModelDataError(
            f"{data_name} has no column(s) {sorted(set(missing_columns))} used by formula "
            f"{parsed.formula!r}. Available columns: {list(data.columns)}. Fix the formula "
            "or rename the columns."
        )
    response = parsed.response
    if response in data.columns and not pd.api.types.is_numeric_dtype(data[response]):
        examples = ", ".join(repr(v) for v in data[response].dropna().unique()[:3])
        raise ModelDataError(
            f"{data_name}: the response column {response!r} must be numeric, found dtype "
            f"{data[response].dtype} (values such as {examples}). Convert it to numbers "
            "(e.g. score the instrument first) or pick another response."
        )
    columns = list(dict.fromkeys([*used, *group_columns]))
    frame = data.loc[:, columns]
    incomplete = frame.isna()
    missing_by_column = {c: int(n) for c, n in incomplete.sum().items() if n > 0}
    keep = ~incomplete.any(axis=1)
    n_dropped = int((~keep).sum())
    frame = frame.loc[keep].copy()
    if len(frame) == 0:
        raise ModelDataError(
            f"{data_name}: no complete rows for formula {parsed.formula!r}; missing values "
            f"per column: {missing_by_column}."
        )
    for column in group_columns:
        if not (pd.api.types.is_integer_dtype(frame[column].dtype)):
            frame[column] = frame[column].astype(str).astype(object)
    for label in parsed.group_labels:
        parts = label.split(":")
        if len(parts) > 1:
            if label in data.columns:
                raise ModelDataError(
                    f"{data_name} already has a column named {label!r}, which clashes with "
                    f"the key fit_mixed forms for the nested factor {label!r}; rename it."
                )
            frame[label] = frame.groupby(parts, sort=True).ngroup().to_numpy()
    for label in parsed.group_labels:
        n_levels = frame[label].nunique()
        if n_levels < 2:
            raise ModelDataError(
                f"{data_name}: grouping factor {label!r} has {n_levels} level(s) in the "
                f"{len(frame)} complete rows; a random effect needs at least 2 groups."
            )
        if n_levels >= len(frame):
            raise ModelDataError(
                f"{data_name}: grouping factor {label!r} has as many levels ({n_levels}) as "
                f"complete rows ({len(frame)}); its variance cannot be told apart from the "
                "residual variance (lme4 refuses this too)."
            )
    return _Prepared(frame, n_dropped, missing_by_column)


def _nesting_outer(frame: pd.DataFrame, labels: Sequence[str], data_name: str) -> str:
    """Which of two grouping factors is the outer one; error if they are not nested."""
    a, b = labels
    a_per_b = frame.groupby(b)[a].nunique()
    b_per_a = frame.groupby(a)[b].nunique()
    b_in_a, a_in_b = bool((a_per_b == 1).all()), bool((b_per_a == 1).all())
    if b_in_a and a_in_b:
        raise ModelDataError(
            f"{data_name}: grouping factors {a!r} and {b!r} define the same groups (each "
            f"{a} level has exactly one {b} level and vice versa), so their variances "
            "cannot be separated. Drop one of the two random terms."
        )
    if b_in_a:
        return a
    if a_in_b:
        return b
    # Not nested: describe the clash taking the factor written first as the outer one
    # (lme4's usual order); the data alone cannot tell reused labels from crossing.
    outer, inner = a, b
    per_inner = frame.groupby(inner)[outer].nunique()
    clashing = per_inner.index[per_inner > 1]
    example = clashing[0]
    example_rows = frame.index[frame[inner] == example]
    example_outers = sorted(frame.loc[example_rows, outer].astype(str).unique())
    raise UnsupportedModelError(
        f"{data_name}: grouping factors {inner!r} and {outer!r} are not nested: "
        f"{len(clashing)} {inner} level(s) occur under more than one {outer} (e.g. {inner} "
        f"{example!r} with {outer} {', '.join(example_outers)}; rows "
        f"{_row_list(example_rows)}). statsmodels' MixedLM cannot fit crossed factors. "
        f"If {inner} ids are numbered within {outer} (the same id used for different "
        f"units), write the term as (... | {outer}/{inner}) or (... | {outer}:{inner}) and "
        f"unique keys are formed, as lme4 does. If the same {inner} really belongs to "
        f"several {outer}s, nearest exact alternatives: assign each {inner} to one {outer} "
        f"(e.g. the first), or drop the {outer!r} term."
    )


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class MixedResult:
    """Result of :func:`fit_mixed`, on lme4's scales.

    Attributes
    ----------
    formula : str
        The lme4 formula.
    reml : bool
        ``True`` for REML, ``False`` for ML.
    fixed : pandas.DataFrame
        Indexed by term.  With ``ddf == "asymptotic"`` (the default): ``estimate, se,
        ci_low, ci_high, z, p``; ``se`` is lme4's ``sqrt(diag(sigma^2 (X' V^-1 X)^-1))``
        at the estimates, the interval the Wald 95% interval and ``p`` the two-sided normal
        p-value of ``z = estimate / se``.  With ``"satterthwaite"`` or ``"kenward-roger"``:
        ``estimate, se, ci_low, ci_high, df, t, p``: ``t = estimate / se`` is referred to a
        t distribution with ``df`` (per coefficient) for ``p`` and the 95% interval; ``se``
        is lme4's for Satterthwaite and the Kenward-Roger adjusted one for Kenward-Roger.
    varcomp : pandas.DataFrame
        One row per variance, covariance and the residual: ``group, term, term2,
        variance_or_cov, sd_or_corr`` (``term2`` is empty except for covariances, whose
        ``sd_or_corr`` is the correlation).
    loglik : float
        REML or ML log-likelihood, equal to lme4's ``logLik()``.
    n_params : int
        Number of estimated parameters (fixed effects, covariance parameters, residual),
        lme4's ``df`` of ``logLik()``.
    nobs : int
        Rows used.
    ngroups : dict of str to int
        Levels per grouping factor.
    n_dropped_missing : int
        Rows dropped for a missing value in a model variable (lme4's ``na.omit``).
    missing_by_column : dict of str to int
        Missing values per model column before dropping.
    converged : bool
        Whether the optimum passed :func:`fit_mixed`'s own checks (statsmodels' flag is not
        used).
    singular : bool
        Boundary fit: a variance is ~0 or a correlation is ~±1 (lme4's ``isSingular``).
    hessian_positive_definite : bool
        Whether the Hessian of the profiled deviance at the optimum is positive definite.
    max_abs_gradient : float
        Largest absolute gradient of the profiled log-likelihood at the optimum.
    max_abs_scaled_gradient : float
        Largest absolute Newton step ``|H^-1 g|`` (NaN if the Hessian is not definite).
    warnings : list of str
        Every warning raised while fitting (statsmodels', numpy's, and this module's
        diagnostics), as ``"Category [run]: message"``; each was also re-emitted.
    optimizer : str
        The optimiser run whose solution was kept (then refined by Newton steps).
    newton_steps : int
        Newton steps accepted after the optimiser runs (the last fallback).
    attempts : pandas.DataFrame
        Every optimiser run: ``optimizer, loglik, loglik_gap, max_fixed_diff_se,
        statsmodels_converged, selected, error``.
    theta : numpy.ndarray
        Relative Cholesky parameters at the optimum (statsmodels' packed square-root
        parameters; lme4's ``theta`` up to sign and ordering).
    spec : StatsmodelsSpec or None
        The statsmodels call the formula maps to; ``spec.call(reml)`` gives it as text.
        ``None`` for an engine fit of a model statsmodels cannot express (correlated
        effects of the inner factor).
    cov_fixed : pandas.DataFrame
        Covariance matrix of the fixed effects (terms × terms), lme4's ``vcov()``:
        ``sigma^2 (X' V^-1 X)^-1`` at the estimates; ``fixed["se"]`` is the square root
        of its diagonal.
    statsmodels_result : object or None
        statsmodels' results object of the kept optimiser run (before the Newton
        refinement; its ``bse_fe`` are statsmodels' standard errors, not lme4's).
        ``None`` on the engine path.
    engine : str
        Which fitter produced the result: ``"statsmodels"``, ``"engine"``
        (:mod:`helpers.engine`) or ``"ols"`` (no random terms: least squares).
    model_frame : pandas.DataFrame
        The complete-case data the model used (model columns and grouping factors, keys
        of nested factors such as ``"p:t"`` included), indexed by the row labels of the
        data passed in.  The same on both paths.
    design : pandas.DataFrame
        The fixed-effect design matrix ``X`` (columns named as ``fixed.index``), indexed
        like ``model_frame``.
    design_info : patsy.DesignInfo
        patsy's description of the fixed part (to build ``X`` for new data).
    response : str
        Name of the response (the left-hand side of the formula as patsy names it).
    response_values : numpy.ndarray
        The response of the rows used, in ``model_frame`` order.
    engine_result : helpers.engine.EngineResult or None
        The engine's own result on the engine path (conditional modes and variances,
        ``theta_names``, optimiser runs); ``None`` on the statsmodels path.
    ddf : str
        How ``fixed`` tests the coefficients: ``"asymptotic"`` (normal reference),
        ``"satterthwaite"`` (lmerTest) or ``"kenward-roger"`` (pbkrtest); see
        :func:`with_ddf` and :mod:`helpers.ddf`.  ``cov_fixed`` is lme4's ``vcov()``
        except under ``"kenward-roger"``, where it is the adjusted covariance
        (``se_convention`` says which).
    small_sample : helpers.ddf.SmallSampleInference or None
        The Satterthwaite / Kenward-Roger machinery at this fit's covariance parameters
        (set by :func:`with_ddf`, reused by :func:`contrast_test`); its ``vcov`` is lme4's
        ``vcov()``, ``vcov_kr`` the adjusted one.

    Notes
    -----
    On the engine path (``engine == "engine"``) the diagnostics come from the engine's
    own checks (``docs/engine.md``): ``converged`` — the scaled gradient
    ``max |H^-1 g|`` of the profiled deviance is below 2e-3 (lme4's ``check.conv.grad``)
    and a second optimiser run from another start reached the same optimum;
    ``hessian_positive_definite`` — the finite-difference Hessian of the profiled
    deviance over the covariance parameters not held at a bound is positive definite;
    ``max_abs_gradient`` — largest absolute gradient of the profiled *log-likelihood*
    (half the deviance gradient) with respect to lme4's ``theta``;
    ``max_abs_scaled_gradient`` — the engine's ``max |H^-1 g|``; ``singular`` — lme4's
    ``isSingular`` rule (a diagonal element of a relative factor below 1e-4);
    ``theta`` — lme4's ``theta`` (``getME(fit, "theta")`` order, names in
    ``engine_result.theta_names``); ``optimizer`` is ``"engine"``, ``newton_steps`` 0
    (the engine's Newton polish is internal) and ``attempts`` has one row per engine
    optimiser run (first start, second start).

    A formula without random terms (``engine == "ols"``) is a linear model fitted by least
    squares, in closed form: ``cov_fixed`` is ``s^2 (X'X)^-1`` with ``s^2 = RSS / (n - p)``
    under REML (R's ``vcov(lm())``, lme4's REML convention) and ``RSS / n`` under ML;
    ``varcomp`` has the ``Residual`` row only, with that ``s^2``; ``loglik`` is R's
    ``logLik(lm(...), REML = reml)``, which is lme4's criterion with no random effects, so
    it can be compared by :func:`likelihood_ratio_test` with a mixed fit of the same fixed
    effects; ``n_params`` is ``p + 1``; ``ngroups`` is empty, ``theta`` empty, ``spec``
    ``None``; ``converged`` and ``hessian_positive_definite`` are ``True``, ``singular``
    ``False``, the gradients 0, ``optimizer`` ``"ols"`` and ``attempts`` has one row.
    """

    formula: str
    reml: bool
    fixed: pd.DataFrame
    varcomp: pd.DataFrame
    loglik: float
    n_params: int
    nobs: int
    ngroups: dict[str, int]
    n_dropped_missing: int
    missing_by_column: dict[str, int]
    converged: bool
    singular: bool
    hessian_positive_definite: bool
    max_abs_gradient: float
    max_abs_scaled_gradient: float
    warnings: list[str]
    optimizer: str
    newton_steps: int
    attempts: pd.DataFrame
    theta: np.ndarray
    spec: StatsmodelsSpec | None
    cov_fixed: pd.DataFrame = field(repr=False)
    statsmodels_result: Any = field(repr=False)
    engine: str = "statsmodels"
    model_frame: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    design: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    design_info: Any = field(repr=False, default=None)
    response: str = ""
    response_values: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    engine_result: Any = field(repr=False, default=None)
    ddf: str = "asymptotic"
    small_sample: Any = field(repr=False, default=None)
    _random_design: dict[str, pd.DataFrame] = field(repr=False, default_factory=dict)
    _fingerprint: str = field(repr=False, default="")
    #: The engine's design (:class:`helpers.engine.NestedLMM`) on the engine path, for
    #: warm-started bootstrap refits; ``None`` on the other paths.
    _engine_model: Any = field(repr=False, default=None)

    @property
    def statsmodels_call(self) -> str:
        """The statsmodels call this fit maps to, as text (or why there is none)."""
        if self.engine == "ols":
            return (
                f"none: no random terms (statsmodels.formula.api.ols({self.formula!r}, "
                "data).fit() gives the same estimates and, under REML, the same SEs)"
            )
        if self.spec is None:
            return "none: statsmodels' MixedLM cannot express this model exactly"
        return self.spec.call(self.reml)

    @property
    def se_convention(self) -> str:
        """How ``fixed['se']`` (and ``cov_fixed``) were computed, and the df of the tests."""
        if self.engine == "ols":
            divisor = "n - p (REML; R's vcov(lm()))" if self.reml else "n (ML)"
            text = f"least squares: s^2 (X'X)^-1 with s^2 = RSS / {divisor}"
            return text + ("" if self.ddf == "asymptotic" else "; t tests with df = n - p")
        if self.ddf == "kenward-roger":
            return (
                "Kenward-Roger adjusted covariance (pbkrtest vcovAdj); t tests with "
                "Kenward-Roger df (lme4's vcov() is small_sample.vcov)"
            )
        text = "lme4 vcov(): sigma^2 (X' V^-1 X)^-1 at the estimates"
        if self.ddf == "satterthwaite":
            text += "; t tests with Satterthwaite df (lmerTest)"
        return text

    def summary(self) -> str:
        """A short plain-text summary (formula, fit, fixed effects, variance components)."""
        kind = "Linear model, least squares" if self.engine == "ols" else "Linear mixed model"
        header = [
            f"{kind} ({'REML' if self.reml else 'ML'}): {self.formula}",
            f"fitted by: {self.engine}; statsmodels: {self.statsmodels_call}",
            f"nobs={self.nobs}, groups={self.ngroups}, dropped (missing)={self.n_dropped_missing}",
            f"logLik={self.loglik:.4f} (df={self.n_params}), converged={self.converged}, "
            f"singular={self.singular}, optimizer={self.optimizer}",
        ]
        return summary_text(header, self.fixed, self.varcomp, self.warnings, digits=5)


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------


def _psd_cholesky(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed)."""
    k = matrix.shape[0]
    chol = np.zeros_like(matrix, dtype=float)
    for j in range(k):
        pivot = matrix[j, j] - chol[j, :j] @ chol[j, :j]
        if pivot <= 1e-14 * max(1.0, abs(matrix[j, j])):
            continue  # column stays zero: a boundary (singular) direction
        chol[j, j] = math.sqrt(pivot)
        for i in range(j + 1, k):
            chol[i, j] = (matrix[i, j] - chol[i, :j] @ chol[j, :j]) / chol[j, j]
    return chol


def _theta_from_params(params: MixedLMParams, k_re: int) -> np.ndarray:
    """Packed square-root parameters (statsmodels' optimisation scale) of unscaled params."""
    chol = _psd_cholesky(np.asarray(params.cov_re, dtype=float)) if k_re else np.zeros((0, 0))
    return np.concatenate([chol[np.tril_indices(k_re)], np.sqrt(np.asarray(params.vcomp))])


def _numeric_hessian(model: MixedLM, theta: np.ndarray) -> np.ndarray:
    """Hessian of the profiled log-likelihood by central differences of its gradient."""
    k = len(theta)
    hess = np.zeros((k, k))
    for j in range(k):
        step = 1e-5 * max(1.0, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += step
        down[j] -= step
        hess[:, j] = (model.score(up) - model.score(down)) / (2 * step)
    return (hess + hess.T) / 2


def _newton_polish(model: MixedLM, theta: np.ndarray) -> tuple[np.ndarray, int]:
    """Refine an optimum by Newton steps, each accepted only if the loglik does not drop."""
    loglik = model.loglike(theta)
    steps = 0
    for _ in range(_NEWTON_MAX_STEPS):
        grad = model.score(theta)
        hess = _numeric_hessian(model, theta)
        if np.any(np.linalg.eigvalsh(hess) >= 0):
            break
        step = np.linalg.solve(hess, grad)
        candidate = theta - step
        candidate_loglik = model.loglike(candidate)
        if not np.isfinite(candidate_loglik) or candidate_loglik < loglik - 1e-10:
            break
        theta, loglik = candidate, candidate_loglik
        steps += 1
        if np.max(np.abs(step)) < 1e-9 * max(1.0, float(np.max(np.abs(theta)))):
            break
    return theta, steps


def _fixed_effects_cov(
    model: MixedLM, cov_re_unscaled: np.ndarray, vcomp_unscaled: np.ndarray, scale: float
) -> np.ndarray:
    """lme4's vcov(): ``sigma^2 (X' V^-1 X)^-1`` with V built per group from the estimates."""
    k_fe = model.k_fe
    xvx = np.zeros((k_fe, k_fe))
    n_groups = len(model.group_labels)
    if model.k_vc == 0:
        # Stack groups of equal size and solve them in one batched call.
        sizes = np.array([model.exog_li[i].shape[0] for i in range(n_groups)])
        for size in np.unique(sizes):
            idx = np.flatnonzero(sizes == size)
            exog = np.stack([model.exog_li[i] for i in idx])
            exog_re = np.stack([model.exog_re_li[i] for i in idx])
            cov = np.eye(size) + exog_re @ cov_re_unscaled @ exog_re.transpose(0, 2, 1)
            solved = np.linalg.solve(cov, exog)
            xvx += np.einsum("gij,gik->jk", exog, solved)
    else:
        for i in range(n_groups):
            exog = model.exog_li[i]
            cov = np.eye(exog.shape[0])
            if model.k_re > 0:
                exog_re = model.exog_re_li[i]
                cov += exog_re @ cov_re_unscaled @ exog_re.T
            for j in range(model.k_vc):
                mat = model.exog_vc.mats[j][i]
                mat = mat.toarray() if hasattr(mat, "toarray") else np.asarray(mat)
                cov += vcomp_unscaled[j] * (mat @ mat.T)
            xvx += exog.T @ np.linalg.solve(cov, exog)
    return scale * np.linalg.inv(xvx)


def _run_optimizer(
    model: MixedLM, spec: str, reml: bool, log: list[tuple[type[Warning], str, str]]
) -> tuple[Any, np.ndarray]:
    """Run one optimiser spec (``"a"`` or ``"a+b"``), recording every warning raised."""
    start = None
    result = None
    for method in spec.split("+"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = model.fit(reml=reml, method=method, start_params=start)
        for item in caught:
            where = spec if spec == method else f"{spec}: {method}"
            log.append((item.category, where, str(item.message)))
        start = result.params_object
    theta = _theta_from_params(result.params_object, model.k_re)
    return result, theta


def _build_varcomp(
    spec: StatsmodelsSpec,
    model: MixedLM,
    cov_re: np.ndarray,
    vcomp: np.ndarray,
    scale: float,
) -> pd.DataFrame:
    """Tidy variance components in lme4's ``as.data.frame(VarCorr())`` layout."""
    rows = []
    effects = list(model.data.exog_re_names)
    if spec.re_effects and spec.re_effects[0] == "Intercept":
        effects[0] = "Intercept"
    if model.k_re > 0:
        for i, effect in enumerate(effects):
            rows.append((spec.outer, effect, "", cov_re[i, i], math.sqrt(max(cov_re[i, i], 0))))
        for i in range(len(effects)):
            for j in range(i + 1, len(effects)):
                denom = math.sqrt(max(cov_re[i, i], 0) * max(cov_re[j, j], 0))
                corr = cov_re[i, j] / denom if denom > 0 else float("nan")
                rows.append((spec.outer, effects[i], effects[j], cov_re[i, j], corr))
    for name, variance in zip(model.exog_vc.names, vcomp, strict=True):
        group, effect = spec.vc_effects[name]
        rows.append((group, effect, "", variance, math.sqrt(max(variance, 0))))
    order = {spec.outer: 0, spec.inner: 1}
    rows.sort(key=lambda r: (order[r[0]], r[2] != ""))
    rows.append(("Residual", "", "", scale, math.sqrt(scale)))
    return pd.DataFrame(rows, columns=["group", "term", "term2", "variance_or_cov", "sd_or_corr"])


def _check_vc_columns(model: MixedLM, spec: StatsmodelsSpec, frame: pd.DataFrame) -> None:
    """Each variance component must have one column per group level (one random effect)."""
    inner_levels = (
        frame.groupby(spec.groups)[spec.inner].nunique() if spec.inner is not None else None
    )
    for j, name in enumerate(model.exog_vc.names):
        group, effect = spec.vc_effects[name]
        for i, label in enumerate(model.group_labels):
            n_cols = model.exog_vc.mats[j][i].shape[1]
            expected = 1 if group == spec.outer else int(inner_levels.loc[label])
            if n_cols != expected:
                raise UnsupportedModelError(
                    f"Random effect {effect!r} of {group!r} expands to {n_cols} design "
                    f"columns in {spec.groups} {label!r}, expected {expected} (one per "
                    f"{group} level): a factor or a multi-column expression cannot be an "
                    "uncorrelated ('||') or inner-factor random effect in statsmodels, "
                    "because a variance component gives all its columns one shared "
                    "variance. Nearest exact alternative: a numeric variable, or the "
                    "factor's dummy columns as separate numeric variables."
                )


#: A warning recorded while fitting: category, where it arose (optimiser run, "model",
#: "checks", "engine") and message.
_Logged = tuple[type[Warning], str, str]


def _record_warnings(log: list[_Logged], own: list[str], stacklevel: int) -> list[str]:
    """``MixedResult.warnings`` from the recorded warnings and this module's diagnostics.

    A warning raised several times in one place is kept once with its count; each is
    re-emitted once (``stacklevel`` counted from the caller of this function).
    """
    counts: dict[_Logged, int] = {}
    for entry in log:
        counts[entry] = counts.get(entry, 0) + 1
    messages = [
        f"{cat.__name__} [{where}]{f' (x{n})' if n > 1 else ''}: {msg}"
        for (cat, where, msg), n in counts.items()
    ]
    messages += [f"MixedModelWarning [checks]: {msg}" for msg in own]
    for cat, where, msg in counts:
        warnings.warn(f"[{where}] {msg}", cat, stacklevel=stacklevel + 1)
    for msg in own:
        warnings.warn(msg, MixedModelWarning, stacklevel=stacklevel + 1)
    return messages


def _fingerprint(response: Any) -> str:
    """Hash of the response vector: two fits use the same data iff their hashes agree."""
    values = np.ascontiguousarray(np.asarray(response, dtype=float))
    return hashlib.sha256(values.tobytes()).hexdigest()


@dataclass
class _EnginePlan:
    """How a formula maps onto :class:`helpers.engine.NestedLMM`."""

    patient: str
    therapist: str | None
    terms: dict[str, list[str]]
    covariance: dict[str, str]
    random_design: dict[str, pd.DataFrame]


def _random_columns(frame: pd.DataFrame, group: str, terms: Sequence[str]) -> pd.DataFrame | str:
    """Random-effect design of one factor, or why a term is not one numeric column."""
    columns = {}
    for term in terms:
        if term == "Intercept":
            columns[term] = np.ones(len(frame))
            continue
        try:
            matrix = patsy.dmatrix(f"0 + {term}", frame, return_type="dataframe", NA_action="raise")
        except patsy.PatsyError as err:
            return f"random effect {term!r} of {group!r} cannot be evaluated ({err})."
        if matrix.shape[1] != 1:
            return (
                f"random effect {term!r} of {group!r} expands to {matrix.shape[1]} design "
                "columns; the engine needs one numeric column per random effect."
            )
        columns[term] = matrix.iloc[:, 0].to_numpy(dtype=float)
    return pd.DataFrame(columns, index=frame.index)


def _engine_plan(
    parsed: ParsedFormula, outer: str | None, frame: pd.DataFrame
) -> _EnginePlan | str:
    """The engine's version of the model, or a sentence saying why it is outside its class."""
    blocks = _blocks_by_group(parsed)
    labels = list(blocks)
    if len(labels) == 1:
        patient, therapist = labels[0], None
    else:
        therapist = outer
        patient = labels[1] if labels[0] == outer else labels[0]
    terms: dict[str, list[str]] = {}
    covariance: dict[str, str] = {}
    design: dict[str, pd.DataFrame] = {}
    for label in labels:
        group_blocks = blocks[label]
        if len(group_blocks) == 1:
            terms[label], covariance[label] = list(group_blocks[0]), "unstructured"
        elif all(len(block) == 1 for block in group_blocks):
            effects = [block[0] for block in group_blocks]
            terms[label] = sorted(effects, key=lambda effect: effect != "Intercept")
            covariance[label] = "diagonal"
        else:
            return (
                f"{label!r} has a correlated block of random effects next to other blocks; "
                "the engine fits one correlated block or only uncorrelated effects per factor."
            )
        columns = _random_columns(frame, label, terms[label])
        if isinstance(columns, str):
            return columns
        design[label] = columns
    return _EnginePlan(patient, therapist, terms, covariance, design)


def _fixed_design_matrices(
    parsed: ParsedFormula, frame: pd.DataFrame, data_name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Response and fixed-effect design (patsy) of the complete rows, with clear errors."""
    formula = parsed.formula
    try:
        response_matrix, design = patsy.dmatrices(
            parsed.fixed_formula, frame, return_type="dataframe"
        )
    except patsy.PatsyError as err:
        raise ModelDataError(
            f"{data_name}: could not build the fixed-effect design for formula {formula!r}: "
            f"{err}\nModel columns available: {list(frame.columns)}. Check the spelling of "
            "variables and functions in the formula."
        ) from err
    if len(design) != len(frame):
        raise ModelDataError(
            f"{data_name}: formula {formula!r} produced missing values in a transformed "
            f"variable ({len(frame) - len(design)} rows), e.g. log of a non-positive "
            "number; fix the transformation or the data."
        )
    return response_matrix, design


def _engine_model(
    plan: _EnginePlan, design: pd.DataFrame, frame: pd.DataFrame, data_name: str
) -> NestedLMM:
    """The engine's design of the planned model (a :class:`NestedLMM`)."""
    patient, therapist = plan.patient, plan.therapist
    return NestedLMM(
        design.to_numpy(dtype=float),
        patient=frame[patient].to_numpy(),
        therapist=None if therapist is None else frame[therapist].to_numpy(),
        Z_patient=plan.random_design[patient].to_numpy(),
        Z_therapist=None if therapist is None else plan.random_design[therapist].to_numpy(),
        fixed_names=[str(c) for c in design.columns],
        patient_terms=plan.terms[patient],
        therapist_terms=None if therapist is None else plan.terms[therapist],
        patient_name=patient,
        therapist_name=therapist if therapist is not None else "therapist",
        patient_covariance=plan.covariance[patient],
        therapist_covariance=(
            plan.covariance[therapist] if therapist is not None else "unstructured"
        ),
        row_labels=frame.index,
        source=data_name,
    )


def _engine_varcomp(fit: EngineResult, plan: _EnginePlan) -> pd.DataFrame:
    """The engine's variance components in the statsmodels path's order (outer factor first,
    variances before covariances, residual last)."""
    labels = [plan.therapist, plan.patient] if plan.therapist else [plan.patient]
    order = {label: i for i, label in enumerate(labels)}
    random_rows = fit.varcomp.loc[fit.varcomp["group"] != "Residual"]
    sort_key = [
        (order[g], t2 != "")
        for g, t2 in zip(random_rows["group"], random_rows["term2"], strict=True)
    ]
    positions = sorted(range(len(random_rows)), key=lambda i: sort_key[i])
    return pd.concat(
        [random_rows.iloc[positions], fit.varcomp.loc[fit.varcomp["group"] == "Residual"]],
        ignore_index=True,
    )


def _engine_attempts(fit: EngineResult) -> pd.DataFrame:
    """One row per engine optimiser run, in the layout of ``MixedResult.attempts``."""
    runs = fit.optimizer_runs
    deviance = runs["deviance"].to_numpy(dtype=float)
    best = int(np.argmin(deviance))
    return pd.DataFrame(
        {
            "optimizer": [f"engine ({run} start)" for run in runs["run"]],
            "loglik": -deviance / 2,
            "loglik_gap": fit.loglik + deviance / 2,
            "max_fixed_diff_se": np.nan,
            "statsmodels_converged": None,
            "selected": [i == best for i in range(len(runs))],
            "error": "",
        }
    )


def _fit_with_engine(
    parsed: ParsedFormula,
    plan: _EnginePlan,
    prepared: _Prepared,
    reml: bool,
    data_name: str,
    outer: str | None,
) -> MixedResult:
    """Fit with :mod:`helpers.engine` and return the result in :class:`MixedResult` form."""
    formula = parsed.formula
    frame = prepared.frame
    response_matrix, design = _fixed_design_matrices(parsed, frame, data_name)
    y = response_matrix.iloc[:, 0].to_numpy(dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = _engine_model(plan, design, frame, data_name)
            fit = model.fit(y, reml=reml, emit_warnings=False)
        except EngineInputError as err:
            raise ModelDataError(str(err)) from err
    log: list[_Logged] = [(w.category, "engine", str(w.message)) for w in caught]
    log.extend((EngineWarning, "engine", note) for note in fit.warnings)
    messages = _record_warnings(log, [], stacklevel=3)
    try:
        spec: StatsmodelsSpec | None = map_to_statsmodels(parsed, outer=outer)
    except UnsupportedModelError:
        spec = None
    fixed = fit.fixed.copy()
    fixed.index = pd.Index([str(c) for c in design.columns], name="term")
    cov_fixed = pd.DataFrame(
        np.asarray(fit.fixed_cov, dtype=float), index=fixed.index, columns=fixed.index
    )
    gradient = np.asarray(fit.gradient, dtype=float) / 2.0  # log-likelihood scale
    return MixedResult(
        formula=formula,
        reml=reml,
        fixed=fixed,
        varcomp=_engine_varcomp(fit, plan),
        loglik=float(fit.loglik),
        n_params=int(fit.n_params),
        nobs=int(fit.nobs),
        ngroups={label: int(frame[label].nunique()) for label in parsed.group_labels},
        n_dropped_missing=prepared.n_dropped,
        missing_by_column=prepared.missing_by_column,
        converged=bool(fit.converged),
        singular=bool(fit.singular),
        hessian_positive_definite=bool(fit.hessian_positive_definite),
        max_abs_gradient=float(np.max(np.abs(gradient))) if gradient.size else 0.0,
        max_abs_scaled_gradient=float(fit.scaled_gradient),
        warnings=messages,
        optimizer="engine",
        newton_steps=0,
        attempts=_engine_attempts(fit),
        theta=np.asarray(fit.theta, dtype=float),
        spec=spec,
        cov_fixed=cov_fixed,
        statsmodels_result=None,
        engine="engine",
        model_frame=frame,
        design=design.astype(float),
        design_info=design.design_info,
        response=str(response_matrix.columns[0]),
        response_values=y,
        engine_result=fit,
        _random_design=plan.random_design,
        _fingerprint=_fingerprint(y),
        _engine_model=model,
    )


#: A fixed-effect column is collinear with the columns before it when the part of it they
#: do not explain has a norm below this fraction of its own (the tolerance of R's ``lm()``).
COLLINEAR_TOL = 1e-7


def _collinear_columns(design: pd.DataFrame) -> dict[str, list[str]]:
    """Design columns that are linear combinations of earlier ones, with those columns.

    Columns are taken in order, as R's ``lm()`` does: a column is kept when it adds a new
    direction to the kept ones, else it is listed with the kept columns it is made of.
    """
    x = design.to_numpy(dtype=float)
    norms = np.linalg.norm(x, axis=0)
    names = [str(c) for c in design.columns]
    kept: list[int] = []
    collinear: dict[str, list[str]] = {}
    for j, name in enumerate(names):
        if norms[j] == 0:
            collinear[name] = []
            continue
        column = x[:, j] / norms[j]
        if kept:
            basis = x[:, kept] / norms[kept]
            coef = np.linalg.lstsq(basis, column, rcond=None)[0]
            if np.linalg.norm(column - basis @ coef) < COLLINEAR_TOL:
                used = np.abs(coef) > 1e-8 * np.max(np.abs(coef))
                collinear[name] = [names[k] for k, u in zip(kept, used, strict=True) if u]
                continue
        kept.append(j)
    return collinear


def _check_full_rank(design: pd.DataFrame, formula: str, data_name: str) -> None:
    """Raise :class:`ModelDataError` naming the collinear terms of a rank-deficient design."""
    collinear = _collinear_columns(design)
    if not collinear:
        return
    reasons = [
        f"{name!r} = a linear combination of {', '.join(repr(b) for b in basis)}"
        if basis
        else f"{name!r} is 0 on every row"
        for name, basis in collinear.items()
    ]
    k = design.shape[1]
    raise ModelDataError(
        f"{data_name}: the fixed-effect design of formula {formula!r} is rank deficient "
        f"(rank {k - len(collinear)} of {k} columns): {'; '.join(reasons)}. The "
        "coefficients of collinear terms cannot be told apart (R's lm() would report NA "
        f"for {', '.join(repr(n) for n in collinear)}); drop one term of each collinear set."
    )


def _ols_loglik(rss: float, n: int, p: int, logdet_xtx: float, reml: bool) -> float:
    """Gaussian log-likelihood of a least-squares fit at its optimum.

    ML: ``-n/2 (log(2 pi RSS/n) + 1)``.  REML, as R's ``logLik(lm(...), REML = TRUE)``
    and lme4's REML criterion with no random effects: ``-1/2 [(n - p) log(2 pi s^2)
    + (n - p) + log det(X'X)]`` with ``s^2 = RSS / (n - p)``.
    """
    if reml:
        m = n - p
        return -0.5 * (m * math.log(2 * math.pi * rss / m) + m + logdet_xtx)
    return -0.5 * n * (math.log(2 * math.pi * rss / n) + 1)


def _wald_table(estimate: np.ndarray, se: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """``estimate, se``, Wald 95% interval, ``z`` and two-sided normal ``p`` per term."""
    z = estimate / se
    crit = stats.norm.ppf(0.975)
    return pd.DataFrame(
        {
            "estimate": estimate,
            "se": se,
            "ci_low": estimate - crit * se,
            "ci_high": estimate + crit * se,
            "z": z,
            "p": 2 * stats.norm.sf(np.abs(z)),
        },
        index=pd.Index(list(names), name="term"),
    )


@dataclass
class _OLSFit:
    """Least-squares estimates, their covariance, the residual variance and logLik."""

    beta: np.ndarray
    cov: np.ndarray
    sigma2: float
    loglik: float


def _ols_estimates(x: np.ndarray, y: np.ndarray, reml: bool, where: str) -> _OLSFit:
    """Least squares through the QR decomposition ``X = QR`` (``X'X = R'R``)."""
    n, p = x.shape
    q, r = np.linalg.qr(x)
    beta = solve_triangular(r, q.T @ y)
    rss = float(np.sum((y - x @ beta) ** 2))
    if rss <= (1e-12 * float(np.linalg.norm(y))) ** 2:
        raise ModelDataError(
            f"{where}: the fixed effects reproduce the response exactly (residual sum of "
            "squares 0), so the residual variance is 0 and the likelihood is unbounded."
        )
    sigma2 = rss / (n - p if reml else n)
    r_inv = solve_triangular(r, np.eye(p))
    logdet_xtx = 2.0 * float(np.sum(np.log(np.abs(np.diag(r)))))
    loglik = _ols_loglik(rss, n, p, logdet_xtx, reml)
    return _OLSFit(beta, sigma2 * (r_inv @ r_inv.T), sigma2, loglik)


def _fit_ols(parsed: ParsedFormula, prepared: _Prepared, reml: bool, data_name: str) -> MixedResult:
    """Fit a formula without random terms by least squares, as a :class:`MixedResult`."""
    formula, frame = parsed.formula, prepared.frame
    response_matrix, design = _fixed_design_matrices(parsed, frame, data_name)
    _check_full_rank(design, formula, data_name)
    n, p = design.shape
    if n <= p:
        raise ModelDataError(
            f"{data_name}: formula {formula!r} has {p} fixed effects but only {n} complete "
            "rows; least squares needs more rows than coefficients to estimate the "
            "residual variance."
        )
    y = response_matrix.iloc[:, 0].to_numpy(dtype=float)
    fit = _ols_estimates(design.to_numpy(dtype=float), y, reml, f"{data_name}: {formula!r}")
    fixed = _wald_table(fit.beta, np.sqrt(np.diag(fit.cov)), [str(c) for c in design.columns])
    varcomp = pd.DataFrame(
        [("Residual", "", "", fit.sigma2, math.sqrt(fit.sigma2))],
        columns=["group", "term", "term2", "variance_or_cov", "sd_or_corr"],
    )
    attempts = pd.DataFrame(
        [
            {
                "optimizer": "ols",
                "loglik": fit.loglik,
                "loglik_gap": 0.0,
                "max_fixed_diff_se": 0.0,
                "statsmodels_converged": None,
                "selected": True,
                "error": "",
            }
        ]
    )
    return MixedResult(
        formula=formula,
        reml=reml,
        fixed=fixed,
        varcomp=varcomp,
        loglik=fit.loglik,
        n_params=p + 1,
        nobs=n,
        ngroups={},
        n_dropped_missing=prepared.n_dropped,
        missing_by_column=prepared.missing_by_column,
        converged=True,
        singular=False,
        hessian_positive_definite=True,
        max_abs_gradient=0.0,
        max_abs_scaled_gradient=0.0,
        warnings=[],
        optimizer="ols",
        newton_steps=0,
        attempts=attempts,
        theta=np.zeros(0),
        spec=None,
        cov_fixed=pd.DataFrame(fit.cov, index=fixed.index, columns=fixed.index),
        statsmodels_result=None,
        engine="ols",
        model_frame=frame,
        design=design.astype(float),
        design_info=design.design_info,
        response=str(response_matrix.columns[0]),
        response_values=y,
        _fingerprint=_fingerprint(y),
    )


def fit_mixed(
    data: pd.DataFrame,
    formula: str,
    reml: bool = True,
    *,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    data_name: str = "data",
    engine: str = "auto",
    ddf: str = "asymptotic",
) -> MixedResult:
    """Fit an lme4-style linear mixed model (vectorised engine or statsmodels), like lme4.

    Parameters
    ----------
    data : pandas.DataFrame
        Long data, one row per observation.
    formula : str
        lme4 formula.  Fixed part in patsy syntax (factors via ``C(x)`` or string
        columns); random terms ``(1 | g)``, ``(1 + x | g)``, ``(1 + x || g)``,
        ``(0 + x | g)``, and two nested factors, e.g.
        ``"y ~ x_within + x_between + session + (1 | therapist_id) + (1 + session || patient_id)"``.
        Nested ids reused across outer groups are written ``(1 | therapist_id/patient_id)``
        or ``(1 | therapist_id:patient_id)`` as in lme4.  See the module docstring for the
        statsmodels call each form maps to.  A formula without random terms, e.g.
        ``"outcome_last ~ alliance_early_c + outcome_intake_c"``, is fitted by least squares
        (see Notes).
    reml : bool, default True
        REML (lme4's default) or ML (needed to compare fixed effects by likelihood).
    optimizers : sequence of str, default :data:`DEFAULT_OPTIMIZERS`
        statsmodels optimiser runs, each from statsmodels' default start; ``"a+b"`` runs
        ``b`` from ``a``'s solution.  Methods: ``lbfgs, bfgs, cg, powell, nm``.  Used on
        the statsmodels path only (the engine has its own optimiser and checks).
    data_name : str, default "data"
        Name of the data (e.g. its file) used in error messages.
    engine : {"auto", "engine", "statsmodels"}, default "auto"
        ``"auto"`` fits with the vectorised engine (:mod:`helpers.engine`, lme4's profiled
        deviance) every model in its class — one grouping factor or two nested ones, each
        with one correlated block ``(1 + x | g)`` or only uncorrelated effects
        (``(1 + x || g)``), random slopes that are single numeric columns — and with
        statsmodels otherwise.  ``"engine"`` forces the engine (an error names what is
        outside its class); ``"statsmodels"`` forces the statsmodels reference path.
        Only the engine fits correlated effects of an inner factor, e.g.
        ``(1 + session_c | patient_id) + (1 | therapist_id)``.  Ignored for a formula
        without random terms, which every setting fits by least squares.
    ddf : {"asymptotic", "satterthwaite", "kenward-roger"}, default "asymptotic"
        Reference distribution of the tests in ``MixedResult.fixed``: the normal
        (``z``, lme4's summary), or t with Satterthwaite df (lmerTest) or Kenward-Roger df
        and adjusted SEs (pbkrtest; REML only).  See :func:`with_ddf`, which does the same
        for an existing fit.

    Returns
    -------
    MixedResult
        Estimates on lme4's scales with convergence diagnostics.

    Raises
    ------
    FormulaError
        If the formula cannot be read.
    UnsupportedModelError
        If the chosen fitter cannot fit the model exactly (the message names the nearest
        exact alternative), including crossed grouping factors.
    ModelDataError
        If the data lack a column, have no complete rows or too few groups, or (no random
        terms) the fixed-effect design is rank deficient or has no more rows than columns.

    Notes
    -----
    The statsmodels call each form maps to (``MixedResult.statsmodels_call`` gives it for
    a fit):

    * ``(1 | g)`` -> ``groups="g", re_formula="1"``;
    * ``(1 + x | g)`` -> ``groups="g", re_formula="1 + x"`` (correlated);
    * ``(0 + x | g)`` -> ``groups="g", re_formula="0 + x"``;
    * ``(1 + x || g)`` -> ``groups="g", re_formula="1", vc_formula={"g|x": "0 + x"}``;
    * ``(1 + x | t) + (1 + s || p)`` with p nested in t -> ``groups="t",
      re_formula="1 + x", vc_formula={"p|Intercept": "0 + C(p)", "p|s": "0 + C(p):s"}``;
    * ``(1 | t/p)`` -> as the previous form, with p replaced by a key of the pairs (t, p)
      (lme4's name ``p:t``).

    Which of two grouping factors is nested in which is read from the data; factors that
    are not nested raise :class:`UnsupportedModelError`.  Rows with a missing value in any
    model variable are dropped and counted.  Every warning raised during fitting is
    recorded in ``MixedResult.warnings`` and re-emitted once.

    A formula without random terms (a two-level study's patient-level model, which has no
    therapist term) is fitted by least squares whatever ``engine`` says, since neither
    mixed-model fitter has anything to estimate beyond it: the result has
    ``engine == "ols"``, lme4's REML/ML conventions for the standard errors, residual
    variance and log-likelihood (see :class:`MixedResult`), and a rank-deficient design
    raises :class:`ModelDataError` naming the collinear terms.
    """
    if engine not in ENGINES:
        raise SettingsError(f"engine must be one of {ENGINES}; got {engine!r}.")
    if ddf != "asymptotic":
        _check_ddf(ddf, reml)
        fit = fit_mixed(
            data, formula, reml, optimizers=optimizers, data_name=data_name, engine=engine
        )
        return with_ddf(fit, ddf)
    _check_optimizers(optimizers)
    parsed = parse_formula(formula, require_random=False)
    if not parsed.random_terms:
        return _fit_ols(parsed, _prepare_data(data, parsed, data_name), reml, data_name)
    labels = parsed.group_labels
    if len(labels) > 2:
        if engine == "engine":
            raise UnsupportedModelError(
                f"Formula {formula!r} has {len(labels)} grouping factors "
                f"({', '.join(labels)}); the engine fits one factor or two nested factors."
            )
        map_to_statsmodels(parsed)  # raises the explanatory UnsupportedModelError
    prepared = _prepare_data(data, parsed, data_name)
    outer = _outer_factor(labels, prepared.frame, data_name)
    if engine != "statsmodels":
        plan = _engine_plan(parsed, outer, prepared.frame)
        if isinstance(plan, _EnginePlan):
            return _fit_with_engine(parsed, plan, prepared, reml, data_name, outer)
        if engine == "engine":
            raise UnsupportedModelError(
                f"Formula {formula!r} is outside the engine's class: {plan} Use "
                "engine='statsmodels' (or 'auto', which picks statsmodels for it)."
            )
    return _fit_with_statsmodels(
        parsed, prepared, reml, data_name, outer, optimizers, list(data.columns)
    )


def _check_optimizers(optimizers: Sequence[str]) -> None:
    """Every optimiser run must name known statsmodels methods (``"a"`` or ``"a+b"``)."""
    if not optimizers:
        raise SettingsError("optimizers must name at least one optimiser run.")
    for spec_text in optimizers:
        for method in spec_text.split("+"):
            if method not in _KNOWN_METHODS:
                raise SettingsError(
                    f"Unknown optimiser {method!r} in {spec_text!r}; use {_KNOWN_METHODS}."
                )


def _outer_factor(labels: Sequence[str], frame: pd.DataFrame, data_name: str) -> str | None:
    """The outer of two grouping factors (``None`` for one); error if they are not nested."""
    if len(labels) != 2:
        return None
    parts = [set(label.split(":")) for label in labels]
    if not (parts[0] < parts[1] or parts[1] < parts[0]):
        return _nesting_outer(frame, labels, data_name)
    outer = labels[0] if parts[0] < parts[1] else labels[1]
    inner = labels[1] if outer == labels[0] else labels[0]
    _nesting_outer(frame, [outer, inner], data_name)
    return outer


def _statsmodels_model(
    spec: StatsmodelsSpec,
    parsed: ParsedFormula,
    frame: pd.DataFrame,
    data_name: str,
    data_columns: list[str],
    log: list[_Logged],
) -> MixedLM:
    """statsmodels' ``MixedLM`` of the mapped call, its construction warnings logged."""
    from statsmodels.regression.mixed_linear_model import MixedLM  # only this path needs it

    formula = parsed.formula
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = MixedLM.from_formula(
                spec.fixed_formula,
                data=frame,
                groups=spec.groups,
                re_formula=spec.re_formula,
                vc_formula=spec.vc_formula or None,
            )
        except patsy.PatsyError as err:
            raise ModelDataError(
                f"{data_name}: statsmodels could not build the design for formula "
                f"{formula!r}: {err}\nModel columns available: {data_columns}. "
                "Check the spelling of variables and functions in the formula."
            ) from err
    log.extend((w.category, "model", str(w.message)) for w in caught)
    if model.nobs != len(frame):
        raise ModelDataError(
            f"{data_name}: formula {formula!r} produced missing values in a transformed "
            f"variable ({len(frame) - int(model.nobs)} rows), e.g. log of a non-positive "
            "number; fix the transformation or the data."
        )
    if spec.vc_formula:
        _check_vc_columns(model, spec, frame)
    return model


def _run_optimizers(
    model: MixedLM, optimizers: Sequence[str], reml: bool, log: list[_Logged], formula: str
) -> tuple[dict[str, tuple[Any, np.ndarray, float]], list[dict[str, Any]]]:
    """Every optimiser run: ``{run: (statsmodels result, theta, loglik)}`` and attempt rows."""
    attempt_rows: list[dict[str, Any]] = []
    fits: dict[str, tuple[Any, np.ndarray, float]] = {}
    for spec_text in optimizers:
        try:
            result, theta = _run_optimizer(model, spec_text, reml, log)
            loglik = float(model.loglike(theta))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
            attempt_rows.append({"optimizer": spec_text, "error": f"{type(err).__name__}: {err}"})
            continue
        if not np.isfinite(loglik):
            attempt_rows.append({"optimizer": spec_text, "error": "non-finite log-likelihood"})
            continue
        fits[spec_text] = (result, theta, loglik)
        attempt_rows.append(
            {
                "optimizer": spec_text,
                "loglik": loglik,
                "statsmodels_converged": bool(result.converged),
                "error": "",
            }
        )
    if not fits:
        raise RuntimeError(
            f"Every optimiser run failed for formula {formula!r}: "
            + "; ".join(f"{r['optimizer']}: {r['error']}" for r in attempt_rows)
        )
    return fits, attempt_rows


@dataclass
class _StatsmodelsOptimum:
    """The kept optimum after the Newton refinement, with what the checks need."""

    theta: np.ndarray
    newton_steps: int
    gradient: np.ndarray
    hessian: np.ndarray
    loglik: float
    fe_params: np.ndarray
    cov_re: np.ndarray  # relative to the residual variance (statsmodels' "unscaled")
    vcomp: np.ndarray  # relative to the residual variance
    scale: float
    cov_fe: np.ndarray


def _refine_optimum(model: MixedLM, theta: np.ndarray, log: list[_Logged]) -> _StatsmodelsOptimum:
    """Newton-polish ``theta`` and evaluate the estimates and derivatives there."""
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theta, newton_steps = _newton_polish(model, theta)
        gradient = model.score(theta)
        hessian = _numeric_hessian(model, theta)
        loglik = float(model.loglike(theta))
        params = MixedLMParams.from_packed(theta, model.k_fe, model.k_re, True, has_fe=False)
        cov_re_u, vcomp_u = params.cov_re, params.vcomp
        fe_params, _ = model.get_fe_params(cov_re_u, vcomp_u)
        scale = float(model.get_scale(fe_params, cov_re_u, vcomp_u))
        cov_fe = _fixed_effects_cov(model, cov_re_u, vcomp_u, scale)
    log.extend((w.category, "checks", str(w.message)) for w in caught)
    return _StatsmodelsOptimum(
        theta, newton_steps, gradient, hessian, loglik, fe_params, cov_re_u, vcomp_u, scale, cov_fe
    )


@dataclass
class _Checks:
    """Convergence, definiteness and singularity of an optimum, with notes for the user."""

    converged: bool
    singular: bool
    hessian_positive_definite: bool
    max_abs_gradient: float
    max_abs_scaled_gradient: float
    notes: list[str]


def _statsmodels_checks(
    model: MixedLM,
    opt: _StatsmodelsOptimum,
    best_name: str,
    optimizers: Sequence[str],
    log: list[_Logged],
) -> _Checks:
    """The module's own checks of the kept optimum (statsmodels' flag is not used)."""
    theta, gradient, hessian = opt.theta, opt.gradient, opt.hessian
    own: list[str] = []
    eigenvalues = np.linalg.eigvalsh(-hessian) if len(theta) else np.array([])
    hessian_pd = bool(np.all(eigenvalues > 0))
    max_grad = float(np.max(np.abs(gradient))) if len(theta) else 0.0
    if hessian_pd:
        scaled = float(np.max(np.abs(np.linalg.solve(hessian, gradient))))
        converged = scaled < SCALED_GRADIENT_TOL
    else:
        scaled = float("nan")
        converged = max_grad < ABS_GRADIENT_TOL
    if not converged:
        own.append(
            f"Convergence check failed at the best optimum ({best_name}): max |gradient| "
            f"of the profiled log-likelihood = {max_grad:.3g}, Newton step = {scaled:.3g} "
            f"(tolerances {ABS_GRADIENT_TOL:g}, {SCALED_GRADIENT_TOL:g}). Tried runs: "
            f"{', '.join(optimizers)}, then {opt.newton_steps} Newton step(s). Consider "
            "rescaling predictors or simplifying the random part."
        )
    k_re = model.k_re
    chol = np.zeros((k_re, k_re))
    chol[np.tril_indices(k_re)] = theta[: k_re * (k_re + 1) // 2]
    boundary = np.concatenate([np.abs(np.diag(chol)), np.abs(theta[len(theta) - model.k_vc :])])
    singular = bool(np.any(boundary < SINGULAR_TOL)) if model.k_vc or k_re else False
    if singular:
        own.append(
            "boundary (singular) fit: a random-effect variance is ~0 or a correlation is "
            "~±1 (relative Cholesky diagonal below 1e-4, lme4's isSingular rule); consider "
            "simplifying the random part."
        )
    if not hessian_pd and len(theta):
        own.append(
            "The Hessian of the profiled deviance is not positive definite at the optimum "
            f"(smallest eigenvalue {eigenvalues.min():.3g}); the estimates may not be a "
            "strict local optimum" + (" (expected at a singular fit)." if singular else ".")
        )
    sm_boundary = "The MLE may be on the boundary of the parameter space."
    if not singular and any(
        msg == sm_boundary and where.startswith(best_name) for _, where, msg in log
    ):
        own.append(
            f"statsmodels' boundary warning ({best_name}) uses an absolute threshold (a "
            "variance below 0.01 on the data's scale); lme4's relative rule finds no "
            "boundary here (all relative Cholesky diagonals >= 1e-4), so `singular` is False."
        )
    return _Checks(converged, singular, hessian_pd, max_grad, scaled, own)


_ATTEMPT_COLUMNS = [
    "optimizer",
    "loglik",
    "loglik_gap",
    "max_fixed_diff_se",
    "statsmodels_converged",
    "selected",
    "error",
]


def _attempts_table(
    attempt_rows: list[dict[str, Any]],
    fits: dict[str, tuple[Any, np.ndarray, float]],
    opt: _StatsmodelsOptimum,
    se: np.ndarray,
    best_name: str,
    fixed_names: list[str],
    own: list[str],
) -> pd.DataFrame:
    """One row per optimiser run, compared with the kept optimum; disagreement noted."""
    for row in attempt_rows:
        if row["optimizer"] not in fits:
            row["selected"] = False
            continue
        run_result, _, run_loglik = fits[row["optimizer"]]
        run_fe = np.asarray(run_result.fe_params)
        row["loglik_gap"] = opt.loglik - run_loglik
        row["max_fixed_diff_se"] = float(np.max(np.abs(run_fe - opt.fe_params) / se))
        row["selected"] = row["optimizer"] == best_name
        disagrees = (
            row["loglik_gap"] > LOGLIK_AGREEMENT_TOL
            or row["max_fixed_diff_se"] > FIXED_AGREEMENT_TOL_SE
        )
        if disagrees:
            rel = np.abs(run_fe - opt.fe_params) / np.maximum(np.abs(opt.fe_params), 1e-300)
            worst = int(np.argmax(np.abs(run_fe - opt.fe_params) / se))
            own.append(
                f"Optimisers disagree: {row['optimizer']} stopped at log-likelihood "
                f"{run_loglik:.6f}, {row['loglik_gap']:.3g} below the best ({best_name}); "
                f"its fixed effects differ by up to {row['max_fixed_diff_se']:.3g} SE "
                f"({fixed_names[worst]!r}: {100 * rel[worst]:.3g}%). The best optimum "
                "is reported."
            )
    return pd.DataFrame(attempt_rows, columns=_ATTEMPT_COLUMNS)


def _fit_with_statsmodels(
    parsed: ParsedFormula,
    prepared: _Prepared,
    reml: bool,
    data_name: str,
    outer: str | None,
    optimizers: Sequence[str],
    data_columns: list[str],
) -> MixedResult:
    """Fit with statsmodels' ``MixedLM`` (several optimisers, Newton-polished, checked)."""
    formula, frame = parsed.formula, prepared.frame
    spec = map_to_statsmodels(parsed, outer=outer)
    log: list[_Logged] = []
    model = _statsmodels_model(spec, parsed, frame, data_name, data_columns, log)
    fits, attempt_rows = _run_optimizers(model, optimizers, reml, log, formula)
    best_name = max(fits, key=lambda name: fits[name][2])
    best_result, theta, _ = fits[best_name]
    opt = _refine_optimum(model, theta, log)
    checks = _statsmodels_checks(model, opt, best_name, optimizers, log)
    se = np.sqrt(np.diag(opt.cov_fe))
    fixed_names = list(model.exog_names[: model.k_fe])
    attempts = _attempts_table(attempt_rows, fits, opt, se, best_name, fixed_names, checks.notes)
    fixed = _wald_table(opt.fe_params, se, fixed_names)
    scale = opt.scale
    varcomp = _build_varcomp(spec, model, scale * opt.cov_re, scale * opt.vcomp, scale)
    messages = _record_warnings(log, checks.notes, stacklevel=3)
    return MixedResult(
        formula=formula,
        reml=reml,
        fixed=fixed,
        varcomp=varcomp,
        loglik=opt.loglik,
        n_params=model.k_fe + model.k_re2 + model.k_vc + 1,
        nobs=int(model.nobs),
        ngroups={label: int(frame[label].nunique()) for label in parsed.group_labels},
        n_dropped_missing=prepared.n_dropped,
        missing_by_column=prepared.missing_by_column,
        converged=checks.converged,
        singular=checks.singular,
        hessian_positive_definite=checks.hessian_positive_definite,
        max_abs_gradient=checks.max_abs_gradient,
        max_abs_scaled_gradient=checks.max_abs_scaled_gradient,
        warnings=messages,
        optimizer=best_name,
        newton_steps=opt.newton_steps,
        attempts=attempts,
        theta=opt.theta,
        spec=spec,
        cov_fixed=pd.DataFrame(opt.cov_fe, index=fixed.index, columns=fixed.index),
        statsmodels_result=best_result,
        engine="statsmodels",
        model_frame=frame,
        design=pd.DataFrame(
            np.asarray(model.exog, dtype=float), columns=fixed_names, index=frame.index
        ),
        design_info=model.data.model_spec,
        response=str(model.endog_names),
        response_values=np.asarray(model.endog, dtype=float),
        _fingerprint=_fingerprint(model.endog),
    )


# --------------------------------------------------------------------------------------
# Likelihood-ratio test and ICC
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """Result of :func:`likelihood_ratio_test`.

    Attributes
    ----------
    statistic : float
        ``2 (loglik_full - loglik_restricted)``.
    df : int
        Number of parameters the full model adds (fixed effects plus covariance
        parameters), equal to the difference of lme4's ``df`` of ``logLik()``.
    p_value : float
        p-value from the reference distribution that fits the comparison (``mixture``).
    p_value_naive : float
        Plain chi-square(df) p-value, the one ``anova()`` in R prints; conservative (too
        large) when an added variance is on the boundary.
    boundary : bool
        Whether a chi-square mixture for variances on the boundary was used.
    reml : bool
        Whether REML log-likelihoods were compared.
    method : str
        Plain-language description of the reference distribution and why it was chosen.
    reference : str
        The reference distribution alone, e.g. ``"50:50 mixture of chi-square(0) and
        chi-square(1)"``.
    mixture : tuple of (int, float)
        The reference distribution as ``(df, weight)`` pairs; ``((df, 1.0),)`` for a plain
        chi-square.  chi-square(0) is a point mass at 0.
    conservative : bool
        ``True`` when no exact boundary mixture is known for the added parameters and the
        plain chi-square(df) was used: its p-value is an upper bound.
    added_fixed : tuple of str
        Fixed-effect columns of the full model that the restricted one lacks.
    added_random : tuple of str
        Covariance parameters the full model adds, e.g. ``"var(session_c | patient_id)"``
        or ``"cov(Intercept, session_c | patient_id)"``.
    """

    statistic: float
    df: int
    p_value: float
    p_value_naive: float
    boundary: bool
    reml: bool
    method: str
    reference: str = ""
    mixture: tuple[tuple[int, float], ...] = ()
    conservative: bool = False
    added_fixed: tuple[str, ...] = ()
    added_random: tuple[str, ...] = ()


def _chi2_sf(statistic: float, df: int) -> float:
    """Chi-square survival function, with df = 0 as a point mass at 0."""
    if df == 0:
        return 1.0 if statistic <= 0 else 0.0
    return float(stats.chi2.sf(statistic, df))


def _mixture_sf(statistic: float, mixture: Sequence[tuple[int, float]]) -> float:
    """Survival function of a chi-square mixture given as ``(df, weight)`` pairs."""
    return float(sum(weight * _chi2_sf(statistic, df) for df, weight in mixture))


def _mixture_label(mixture: Sequence[tuple[int, float]]) -> str:
    """``"chi-square(2)"``, ``"50:50 mixture of chi-square(0) and chi-square(1)"``, ..."""
    if len(mixture) == 1:
        return f"chi-square({mixture[0][0]})"
    if len(mixture) == 2 and mixture[0][1] == mixture[1][1] == 0.5:
        return f"50:50 mixture of chi-square({mixture[0][0]}) and chi-square({mixture[1][0]})"
    parts = " + ".join(f"{weight:g} chi-square({df})" for df, weight in mixture)
    return f"mixture {parts}"


def _random_parameters(result: MixedResult) -> dict[tuple[str, str, frozenset[str]], str]:
    """The covariance parameters of a fit's random part, keyed structurally.

    Keys are ``("var", group, {effect})`` and ``("cov", group, {effect1, effect2})`` (a
    covariance exists between two effects of one correlated term); values are readable
    names.  A grouping factor ``a:b`` is the same as ``b:a``; effect names ignore spaces.
    """
    parsed = parse_formula(result.formula, require_random=False)
    params: dict[tuple[str, str, frozenset[str]], str] = {}
    for term in parsed.random_terms:
        group = ":".join(sorted(term.grouping))
        effects = [e.replace(" ", "") for e in term.effects]
        for effect in effects:
            params[("var", group, frozenset([effect]))] = f"var({effect} | {group})"
        if term.correlated:
            for i, first in enumerate(effects):
                for second in effects[i + 1 :]:
                    params[("cov", group, frozenset([first, second]))] = (
                        f"cov({first}, {second} | {group})"
                    )
    return params


def _fixed_span_nested(restricted: MixedResult, full: MixedResult) -> bool:
    """Whether every fixed-effect column of ``restricted`` lies in the span of ``full``'s."""
    if restricted.design.empty or full.design.empty:
        return set(restricted.fixed.index) <= set(full.fixed.index)
    x0 = restricted.design.to_numpy(dtype=float)
    x1 = full.design.to_numpy(dtype=float)
    coef, *_ = np.linalg.lstsq(x1, x0, rcond=None)
    residual = np.linalg.norm(x0 - x1 @ coef, axis=0)
    scale = np.maximum(np.linalg.norm(x0, axis=0), 1.0)
    return bool(np.all(residual <= 1e-8 * scale))


def _same_fixed_columns(restricted: MixedResult, full: MixedResult) -> bool:
    """Whether both fits have the very same fixed-effect columns (names and values)."""
    if list(restricted.fixed.index) != list(full.fixed.index):
        return False
    if restricted.design.empty or full.design.empty:
        return True
    return bool(
        np.allclose(restricted.design.to_numpy(float), full.design.to_numpy(float), atol=1e-12)
    )


def _refit_call(result: MixedResult) -> str:
    return f"fit_mixed(data, {result.formula!r}, reml=False)"


def _random_reference(
    added: dict[tuple[str, str, frozenset[str]], str],
) -> tuple[tuple[tuple[int, float], ...], bool, bool, str]:
    """Reference distribution of the random part: ``(mixture, boundary, conservative, why)``."""
    r = len(added)
    variances = [key for key in added if key[0] == "var"]
    covariances = [key for key in added if key[0] == "cov"]
    q = len(variances)
    if r == 0:
        return ((0, 1.0),), False, False, ""
    if q == 0:
        return (
            ((r, 1.0),),
            False,
            False,
            f"the full model adds {r} covariance(s) between random effects already in the "
            "restricted model; a covariance of 0 lies inside its parameter space, so the "
            f"usual chi-square({r}) applies",
        )
    if q == 1:
        new_effect = next(iter(variances[0][2]))
        group = variances[0][1]
        attached = [key for key in covariances if key[1] == group and new_effect in key[2]]
        interior = r - 1 - len(attached)
        why = (
            f"the full model adds one random effect ({new_effect} | {group}) whose variance is "
            f"0 under the null, on the boundary of its parameter space"
        )
        if attached:
            why += f", with its {len(attached)} covariance(s) with the effects in its block"
        if interior:
            why += f", plus {interior} covariance(s) between effects already in the model"
        why += (
            f"; the null distribution is then a 50:50 mixture of chi-square({r - 1}) and "
            f"chi-square({r}) (Self & Liang 1987; Stram & Lee 1994)"
        )
        return ((r - 1, 0.5), (r, 0.5)), True, False, why
    if not covariances:
        weights = tuple((j, math.comb(q, j) / 2**q) for j in range(q + 1))
        why = (
            f"the full model adds {q} uncorrelated random-effect variances, each 0 under the "
            "null (on the boundary); with asymptotically independent estimates the null "
            f"distribution is the binomial mixture of chi-square(0) ... chi-square({q}) "
            "(Self & Liang 1987)"
        )
        return weights, True, False, why
    return (
        ((r, 1.0),),
        False,
        True,
        f"the full model adds {q} random-effect variances together with covariances "
        f"({r} parameters); the null distribution is a chi-bar-square mixture whose weights "
        "depend on the information matrix and have no closed form here, so the plain "
        f"chi-square({r}) is used; it ignores the boundary and is conservative (p too large)",
    )


def likelihood_ratio_test(
    restricted: MixedResult, full: MixedResult, boundary: bool | None = None
) -> LikelihoodRatioTest:
    """Likelihood-ratio test of nested mixed models; it chooses its reference distribution.

    The two fits are compared term by term (:func:`parse_formula` of both formulas, and
    their fixed-effect design matrices), and the reference distribution follows from what
    the full model adds:

    ====================================  ==============================================
    The full model adds                   Reference distribution (``method`` says which)
    ====================================  ==============================================
    fixed effects only (ML required)      chi-square(f), f = added fixed columns
    one random effect (one variance,      50:50 mixture of chi-square(r - 1) and
    plus its r - 1 covariances in a       chi-square(r) (Self & Liang 1987; Stram & Lee
    correlated block)                     1994); r = 1 for an uncorrelated (``||``)
                                          effect or a new ``(1 | g)``: 50:50
                                          chi-square(0), chi-square(1)
    q >= 2 uncorrelated variances         binomial mixture: weights C(q, j) / 2^q on
                                          chi-square(j), j = 0..q (q = 2: 0.25 / 0.5 /
                                          0.25), exact for asymptotically independent
                                          variance estimates (Self & Liang 1987)
    covariances between effects that are  chi-square(r): a covariance of 0 is inside the
    already in the model (``||`` -> ``|``)  parameter space
    several variances with covariances    chi-square(r), flagged ``conservative``: the
                                          chi-bar-square weights depend on the
                                          information matrix; the plain chi-square
                                          ignores the boundary, so its p is too large
    fixed effects and random effects      the random part's reference with every df
    (ML required)                         shifted by f: under ML the fixed effects and
                                          the covariance parameters are asymptotically
                                          independent (block-diagonal information), so
                                          the statistic is chi-square(f) plus the
                                          random part's statistic
    ====================================  ==============================================

    A least-squares fit (no random terms, ``engine == "ols"``) is the restricted model of
    every random part: ``y ~ x`` against ``y ~ x + (1 | g)`` is the 50:50 chi-square(0),
    chi-square(1) boundary test of the added variance, by REML as well (the fixed effects
    are the same, and the least-squares REML criterion is lme4's at zero variance).

    Parameters
    ----------
    restricted : MixedResult
        The smaller model.
    full : MixedResult
        The larger model: the same fixed-effect columns or more (their span must contain
        the restricted ones), and for every grouping factor the same random effects and
        covariances or more.
    boundary : bool or None, default None
        Deprecated (a :class:`FutureWarning` is issued when given): the rule above decides.
        ``False`` forces the plain chi-square(df) (R's ``anova()``; conservative for a
        variance on the boundary); ``True`` is accepted only where the rule uses a boundary
        mixture anyway.

    Returns
    -------
    LikelihoodRatioTest
        Statistic, df, the p-value of the chosen reference (``p_value``) and of the plain
        chi-square (``p_value_naive``), the reference (``reference``, ``mixture``), and
        ``method``: which rule was used and why.

    Raises
    ------
    ValueError
        If the fits use different data or different criteria (REML vs ML); if they are not
        nested (a fixed-effect column, random effect or covariance of ``restricted`` is
        missing from ``full``) or add nothing; if they differ in their fixed effects but
        were fitted by REML (REML likelihoods of different fixed effects are not
        comparable; the message names both ``fit_mixed(..., reml=False)`` refits); if the
        full model's log-likelihood is below the restricted one's.

    Examples
    --------
    Fixed effects by ML: ``likelihood_ratio_test(fit_mixed(d, "y ~ 1 + (1 | g)",
    reml=False), fit_mixed(d, "y ~ x + (1 | g)", reml=False))`` is chi-square(1).  A random
    slope with its covariance, by REML: ``(1 | g)`` against ``(1 + x | g)`` is the 50:50
    mixture of chi-square(1) and chi-square(2).
    """
    _check_comparable(restricted, full)
    names = f"restricted {restricted.formula!r}, full {full.formula!r}"
    params0 = _random_parameters(restricted)
    params1 = _random_parameters(full)
    _check_nested(restricted, full, params0, params1, names)
    added = {key: label for key, label in params1.items() if key not in params0}
    f = _count_added_fixed(restricted, full, names)
    added_fixed = tuple(t for t in full.fixed.index if t not in set(restricted.fixed.index))
    df = _count_added(restricted, full, f, len(added), names)
    statistic = _lr_statistic(restricted, full)
    naive = _chi2_sf(statistic, df)

    mixture, is_boundary, conservative, why = _lrt_reference(added, f, added_fixed)
    if boundary is not None:
        mixture, is_boundary, conservative, why = _deprecated_boundary(
            boundary, df, mixture, is_boundary, conservative, why
        )
    reference = _mixture_label(mixture)
    p_value = _mixture_sf(statistic, mixture)
    method = f"{reference}: {why}."
    if is_boundary and len(mixture) == 3:
        method += _two_variance_note(statistic, mixture)
    return LikelihoodRatioTest(
        statistic=statistic,
        df=df,
        p_value=p_value,
        p_value_naive=naive,
        boundary=is_boundary,
        reml=full.reml,
        method=method,
        reference=reference,
        mixture=mixture,
        conservative=conservative,
        added_fixed=added_fixed,
        added_random=tuple(added.values()),
    )


def _check_comparable(restricted: MixedResult, full: MixedResult) -> None:
    """Both fits must use the same criterion (REML or ML) and the same observations."""
    if restricted.reml != full.reml:
        raise ModelSpecificationError(
            "Cannot compare a REML fit with an ML fit; refit both with the same reml=."
        )
    if restricted.nobs != full.nobs or restricted._fingerprint != full._fingerprint:
        raise ModelSpecificationError(
            "The two fits do not use the same observations (response or rows differ: "
            f"nobs {restricted.nobs} vs {full.nobs}); likelihoods are only comparable on "
            "identical data. Drop rows missing in either model before fitting both."
        )


def _check_nested(
    restricted: MixedResult,
    full: MixedResult,
    params0: dict[tuple[str, str, frozenset[str]], str],
    params1: dict[tuple[str, str, frozenset[str]], str],
    names: str,
) -> None:
    """``full`` must reproduce every fixed-effect column and random parameter of ``restricted``."""
    missing_random = [label for key, label in params0.items() if key not in params1]
    fixed_nested = _fixed_span_nested(restricted, full)
    if not missing_random and fixed_nested:
        return
    reasons = []
    if not fixed_nested:
        extra = [t for t in restricted.fixed.index if t not in set(full.fixed.index)]
        reasons.append(
            "fixed effects of the restricted model that the full model cannot reproduce: "
            f"{extra or list(restricted.fixed.index)}"
        )
    if missing_random:
        reasons.append(
            f"random-effect parameters of the restricted model absent from the full one: "
            f"{missing_random}"
        )
    swapped = _fixed_span_nested(full, restricted) and all(k in params0 for k in params1)
    raise ModelSpecificationError(
        f"The models are not nested ({names}): "
        + "; ".join(reasons)
        + ". "
        + (
            "The arguments look swapped: pass the smaller model first."
            if swapped
            else "A likelihood-ratio test needs the restricted model to be a special "
            "case of the full one; compare non-nested models by AIC/BIC instead."
        )
    )


def _count_added_fixed(restricted: MixedResult, full: MixedResult, names: str) -> int:
    """The number of fixed-effect columns ``full`` adds (REML: none may differ)."""
    f = len(full.fixed) - len(restricted.fixed)
    same_fixed = f == 0 and _fixed_span_nested(full, restricted)
    if not same_fixed and f <= 0:
        raise ModelSpecificationError(
            f"The models are not nested ({names}): their fixed effects span different "
            "spaces with the same number of columns."
        )
    if full.reml and not (same_fixed and _same_fixed_columns(restricted, full)):
        raise ModelSpecificationError(
            "REML log-likelihoods of models with different fixed effects are not "
            f"comparable (restricted: {list(restricted.fixed.index)}; full: "
            f"{list(full.fixed.index)}). Refit both models by ML and test again: "
            f"restricted = {_refit_call(restricted)}; full = {_refit_call(full)}."
        )
    return f


def _count_added(
    restricted: MixedResult, full: MixedResult, f: int, n_random: int, names: str
) -> int:
    """The test's df: added fixed columns plus added random parameters, checked against
    the fits' own parameter counts."""
    df = f + n_random
    if df <= 0:
        raise ModelSpecificationError(
            f"The full model adds no parameter to the restricted one ({names}); there is "
            "nothing to test."
        )
    if df != full.n_params - restricted.n_params:
        raise ModelSpecificationError(
            f"Counting what the full model adds gives {df} parameters ({f} fixed, "
            f"{n_random} random), but the fits' parameter counts differ by "
            f"{full.n_params - restricted.n_params}; the models are not nested as written "
            f"({names})."
        )
    return df


def _lr_statistic(restricted: MixedResult, full: MixedResult) -> float:
    """Twice the log-likelihood gain, 0 for a gain lost in rounding; a real loss is an error.

    A gain within rounding of 0 (|2 Δ logLik| ≤ 1e-10 |logLik|, e.g. a variance estimated at
    exactly 0 reached by two different computations) is 0: the chi-square mixtures put a
    point mass there, so a rounding-sized positive value would halve the p-value.
    """
    statistic = 2.0 * (full.loglik - restricted.loglik)
    if abs(statistic) <= 1e-10 * max(1.0, abs(full.loglik)):
        return 0.0
    if statistic < -1e-6 * max(1.0, abs(full.loglik)):
        raise ModelSpecificationError(
            f"The full model's log-likelihood ({full.loglik:.6f}) is below the restricted "
            f"model's ({restricted.loglik:.6f}): the models are not nested or a fit did "
            "not reach its optimum."
        )
    return max(statistic, 0.0)


def _lrt_reference(
    added: dict[tuple[str, str, frozenset[str]], str], f: int, added_fixed: tuple[str, ...]
) -> tuple[tuple[tuple[int, float], ...], bool, bool, str]:
    """The random part's reference (:func:`_random_reference`), each df shifted by the ``f``
    added fixed columns: ``(mixture, boundary, conservative, why)``."""
    mixture, is_boundary, conservative, why = _random_reference(added)
    if f:
        mixture = tuple((d + f, w) for d, w in mixture)
        fixed_why = f"the full model adds {f} fixed-effect column(s) {list(added_fixed)}"
        if added:
            why = (
                f"{fixed_why}, tested by ML; and {why}. Under ML the fixed effects and the "
                "covariance parameters are asymptotically independent, so each df of the "
                f"random part's reference is shifted by {f}"
            )
        else:
            why = f"{fixed_why}, tested by ML: the usual chi-square({f}) applies"
    return mixture, is_boundary, conservative, why


def _deprecated_boundary(
    boundary: bool,
    df: int,
    mixture: tuple[tuple[int, float], ...],
    is_boundary: bool,
    conservative: bool,
    why: str,
) -> tuple[tuple[tuple[int, float], ...], bool, bool, str]:
    """Warn about ``boundary=`` and apply it: ``False`` forces the plain chi-square(df)."""
    warnings.warn(
        "likelihood_ratio_test(boundary=...) is deprecated: the test now chooses its "
        "reference distribution from the two models (see LikelihoodRatioTest.method); "
        "drop the argument.",
        FutureWarning,
        stacklevel=3,  # the caller of likelihood_ratio_test
    )
    if boundary and not is_boundary:
        raise SettingsError(
            f"boundary=True, but no boundary mixture applies here: {why}. Drop the "
            "boundary argument."
        )
    if not boundary and is_boundary:
        mixture, is_boundary, conservative = ((df, 1.0),), False, True
        why = (
            "plain chi-square requested with boundary=False; it ignores that an added "
            "variance is on the boundary, so its p-value is conservative"
        )
    return mixture, is_boundary, conservative, why


def _two_variance_note(statistic: float, mixture: tuple[tuple[int, float], ...]) -> str:
    """The range of the p-value over the correlation of two added variance estimates."""
    # Two variances: weights (1/2 - p, 1/2, p) with p = arccos(rho) / (2 pi) in
    # [0, 1/2]; the p-value is linear in p, so its range is set by the end points.
    d0, d1, d2 = (d for d, _ in mixture)
    low = 0.5 * _chi2_sf(statistic, d0) + 0.5 * _chi2_sf(statistic, d1)
    high = 0.5 * _chi2_sf(statistic, d1) + 0.5 * _chi2_sf(statistic, d2)
    return (
        " If the two variance estimates are correlated (rho), the weights are "
        "(1/2 - p, 1/2, p) with p = arccos(rho)/(2 pi), so over all correlations the "
        f"p-value lies between {low:.4g} and {high:.4g}."
    )


def icc_from_null(result: MixedResult) -> pd.DataFrame:
    """Intraclass correlations from a random-intercept-only model.

    Parameters
    ----------
    result : MixedResult
        A fit whose random part has intercepts only, e.g. ``y ~ 1 + (1 | patient_id)`` or
        ``y ~ 1 + (1 | therapist_id) + (1 | patient_id)``.

    Returns
    -------
    pandas.DataFrame
        One row per grouping factor (outer first): ``group, variance, share`` (variance /
        total variance) and ``icc`` (correlation of two observations that share this group,
        which for the inner factor also share the outer one: the sum of this and all outer
        variances over the total).

    Raises
    ------
    ValueError
        If the model has no random effects (a formula without random terms, fitted by
        least squares) or has random slopes (the ICC then depends on the covariates).
    """
    variances = result.varcomp[result.varcomp["term2"] == ""]
    random_rows = variances[variances["group"] != "Residual"]
    if random_rows.empty:
        raise ModelSpecificationError(
            f"icc_from_null needs a model with a random intercept, e.g. 'y ~ 1 + (1 | "
            f"patient_id)'; {result.formula!r} has no random effects (fitted by least "
            "squares), so there is no grouping factor to share variance."
        )
    if (random_rows["term"] != "Intercept").any():
        raise ModelSpecificationError(
            "icc_from_null needs a random-intercept-only model; this one has random slopes "
            f"({sorted(set(random_rows.loc[random_rows['term'] != 'Intercept', 'term']))}), "
            "so the intraclass correlation depends on the covariate values."
        )
    total = float(variances["variance_or_cov"].sum())
    shares = random_rows["variance_or_cov"].to_numpy() / total
    return pd.DataFrame(
        {
            "group": random_rows["group"].to_numpy(),
            "variance": random_rows["variance_or_cov"].to_numpy(),
            "share": shares,
            "icc": np.cumsum(shares),
        }
    )


# --------------------------------------------------------------------------------------
# Small-sample degrees of freedom (helpers.ddf) and contrast tests
# --------------------------------------------------------------------------------------


def _check_ddf(ddf: str, reml: bool) -> None:
    """Validate a ``ddf=`` value; Kenward-Roger needs a REML fit."""
    if ddf not in DDF_METHODS:
        raise SettingsError(f"ddf must be one of {DDF_METHODS}; got {ddf!r}.")
    if ddf == "kenward-roger" and not reml:
        raise ModelSpecificationError(
            "ddf='kenward-roger' needs a REML fit (lmerTest refuses ML fits; pbkrtest "
            "refits them by REML): fit with reml=True, or use ddf='satterthwaite'."
        )


def _small_sample_design(result: MixedResult) -> tuple[MixedDesign, list[np.ndarray], float]:
    """The fit's design, grouping and covariance parameters for :mod:`helpers.ddf`."""
    blocks = _blocks_by_group(parse_formula(result.formula))
    labels = list(blocks)
    frame = result.model_frame
    if len(labels) == 2:
        outer = result.spec.outer if result.spec is not None else None
        outer = outer or _nesting_outer(frame, labels, "data")
        labels = [outer, labels[1] if labels[0] == outer else labels[0]]
    vc = result.varcomp
    levels, covariances = [], []
    for label in labels:
        effects = [effect for block in blocks[label] for effect in block]
        z = _random_columns(frame, label, effects)
        if isinstance(z, str):
            raise UnsupportedModelError(f"Small-sample df are not available: {z}")
        position = {effect: i for i, effect in enumerate(effects)}
        cov = np.zeros((len(effects), len(effects)))
        for term, term2, value in vc.loc[
            vc["group"] == label, ["term", "term2", "variance_or_cov"]
        ].itertuples(index=False):
            i, j = position[term], position[term2 or term]
            cov[i, j] = cov[j, i] = value
        index_blocks, start = [], 0
        for block in blocks[label]:
            index_blocks.append(tuple(range(start, start + len(block))))
            start += len(block)
        codes = pd.factorize(frame[label], sort=True)[0]
        levels.append(RandomLevel(label, codes, z.to_numpy(dtype=float), tuple(index_blocks)))
        covariances.append(cov)
    sigma2 = float(vc.loc[vc["group"] == "Residual", "variance_or_cov"].iloc[0])
    design = MixedDesign(
        result.design.to_numpy(dtype=float), np.asarray(result.response_values), tuple(levels)
    )
    return design, covariances, sigma2


def _small_sample(result: MixedResult) -> SmallSampleInference:
    """The result's :class:`~helpers.ddf.SmallSampleInference`, built once and kept."""
    if result.small_sample is None:
        design, covariances, sigma2 = _small_sample_design(result)
        result.small_sample = SmallSampleInference(design, covariances, sigma2, result.reml)
    return result.small_sample


def with_ddf(result: MixedResult, ddf: str, level: float = 0.95) -> MixedResult:
    """A copy of a fit whose ``fixed`` table uses small-sample denominator df.

    Parameters
    ----------
    result : MixedResult
        A fit of :func:`fit_mixed` (any engine; the covariance parameters are taken from
        ``result.varcomp``, so the df do not depend on the optimiser that found them).
    ddf : {"asymptotic", "satterthwaite", "kenward-roger"}
        ``"satterthwaite"``: lmerTest's df, lme4's SEs.  ``"kenward-roger"``: pbkrtest's
        adjusted covariance (``cov_fixed`` and ``se``) and df; REML fits only.
        ``"asymptotic"``: the normal-reference table of :func:`fit_mixed`.
    level : float, default 0.95
        Confidence level of ``ci_low, ci_high``.

    Returns
    -------
    MixedResult
        With ``fixed`` = ``estimate, se, ci_low, ci_high, df, t, p`` (``z`` instead of
        ``df, t`` for ``"asymptotic"``), ``ddf`` set, ``cov_fixed`` adjusted under
        Kenward-Roger and ``small_sample`` holding the computation.  A least-squares fit
        (no random terms) gets ``df = n - p`` for both methods and keeps its covariance:
        under REML this is exactly R's ``summary(lm())`` t test.

    Raises
    ------
    ValueError
        For an unknown method, or Kenward-Roger on an ML fit.
    """
    _check_ddf(ddf, result.reml)
    estimate = result.fixed["estimate"].to_numpy(dtype=float)
    names = list(result.fixed.index)
    axes = result.cov_fixed
    if ddf == "asymptotic":
        cov = result.small_sample.vcov if result.ddf == "kenward-roger" else result.cov_fixed
        cov = pd.DataFrame(np.asarray(cov), index=axes.index, columns=axes.columns)
        se = np.sqrt(np.diag(cov.to_numpy()))
        return replace(result, fixed=_wald_table(estimate, se, names), cov_fixed=cov, ddf=ddf)
    if result.engine == "ols":
        cov = result.cov_fixed
        df = np.full(len(names), float(result.nobs - len(names)))
    else:
        inference = _small_sample(result)
        cov = inference.vcov_kr if ddf == "kenward-roger" else inference.vcov
        cov = pd.DataFrame(cov, index=axes.index, columns=axes.columns)
        table = inference.coefficient_table(ddf, level)
        df = table["df"]
    se = np.sqrt(np.diag(cov.to_numpy()))
    tval = estimate / se
    crit = stats.t.ppf(0.5 + level / 2, df)
    fixed = pd.DataFrame(
        {
            "estimate": estimate,
            "se": se,
            "ci_low": estimate - crit * se,
            "ci_high": estimate + crit * se,
            "df": df,
            "t": tval,
            "p": 2 * stats.t.sf(np.abs(tval), df),
        },
        index=pd.Index(names, name="term"),
    )
    return replace(result, fixed=fixed, cov_fixed=cov, ddf=ddf)


def _contrast_matrix(contrast: Any, names: Sequence[str]) -> np.ndarray:
    """Rows of term weights from a term, terms, a weight mapping (or a list) or a matrix."""
    if isinstance(contrast, str):
        contrast = [contrast]
    if isinstance(contrast, pd.DataFrame):
        unknown = [c for c in contrast.columns if c not in names]
        if unknown:
            raise ModelSpecificationError(
                f"contrast columns {unknown} are not fixed effects {list(names)}."
            )
        return contrast.reindex(columns=names, fill_value=0.0).to_numpy(dtype=float)
    if isinstance(contrast, np.ndarray):
        matrix = np.atleast_2d(contrast.astype(float))
        if matrix.shape[1] != len(names):
            raise ModelSpecificationError(
                f"contrast matrix has {matrix.shape[1]} columns for {len(names)} fixed effects."
            )
        return matrix
    rows = [contrast] if isinstance(contrast, dict) else list(contrast)
    matrix = np.zeros((len(rows), len(names)))
    for i, row in enumerate(rows):
        weights = {row: 1.0} if isinstance(row, str) else dict(row)
        for term, weight in weights.items():
            if term not in names:
                raise ModelSpecificationError(
                    f"contrast term {term!r} is not a fixed effect; terms: {list(names)}."
                )
            matrix[i, list(names).index(term)] += float(weight)
    if not len(rows) or np.all(matrix == 0):
        raise ModelSpecificationError("contrast_test needs at least one non-zero contrast row.")
    return matrix


def contrast_test(
    result: MixedResult,
    contrast: Any,
    *,
    ddf: str | None = None,
    rhs: Sequence[float] | float | None = None,
) -> pd.Series:
    """F test that linear combinations of the fixed effects are zero (or ``rhs``).

    Parameters
    ----------
    result : MixedResult
        A fit of :func:`fit_mixed`.
    contrast : str, sequence of str, mapping, sequence of mappings, array or DataFrame
        The rows of ``L``: a term name or a list of them (each row picks one term:
        "are these coefficients all zero?"), a mapping term -> weight (one row, e.g.
        ``{"a": 1, "b": -1}``) or a list of mappings, a (rows x p) array, or a DataFrame
        whose columns are terms.
    ddf : {"asymptotic", "satterthwaite", "kenward-roger"}, optional
        Default: the fit's ``result.ddf``.  ``"asymptotic"``: Wald chi-square on
        ``rank(L)`` df with lme4's ``vcov()`` (``F = chi2 / ndf``, ``ddf = inf``).
        ``"satterthwaite"``: lmerTest's ``contestMD`` (eigen-decomposition of
        ``L Cov L'``; rank-deficient ``L`` is reduced).  ``"kenward-roger"``: pbkrtest's
        ``KRmodcomp`` (scaled F; REML fits, ``L`` of full row rank).  Least-squares fits
        give the exact F test of ``lm`` (``ddf = n - p``) for both small-sample methods.
    rhs : float or sequence of float, optional
        Hypothesised values of ``L beta`` (default 0).

    Returns
    -------
    pandas.Series
        ``F, ndf, ddf, p, method``; plus ``chi2`` (asymptotic) or ``F_unscaled,
        F_scaling`` (Kenward-Roger).

    Raises
    ------
    ValueError
        Unknown terms or method, an all-zero contrast, Kenward-Roger on an ML fit.
    """
    method = result.ddf if ddf is None else ddf
    _check_ddf(method, result.reml)
    names = list(result.fixed.index)
    lmat = _contrast_matrix(contrast, names)
    rhs_vec = None if rhs is None else np.broadcast_to(np.asarray(rhs, float), lmat.shape[:1])
    beta = result.fixed["estimate"].to_numpy(dtype=float)
    if result.engine == "ols" and method != "asymptotic":
        out = _contrast_ftest(
            None, lmat, "asymptotic", beta=beta, vcov=result.cov_fixed.to_numpy(), rhs=rhs_vec
        )
        ddf_ols = float(result.nobs - len(names))
        out = {"F": out["F"], "ndf": out["ndf"], "ddf": ddf_ols}
        out["p"] = float(stats.f.sf(out["F"], out["ndf"], ddf_ols))
    elif method == "asymptotic":
        vcov = result.cov_fixed.to_numpy()
        if result.ddf == "kenward-roger":
            vcov = result.small_sample.vcov
        out = _contrast_ftest(None, lmat, method, beta=beta, vcov=vcov, rhs=rhs_vec)
    else:
        out = _contrast_ftest(_small_sample(result), lmat, method, rhs=rhs_vec)
    return pd.Series({**out, "method": method})
