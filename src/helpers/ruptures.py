r"""Rupture–repair sequences in session-by-session alliance ratings.

An *alliance rupture* is a sharp deterioration of the working alliance from one
session to the next; a *repair* is the return of the alliance to its
pre-rupture level soon after, giving the V-shaped rupture–repair sequence of
Stiles et al. (2004).  This module finds such episodes in the canonical
session-level frame (one row per patient-session, see :mod:`helpers.schema`),
counts them per patient and therapist, classifies patients for outcome models,
aligns trajectories on the rupture session, scores detection against known
episodes (the simulated demo study, :mod:`helpers.simulate`), and summarises
the episodes without identifiers (:func:`episode_summary`,
:func:`episode_count_distribution`).

Definitions (all parameters of :func:`detect_ruptures`)
-------------------------------------------------------
Consecutive-session difference
    For patient :math:`i` with observed alliance :math:`A_{is}` at session
    :math:`s`, :math:`\Delta_{is} = A_{is} - A_{i,s-1}`, defined only when both
    session :math:`s-1` and session :math:`s` are present *and* both values are
    observed.  A difference across a gap in the session numbers (a missed
    session, or a session whose questionnaire is missing) is not a
    session-to-session change and is never used, neither to estimate the
    patient's fluctuation nor as a candidate rupture.

Fluctuation SD (``fluctuation``, used by ``method="sd"``)
    The scale of a patient's ordinary session-to-session change:

    ``"patient_sd"`` (default)
        The sample SD (ddof = 1) of the patient's own consecutive-session
        differences.  It contains the rupture's own drop (and a repair's rise),
        so a patient with a large rupture gets a larger SD: conservative.
    ``"patient_mad"``
        :math:`1.4826 \times \mathrm{median}\,|\Delta - \mathrm{median}(\Delta)|`
        of the patient's differences (the normal-consistent median absolute
        deviation): hardly moved by the rupture itself, but noisy for short
        series.
    ``"pooled_sd"``
        One value for the whole sample: the pooled within-patient SD of the
        differences, :math:`\sqrt{\sum_i\sum_s(\Delta_{is}-\bar\Delta_i)^2 /
        \sum_i (n_i - 1)}` over patients with :math:`n_i \ge 2` differences.
    ``"stricter"``
        The larger of ``patient_sd`` and ``pooled_sd``, so that neither a
        minor dip in a very stable course nor a dip in a highly fluctuating
        course counts (Gumz et al. 2012 propose combining intra- and
        inter-individual variability and keeping the stricter value).

    The patient-level estimators need at least ``min_differences`` (default
    3, i.e. at least four sessions) consecutive-session differences; patients
    with fewer, or with a fluctuation SD of 0 (every difference the same,
    e.g. a flat trajectory), are *not assessable*: nothing is detected for
    them and :func:`patient_fluctuation` / :func:`rupture_counts` report why.
    With ``"pooled_sd"`` and ``method="points"`` one difference suffices.

Rupture
    Session :math:`t` is a rupture session when
    :math:`\text{drop\_size} = A_{i,t-1} - A_{it} \ge \text{threshold}` with
    ``threshold`` = ``k`` × fluctuation SD (``method="sd"``; Stiles et al.
    2004 used 2 SD, Strauss et al. 2006 the looser 1 SD, and Gumz et al. 2012
    recommend reporting both) or ``threshold`` = ``points`` scale points
    (``method="points"``, an absolute criterion like the first sudden-gain
    criterion of Tang & DeRubeis 1999).  "At least" allows a relative 1e-9
    for floating-point rounding.  The earliest possible rupture session is a
    patient's second session.

Repair
    The episode is *repaired* at the first session :math:`r` of the repair
    window :math:`t+1, …, t+m` (``m`` = ``repair_within``, default 3, counted
    in session numbers) whose observed alliance is at least
    ``pre_value - repair_tolerance`` (``repair_tolerance`` in scale points,
    default 0 = back at the pre-rupture level).  Otherwise it is

    * *censored* when the repair could not be observed: treatment ended
      before the window closed (the patient's last session is before
      :math:`t+m`; ``censored_reason = "treatment ended"``), or a session of
      the window is absent or has no alliance value (``"missing session in
      window"``);
    * *unrepaired* when every session of the window was observed and none
      reached the repair level (observed non-repair).

Episodes do not overlap
    An episode runs from the rupture session to its *episode end*: the repair
    session, the window end :math:`t+m` (unrepaired, or censored by a missing
    session) or the last session (censored by the end of treatment).  Drops
    inside an episode (a decline continuing over two sessions) belong to it;
    the next rupture can start at the session after the episode end.  The
    *at-risk sessions* of a patient are the sessions with a consecutive-session
    difference that lie outside every episode's :math:`(t, \text{end}]`.

Patient status (:func:`patient_rupture_status`)
    Following the repaired / unrepaired / no-rupture grouping of McLaughlin
    et al. (2014): ``"unrepaired"`` if any of the patient's episodes is
    unrepaired; else ``"censored"`` if any is censored (repair unknown); else
    ``"repaired"`` if the patient had an episode (all repaired); else
    ``"no rupture"``; ``"not assessable"`` when detection was impossible.

Caution
    A rupture is selected on a large drop, so the pre-rupture value tends to
    be a high draw of the noise and the rupture value a low one: part of any
    V shape around detected ruptures (:func:`aligned_on_rupture`) is
    regression to the mean, and repair rates are biased low when
    ``repair_tolerance`` is 0.  With the demo study's known episodes,
    :func:`recovery_against_truth` measures how well each definition works
    (``docs/ruptures.md``).

References
----------
Eubanks, C. F., Muran, J. C., & Safran, J. D. (2018). Alliance rupture
repair: A meta-analysis. *Psychotherapy, 55*(4), 508–519.

Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). Crisis-repair
sequences – considerations on the classification and assessment of breaches
in the therapeutic relationship. *BMC Medical Research Methodology, 12*, 10.

McLaughlin, A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., &
Zoellner, L. A. (2014). Patterns of therapeutic alliance: Rupture–repair
episodes in prolonged exposure for posttraumatic stress disorder. *Journal of
Consulting and Clinical Psychology, 82*(1), 112–121.

Stiles, W. B., Glick, M. J., Osatuke, K., Hardy, G. E., Shapiro, D. A.,
Agnew-Davies, R., Rees, A., & Barkham, M. (2004). Patterns of alliance
development and the rupture–repair hypothesis: Are productive relationships
U-shaped or V-shaped? *Journal of Counseling Psychology, 51*(1), 81–92.

Strauss, J. L., Hayes, A. M., Johnson, S. L., Newman, C. F., Brown, G. K.,
Barber, J. P., Laurenceau, J.-P., & Beck, A. T. (2006). Early alliance,
alliance ruptures, and symptom change in a nonrandomized trial of cognitive
therapy for avoidant and obsessive–compulsive personality disorders.
*Journal of Consulting and Clinical Psychology, 74*(2), 337–345.

Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in
cognitive-behavioral therapy for depression. *Journal of Consulting and
Clinical Psychology, 67*(6), 894–904.

Examples
--------
>>> frame = pd.DataFrame({
...     "therapist_id": "T1", "patient_id": "P1", "session": [1, 2, 3, 4, 5, 6],
...     "alliance": [40.0, 41.0, 40.0, 32.0, 40.0, 41.0]})
>>> episodes = detect_ruptures(frame, method="points", points=6)
>>> episodes[["rupture_session", "drop_size", "status", "repair_session"]]
   rupture_session  drop_size    status  repair_session
0                4        8.0  repaired               5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import linear_sum_assignment

from helpers.errors import DataInputError, SettingsError
from helpers.schema import ALLIANCE, OUTCOME, PATIENT_ID, SESSION, THERAPIST_ID
from helpers.validation import describe_rows, require_frame

#: Ways to set the rupture threshold.
METHODS: tuple[str, ...] = ("sd", "points")
#: Estimators of a patient's session-to-session fluctuation SD (``method="sd"``).
FLUCTUATION_ESTIMATORS: tuple[str, ...] = ("patient_sd", "patient_mad", "pooled_sd", "stricter")
#: Status of one episode.
EPISODE_STATUSES: tuple[str, ...] = ("repaired", "unrepaired", "censored")
#: Status of one patient (see :func:`patient_rupture_status`).
PATIENT_STATUSES: tuple[str, ...] = (
    "no rupture",
    "repaired",
    "censored",
    "unrepaired",
    "not assessable",
)
#: Why an episode is censored.
CENSORED_REASONS: tuple[str, ...] = ("treatment ended", "missing session in window")
#: Normal-consistency factor of the median absolute deviation, 1 / Phi^-1(3/4).
MAD_TO_SD = 1.482602218505602
#: Key of ``DataFrame.attrs`` under which :func:`detect_ruptures` stores its definition.
DEFINITION_ATTR = "rupture_definition"
#: Columns of the episode table after the patient (and therapist) identifier.
EPISODE_COLUMNS: tuple[str, ...] = (
    "rupture_session",
    "pre_session",
    "pre_value",
    "rupture_value",
    "drop_size",
    "fluctuation_sd",
    "threshold",
    "repair_level",
    "repair_window_end",
    "repaired",
    "repair_session",
    "repair_value",
    "sessions_to_repair",
    "censored",
    "censored_reason",
    "status",
    "episode_end",
)

_RELATIVE_SLACK = 1e-9  # allowance for floating-point rounding in ">=" comparisons
_MAX_ROWS_REPORTED = 5


# ---------------------------------------------------------------------------
# The definition of an episode
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RuptureDefinition:
    """Every choice that defines a rupture–repair episode (see the module docstring).

    Attributes
    ----------
    column : str
        Alliance column (higher = better alliance).
    method : str
        ``"sd"`` (threshold = ``k`` × fluctuation SD) or ``"points"``
        (threshold = ``points`` scale points).
    k : float
        Multiple of the fluctuation SD (``method="sd"``).
    points : float or None
        Drop in scale points (``method="points"``; must be ``None`` otherwise).
    fluctuation : str
        One of :data:`FLUCTUATION_ESTIMATORS` (``method="sd"``).
    repair_within : int
        Repair window length ``m`` in sessions.
    repair_tolerance : float
        A repair is a return to at least ``pre_value - repair_tolerance``.
    min_differences : int
        Consecutive-session differences needed to estimate a patient's own
        fluctuation SD (``"patient_sd"``, ``"patient_mad"``, ``"stricter"``).
    by, session : str
        Patient identifier and session number columns.
    therapist : str or None
        Therapist identifier column, carried into the outputs (``None``: none).
    """

    column: str = ALLIANCE
    method: str = "sd"
    k: float = 2.0
    points: float | None = None
    fluctuation: str = "patient_sd"
    repair_within: int = 3
    repair_tolerance: float = 0.0
    min_differences: int = 3
    by: str = PATIENT_ID
    session: str = SESSION
    therapist: str | None = THERAPIST_ID

    def __post_init__(self) -> None:
        where = "RuptureDefinition"
        if self.method not in METHODS:
            raise SettingsError(f"{where}: method must be one of {METHODS}, got {self.method!r}.")
        if self.method == "sd":
            if not _positive_number(self.k):
                raise SettingsError(
                    f"{where}: k must be a positive number of SDs (e.g. 1.0 or 2.0), "
                    f"got {self.k!r}."
                )
            if self.points is not None:
                raise SettingsError(
                    f"{where}: points={self.points!r} is only used with method='points'; "
                    "pass method='points' or leave points=None."
                )
            if self.fluctuation not in FLUCTUATION_ESTIMATORS:
                raise SettingsError(
                    f"{where}: fluctuation must be one of {FLUCTUATION_ESTIMATORS}, "
                    f"got {self.fluctuation!r}."
                )
        elif not _positive_number(self.points):
            raise SettingsError(
                f"{where}: method='points' needs points, a positive drop in scale points "
                f"(e.g. points=6 on the WAI-SR total), got {self.points!r}."
            )
        if not _whole_number(self.repair_within) or self.repair_within < 1:
            raise SettingsError(
                f"{where}: repair_within must be a whole number of sessions >= 1, "
                f"got {self.repair_within!r}."
            )
        if not _number(self.repair_tolerance) or self.repair_tolerance < 0:
            raise SettingsError(
                f"{where}: repair_tolerance must be a number of scale points >= 0, "
                f"got {self.repair_tolerance!r}."
            )
        if not _whole_number(self.min_differences) or self.min_differences < 2:
            raise SettingsError(
                f"{where}: min_differences must be a whole number >= 2 (an SD needs two "
                f"differences), got {self.min_differences!r}."
            )
        for name in ("column", "by", "session"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{where}: {name} must be a column name (str).")
        if self.therapist is not None and not isinstance(self.therapist, str):
            raise TypeError(f"{where}: therapist must be a column name (str) or None.")

    @property
    def needs_patient_sd(self) -> bool:
        """Whether each patient's own fluctuation SD is estimated."""
        return self.method == "sd" and self.fluctuation != "pooled_sd"

    def label(self) -> str:
        """Short human-readable label, e.g. ``'drop >= 2 SD (patient_sd)'``."""
        if self.method == "points":
            return f"drop >= {self.points:g} points"
        return f"drop >= {self.k:g} SD ({self.fluctuation})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of the definition (stored in ``episodes.attrs``)."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RuptureDefinition:
        """Rebuild a definition from :meth:`to_dict` output (unknown keys refused)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise SettingsError(
                f"RuptureDefinition: unknown key(s) {unknown}; known: {sorted(known)}."
            )
        return cls(**dict(mapping))


def _number(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _positive_number(value: object) -> bool:
    return _number(value) and float(value) > 0


def _whole_number(value: object) -> bool:
    return _number(value) and float(value) == round(float(value))


# ---------------------------------------------------------------------------
# Input checks (each raises an error that says what to fix)
# ---------------------------------------------------------------------------


class _PatientSeries(NamedTuple):
    """One patient's sessions in session order (values NaN where missing)."""

    patient: object
    therapist: object
    sessions: np.ndarray  # int64, increasing
    values: np.ndarray  # float64
    diff_sessions: np.ndarray  # sessions s with a consecutive-session difference
    differences: np.ndarray  # A_s - A_{s-1} at those sessions


