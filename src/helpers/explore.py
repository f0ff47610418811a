"""Descriptive tables for notebook 02: the sample, missingness and trajectories.

Every function returns a tidy, rounded DataFrame with no patient or therapist
identifiers, so the tables can be stored in notebook outputs and compared by
the regression tests.

A two-level study has no ``therapist_id`` and a study may have no
``modality``: the tables then leave out what needs them (the therapist counts)
and the group tables show one row for all patients instead of one per modality.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.plots import session_means
from helpers.schema import MODALITY, OUTCOME_INTAKE, PATIENT_ID, SESSION, THERAPIST_ID


def _spread(values: pd.Series) -> str:
    q1, med, q3 = values.quantile([0.25, 0.5, 0.75])
    return f"{med:g} [{q1:g}–{q3:g}], range {values.min():g}–{values.max():g}"


#: Row label of the group tables when there are no groups.
ALL_PATIENTS = "all patients"


def sample_overview(sessions: pd.DataFrame) -> pd.DataFrame:
    """Counts of therapists, patients and sessions, with the spread of caseloads.

    Spreads are written as ``median [quartiles], range``.  Without a
    ``therapist_id`` column (a two-level study) the therapists row reads "not
    identified (two-level study)" and there is no patients-per-therapist row.
    """
    per_patient = sessions.groupby(PATIENT_ID).size()
    rows = [
        ("therapists", "not identified (two-level study)"),
        ("patients", f"{sessions[PATIENT_ID].nunique()}"),
        ("sessions", f"{len(sessions)}"),
        ("sessions per patient", _spread(per_patient)),
    ]
    if THERAPIST_ID in sessions:
        per_therapist = sessions.groupby(THERAPIST_ID)[PATIENT_ID].nunique()
        rows[0] = ("therapists", f"{sessions[THERAPIST_ID].nunique()}")
        rows.insert(3, ("patients per therapist", _spread(per_therapist)))
    if "within_eligible" in sessions:
        eligible = sessions.groupby(PATIENT_ID)["within_eligible"].first()
        rows.append(("patients eligible for within-patient models", f"{int(eligible.sum())}"))
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


def _groups(patients: pd.DataFrame, by: str | None) -> pd.Series:
    """Group label of each patient: the ``by`` column, or one overall group.

    One overall group (:data:`ALL_PATIENTS`) when ``by`` is ``None``, or is
    ``"modality"`` and the study has no modality column.  Any other absent
    column is an error, so that a misspelt name does not pass unnoticed.
    """
    if by is None or (by == MODALITY and by not in patients.columns):
        return pd.Series(ALL_PATIENTS, index=patients.index, name=None)
    if by not in patients.columns:
        raise KeyError(f"no column {by!r} to group by; the columns are {list(patients.columns)}")
    return patients[by]


def intake_by_group(patients: pd.DataFrame, by: str | None = MODALITY) -> pd.DataFrame:
    """Patients, intake severity (mean, SD) and sessions attended per group.

    Without ``by`` (``None``, or no modality column) one row for all
    patients; without ``therapist_id`` no therapists column.
    """
    grouped = patients.groupby(_groups(patients, by), dropna=False)
    columns = {
        "patients": grouped.size(),
        "intake mean": grouped[OUTCOME_INTAKE].mean(),
        "intake SD": grouped[OUTCOME_INTAKE].std(),
        "sessions (mean)": grouped["n_sessions"].mean(),
    }
    if THERAPIST_ID in patients:
        columns = {"therapists": grouped[THERAPIST_ID].nunique(), **columns}
    return pd.DataFrame(columns).round(2)


def missingness_table(sessions: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Percentage of sessions with each score missing, overall and by treatment phase.

    Phases are sessions 1–5, 6–10 and 11 onwards: missingness that grows with
    time in treatment is a warning sign that scores are not missing at random.
    """
    phase = pd.cut(
        sessions[SESSION],
        bins=[0, 5, 10, np.inf],
        labels=["sessions 1–5", "sessions 6–10", "sessions 11+"],
    )
    missing = sessions[columns].isna()
    table = missing.groupby(phase, observed=True).mean().T * 100
    table.insert(0, "all sessions", missing.mean() * 100)
    table.columns.name = None
    table.index.name = "% missing"
    return table.round(1)


def mean_by_session(
    sessions: pd.DataFrame, column: str, by: str | None = None, min_n: int = 10
) -> pd.DataFrame:
    """Mean, SD, n and a normal-approximation 95% CI of ``column`` at each session.

    The summary :func:`helpers.plots.plot_trajectories` draws
    (:func:`helpers.plots.session_means`), rounded to 3 decimals.  Sessions with
    fewer than ``min_n`` scores (per group) are left out: their means are too
    noisy to show.  ``by="modality"`` in a study without a modality column gives
    the overall table (as ``by=None``).
    """
    if by == MODALITY and by not in sessions.columns:
        by = None
    return session_means(sessions, column, x=SESSION, hue=by, min_n=min_n).round(3)


def change_summary(patients: pd.DataFrame, by: str | None = MODALITY) -> pd.DataFrame:
    """Mean intake, last and improvement per group, with the share reliably improved.

    Without ``by`` (``None``, or no modality column) one row for all patients.
    """
    groups = _groups(patients, by)
    grouped = patients.groupby(groups, dropna=False)
    table = pd.DataFrame(
        {
            "intake": grouped[OUTCOME_INTAKE].mean(),
            "last": grouped["outcome_last"].mean(),
            "improvement": grouped["improvement"].mean(),
        }
    )
    if "change_category" in patients:
        improved = patients["change_category"].isin(["recovered", "improved"])
        table["% reliably improved"] = 100 * improved.groupby(groups).mean()
    return table.round(2)
