r"""Simulation-based power for therapist-nested alliance–outcome designs.

"How many therapists, patients and sessions do I need?"  Therapist nesting, dropout,
missing questionnaires and the within/between split of the alliance make analytic power
formulas unreliable, so the answer is simulation (Arend & Schäfer 2019; Magnusson's
powerlmm; Green & MacLeod's simr): draw many studies from a :class:`Design`, fit the
analysis model to each, and count how often each alliance effect is significant.

The analysis model is the session model of notebook 03::

    outcome ~ alliance_within_lag + alliance_between_c + session_c
              + (1 + session_c || patient_id) + (1 | therapist_id)

fitted by REML with the suite's engine (:class:`helpers.engine.NestedLMM`, lme4's profiled
deviance) and tested with Satterthwaite df (:mod:`helpers.ddf`, lmerTest's), Kenward-Roger
df, or the normal reference (``ddf="asymptotic"``, lme4's z).

Generating process
------------------
Each replicate study is drawn by the demo study's generator
(:func:`helpers.simulate._simulate_latent`: therapists, Poisson or equal caseloads,
dropout, trait and state alliance with ruptures and a reverse path, PHQ-9 with therapist
and patient effects; the equations are in ``data/raw/demo/README.md``) with the design's
values replacing the defaults.  Only the model's variables are then formed, directly
(the item level is not drawn): a session's alliance or PHQ-9 total is missing when its
questionnaire was missed (``questionnaire_missing_rate``) or when more items are missing
than the scoring rule prorates (WAI-SR: more than 1 of 12, PHQ-9: more than 2 of 9, each
item missing with ``item_missing_rate``); a prorated total is taken as the observed total.
The features are then those of :func:`helpers.features.add_model_features` (patient mean,
deviation from it at the previous session, grand-mean-centred patient mean, session − 1),
computed on arrays (``tests/test_power.py`` checks they agree).

What the true values mean
-------------------------
``bias`` and ``coverage`` are relative to the generating effects.  The model's
``alliance_between_c`` is the patient's *observed* mean alliance, a noisy measure of the
true level ``tau`` (state fluctuation, ruptures and rounding), so its estimate is
attenuated towards zero; the lagged within effect is attenuated by about 6% (data card).
A negative bias of a few percent is therefore a property of the design, not of the fit.
With a reverse path (``reverse_path_effect``, symptoms → next alliance) the between
estimate also picks up the symptom feedback; set it to 0 to check the test's size.

Reproducibility
---------------
Replicate ``r`` of a design cell uses ``numpy.random.SeedSequence(seed,
spawn_key=(*cell_words, r))``: a child of ``SeedSequence(seed)`` keyed by the cell (four
32-bit words of the SHA-256 of the cell's design) and the replicate.  Any split of the
replicates into chunks, workers or machines therefore gives the same numbers, and a cell
keeps its numbers when other cells are added to ``vary``.

Every replicate's fit starts from the fit of the cell's *pilot* study (replicate
:data:`PILOT_REPLICATE`, never one of the counted replicates): its ``theta`` as the start
and the Hessian of its profiled deviance as the curvature
(:meth:`helpers.engine.NestedLMM.fit_fixed`), which halves the deviance evaluations.  Each
worker process fits the pilot itself (once per cell), so the start, and with it every
number, does not depend on how the work is split.

Where it runs
-------------
Replicates are shipped in chunks (``chunk_size`` per task) to local processes
(joblib, ``n_jobs``) or to a Dask cluster (``scheduler=`` a ``distributed.Client`` or a
scheduler address, or the ``DASK_SCHEDULER_ADDRESS`` environment variable).  With
``out=``, each finished cell is written at once (``cells/<key>.parquet``, one row per
replicate and term, plus ``cells/<key>.json``) under a temporary name and renamed; a
re-run with the same arguments reads the finished cells instead of recomputing them, so
an interrupted study resumes.  ``power.csv`` (the summary without timings, byte-identical
for any scheduler) and ``timing.csv`` are written at the end.

References
----------
Arend, M. G., & Schäfer, T. (2019). Statistical power in two-level models: A tutorial
based on Monte Carlo simulation. *Psychological Methods, 24*(1), 1-19.

Green, P., & MacLeod, C. J. (2016). SIMR: an R package for power analysis of generalized
linear mixed models by simulation. *Methods in Ecology and Evolution, 7*(4), 493-498.

Morris, T. P., White, I. R., & Crowther, M. J. (2019). Using simulation studies to
evaluate statistical methods. *Statistics in Medicine, 38*(11), 2074-2102.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from helpers import simulate
from helpers.ddf import DDF_METHODS, MixedDesign, RandomLevel, SmallSampleInference
from helpers.engine import EngineInputError, FixedEffectsFit, NestedLMM
from helpers.errors import PowerSettingsError

__all__ = [
    "ALLIANCE_TERMS",
    "Design",
    "PowerSettingsError",
    "design_cells",
    "mc_interval",
    "power_curve",
    "simulate_sessions",
    "smallest_design",
    "summarise_replicates",
]

#: The fixed effects whose power is estimated, with the design field holding their truth.
ALLIANCE_TERMS: dict[str, str] = {
    "alliance_within_lag": "within_effect",
    "alliance_between_c": "between_effect",
}
#: Version of the replicate computation; part of every cell file's key.
METHOD_VERSION = 1
#: Items of each instrument and how many may be missing before the total is missing
#: (the scoring rules of :mod:`helpers.scoring`: WAI-SR and PHQ-9).
_ALLIANCE_ITEMS, _ALLIANCE_MAX_MISSING = 12, 1
_OUTCOME_ITEMS, _OUTCOME_MAX_MISSING = 9, 2
#: Sample on which the therapist share is converted into the therapist SD (see Design).
_SHARE_SAMPLE = {"n_therapists": 2000, "patients_per_therapist": 10, "seed": 20260103}
#: How long to wait for a Dask scheduler given by address.
SCHEDULER_TIMEOUT = "20s"
_DEMO = "demo study design (data/raw/demo/README.md)"


def _source(name: str) -> str:
    return next(p.source for p in simulate.PARAMETERS if p.name == name)


#: Meaning and source of each :class:`Design` field (rendered by ``Design.table()``).
DESIGN_FIELDS: dict[str, tuple[str, str]] = {
    "n_therapists": ("therapists", _DEMO),
    "patients_per_therapist": (
        "patients per therapist (mean caseload)",
        _DEMO,
    ),
    "caseload": (
        "'poisson': 1 + Poisson(k - 1) patients per therapist; 'equal': k each",
        _DEMO + ": Poisson",
    ),
    "max_sessions": ("treatment sessions planned (dropout shortens)", _DEMO),
    "dropout_hazard_early": (
        "probability of stopping after session 1 or 2",
        _source("dropout_hazard_early"),
    ),
    "dropout_hazard_late": (
        "probability of stopping after each later session",
        _source("dropout_hazard_late"),
    ),
    "item_missing_rate": (
        "probability an item is blank (a total is missing when more items are blank than "
        "the scoring rule prorates)",
        _source("item_missing_rate"),
    ),
    "questionnaire_missing_rate": (
        "probability a questionnaire is missed at a session",
        _source("questionnaire_missing_rate"),
    ),
    "within_effect": (
        "lagged within-patient effect, PHQ-9 points per WAI-SR point",
        _source("alliance_within_effect"),
    ),
    "between_effect": (
        "between-patient effect of the alliance level, PHQ-9 points per WAI-SR point",
        _source("alliance_between_effect"),
    ),
    "therapist_share": (
        "therapist share of PHQ-9 variance during treatment (20-session definition)",
        "Wampold & Brown (2005), J Consult Clin Psychol 73(5); Baldwin & Imel (2013): .05",
    ),
    "reverse_path_effect": (
        "symptom deviation -> next session's alliance, WAI-SR per PHQ-9 point",
        _source("reverse_path_effect"),
    ),
    "rater": (
        "whose alliance rating the model uses: 'client' or 'therapist'",
        "assumption: client ratings, as notebook 03 by default",
    ),
}


@dataclass(frozen=True, repr=False)
class Design:
    """A planned alliance–outcome study: its size, attrition and true effects.

    Defaults reproduce the demo study (``data/raw/demo/README.md``): 40 therapists with
    Poisson caseloads of mean 10, up to 20 sessions, the demo's dropout and missingness,
    the lagged within-patient effect −0.15 and the between-patient effect −0.177 PHQ-9
    points per WAI-SR point (calibrated to the meta-analytic r = .278, Flückiger et al.
    2018), and a therapist share of .05 of the outcome variance.  ``print(design)`` shows
    every value with its meaning and source; ``design.table()`` is the same as a frame.

    Parameters
    ----------
    n_therapists, patients_per_therapist, max_sessions : int
        Size of the study.
    caseload : {"poisson", "equal"}
        Caseloads ``1 + Poisson(patients_per_therapist - 1)`` (unequal, as in clinics) or
        exactly ``patients_per_therapist``.
    dropout_hazard_early, dropout_hazard_late : float
        Per-session probabilities of ending treatment (after sessions 1–2, and later).
    item_missing_rate, questionnaire_missing_rate : float
        Missing items and missed questionnaires.
    within_effect, between_effect : float
        True alliance effects (PHQ-9 points per WAI-SR point; negative = fewer symptoms).
    therapist_share : float
        Therapist share of the PHQ-9 variance during treatment, in [0, 1).  Converted to
        the generator's therapist SD on a fixed sample of 20,000 simulated patients over
        20 sessions (the demo's definition; the default .05 gives the demo's 1.084), so
        varying ``max_sessions`` does not change the therapist variance.
    reverse_path_effect : float
        Symptom deviation → next alliance (the demo's −0.1; 0 for none).
    rater : {"client", "therapist"}
        Which alliance rating enters the model.

    Examples
    --------
    >>> Design(n_therapists=20).n_patients_expected
    200
    >>> Design().replace(between_effect=0.0).between_effect
    0.0
    """

    n_therapists: int = 40
    patients_per_therapist: int = 10
    caseload: str = "poisson"
    max_sessions: int = 20
    dropout_hazard_early: float = 0.10
    dropout_hazard_late: float = 0.07
    item_missing_rate: float = 0.02
    questionnaire_missing_rate: float = 0.03
    within_effect: float = -0.15
    between_effect: float = -0.177
    therapist_share: float = 0.05
    reverse_path_effect: float = -0.10
    rater: str = "client"

    def __post_init__(self) -> None:
        problems = []
        for name, low in (("n_therapists", 2), ("patients_per_therapist", 1), ("max_sessions", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                problems.append(f"{name} must be a whole number >= {low}; got {value!r}")
            else:
                object.__setattr__(self, name, int(value))
        for name in (
            "dropout_hazard_early",
            "dropout_hazard_late",
            "item_missing_rate",
            "questionnaire_missing_rate",
            "within_effect",
            "between_effect",
            "therapist_share",
            "reverse_path_effect",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                problems.append(f"{name} must be a number; got {value!r}")
                continue
            value = float(value)
            object.__setattr__(self, name, value)
            if not math.isfinite(value):
                problems.append(f"{name} must be finite; got {value!r}")
            elif name.endswith("_rate") or name.startswith("dropout"):
                if not 0.0 <= value <= 1.0:
                    problems.append(f"{name} is a probability in [0, 1]; got {value}")
        if not 0.0 <= self.therapist_share < 1.0:
            problems.append(f"therapist_share must lie in [0, 1); got {self.therapist_share}")
        if self.caseload not in ("poisson", "equal"):
            problems.append(f"caseload must be 'poisson' or 'equal'; got {self.caseload!r}")
        if self.rater not in ("client", "therapist"):
            problems.append(f"rater must be 'client' or 'therapist'; got {self.rater!r}")
        if problems:
            raise PowerSettingsError("Design: " + "; ".join(problems) + ".")

    # ---- presentation ------------------------------------------------------------------

    def table(self) -> pd.DataFrame:
        """The design as a table: ``value, meaning, source`` indexed by parameter."""
        rows = [(f.name, getattr(self, f.name), *DESIGN_FIELDS[f.name]) for f in fields(self)]
        frame = pd.DataFrame(rows, columns=["parameter", "value", "meaning", "source"])
        frame["value"] = frame["value"].map(lambda v: f"{v:g}" if isinstance(v, float) else v)
        return frame.set_index("parameter")

    def __repr__(self) -> str:
        table = self.table()[["value", "meaning"]]
        with pd.option_context("display.max_colwidth", 70, "display.width", 120):
            return "Design\n" + table.to_string()

    def _repr_html_(self) -> str:
        return self.table().to_html()

    # ---- values ------------------------------------------------------------------------

    @property
    def n_patients_expected(self) -> int:
        """Expected number of patients (``n_therapists * patients_per_therapist``)."""
        return self.n_therapists * self.patients_per_therapist

    def replace(self, **changes: Any) -> Design:
        """A copy with some fields changed (checked like a new design)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise PowerSettingsError(
                f"Design has no field(s) {unknown}; fields: {[f.name for f in fields(self)]}."
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str = "design") -> Design:
        """Build a design from a mapping (e.g. a YAML block), naming unknown keys."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PowerSettingsError(
                f"{where}: unknown key(s) {unknown}. Valid keys: {sorted(known)}."
            )
        return cls(**values)

    def key(self) -> str:
        """SHA-256 (hex) of the design's canonical JSON: the cell's identity."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def generating_parameters(self) -> dict[str, float]:
        """The :mod:`helpers.simulate` parameters of this design (defaults elsewhere)."""
        base = {
            "dropout_hazard_early": self.dropout_hazard_early,
            "dropout_hazard_late": self.dropout_hazard_late,
            "alliance_within_effect": self.within_effect,
            "alliance_between_effect": self.between_effect,
            "reverse_path_effect": self.reverse_path_effect,
        }
        params = simulate.resolve_parameters(**base)
        params["outcome_sd_therapist"] = _therapist_sd(
            self.therapist_share, self.between_effect, self.within_effect,
            self.reverse_path_effect,
        )  # fmt: skip
        return params

    def truth(self, term: str) -> float:
        """The generating value of a model term (see the module notes on attenuation)."""
        return float(getattr(self, ALLIANCE_TERMS[term]))


@functools.lru_cache(maxsize=256)
def _therapist_sd(share: float, between: float, within: float, reverse: float) -> float:
    """The generator's therapist SD of the PHQ-9 that gives ``share`` (demo definition).

    The share is ``(sd_b^2 + beta_B^2 sd_u^2) / V`` with ``V`` the mean latent PHQ-9
    variance over sessions 1..20 (``helpers.simulate._derived_statistics``).  ``V`` without
    the therapist intercept is measured once on a fixed sample (common random numbers).
    """
    if share == 0.0:
        return 0.0
    p = simulate.resolve_parameters(
        alliance_between_effect=between,
        alliance_within_effect=within,
        reverse_path_effect=reverse,
        outcome_sd_therapist=0.0,
    )
    sample = _SHARE_SAMPLE
    latent = simulate._simulate_latent(
        sample["n_therapists"], sample["patients_per_therapist"], 20, p,
        simulate._streams(sample["seed"]),
    )  # fmt: skip
    variance = float(latent["outcome_latent"][:, 1:].var(axis=0).mean())
    between_part = between**2 * p["alliance_sd_therapist"] ** 2
    rest = variance - between_part
    target = share / (1.0 - share) * rest
    return math.sqrt(max(target - between_part, 0.0))


# --------------------------------------------------------------------------------------
# One replicate: data and fit
# --------------------------------------------------------------------------------------


def _cell_words(key: str) -> tuple[int, ...]:
    return tuple(int(key[i : i + 8], 16) for i in range(0, 32, 8))


def replicate_seed(seed: int, design_key: str, replicate: int) -> np.random.SeedSequence:
    """``SeedSequence(seed, spawn_key=(*cell_words, replicate))`` of one replicate."""
    return np.random.SeedSequence(int(seed), spawn_key=(*_cell_words(design_key), int(replicate)))


def _simulate_arrays(design: Design, seed_sequence: np.random.SeedSequence) -> dict[str, Any]:
    """Session rows (sessions 1..n of every patient) of one simulated study, as arrays."""
    rng = np.random.default_rng(seed_sequence)
    streams = rng.spawn(5)
    params = design.generating_parameters()
    latent = simulate._simulate_latent(
        design.n_therapists,
        design.patients_per_therapist,
        design.max_sessions,
        params,
        streams[:4],
        equal_caseloads=design.caseload == "equal",
    )
    n_sessions = latent["n_sessions"]
    sessions = np.arange(1, design.max_sessions + 1)
    observed = sessions[None, :] <= n_sessions[:, None]
    patient, column = np.nonzero(observed)
    session = column + 1
    source = "alliance_total" if design.rater == "client" else "rater_total"
    alliance = latent[source][patient, session].astype(float)
    outcome = latent["outcome_total"][patient, session].astype(float)
    rng_missing = streams[4]
    n_rows = patient.size
    whole = rng_missing.random((n_rows, 2)) < design.questionnaire_missing_rate
    rate = design.item_missing_rate
    alliance_items = rng_missing.binomial(_ALLIANCE_ITEMS, rate, n_rows)
    outcome_items = rng_missing.binomial(_OUTCOME_ITEMS, rate, n_rows)
    if design.rater == "client":
        alliance[whole[:, 0] | (alliance_items > _ALLIANCE_MAX_MISSING)] = np.nan
    else:  # a therapist total is recorded as a total: only a missed form loses it
        alliance[whole[:, 0]] = np.nan
    outcome[whole[:, 1] | (outcome_items > _OUTCOME_MAX_MISSING)] = np.nan
    return {
        "therapist": latent["therapist_of"][patient],
        "patient": patient,
        "session": session,
        "alliance": alliance,
        "outcome": outcome,
        "outcome_intake": latent["outcome_total"][patient, 0].astype(float),
    }


def _features(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``alliance_within_lag``, ``alliance_between_c``, ``session_c`` of sorted rows."""
    patient, alliance = rows["patient"], rows["alliance"]
    n_pat = int(patient.max()) + 1 if patient.size else 0
    present = ~np.isnan(alliance)
    sums = np.bincount(patient, weights=np.where(present, alliance, 0.0), minlength=n_pat)
    counts = np.bincount(patient, weights=present.astype(float), minlength=n_pat)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    between = means[patient]
    within = alliance - between
    lag = np.full(patient.size, np.nan)
    same = np.zeros(patient.size, dtype=bool)
    same[1:] = (patient[1:] == patient[:-1]) & (rows["session"][1:] == rows["session"][:-1] + 1)
    lag[1:][same[1:]] = within[:-1][same[1:]]
    rated = counts > 0
    grand = means[rated].mean() if rated.any() else np.nan
    return {
        "alliance_within_lag": lag,
        "alliance_between_c": between - grand,
        "session_c": rows["session"] - 1.0,
    }


def simulate_sessions(design: Design, seed: int = 2026, replicate: int = 0) -> pd.DataFrame:
    """One replicate study of a power run as a session-level frame.

    The frame holds the canonical columns ``therapist_id, patient_id, session, alliance,
    outcome, outcome_intake`` plus the model's features, exactly as :func:`power_curve`
    fits it (replicate ``replicate`` of the cell ``design`` under ``seed``).  Use it to
    look at a simulated study, or to refit it elsewhere (``tests/reference/``: lme4).

    Examples
    --------
    >>> frame = simulate_sessions(Design(n_therapists=4, patients_per_therapist=3))
    >>> list(frame.columns[:3])
    ['therapist_id', 'patient_id', 'session']
    """
    rows = _simulate_arrays(design, replicate_seed(seed, design.key(), replicate))
    features = _features(rows)
    width_t = len(str(design.n_therapists))
    width_p = max(4, len(str(int(rows["patient"].max()) + 1)))
    return pd.DataFrame(
        {
            "therapist_id": [f"T{t + 1:0{width_t}d}" for t in rows["therapist"]],
            "patient_id": [f"P{p + 1:0{width_p}d}" for p in rows["patient"]],
            "session": rows["session"],
            "alliance": rows["alliance"],
            "outcome": rows["outcome"],
            "outcome_intake": rows["outcome_intake"],
            **features,
        }
    )


_EMPTY_ROW = {
    "estimate": np.nan,
    "se": np.nan,
    "df": np.nan,
    "p": np.nan,
    "ci_low": np.nan,
    "ci_high": np.nan,
}


@dataclass(frozen=True)
class _Replicate:
    """One replicate's analysis data: the model's design, response and group codes."""

    model: NestedLMM
    y: np.ndarray
    patient: np.ndarray
    therapist: np.ndarray


def _analysis_model(rows: Mapping[str, np.ndarray]) -> tuple[int, _Replicate | None]:
    """Rows used and the analysis model of one replicate (None: fewer than 10 rows).

    ``outcome ~ alliance_within_lag + alliance_between_c + session_c +
    (1 + session_c || patient) + (1 | therapist)`` on the sessions with an outcome and both
    alliance features.
    """
    feats = _features(rows)
    y = rows["outcome"]
    keep = ~(np.isnan(y) | np.isnan(feats["alliance_within_lag"]))
    keep &= ~np.isnan(feats["alliance_between_c"])
    n_obs = int(keep.sum())
    if n_obs < 10:
        return n_obs, None
    patient = np.unique(rows["patient"][keep], return_inverse=True)[1]
    therapist = np.unique(rows["therapist"][keep], return_inverse=True)[1]
    session_c = feats["session_c"][keep]
    ones = np.ones(n_obs)
    x = np.column_stack(
        [ones, feats["alliance_within_lag"][keep], feats["alliance_between_c"][keep], session_c]
    )
    model = NestedLMM(
        x,
        patient=patient,
        therapist=therapist,
        Z_patient=np.column_stack([ones, session_c]),
        fixed_names=["(Intercept)", *ALLIANCE_TERMS, "session_c"],
        patient_terms=["(Intercept)", "session_c"],
        patient_name="patient_id",
        therapist_name="therapist_id",
        patient_covariance="diagonal",
    )
    return n_obs, _Replicate(model, y[keep], patient, therapist)


#: Replicate number of a cell's pilot study (never a real replicate): its fit gives every
#: replicate of the cell the same warm start and curvature, whatever the split of the work.
PILOT_REPLICATE = 2**32


@functools.lru_cache(maxsize=64)
def _pilot(design_values: str, seed: int) -> FixedEffectsFit | None:
    """The fit of a cell's pilot study (cached per worker process); None if it fails."""
    design = Design(**json.loads(design_values))
    rows = _simulate_arrays(design, replicate_seed(seed, design.key(), PILOT_REPLICATE))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            replicate = _analysis_model(rows)[1]
            fit = None if replicate is None else replicate.model.fit_fixed(replicate.y)
    except (EngineInputError, np.linalg.LinAlgError, FloatingPointError):
        return None
    usable = fit is not None and fit.converged and np.all(np.isfinite(fit.hessian))
    return fit if usable else None


def _fit_replicate(
    rows: Mapping[str, np.ndarray], ddf: str, alpha: float, pilot: FixedEffectsFit | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Fit the analysis model to one replicate; per-term test results and fit flags.

    With a ``pilot`` fit, the optimiser starts at its ``theta`` with its curvature.
    """
    flags = {"converged": False, "singular": False, "n_obs": 0, "n_patients": 0}
    empty = {term: dict(_EMPTY_ROW) for term in ALLIANCE_TERMS}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flags["n_obs"], replicate = _analysis_model(rows)
            if replicate is None:
                return empty, flags
            flags["n_patients"] = replicate.model.n_patients
            warm = {} if pilot is None else {"start": pilot.theta, "curvature": pilot.hessian}
            fit = replicate.model.fit_fixed(replicate.y, **warm)
    except (EngineInputError, np.linalg.LinAlgError, FloatingPointError):
        return empty, flags
    flags["converged"], flags["singular"] = bool(fit.converged), bool(fit.singular)
    try:
        out = _term_tests(replicate, fit, ddf, 1.0 - alpha)
    except (np.linalg.LinAlgError, ValueError, ZeroDivisionError, FloatingPointError):
        return empty, flags
    return out, flags


def _term_tests(
    replicate: _Replicate, fit: FixedEffectsFit, ddf: str, level: float
) -> dict[str, dict[str, float]]:
    """Estimate, SE, df, p and CI of each alliance term (z, Satterthwaite or KR)."""
    model = replicate.model
    positions = [model.fixed_names.index(term) for term in ALLIANCE_TERMS]
    if ddf == "asymptotic":
        estimates = fit.beta[positions]
        variances = np.diag(fit.cov_beta)[positions]
        dfs = [np.inf] * len(positions)
    else:
        therapist = np.ones((model.nobs, 1))
        design = MixedDesign(
            model.x,
            replicate.y,
            (
                RandomLevel("therapist_id", replicate.therapist, therapist, ((0,),)),
                RandomLevel("patient_id", replicate.patient, model.zp, ((0,), (1,))),
            ),
        )
        covariances = [fit.covariances["therapist_id"], fit.covariances["patient_id"]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inference = SmallSampleInference(design, covariances, fit.sigma2, reml=True)
            pairs = []
            for k in positions:
                ell = np.eye(model.p)[k]
                if ddf == "satterthwaite":
                    pairs.append(inference.satterthwaite_1d(ell))
                else:
                    pairs.append(inference.kenward_roger_1d(ell))
        estimates = inference.beta[positions]
        variances, dfs = [v for v, _ in pairs], [d for _, d in pairs]
    out = {}
    for term, est, var, df in zip(ALLIANCE_TERMS, estimates, variances, dfs, strict=True):
        se = math.sqrt(var)
        dist = stats.norm if math.isinf(df) else stats.t(df)
        crit = float(dist.ppf(0.5 + level / 2))
        out[term] = {
            "estimate": float(est),
            "se": se,
            "df": float(df),
            "p": float(2 * dist.sf(abs(est / se))),
            "ci_low": float(est) - crit * se,
            "ci_high": float(est) + crit * se,
        }
    return out


def _run_chunk(
    design_values: dict[str, Any],
    seed: int,
    replicates: tuple[int, int],
    alpha: float,
    ddf: str,
) -> dict[str, Any]:
    """Simulate and fit replicates ``start..stop-1`` of one cell (a task of a worker)."""
    design = Design(**design_values)
    key = design.key()
    records = []
    started = time.perf_counter()
    pilot = _pilot(json.dumps(design_values, sort_keys=True), seed)
    for rep in range(*replicates):
        rows = _simulate_arrays(design, replicate_seed(seed, key, rep))
        results, flags = _fit_replicate(rows, ddf, alpha, pilot)
        for term, res in results.items():
            records.append({"replicate": rep, "term": term, **res, **flags})
    return {
        "key": key,
        "replicates": replicates,
        "records": records,
        "seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


def mc_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: the Monte Carlo CI of a simulated power.

    With ``p = k / n`` and ``z`` the normal quantile, the interval is
    ``(p + z²/2n ± z sqrt(p(1 - p)/n + z²/4n²)) / (1 + z²/n)``; unlike ``p ± z SE`` it stays
    in [0, 1] and is not empty at power 0 or 1 (Morris, White & Crowther 2019 use the
    Monte Carlo SE ``sqrt(p(1 - p)/n)``).

    Examples
    --------
    >>> [round(float(v), 4) for v in mc_interval(40, 50)]
    [0.6696, 0.8876]
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def summarise_replicates(
    replicates: pd.DataFrame, design: Design, alpha: float = 0.05
) -> pd.DataFrame:
    """Per-term summary of one cell's replicate rows (see :func:`power_curve`)."""
    rows = []
    for term in ALLIANCE_TERMS:
        part = replicates.loc[replicates["term"] == term]
        valid = part.loc[np.isfinite(part["p"])]
        n_valid = len(valid)
        truth = design.truth(term)
        rejected = int((valid["p"] < alpha).sum())
        low, high = mc_interval(rejected, n_valid)
        covered = (valid["ci_low"] <= truth) & (truth <= valid["ci_high"])
        rows.append(
            {
                "term": term,
                "true_value": truth,
                "n_reps": len(part),
                "n_valid": n_valid,
                "power": rejected / n_valid if n_valid else math.nan,
                "power_ci_low": low,
                "power_ci_high": high,
                "mean_estimate": valid["estimate"].mean(),
                "bias": valid["estimate"].mean() - truth,
                "empirical_sd": valid["estimate"].std(ddof=1) if n_valid > 1 else math.nan,
                "mean_se": valid["se"].mean(),
                "coverage": covered.mean() if n_valid else math.nan,
                "share_singular": part["singular"].mean(),
                "share_nonconverged": 1.0 - part["converged"].mean(),
                "mean_patients": part["n_patients"].mean(),
                "mean_observations": part["n_obs"].mean(),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------


def design_cells(design: Design, vary: Mapping[str, Sequence[Any]] | None) -> list[Design]:
    """Every combination of the ``vary`` values (first key slowest), as designs."""
    vary = dict(vary or {})
    for name, values in vary.items():
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise PowerSettingsError(
                f"vary[{name!r}] must be a list of values, e.g. [10, 20, 40]; got {values!r}."
            )
    unknown = sorted(set(vary) - {f.name for f in fields(Design)})
    if unknown:
        raise PowerSettingsError(
            f"vary: unknown design field(s) {unknown}; fields: {[f.name for f in fields(Design)]}."
        )
    names = list(vary)
    combos = itertools.product(*(list(vary[n]) for n in names)) if names else [()]
    return [design.replace(**dict(zip(names, combo, strict=True))) for combo in combos]


def _file_key(design: Design, seed: int, n_reps: int, alpha: float, ddf: str) -> str:
    text = json.dumps(
        {
            "design": design.to_dict(),
            "seed": int(seed),
            "n_reps": int(n_reps),
            "alpha": float(alpha),
            "ddf": ddf,
            "version": METHOD_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _resolve_client(scheduler: Any) -> tuple[Any, bool]:
    """``(client or None, whether we created it)`` from ``scheduler`` or the environment."""
    if scheduler is None:
        scheduler = os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler is None:
        return None, False
    if isinstance(scheduler, str):
        try:
            from distributed import Client
        except ImportError as error:  # pragma: no cover - distributed is a dependency
            raise PowerSettingsError(
                "scheduler= needs dask.distributed: pip install 'dask[distributed]'."
            ) from error
        try:
            return Client(scheduler, timeout=SCHEDULER_TIMEOUT), True
        except OSError as error:
            raise PowerSettingsError(
                f"could not connect to the Dask scheduler at {scheduler!r} ({error}). Check "
                "the address (tcp://host:8786) and that the scheduler is running, or leave "
                "--scheduler out (and unset DASK_SCHEDULER_ADDRESS) to use local cores."
            ) from error
    return scheduler, False


def _chunks(n_reps: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk_size, n_reps)) for s in range(0, n_reps, chunk_size)]


def _write_cell(folder: Path, key: str, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    from helpers.safety import atomic_path, atomic_write_text

    with atomic_path(folder / f"{key}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    atomic_write_text(folder / f"{key}.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")


def _read_cell(folder: Path, key: str, n_reps: int) -> tuple[pd.DataFrame, float] | None:
    data, meta = folder / f"{key}.parquet", folder / f"{key}.json"
    if not (data.exists() and meta.exists()):
        return None
    try:
        frame = pd.read_parquet(data)
        seconds = float(json.loads(meta.read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError):
        return None  # unreadable: recompute
    if frame["replicate"].nunique() != n_reps:
        return None
    return frame, seconds


def power_curve(
    design: Design | None = None,
    vary: Mapping[str, Sequence[Any]] | None = None,
    n_reps: int = 1000,
    seed: int = 2026,
    alpha: float = 0.05,
    ddf: str = "satterthwaite",
    scheduler: Any = None,
    out: str | Path | None = None,
    *,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Simulated power of the alliance effects for every design cell.

    Parameters
    ----------
    design : Design, optional
        The base design (default: the demo study's, ``Design()``).
    vary : mapping of str to list, optional
        Design fields to vary and their values; every combination is a cell
        (``{"n_therapists": [10, 20, 40], "between_effect": [0, -0.1, -0.177]}``).
    n_reps : int, default 1000
        Replicate studies per cell.  The Monte Carlo SE of a power p is
        ``sqrt(p(1 - p) / n_reps)``: at most .016 for 1,000 replicates.
    seed : int, default 2026
        Root of every replicate's seed (see the module notes).
    alpha : float, default 0.05
        Two-sided significance level; the intervals are ``1 - alpha`` intervals.
    ddf : {"satterthwaite", "kenward-roger", "asymptotic"}
        Denominator df of the tests (``"asymptotic"``: z tests, lme4's default).
    scheduler : distributed.Client or str, optional
        A Dask client, or a scheduler address (``"tcp://10.0.0.5:8786"``); default:
        ``DASK_SCHEDULER_ADDRESS`` if set, else local processes (joblib).
    out : path, optional
        Folder for the per-cell results (``cells/``), ``power.csv`` and ``timing.csv``;
        finished cells found there are read, not recomputed (resume).
    n_jobs : int, optional
        Local worker processes (joblib; default: all cores; 1 runs in this process).
    chunk_size : int, optional
        Replicates per task (default: enough for about four tasks per worker and cell,
        between 1 and 50).
    progress : bool, default True
        A progress bar over replicates on stdout (tqdm; ``TQDM_DISABLE=1`` hides it).

    Returns
    -------
    pandas.DataFrame
        One row per cell and term: the varied fields, ``term, true_value, n_reps,
        n_valid`` (replicates with a test), ``power`` with its Monte Carlo interval
        ``power_ci_low, power_ci_high`` (Wilson, :func:`mc_interval`), ``mean_estimate,
        bias, empirical_sd, mean_se`` (``mean_se`` well below ``empirical_sd`` means
        liberal tests), ``coverage`` of the ``1 - alpha`` interval, ``share_singular,
        share_nonconverged``, ``mean_patients, mean_observations`` (after dropout and
        missingness), ``seconds`` (fitting time of the cell, summed over workers) and
        ``cell`` (the cell's file key).  ``attrs`` holds ``computed_cells`` and
        ``reused_cells`` (keys) and ``fits`` (replicates fitted by this call).

    Raises
    ------
    PowerSettingsError
        Invalid settings, unknown design fields, an unreachable scheduler.
    """
    design, n_reps, alpha = _check_power_settings(design, n_reps, alpha, ddf)
    cells = design_cells(design, vary)
    keys = [_file_key(cell, seed, n_reps, alpha, ddf) for cell in cells]
    if len(set(keys)) != len(keys):
        raise PowerSettingsError("vary: two cells are the same design; remove the duplicates.")

    client, own_client = _resolve_client(scheduler)
    if n_jobs is None:
        n_jobs = os.cpu_count() or 1
    if chunk_size is None:
        workers = n_jobs
        if client is not None:
            workers = len(client.scheduler_info().get("workers", {})) or 1
        chunk_size = max(1, min(50, math.ceil(n_reps / (4 * max(1, workers)))))

    folder = None
    lock = None
    if out is not None:
        from helpers.safety import check_output_folder, run_lock

        out = Path(out)
        check_output_folder(out, reads=[])
        lock = run_lock(out, "power_curve")
        lock.__enter__()
        folder = out / "cells"
        folder.mkdir(parents=True, exist_ok=True)

    try:
        done = _finished_cells(folder, keys, n_reps)
        reused = [k for k in keys if k in done]
        todo = [(cell, key) for cell, key in zip(cells, keys, strict=True) if key not in done]
        collector = _CellCollector(
            done, todo, n_reps, folder, {"seed": int(seed), "alpha": alpha, "ddf": ddf},
            len(keys), progress,
        )  # fmt: skip
        tasks = [
            (key, (cell.to_dict(), int(seed), chunk, alpha, ddf))
            for cell, key in todo
            for chunk in _chunks(n_reps, chunk_size)
        ]
        _run_tasks(tasks, client, n_jobs, collector.handle)
        collector.close()

        table = _power_table(cells, keys, done, vary, alpha)
        if out is not None:
            _write_power_tables(out, table, list(vary or {}))
        table.attrs = {
            "computed_cells": [k for k in keys if k not in reused],
            "reused_cells": reused,
            "fits": collector.fits,
            "n_reps": n_reps,
            "alpha": alpha,
            "ddf": ddf,
            "seed": int(seed),
        }
        return table
    finally:
        if lock is not None:
            lock.__exit__(*sys.exc_info())
        if own_client:
            client.close()


def _check_power_settings(
    design: Design | None, n_reps: Any, alpha: Any, ddf: str
) -> tuple[Design, int, float]:
    """The settings of :func:`power_curve`, checked; raises :class:`PowerSettingsError`."""
    design = Design() if design is None else design
    if not isinstance(design, Design):
        raise PowerSettingsError(f"design must be a Design; got {type(design).__name__}.")
    if isinstance(n_reps, bool) or not isinstance(n_reps, int | np.integer) or n_reps < 1:
        raise PowerSettingsError(f"n_reps must be a whole number >= 1; got {n_reps!r}.")
    if not 0.0 < float(alpha) < 1.0:
        raise PowerSettingsError(f"alpha must lie in (0, 1); got {alpha!r}.")
    if ddf not in DDF_METHODS:
        raise PowerSettingsError(f"ddf must be one of {DDF_METHODS}; got {ddf!r}.")
    return design, int(n_reps), float(alpha)


def _finished_cells(
    folder: Path | None, keys: Sequence[str], n_reps: int
) -> dict[str, tuple[pd.DataFrame, float]]:
    """The cells already complete in ``folder`` (resume): key -> (replicates, seconds)."""
    done: dict[str, tuple[pd.DataFrame, float]] = {}
    if folder is not None:
        for key in keys:
            found = _read_cell(folder, key, n_reps)
            if found is not None:
                done[key] = found
    return done


class _CellCollector:
    """Gathers the chunks of each cell as they finish; writes a cell once it is complete."""

    def __init__(
        self,
        done: dict[str, tuple[pd.DataFrame, float]],
        todo: Sequence[tuple[Design, str]],
        n_reps: int,
        folder: Path | None,
        settings: dict[str, Any],
        n_cells: int,
        progress: bool,
    ) -> None:
        from tqdm import tqdm

        self.done, self.n_reps, self.folder = done, n_reps, folder
        self.settings, self.n_cells = settings, n_cells
        self.by_key = {key: cell for cell, key in todo}
        self.pending: dict[str, list[dict[str, Any]]] = {key: [] for _, key in todo}
        self.fits = 0
        self.bar = tqdm(
            total=len(todo) * n_reps, disable=not progress, file=sys.stdout, desc="power",
            unit="fit",
        )  # fmt: skip

    def handle(self, result: dict[str, Any], key: str) -> None:
        """Take one finished chunk of cell ``key``."""
        result["key_file"] = key
        pending = self.pending[key]
        pending.append(result)
        size = result["replicates"][1] - result["replicates"][0]
        self.fits += size
        self.bar.update(size)
        if sum(r["replicates"][1] - r["replicates"][0] for r in pending) == self.n_reps:
            self._complete(key, self.pending.pop(key))

    def _complete(self, key: str, chunks: list[dict[str, Any]]) -> None:
        frame = _replicate_frame([rec for r in chunks for rec in r["records"]])
        seconds = float(sum(r["seconds"] for r in chunks))
        self.done[key] = (frame, seconds)
        if self.folder is not None:
            s = self.settings
            meta = {
                "design": self.by_key[key].to_dict(),
                "seed": s["seed"],
                "n_reps": self.n_reps,
                "alpha": s["alpha"],
                "ddf": s["ddf"],
                "version": METHOD_VERSION,
                "seconds": round(seconds, 3),
            }
            _write_cell(self.folder, key, frame, meta)
        self.bar.set_postfix_str(f"cells {len(self.done)}/{self.n_cells}")

    def close(self) -> None:
        self.bar.close()


def _run_tasks(
    tasks: Sequence[tuple[str, tuple[Any, ...]]],
    client: Any,
    n_jobs: int,
    handle: Callable[[dict[str, Any], str], None],
) -> None:
    """Run ``(key, task)`` chunks on the Dask client, in this process or on joblib workers."""
    if not tasks:
        return
    if client is not None:
        from distributed import as_completed

        futures = [client.submit(_run_chunk, *task, pure=False) for _, task in tasks]
        index = {future.key: key for future, (key, _) in zip(futures, tasks, strict=True)}
        for future in as_completed(futures):
            handle(future.result(), index[future.key])
    elif n_jobs == 1:
        for key, task in tasks:
            handle(_run_chunk(*task), key)
    else:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        for key, result in parallel(delayed(_tagged_chunk)(key, *task) for key, task in tasks):
            handle(result, key)


def _power_table(
    cells: Sequence[Design],
    keys: Sequence[str],
    done: Mapping[str, tuple[pd.DataFrame, float]],
    vary: Mapping[str, Sequence[Any]] | None,
    alpha: float,
) -> pd.DataFrame:
    """One row per cell and term, the varied fields first."""
    summaries = []
    for cell, key in zip(cells, keys, strict=True):
        frame, seconds = done[key]
        summary = summarise_replicates(frame, cell, alpha)
        for position, name in enumerate(vary or {}):
            summary.insert(position, name, getattr(cell, name))
        summary["seconds"] = seconds
        summary["cell"] = key
        summaries.append(summary)
    return pd.concat(summaries, ignore_index=True)


def _write_power_tables(out: Path, table: pd.DataFrame, varied: list[str]) -> None:
    from helpers.safety import atomic_write_text

    atomic_write_text(out / "power.csv", table.drop(columns="seconds").to_csv(index=False))
    timing = table.drop_duplicates("cell")[[*varied, "cell", "seconds"]]
    atomic_write_text(out / "timing.csv", timing.to_csv(index=False))


def _tagged_chunk(key: str, *task: Any) -> tuple[str, dict[str, Any]]:
    return key, _run_chunk(*task)


def _replicate_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Replicate rows sorted by replicate and term, with fixed dtypes (byte-stable)."""
    frame = pd.DataFrame.from_records(records)
    order = {term: i for i, term in enumerate(ALLIANCE_TERMS)}
    frame = frame.assign(_order=frame["term"].map(order))
    frame = frame.sort_values(["replicate", "_order"], kind="stable").drop(columns="_order")
    frame = frame.reset_index(drop=True)
    return frame.astype(
        {
            "replicate": "int64",
            "term": "str",
            "estimate": "float64",
            "se": "float64",
            "df": "float64",
            "p": "float64",
            "ci_low": "float64",
            "ci_high": "float64",
            "converged": "bool",
            "singular": "bool",
            "n_obs": "int64",
            "n_patients": "int64",
        }
    )


def smallest_design(
    table: pd.DataFrame, term: str, by: Sequence[str], target: float = 0.8
) -> pd.Series | None:
    """The first cell (in ``by`` order, smallest first) whose power reaches ``target``.

    Parameters
    ----------
    table : pandas.DataFrame
        A :func:`power_curve` table.
    term : str
        ``"alliance_within_lag"`` or ``"alliance_between_c"``.
    by : sequence of str
        Columns to sort by, most important first (e.g. ``["n_therapists",
        "patients_per_therapist"]``: fewest therapists, then fewest patients each).
    target : float, default 0.8
        Power to reach.

    Returns
    -------
    pandas.Series or None
        The row, or ``None`` when no cell reaches the target.
    """
    rows = table.loc[(table["term"] == term) & (table["power"] >= target)]
    if rows.empty:
        return None
    return rows.sort_values(list(by), kind="stable").iloc[0]


# --------------------------------------------------------------------------------------
# Command line: python -m helpers power --design power.yml --out runs/power
# --------------------------------------------------------------------------------------

#: Keys of a power-study file (``docs/power_example.yml`` documents each).
STUDY_KEYS = ("design", "vary", "n_reps", "seed", "alpha", "ddf", "chunk_size")


def read_study_file(path: str | Path) -> dict[str, Any]:
    """Read a power-study YAML file into :func:`power_curve` arguments.

    Raises
    ------
    PowerSettingsError
        The file is missing, not YAML, or holds unknown keys or invalid values (the message
        names the file and key).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PowerSettingsError(f"{path}: no such file. Copy docs/power_example.yml and edit it.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise PowerSettingsError(f"{path}: not a readable YAML file ({error}).") from error
    if not isinstance(raw, dict):
        raise PowerSettingsError(f"{path}: expected keys {list(STUDY_KEYS)} at the top level.")
    unknown = sorted(set(raw) - set(STUDY_KEYS))
    if unknown:
        raise PowerSettingsError(
            f"{path}: unknown key(s) {unknown}; the keys are {list(STUDY_KEYS)}."
        )
    settings: dict[str, Any] = {
        "design": Design.from_mapping(raw.get("design"), where=f"{path}: design"),
        "vary": raw.get("vary") or {},
    }
    if not isinstance(settings["vary"], dict):
        raise PowerSettingsError(f"{path}: vary must map design fields to lists of values.")
    design_cells(settings["design"], settings["vary"])  # checks the names and lists
    for key in ("n_reps", "seed", "alpha", "ddf", "chunk_size"):
        if key in raw:
            settings[key] = raw[key]
    return settings


def run_power_command(
    design_file: Path,
    out: Path,
    scheduler: str | None = None,
    reps: int | None = None,
    n_jobs: int | None = None,
) -> int:
    """``python -m helpers power``: run a power study from a YAML file; exit status.

    Settings errors are printed as a report on stderr (status 2); an output folder that
    cannot be used raises :class:`helpers.safety.OutputFolderError`, which the command
    line reports the same way.
    """
    try:
        settings = read_study_file(design_file)
        if reps is not None:
            settings["n_reps"] = reps
        table = power_curve(
            settings.pop("design"),
            settings.pop("vary"),
            scheduler=scheduler,
            out=out,
            n_jobs=n_jobs,
            **settings,
        )
    except PowerSettingsError as error:
        print(f"error: the power study cannot be run as it is.\n\n{error}", file=sys.stderr)
        return 2
    shown = table.drop(columns=["cell"]).round(3)
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(shown.to_string(index=False))
    attrs = table.attrs
    print(
        f"{len(attrs['computed_cells'])} cell(s) computed ({attrs['fits']} fits), "
        f"{len(attrs['reused_cells'])} read from earlier runs; results in {out}/power.csv "
        f"(per replicate: {out}/cells/)"
    )
    return 0