def _patient_series(
    sessions: pd.DataFrame, definition: RuptureDefinition, where: str
) -> list[_PatientSeries]:
    """Validate the session-level frame and split it into per-patient series."""
    d = definition
    needed = [d.by, d.session, d.column] + ([d.therapist] if d.therapist else [])
    require_frame(sessions, needed, where, "the session-level frame")
    for column in [d.by, d.session] + ([d.therapist] if d.therapist else []):
        absent = sessions[column].isna().to_numpy()
        if absent.any():
            raise DataInputError(
                f"{where}: column {column!r} is missing in rows "
                f"{describe_rows(sessions.index[absent])}. Identifier and session columns must be "
                "complete; the cleaning step excludes such records and logs them."
            )
    raw_session = sessions[d.session]
    session_values = pd.to_numeric(raw_session, errors="coerce").astype("float64").to_numpy()
    bad = np.isnan(session_values) | (session_values != np.round(session_values))
    bad |= session_values < 1
    if bad.any():
        raise DataInputError(
            f"{where}: column {d.session!r} must hold whole session numbers >= 1; rows "
            f"{describe_rows(sessions.index[bad], list(raw_session[bad]))} do not. Sessions count "
            "from 1 (the intake is the patient-level column 'outcome_intake')."
        )
    raw_value = sessions[d.column]
    values = pd.to_numeric(raw_value, errors="coerce").astype("float64").to_numpy()
    not_number = raw_value.notna().to_numpy() & ~np.isfinite(values)
    if not_number.any():
        raise DataInputError(
            f"{where}: column {d.column!r} holds values that are not finite numbers in rows "
            f"{describe_rows(sessions.index[not_number], list(raw_value[not_number]))}. Score and "
            "clean the data first (missing values are allowed)."
        )
    patients = sessions[d.by].to_numpy()
    session_int = session_values.astype("int64")
    keys = pd.DataFrame({"p": patients, "s": session_int})
    duplicated = keys.duplicated(keep=False).to_numpy()
    if duplicated.any():
        raise DataInputError(
            f"{where}: more than one row for the same {d.by!r} and {d.session!r} in rows "
            f"{describe_rows(sessions.index[duplicated])}. Each patient may have one row per "
            "session; the cleaning step resolves duplicates and logs them."
        )
    frame = pd.DataFrame(
        {
            "p": patients,
            "s": session_int,
            "v": values,
            "t": sessions[d.therapist].to_numpy() if d.therapist else None,
        }
    )
    if d.therapist:
        n_therapists = frame.groupby("p", sort=True)["t"].nunique()
        several = n_therapists[n_therapists > 1]
        if len(several):
            raise DataInputError(
                f"{where}: patients {describe_rows(several.index)} appear under more than one "
                f"{d.therapist!r}. Each patient must have one therapist (the cleaning step's "
                "multiple_therapists policy resolves this), or pass therapist=None."
            )
    frame = frame.sort_values(["p", "s"], kind="mergesort")
    series = []
    for patient, group in frame.groupby("p", sort=True):
        s = group["s"].to_numpy()
        v = group["v"].to_numpy()
        consecutive = (np.diff(s) == 1) & np.isfinite(v[1:]) & np.isfinite(v[:-1])
        series.append(
            _PatientSeries(
                patient=patient,
                therapist=group["t"].iloc[0] if d.therapist else None,
                sessions=s,
                values=v,
                diff_sessions=s[1:][consecutive],
                differences=(v[1:] - v[:-1])[consecutive],
            )
        )
    return series


def _resolve_definition(
    episodes: pd.DataFrame,
    definition: RuptureDefinition | Mapping[str, Any] | None,
    where: str,
) -> RuptureDefinition:
    if definition is None:
        if not isinstance(episodes, pd.DataFrame):
            raise TypeError(
                f"{where} expects the episodes as a pandas DataFrame, "
                f"got {type(episodes).__name__}."
            )
        stored = episodes.attrs.get(DEFINITION_ATTR)
        if stored is None:
            raise DataInputError(
                f"{where}: the episode table carries no rupture definition "
                f"(episodes.attrs[{DEFINITION_ATTR!r}] is absent; some pandas operations drop "
                "attrs). Pass the table returned by detect_ruptures, or the definition it was "
                "made with: definition=RuptureDefinition(...)."
            )
        definition = stored
    if isinstance(definition, RuptureDefinition):
        return definition
    if isinstance(definition, Mapping):
        return RuptureDefinition.from_mapping(definition)
    raise TypeError(f"{where}: definition must be a RuptureDefinition or a mapping.")


# ---------------------------------------------------------------------------
# Differences and fluctuation
# ---------------------------------------------------------------------------
def consecutive_differences(
    sessions: pd.DataFrame,
    column: str = ALLIANCE,
    *,
    by: str = PATIENT_ID,
    session: str = SESSION,
) -> pd.DataFrame:
    """Every consecutive-session change of ``column`` within each patient.

    Parameters
    ----------
    sessions
        Session-level frame, one row per patient-session, any row order.
    column
        The repeated measure (e.g. ``"alliance"``).
    by, session
        Patient identifier and session number columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``by``, ``session`` (the later session s), ``previous_value``
        (at s - 1), ``value`` (at s) and ``difference`` (value - previous_value),
        sorted by patient and session.  Only pairs of sessions s - 1 and s that
        are both present with observed values appear: nothing is computed across
        a gap or a missing value, nor across patients.
    """
    definition = RuptureDefinition(column=column, by=by, session=session, therapist=None)
    rows: list[tuple[object, int, float, float, float]] = []
    for ps in _patient_series(sessions, definition, "consecutive_differences"):
        for s, diff in zip(ps.diff_sessions.tolist(), ps.differences.tolist(), strict=True):
            value = float(ps.values[np.searchsorted(ps.sessions, s)])
            rows.append((ps.patient, int(s), value - diff, value, diff))
    out = pd.DataFrame(rows, columns=[by, session, "previous_value", "value", "difference"])
    return out.astype(
        {session: "int64", "previous_value": "float64", "value": "float64", "difference": "float64"}
    )


def _pooled_sd(series: Sequence[_PatientSeries]) -> float:
    """Pooled within-patient SD of the consecutive-session differences (NaN if none)."""
    squares, df = 0.0, 0
    for ps in series:
        n = ps.differences.size
        if n >= 2:
            squares += float(np.sum((ps.differences - ps.differences.mean()) ** 2))
            df += n - 1
    return math.sqrt(squares / df) if df > 0 else math.nan


def _patient_sd(differences: np.ndarray, estimator: str) -> float:
    if estimator == "patient_mad":
        return MAD_TO_SD * float(np.median(np.abs(differences - np.median(differences))))
    return float(np.std(differences, ddof=1))


def _assess(
    series: Sequence[_PatientSeries], definition: RuptureDefinition
) -> list[tuple[float, float, str | None]]:
    """Per patient: (fluctuation SD, threshold, reason not assessable or None)."""
    d = definition
    pooled = _pooled_sd(series) if d.fluctuation in ("pooled_sd", "stricter") else math.nan
    out = []
    for ps in series:
        n = ps.differences.size
        if d.method == "points":
            if n == 0:
                out.append((math.nan, math.nan, "no consecutive-session difference"))
            else:
                out.append((math.nan, float(d.points), None))
            continue
        if d.needs_patient_sd and n < d.min_differences:
            reason = (
                f"fewer than {d.min_differences} consecutive-session differences ({n}): "
                "fluctuation SD not estimated"
            )
            out.append((math.nan, math.nan, reason))
            continue
        if n == 0:
            out.append((math.nan, math.nan, "no consecutive-session difference"))
            continue
        if d.fluctuation == "pooled_sd":
            sd = pooled
        elif d.fluctuation == "stricter":
            sd = max(_patient_sd(ps.differences, "patient_sd"), pooled)
        else:
            sd = _patient_sd(ps.differences, d.fluctuation)
        if not math.isfinite(sd):
            out.append((math.nan, math.nan, "pooled fluctuation SD could not be estimated"))
        elif sd <= 0:
            out.append((sd, 0.0, "fluctuation SD is 0 (no session-to-session change)"))
        else:
            out.append((sd, float(d.k) * sd, None))
    return out


def patient_fluctuation(
    sessions: pd.DataFrame,
    definition: RuptureDefinition | None = None,
    **definition_kwargs: Any,
) -> pd.DataFrame:
    """Per patient: the data available for detection and whether it is possible.

    Parameters
    ----------
    sessions
        Session-level frame, one row per patient-session.
    definition
        The rupture definition; or leave ``None`` and give its fields as
        keyword arguments (``column=``, ``method=``, ``k=``, …).

    Returns
    -------
    pandas.DataFrame
        One row per patient (sorted by patient): ``by``, the therapist column
        (if any), ``n_sessions`` (rows), ``n_observed`` (rows with a value),
        ``n_differences`` (consecutive-session differences), ``fluctuation_sd``
        (NaN for ``method="points"``), ``threshold`` (drop in scale points that
        counts as a rupture), ``assessable`` and ``reason`` (why not; missing
        when assessable).
    """
    d = definition if definition is not None else RuptureDefinition(**definition_kwargs)
    series = _patient_series(sessions, d, "patient_fluctuation")
    return _fluctuation_table(series, _assess(series, d), d)


def _fluctuation_table(
    series: Sequence[_PatientSeries],
    assessment: Sequence[tuple[float, float, str | None]],
    d: RuptureDefinition,
) -> pd.DataFrame:
    table = pd.DataFrame({d.by: [ps.patient for ps in series]})
    if d.therapist:
        table[d.therapist] = [ps.therapist for ps in series]
    table["n_sessions"] = np.array([ps.sessions.size for ps in series], dtype="int64")
    table["n_observed"] = np.array(
        [int(np.isfinite(ps.values).sum()) for ps in series], dtype="int64"
    )
    table["n_differences"] = np.array([ps.differences.size for ps in series], dtype="int64")
    table["fluctuation_sd"] = np.array([a[0] for a in assessment], dtype="float64")
    table["threshold"] = np.array(
        [a[1] if a[2] is None else math.nan for a in assessment], dtype="float64"
    )
    table["assessable"] = np.array([a[2] is None for a in assessment], dtype=bool)
    table["reason"] = pd.array([a[2] for a in assessment], dtype="str")
    return table


# ---------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------
def _at_least(value: float, bound: float) -> bool:
    return value >= bound - _RELATIVE_SLACK * max(1.0, abs(bound))


def _episodes_of(ps: _PatientSeries, threshold: float, sd: float, d: RuptureDefinition) -> list:
    observed = {
        int(s): float(v) for s, v in zip(ps.sessions, ps.values, strict=True) if np.isfinite(v)
    }
    last_session = int(ps.sessions[-1])
    m = int(d.repair_within)
    episodes = []
    blocked_until = 0  # sessions <= this lie inside an earlier episode
    for s, diff in zip(ps.diff_sessions.tolist(), ps.differences.tolist(), strict=True):
        if s <= blocked_until or not _at_least(-diff, threshold):
            continue
        pre_value = observed[s - 1]
        level = pre_value - float(d.repair_tolerance)
        window_end = s + m
        repair_session = next(
            (
                r
                for r in range(s + 1, window_end + 1)
                if r in observed and _at_least(observed[r], level)
            ),
            None,
        )
        if repair_session is not None:
            status, reason, end = "repaired", None, repair_session
        elif last_session < window_end:
            status, reason, end = "censored", "treatment ended", last_session
        elif any(r not in observed for r in range(s + 1, window_end + 1)):
            status, reason, end = "censored", "missing session in window", window_end
        else:
            status, reason, end = "unrepaired", None, window_end
        episodes.append(
            {
                "rupture_session": s,
                "pre_session": s - 1,
                "pre_value": pre_value,
                "rupture_value": observed[s],
                "drop_size": -diff,
                "fluctuation_sd": sd,
                "threshold": threshold,
                "repair_level": level,
                "repair_window_end": window_end,
                "repaired": status == "repaired",
                "repair_session": repair_session,
                "repair_value": observed[repair_session]
                if repair_session is not None
                else math.nan,
                "sessions_to_repair": (repair_session - s) if repair_session is not None else None,
                "censored": status == "censored",
                "censored_reason": reason,
                "status": status,
                "episode_end": end,
            }
        )
        blocked_until = end
    return episodes


def _episode_frame(records: list[dict[str, Any]], d: RuptureDefinition) -> pd.DataFrame:
    id_columns = [d.by] + ([d.therapist] if d.therapist else [])
    columns = id_columns + list(EPISODE_COLUMNS)
    frame = pd.DataFrame.from_records(records, columns=columns)
    dtypes = {
        "rupture_session": "int64",
        "pre_session": "int64",
        "pre_value": "float64",
        "rupture_value": "float64",
        "drop_size": "float64",
        "fluctuation_sd": "float64",
        "threshold": "float64",
        "repair_level": "float64",
        "repair_window_end": "int64",
        "repaired": "bool",
        "repair_session": "Int64",
        "repair_value": "float64",
        "sessions_to_repair": "Int64",
        "censored": "bool",
        "censored_reason": "str",
        "status": "str",
        "episode_end": "int64",
    }
    frame = frame.astype(dtypes)
    if frame.empty:
        for column in id_columns:
            frame[column] = frame[column].astype("str")
    return frame


def detect_ruptures(
    sessions: pd.DataFrame,
    column: str = ALLIANCE,
    *,
    method: str = "sd",
    k: float = 2.0,
    points: float | None = None,
    fluctuation: str = "patient_sd",
    repair_within: int = 3,
    repair_tolerance: float = 0.0,
    min_differences: int = 3,
    by: str = PATIENT_ID,
    session: str = SESSION,
    therapist: str | None = THERAPIST_ID,
) -> pd.DataFrame:
    """Find rupture–repair episodes in each patient's session-by-session alliance.

    The definitions (consecutive-session difference, fluctuation SD, rupture,
    repair, censoring, non-overlapping episodes) are in the module docstring.

    Parameters
    ----------
    sessions
        Session-level frame, one row per patient-session, any row order.
        Sessions are whole numbers >= 1; gaps and missing values are allowed.
    column
        Alliance column (higher = better).
    method
        ``"sd"``: a drop of at least ``k`` fluctuation SDs; ``"points"``: a
        drop of at least ``points`` scale points.
    k
        Number of fluctuation SDs (2 = Stiles et al. 2004; 1 = Strauss et al. 2006).
    points
        Drop in scale points, for ``method="points"``.
    fluctuation
        Estimator of the fluctuation SD: ``"patient_sd"``, ``"patient_mad"``,
        ``"pooled_sd"`` or ``"stricter"``.
    repair_within
        Length of the repair window in sessions (sessions t+1 … t+repair_within).
    repair_tolerance
        Scale points below the pre-rupture value that still count as repaired.
    min_differences
        Consecutive-session differences needed to estimate a patient's own
        fluctuation SD (patients with fewer are not assessed).
    by, session
        Patient identifier and session number columns.
    therapist
        Therapist identifier column carried into the output (``None``: omit).

    Returns
    -------
    pandas.DataFrame
        One row per episode, sorted by patient and rupture session: ``by``,
        ``therapist`` (if given) and the :data:`EPISODE_COLUMNS`:
        ``rupture_session``; ``pre_session`` (= rupture_session - 1);
        ``pre_value``; ``rupture_value``; ``drop_size`` (pre_value - rupture_value);
        ``fluctuation_sd`` (NaN for points); ``threshold``; ``repair_level``
        (pre_value - repair_tolerance); ``repair_window_end``; ``repaired``;
        ``repair_session`` and ``repair_value`` (missing unless repaired);
        ``sessions_to_repair``; ``censored``; ``censored_reason``
        (``"treatment ended"`` or ``"missing session in window"``); ``status``
        (``"repaired"``, ``"unrepaired"`` or ``"censored"``); ``episode_end``.
        ``attrs["rupture_definition"]`` holds the definition, which
        :func:`rupture_counts` and the other summaries read.

    Raises
    ------
    ValueError
        When a column is absent, identifiers or sessions are missing or
        invalid, a patient has two rows for one session or two therapists, or
        a parameter is out of range; the message names the rows.
    """
    d = RuptureDefinition(
        column=column,
        method=method,
        k=k,
        points=points,
        fluctuation=fluctuation,
        repair_within=repair_within,
        repair_tolerance=repair_tolerance,
        min_differences=min_differences,
        by=by,
        session=session,
        therapist=therapist,
    )
    return detect_with_definition(sessions, d)


def detect_with_definition(sessions: pd.DataFrame, definition: RuptureDefinition) -> pd.DataFrame:
    """:func:`detect_ruptures` with the definition given as one object.

    Parameters
    ----------
    sessions
        Session-level frame, one row per patient-session.
    definition
        The rupture definition.

    Returns
    -------
    pandas.DataFrame
        The episode table (see :func:`detect_ruptures`).
    """
    if not isinstance(definition, RuptureDefinition):
        raise TypeError("detect_with_definition: definition must be a RuptureDefinition.")
    d = definition
    series = _patient_series(sessions, d, "detect_ruptures")
    records: list[dict[str, Any]] = []
    for ps, (sd, threshold, reason) in zip(series, _assess(series, d), strict=True):
        if reason is not None:
            continue
        for episode in _episodes_of(ps, threshold, sd, d):
            ids = {d.by: ps.patient}
            if d.therapist:
                ids[d.therapist] = ps.therapist
            records.append(ids | episode)
    episodes = _episode_frame(records, d)
    episodes.attrs[DEFINITION_ATTR] = d.to_dict()
    return episodes


# ---------------------------------------------------------------------------
# Counts and patient status
# ---------------------------------------------------------------------------
def _check_episodes(episodes: pd.DataFrame, d: RuptureDefinition, where: str) -> None:
    require_frame(
        episodes,
        [d.by, "rupture_session", "episode_end", "status"],
        where,
        "the episode table (from detect_ruptures)",
    )
    unknown = ~episodes["status"].isin(EPISODE_STATUSES).to_numpy()
    if unknown.any():
        raise DataInputError(
            f"{where}: column 'status' of the episode table holds values other than "
            f"{EPISODE_STATUSES} in rows {describe_rows(episodes.index[unknown])}.",
            fix="Pass the episode table returned by detect_ruptures.",
        )


def rupture_counts(
    episodes: pd.DataFrame,
    sessions: pd.DataFrame,
    *,
    definition: RuptureDefinition | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Number of episodes per patient, with the patients who had none.

    Parameters
    ----------
    episodes
        Output of :func:`detect_ruptures` (possibly filtered).
    sessions
        The session-level frame the episodes were detected in.
    definition
        The rupture definition; default: the one stored in ``episodes.attrs``.

    Returns
    -------
    pandas.DataFrame
        One row per patient of ``sessions`` (sorted): the columns of
        :func:`patient_fluctuation`, then ``n_at_risk_sessions`` (sessions with a
        consecutive-session difference outside every episode, where a rupture
        could have started), ``n_episodes``, ``n_repaired``, ``n_unrepaired``
        and ``n_censored``.  Counts are 0 for assessable patients without an
        episode and missing (``<NA>``) for patients who could not be assessed.

    Raises
    ------
    ValueError
        When the episodes name a patient that is absent from ``sessions`` or
        not assessable under the definition (they do not belong together).
    """
    where = "rupture_counts"
    d = _resolve_definition(episodes, definition, where)
    _check_episodes(episodes, d, where)
    series = _patient_series(sessions, d, where)
    table = _fluctuation_table(series, _assess(series, d), d)
    assessable = dict(zip(table[d.by].tolist(), table["assessable"].tolist(), strict=True))
    foreign = [p for p in pd.unique(episodes[d.by]) if not assessable.get(p, False)]
    if foreign:
        raise DataInputError(
            f"{where}: the episode table names patients {describe_rows(foreign)} that are absent "
            "from the session-level frame or not assessable under the rupture definition. "
            "Pass the same frame and definition that detect_ruptures used."
        )
    grouped = {p: g for p, g in episodes.groupby(d.by, sort=False)}
    at_risk, counts = [], {status: [] for status in ("all", *EPISODE_STATUSES)}
    for ps, ok in zip(series, table["assessable"].tolist(), strict=True):
        if not ok:
            at_risk.append(None)
            for values in counts.values():
                values.append(None)
            continue
        own = grouped.get(ps.patient)
        inside = np.zeros(ps.diff_sessions.size, dtype=bool)
        if own is not None:
            for start, end in zip(own["rupture_session"], own["episode_end"], strict=True):
                inside |= (ps.diff_sessions > start) & (ps.diff_sessions <= end)
        at_risk.append(int((~inside).sum()))
        statuses = own["status"].tolist() if own is not None else []
        counts["all"].append(len(statuses))
        for status in EPISODE_STATUSES:
            counts[status].append(statuses.count(status))
    table["n_at_risk_sessions"] = pd.array(at_risk, dtype="Int64")
    table["n_episodes"] = pd.array(counts["all"], dtype="Int64")
    for status in EPISODE_STATUSES:
        table[f"n_{status}"] = pd.array(counts[status], dtype="Int64")
    return table


def patient_rupture_status(
    episodes: pd.DataFrame,
    sessions: pd.DataFrame,
    *,
    definition: RuptureDefinition | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per patient with a rupture status for outcome models.

    The status is ``"unrepaired"`` if any of the patient's episodes is
    unrepaired (observed non-repair); otherwise ``"censored"`` if any episode
    is censored (its repair could not be observed); otherwise ``"repaired"``
    if the patient had at least one episode (all repaired); otherwise
    ``"no rupture"``.  Patients who could not be assessed (too few
    consecutive sessions, no fluctuation) are ``"not assessable"``, never
    "no rupture".  This follows the repaired / unrepaired / no-rupture groups of
    McLaughlin et al. (2014); keeping censored patients apart lets the analyst
    decide (e.g. drop them, or a sensitivity analysis counting them either way).

    Parameters
    ----------
    episodes
        Output of :func:`detect_ruptures`.
    sessions
        The session-level frame the episodes were detected in.
    definition
        The rupture definition; default: the one stored in ``episodes.attrs``.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`rupture_counts`, then ``rupture_status`` (one of
        :data:`PATIENT_STATUSES`) and ``first_rupture_session`` (missing
        without an episode).
    """
    where = "patient_rupture_status"
    d = _resolve_definition(episodes, definition, where)
    table = rupture_counts(episodes, sessions, definition=d)
    status = np.select(
        [
            ~table["assessable"].to_numpy(),
            (table["n_unrepaired"] > 0).fillna(False).to_numpy(dtype=bool),
            (table["n_censored"] > 0).fillna(False).to_numpy(dtype=bool),
            (table["n_repaired"] > 0).fillna(False).to_numpy(dtype=bool),
        ],
        ["not assessable", "unrepaired", "censored", "repaired"],
        default="no rupture",
    )
    table["rupture_status"] = pd.array(status.tolist(), dtype="str")
    first = episodes.groupby(d.by, sort=False)["rupture_session"].min()
    table["first_rupture_session"] = pd.array(
        [first.get(p) for p in table[d.by].tolist()], dtype="Int64"
    )
    return table


def therapist_rupture_counts(
    episodes: pd.DataFrame,
    sessions: pd.DataFrame,
    *,
    definition: RuptureDefinition | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Episodes per therapist, with the therapists whose patients had none.

    Parameters
    ----------
    episodes
        Output of :func:`detect_ruptures` (with a therapist column).
    sessions
        The session-level frame the episodes were detected in.
    definition
        The rupture definition; default: the one stored in ``episodes.attrs``.

    Returns
    -------
    pandas.DataFrame
        One row per therapist (sorted): ``n_patients``,
        ``n_patients_assessable``, ``n_patients_with_rupture``, ``n_episodes``,
        ``n_repaired``, ``n_unrepaired``, ``n_censored``, ``n_at_risk_sessions``
        (over assessable patients), ``episodes_per_at_risk_session`` and
        ``share_patients_with_rupture`` (of assessable patients; NaN when the
        therapist has none).
    """
    where = "therapist_rupture_counts"
    d = _resolve_definition(episodes, definition, where)
    if d.therapist is None:
        raise SettingsError(
            f"{where}: the rupture definition has no therapist column (therapist=None). "
            "Detect the episodes with therapist='therapist_id'."
        )
    per_patient = rupture_counts(episodes, sessions, definition=d)
    count_columns = ["n_episodes", *(f"n_{s}" for s in EPISODE_STATUSES), "n_at_risk_sessions"]
    work = per_patient[[d.therapist, "assessable", *count_columns]].copy()
    work[count_columns] = work[count_columns].fillna(0).astype("int64")
    work["with_rupture"] = work["n_episodes"] > 0
    out = (
        work.groupby(d.therapist, sort=True)
        .agg(
            n_patients=("assessable", "size"),
            n_patients_assessable=("assessable", "sum"),
            n_patients_with_rupture=("with_rupture", "sum"),
            **{c: (c, "sum") for c in count_columns},
        )
        .reset_index()
    )
    out = out.astype({c: "int64" for c in out.columns if c.startswith("n_")})
    with np.errstate(invalid="ignore", divide="ignore"):
        out["episodes_per_at_risk_session"] = out["n_episodes"].to_numpy(float) / out[
            "n_at_risk_sessions"
        ].to_numpy(float)
        out["share_patients_with_rupture"] = out["n_patients_with_rupture"].to_numpy(float) / out[
            "n_patients_assessable"
        ].to_numpy(float)
    ordered = ["n_patients", "n_patients_assessable", "n_patients_with_rupture", *count_columns]
    return out[
        [d.therapist, *ordered, "episodes_per_at_risk_session", "share_patients_with_rupture"]
    ]


# ---------------------------------------------------------------------------
# Scoring against known episodes
# ---------------------------------------------------------------------------
def _true_episode_frame(true_episodes: object, by: str, where: str) -> pd.DataFrame:
    if isinstance(true_episodes, pd.DataFrame):
        frame = true_episodes
    else:
        try:
            frame = pd.DataFrame.from_records(list(true_episodes))  # type: ignore[arg-type]
        except TypeError as error:
            raise TypeError(
                f"{where}: true_episodes must be a DataFrame or a list of mappings "
                "(e.g. truth.json's 'ruptures'), got " + type(true_episodes).__name__
            ) from error
    if frame.empty:
        return pd.DataFrame(
            {by: pd.array([], dtype="str"), "rupture_session": np.array([], dtype="int64")}
        )
    require_frame(frame, [by, "rupture_session"], where, "the true episodes")
    sessions = pd.to_numeric(frame["rupture_session"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(sessions) | (sessions != np.round(sessions))
    if bad.any():
        raise DataInputError(
            f"{where}: column 'rupture_session' of the true episodes must hold whole numbers; "
            f"rows {describe_rows(frame.index[bad], list(frame['rupture_session'][bad]))} do not.",
            fix="Give rupture_session as session numbers.",
        )
    return frame


def _match(detected: Sequence[int], true: Sequence[int], tolerance: int) -> list[tuple[int, int]]:
    """Maximum one-to-one matching of sessions within ``tolerance`` (then closest)."""
    if not detected or not true:
        return []
    distance = np.abs(np.subtract.outer(np.asarray(detected), np.asarray(true))).astype(float)
    big = 1e6
    cost = np.where(distance <= tolerance, distance, big)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < big]


def recovery_against_truth(
    episodes: pd.DataFrame,
    true_episodes: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    tolerance: int = 0,
    sessions: pd.DataFrame | None = None,
    definition: RuptureDefinition | Mapping[str, Any] | None = None,
) -> dict[str, float | int]:
    """Precision, recall and F1 of detected episodes against known ones.

    A detected episode matches a true one of the same patient when their
    rupture sessions differ by at most ``tolerance`` sessions; the matching is
    one-to-one within each patient, with the most matches (and, among those,
    the smallest total distance; :func:`scipy.optimize.linear_sum_assignment`).

    Parameters
    ----------
    episodes
        Output of :func:`detect_ruptures`.
    true_episodes
        Known episodes: a DataFrame or a list of mappings with the patient
        column and ``rupture_session`` (and optionally ``repaired``), e.g.
        ``truth["ruptures"]`` of the demo study.
    tolerance
        Sessions by which matched rupture sessions may differ (0 = same session).
    sessions
        The session-level frame; when given, also report how many true
        episodes were observable at all (values observed at the rupture session
        and the session before) and the recall among those.
    definition
        The rupture definition; default: the one stored in ``episodes.attrs``
        (only its patient, session and alliance column names are used).

    Returns
    -------
    dict
        ``n_detected``, ``n_true``, ``true_positives``, ``false_positives``,
        ``false_negatives``, ``precision`` = TP / detected, ``recall`` = TP /
        true, ``f1`` = 2 TP / (detected + true) (NaN when a denominator is 0);
        with ``sessions``: ``n_true_observable`` and ``recall_observable``; when
        the true episodes have ``repaired``: ``n_status_compared`` (matched
        pairs whose detected episode is not censored) and ``repair_agreement``
        (share of those on which detected and true repair agree).
    """
    where = "recovery_against_truth"
    d = _resolve_definition(episodes, definition, where)
    if not _whole_number(tolerance) or tolerance < 0:
        raise SettingsError(
            f"{where}: tolerance must be a whole number of sessions >= 0.",
            fix="Pass e.g. tolerance=1.",
        )
    require_frame(episodes, [d.by, "rupture_session", "status"], where, "the episode table")
    truth = _true_episode_frame(true_episodes, d.by, where)
    detected_by = {
        p: g.sort_values("rupture_session") for p, g in episodes.groupby(d.by, sort=True)
    }
    true_by = {p: g.sort_values("rupture_session") for p, g in truth.groupby(d.by, sort=True)}
    has_repair = "repaired" in truth.columns
    tp = compared = agree = 0
    matched_true: set[tuple[object, int]] = set()
    for patient in sorted(set(detected_by) & set(true_by), key=str):
        det, tru = detected_by[patient], true_by[patient]
        pairs = _match(det["rupture_session"].tolist(), tru["rupture_session"].tolist(), tolerance)
        tp += len(pairs)
        for i, j in pairs:
            matched_true.add((patient, int(tru["rupture_session"].iloc[j])))
            if has_repair and det["status"].iloc[i] != "censored":
                compared += 1
                agree += bool(det["status"].iloc[i] == "repaired") == bool(tru["repaired"].iloc[j])
    n_detected, n_true = len(episodes), len(truth)
    result: dict[str, float | int] = {
        "n_detected": n_detected,
        "n_true": n_true,
        "true_positives": tp,
        "false_positives": n_detected - tp,
        "false_negatives": n_true - tp,
        "precision": tp / n_detected if n_detected else math.nan,
        "recall": tp / n_true if n_true else math.nan,
        "f1": 2 * tp / (n_detected + n_true) if (n_detected + n_true) else math.nan,
    }
    if sessions is not None:
        series = {ps.patient: ps for ps in _patient_series(sessions, d, where)}
        observable = []
        for patient, start in zip(truth[d.by], truth["rupture_session"], strict=True):
            ps = series.get(patient)
            observable.append(ps is not None and int(start) in set(ps.diff_sessions.tolist()))
        n_obs = int(sum(observable))
        hits = sum(
            1
            for ok, patient, start in zip(
                observable, truth[d.by], truth["rupture_session"], strict=True
            )
            if ok and (patient, int(start)) in matched_true
        )
        result["n_true_observable"] = n_obs
        result["recall_observable"] = hits / n_obs if n_obs else math.nan
    if has_repair:
        result["n_status_compared"] = compared
        result["repair_agreement"] = agree / compared if compared else math.nan
    return result


# ---------------------------------------------------------------------------
# Sensitivity to the definition
# ---------------------------------------------------------------------------
def definition_summary(
    episodes: pd.DataFrame,
    sessions: pd.DataFrame,
    *,
    definition: RuptureDefinition | Mapping[str, Any] | None = None,
    true_episodes: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
    match_tolerance: int = 0,
) -> dict[str, Any]:
    """One row of :func:`threshold_sensitivity` for episodes already detected.

    Parameters
    ----------
    episodes
        Output of :func:`detect_ruptures` on ``sessions``.
    sessions
        The session-level frame the episodes were detected in.
    definition
        The rupture definition; default: the one stored in ``episodes.attrs``.
    true_episodes, match_tolerance
        As in :func:`threshold_sensitivity`: adds the recovery scores of
        :func:`recovery_against_truth`.

    Returns
    -------
    dict
        The columns of :func:`threshold_sensitivity` for this definition.
    """
    d = _resolve_definition(episodes, definition, "definition_summary")
    per_patient = rupture_counts(episodes, sessions, definition=d)
    ok = per_patient["assessable"].to_numpy()
    n_assessable = int(ok.sum())
    with_rupture = int((per_patient["n_episodes"].fillna(0) > 0).sum())
    counts = {s: int((episodes["status"] == s).sum()) for s in EPISODE_STATUSES}
    observed = counts["repaired"] + counts["unrepaired"]
    at_risk = int(per_patient["n_at_risk_sessions"].fillna(0).sum())
    row: dict[str, Any] = {
        "definition": d.label(),
        "method": d.method,
        "k": float(d.k) if d.method == "sd" else math.nan,
        "points": float(d.points) if d.method == "points" else math.nan,
        "n_patients": len(per_patient),
        "n_patients_assessable": n_assessable,
        "n_patients_with_rupture": with_rupture,
        "share_patients_with_rupture": (with_rupture / n_assessable if n_assessable else math.nan),
        "n_episodes": len(episodes),
        "n_repaired": counts["repaired"],
        "n_unrepaired": counts["unrepaired"],
        "n_censored": counts["censored"],
        "repair_rate": counts["repaired"] / observed if observed else math.nan,
        "n_at_risk_sessions": at_risk,
        "episodes_per_at_risk_session": len(episodes) / at_risk if at_risk else math.nan,
    }
    if true_episodes is not None:
        row |= recovery_against_truth(
            episodes, true_episodes, tolerance=match_tolerance, sessions=sessions, definition=d
        )
    return row


def threshold_sensitivity(
    sessions: pd.DataFrame,
    column: str = ALLIANCE,
    *,
    ks: Sequence[float] = (1.0, 1.5, 2.0, 2.5),
    points: Sequence[float] = (4.0, 6.0, 8.0),
    fluctuation: str = "patient_sd",
    repair_within: int = 3,
    repair_tolerance: float = 0.0,
    min_differences: int = 3,
    by: str = PATIENT_ID,
    session: str = SESSION,
    therapist: str | None = THERAPIST_ID,
    true_episodes: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
    match_tolerance: int = 0,
) -> pd.DataFrame:
    """How many ruptures, and how many repaired, under each threshold.

    Parameters
    ----------
    sessions
        Session-level frame, one row per patient-session.
    column
        Alliance column.
    ks
        Thresholds in fluctuation SDs (``method="sd"``).
    points
        Thresholds in scale points (``method="points"``).  The defaults 4, 6
        and 8 are WAI-SR total points, i.e. a mean drop of 1/3, 1/2 and 2/3
        of a scale point on each of the 12 items.
    fluctuation, repair_within, repair_tolerance, min_differences, by, session, therapist
        As in :func:`detect_ruptures`, shared by every row.
    true_episodes
        Known episodes (e.g. ``truth["ruptures"]``): adds the columns of
        :func:`recovery_against_truth` for each definition.
    match_tolerance
        ``tolerance`` of :func:`recovery_against_truth`.

    Returns
    -------
    pandas.DataFrame
        One row per definition (the SD thresholds, then the point thresholds):
        ``definition`` (label), ``method``, ``k``, ``points``,
        ``n_patients``, ``n_patients_assessable``, ``n_patients_with_rupture``,
        ``share_patients_with_rupture`` (of assessable), ``n_episodes``,
        ``n_repaired``, ``n_unrepaired``, ``n_censored``, ``repair_rate`` =
        repaired / (repaired + unrepaired) (censored episodes left out),
        ``n_at_risk_sessions``, ``episodes_per_at_risk_session``; and with
        ``true_episodes`` the recovery scores.
    """
    common = {
        "column": column,
        "repair_within": repair_within,
        "repair_tolerance": repair_tolerance,
        "min_differences": min_differences,
        "by": by,
        "session": session,
        "therapist": therapist,
    }
    definitions = [
        RuptureDefinition(method="sd", k=float(k), fluctuation=fluctuation, **common) for k in ks
    ] + [RuptureDefinition(method="points", points=float(p), **common) for p in points]
    if not definitions:
        raise SettingsError("threshold_sensitivity: give at least one value in ks or points.")
    rows = []
    for d in definitions:
        episodes = detect_with_definition(sessions, d)
        rows.append(
            definition_summary(
                episodes,
                sessions,
                definition=d,
                true_episodes=true_episodes,
                match_tolerance=match_tolerance,
            )
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Trajectories aligned on the rupture session
# ---------------------------------------------------------------------------
def aligned_on_rupture(
    sessions: pd.DataFrame,
    episodes: pd.DataFrame,
    *,
    window: tuple[int, int] = (-3, 4),
    columns: Sequence[str] | None = None,
    definition: RuptureDefinition | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Values around each rupture, on sessions relative to the rupture session.

    Parameters
    ----------
    sessions
        The session-level frame the episodes were detected in.
    episodes
        Output of :func:`detect_ruptures`.
    window
        First and last relative session, both included: (-3, 4) spans three
        sessions before the rupture session (relative session 0) to four after.
    columns
        Columns to align; default the alliance column of the definition and
        ``"outcome"`` when present.
    definition
        The rupture definition; default: the one stored in ``episodes.attrs``.

    Returns
    -------
    pandas.DataFrame
        Long frame, one row per episode, variable and relative session present
        in ``sessions``: ``by``, ``rupture_session``, ``status``,
        ``relative_session``, ``session``, ``variable``, ``value`` (missing where
        the session has no value).  Summarise with :func:`aligned_summary`.
    """
    where = "aligned_on_rupture"
    d = _resolve_definition(episodes, definition, where)
    _check_episodes(episodes, d, where)
    if (
        not isinstance(window, (tuple, list))
        or len(window) != 2
        or not all(_whole_number(w) for w in window)
        or window[0] > window[1]
    ):
        raise SettingsError(
            f"{where}: window must be (first, last) relative sessions with first <= last, "
            f"e.g. (-3, 4); got {window!r}."
        )
    if columns is None:
        columns = [d.column] + ([OUTCOME] if OUTCOME in sessions.columns else [])
    columns = list(columns)
    require_frame(sessions, [d.by, d.session, *columns], where, "the session-level frame")
    _patient_series(sessions, d, where)  # same validation as detection
    session_int = pd.to_numeric(sessions[d.session]).astype("int64")
    lookup = {
        c: pd.Series(
            pd.to_numeric(sessions[c], errors="coerce").astype("float64").to_numpy(),
            index=pd.MultiIndex.from_arrays([sessions[d.by].to_numpy(), session_int.to_numpy()]),
        )
        for c in columns
    }
    present = set(zip(sessions[d.by].tolist(), session_int.tolist(), strict=True))
    rows = []
    order = episodes.sort_values([d.by, "rupture_session"], kind="mergesort")
    for patient, start, status in zip(
        order[d.by], order["rupture_session"], order["status"], strict=True
    ):
        for variable in columns:
            for rel in range(int(window[0]), int(window[1]) + 1):
                s = int(start) + rel
                if (patient, s) not in present:
                    continue
                rows.append(
                    (
                        patient,
                        int(start),
                        status,
                        rel,
                        s,
                        variable,
                        float(lookup[variable].loc[(patient, s)]),
                    )
                )
    out = pd.DataFrame(
        rows,
        columns=[
            d.by,
            "rupture_session",
            "status",
            "relative_session",
            "session",
            "variable",
            "value",
        ],
    )
    return out.astype(
        {
            "rupture_session": "int64",
            "relative_session": "int64",
            "session": "int64",
            "value": "float64",
            "status": "str",
            "variable": "str",
        }
    )


def aligned_summary(
    aligned: pd.DataFrame,
    *,
    by_status: bool = False,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean and t-based confidence interval per relative session (the V-shape figure).

    Parameters
    ----------
    aligned
        Output of :func:`aligned_on_rupture`.
    by_status
        Summarise repaired, unrepaired and censored episodes separately.
    confidence
        Confidence level of the interval.

    Returns
    -------
    pandas.DataFrame
        ``variable``, (``status``,) ``relative_session``, ``n`` (observed
        values), ``mean``, ``sd``, ``ci_low``, ``ci_high``:
        mean ± t(1 - (1 - confidence)/2, n - 1) · sd / √n; the interval is NaN
        when n < 2.  Episodes of one patient are treated as independent.
    """
    where = "aligned_summary"
    require_frame(
        aligned,
        ["variable", "relative_session", "value", "status"],
        where,
        "the aligned frame (from aligned_on_rupture)",
    )
    if not _number(confidence) or not 0 < confidence < 1:
        raise SettingsError(
            f"{where}: confidence must be between 0 and 1, got {confidence!r}.",
            fix="Pass e.g. confidence=0.95.",
        )
    keys = (
        ["variable", "status", "relative_session"]
        if by_status
        else ["variable", "relative_session"]
    )
    observed = aligned.dropna(subset=["value"])
    grouped = observed.groupby(keys, sort=True)["value"]
    out = grouped.agg(n="count", mean="mean", sd="std").reset_index()
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        quantile = np.where(n >= 2, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)), np.nan)
        half = quantile * out["sd"].to_numpy(dtype=float) / np.sqrt(n)
    out["ci_low"] = out["mean"].to_numpy(dtype=float) - half
    out["ci_high"] = out["mean"].to_numpy(dtype=float) + half
    return out.astype({"n": "int64"})


# ---------------------------------------------------------------------------
# Ruptures and outcome (notebook 04)
# ---------------------------------------------------------------------------
#: Patient groups compared in outcome models, the reference group first.
OUTCOME_GROUPS: tuple[str, ...] = ("no rupture", "repaired", "unrepaired")


def lagged_rupture_indicator(
    episodes: pd.DataFrame,
    sessions: pd.DataFrame,
    *,
    lag: int = 1,
    definition: RuptureDefinition | Mapping[str, Any] | None = None,
) -> pd.Series:
    """Whether a rupture began ``lag`` sessions before each session (for session-level models).

    For the row of patient *i* at session *t* the value is

    * ``1.0`` when session *t − lag* is the rupture session of one of the
      patient's episodes;
    * ``0.0`` when session *t − lag* could have been a rupture session but was
      not: the patient is assessable under the definition and session *t − lag*
      has a consecutive-session difference (it and the session before it are
      present with observed alliance values).  Sessions inside an episode, after
      its rupture session, are 0: they are not the start of a rupture;
    * missing (NaN) otherwise: the patient is not assessable, or session
      *t − lag* is absent or has no consecutive-session difference, so whether
      a rupture began there is unknown.  Mixed-model fits drop these rows.

    Parameters
    ----------
    episodes
        Output of :func:`detect_ruptures` on ``sessions``.
    sessions
        The session-level frame the episodes were detected in (any row order).
    lag
        Sessions between the rupture and the row's session (1 = the session
        right after the rupture session).
    definition
        The rupture definition; default: the one stored in ``episodes.attrs``.

    Returns
    -------
    pandas.Series
        Float, named ``rupture_lag<lag>`` (e.g. ``rupture_lag1``), with the index
        of ``sessions``.

    Raises
    ------
    ValueError
        If ``lag`` is not a whole number >= 1, or the episodes name a patient
        that is absent from ``sessions`` or not assessable (they do not belong
        together).

    Examples
    --------
    >>> frame = pd.DataFrame({
    ...     "therapist_id": "T1", "patient_id": "P1", "session": [1, 2, 3, 4, 5, 6],
    ...     "alliance": [40.0, 41.0, 40.0, 32.0, 40.0, 41.0]})
    >>> episodes = detect_ruptures(frame, method="points", points=6)
    >>> lagged_rupture_indicator(episodes, frame).tolist()
    [nan, nan, 0.0, 0.0, 1.0, 0.0]
    """
    where = "lagged_rupture_indicator"
    if isinstance(lag, bool) or not _whole_number(lag) or lag < 1:
        raise SettingsError(
            f"{where}: lag must be a whole number of sessions >= 1 (1 = the session after "
            f"the rupture), got {lag!r}."
        )
    lag = int(lag)
    d = _resolve_definition(episodes, definition, where)
    counts = rupture_counts(episodes, sessions, definition=d)  # validates both frames
    assessable = set(counts.loc[counts["assessable"].to_numpy(dtype=bool), d.by].tolist())
    candidates = {
        (ps.patient, int(s))
        for ps in _patient_series(sessions, d, where)
        if ps.patient in assessable
        for s in ps.diff_sessions.tolist()
    }
    onset_sessions = pd.to_numeric(episodes["rupture_session"]).astype("int64").tolist()
    onsets = set(zip(episodes[d.by].tolist(), onset_sessions, strict=True))
    values = []
    earlier = pd.to_numeric(sessions[d.session]).astype("int64").to_numpy() - lag
    for patient, s in zip(sessions[d.by].tolist(), earlier.tolist(), strict=True):
        key = (patient, int(s))
        if key in onsets:
            values.append(1.0)
        elif key in candidates:
            values.append(0.0)
        else:
            values.append(math.nan)
    return pd.Series(values, index=sessions.index, name=f"rupture_lag{lag}", dtype="float64")


def patients_by_rupture_status(
    status: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    groups: Sequence[str] = OUTCOME_GROUPS,
    censored_as: str | None = None,
    by: str = PATIENT_ID,
    column: str = "rupture_group",
) -> pd.DataFrame:
    """The patient table restricted to the rupture groups compared in an outcome model.

    Parameters
    ----------
    status
        Output of :func:`patient_rupture_status` (one row per patient, with
        ``rupture_status``).
    patients
        Patient-level table (``patients.csv`` of the cleaning step), one row
        per patient; its other columns are kept.
    groups
        Statuses kept, e.g. ``("no rupture", "repaired", "unrepaired")``.
    censored_as
        ``None`` (default): patients whose repair could not be observed
        (``"censored"``) are left out, like the patients who are not
        assessable.  ``"repaired"`` or ``"unrepaired"``: count them in that
        group instead, for a sensitivity analysis.
    by
        Patient identifier column of both tables.
    column
        Name of the added group column.

    Returns
    -------
    pandas.DataFrame
        The rows of ``patients`` whose (recoded) status is in ``groups``, in
        their original order, with ``column`` (str) added.

    Raises
    ------
    ValueError
        If a column is absent, a table has a patient twice, ``column`` already
        exists, a patient of ``patients`` has no status (the two tables are not
        from the same data), a group is not a patient status, or
        ``censored_as`` is not ``None``, ``"repaired"`` or ``"unrepaired"``.
    """
    where = "patients_by_rupture_status"
    require_frame(status, [by, "rupture_status"], where, "the status table")
    require_frame(patients, [by], where, "the patient table")
    if column in patients.columns:
        raise DataInputError(
            f"{where}: the patient table already has a column {column!r}; drop it or pass "
            "another name with column=."
        )
    unknown = [g for g in groups if g not in PATIENT_STATUSES]
    if unknown or not len(groups):
        raise SettingsError(
            f"{where}: groups must be patient statuses among {PATIENT_STATUSES}, "
            f"got {list(groups)!r}."
        )
    if censored_as not in (None, "repaired", "unrepaired"):
        raise SettingsError(
            f"{where}: censored_as must be None (leave censored patients out), 'repaired' or "
            f"'unrepaired', got {censored_as!r}."
        )
    for name, frame in (("status table", status), ("patient table", patients)):
        twice = frame[by].duplicated(keep=False).to_numpy()
        if twice.any():
            raise DataInputError(
                f"{where}: the {name} has more than one row for patients "
                f"{describe_rows(sorted(set(frame.loc[twice, by].tolist()), key=str))}; it must "
                "have one row per patient."
            )
    lookup = dict(zip(status[by].tolist(), status["rupture_status"].tolist(), strict=True))
    absent = [p for p in patients[by].tolist() if p not in lookup]
    if absent:
        raise DataInputError(
            f"{where}: patients {describe_rows(absent)} of the patient table have no "
            "rupture status. "
            "Detect the ruptures in the session-level data of the same study (the cleaning "
            "step writes patients.csv and sessions.parquet together)."
        )
    recoded = [
        censored_as if (s == "censored" and censored_as is not None) else s
        for s in (lookup[p] for p in patients[by].tolist())
    ]
    keep = np.array([s in set(groups) for s in recoded], dtype=bool)
    out = patients.loc[keep].copy()
    out[column] = pd.array([s for s, k in zip(recoded, keep, strict=True) if k], dtype="str")
    return out


# ---------------------------------------------------------------------------
# Summaries without identifiers (notebook 04)
# ---------------------------------------------------------------------------
def episode_summary(episodes: pd.DataFrame) -> pd.DataFrame:
    """Rupture episodes summarised by status, without patient or therapist identifiers.

    Parameters
    ----------
    episodes : pandas.DataFrame
        Output of :func:`helpers.ruptures.detect_ruptures` (needs ``status``,
        ``drop_size``, ``threshold``, ``sessions_to_repair``, ``censored_reason``
        and the patient column ``patient_id``).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``status`` (``repaired``, ``unrepaired``, ``censored``, then
        ``all``): ``episodes``, ``patients`` (distinct patients with such an
        episode), ``share`` (of all episodes), ``mean_drop``, ``mean_threshold``,
        ``median_sessions_to_repair`` (repaired episodes only),
        ``censored_treatment_ended`` and ``censored_missing_session``.

    Raises
    ------
    ValueError
        If a column is absent.
    """
    where = "episode_summary"
    needed = [
        PATIENT_ID,
        "status",
        "drop_size",
        "threshold",
        "sessions_to_repair",
        "censored_reason",
    ]
    require_frame(episodes, needed, where, "the episode table")
    groups = [("repaired",), ("unrepaired",), ("censored",), ("repaired", "unrepaired", "censored")]
    total = len(episodes)
    rows = []
    for statuses in groups:
        part = episodes.loc[episodes["status"].isin(statuses).to_numpy()]
        to_repair = pd.to_numeric(part["sessions_to_repair"], errors="coerce").dropna()
        reasons = part["censored_reason"].astype("object")
        rows.append(
            {
                "status": statuses[0] if len(statuses) == 1 else "all",
                "episodes": len(part),
                "patients": int(part[PATIENT_ID].nunique()),
                "share": len(part) / total if total else math.nan,
                "mean_drop": float(part["drop_size"].mean()) if len(part) else math.nan,
                "mean_threshold": float(part["threshold"].mean()) if len(part) else math.nan,
                "median_sessions_to_repair": (
                    float(to_repair.median()) if len(to_repair) else math.nan
                ),
                "censored_treatment_ended": int((reasons == "treatment ended").sum()),
                "censored_missing_session": int((reasons == "missing session in window").sum()),
            }
        )
    return pd.DataFrame(rows).set_index("status")


def episode_count_distribution(counts: pd.DataFrame) -> pd.DataFrame:
    """How many patients had 0, 1, 2, … rupture episodes, without identifiers.

    Parameters
    ----------
    counts : pandas.DataFrame
        Output of :func:`helpers.ruptures.rupture_counts` (``n_episodes``, missing
        for patients who could not be assessed).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``episodes per patient`` ("0", "1", …, then "not assessable"):
        ``patients`` and ``share_of_assessable`` (NaN on the "not assessable" row).

    Raises
    ------
    ValueError
        If ``n_episodes`` is absent.
    """
    require_frame(counts, ["n_episodes"], "episode_count_distribution", "the count table")
    n = pd.to_numeric(counts["n_episodes"], errors="coerce")
    assessed = n.dropna().astype("int64")
    tally = assessed.value_counts().sort_index()
    labels = [str(k) for k in tally.index] + ["not assessable"]
    patients = [int(v) for v in tally.to_numpy()] + [int(n.isna().sum())]
    total = len(assessed)
    share = [v / total if total else math.nan for v in tally.to_numpy()] + [math.nan]
    return pd.DataFrame(
        {"patients": patients, "share_of_assessable": share},
        index=pd.Index(labels, name="episodes per patient"),
    )
