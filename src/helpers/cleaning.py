"""Cleaning rules and the exclusion ledger.

Every rule takes the canonical long frame (one record per patient-session, see
:mod:`helpers.schema`) and a :class:`CleaningLog`, and returns the frame it
keeps.  Whatever a rule removes or alters is written to the log, so that

    records in = records kept + records used as intake + records excluded

holds after every step (:meth:`CleaningLog.reconcile` asserts it), and every
altered value is listed with its original.  Nothing is dropped silently.

The rules, in the order :func:`helpers.pipeline.run_cleaning` applies them:

1. :func:`exclude_missing_ids` — a record without therapist, patient or session
   (or session date) cannot be placed in the design.
2. :func:`exclude_exact_duplicates` — a record identical to an earlier one in
   every column (a double export or double entry) is excluded; the first copy
   is kept.
3. :func:`resolve_conflicting_duplicates` — two or more records of the same
   patient and session that disagree.  Policy ``exclude`` (default) excludes
   every copy, since there is no way to know which is right; ``keep_first``
   keeps the first in file order; ``error`` stops with a report.  When
   sessions are numbered from dates, two records of a patient on one date
   share a number and meet here (the reason says "same session date as row
   …", never the date itself).
4. :func:`resolve_multiple_therapists` — a patient who appears under more than
   one therapist.  ``keep_majority`` (default) keeps the records under the
   therapist who holds a strict majority of the patient's records (the usual
   cause is a mistyped therapist id on a few rows) and excludes the others; with
   no strict majority the patient is excluded.  ``exclude`` excludes the
   patient; ``error`` stops with a report.  In a two-level study (no
   ``therapist_id`` column) the rule does not apply; the flow records the step
   as "patients under several therapists: not applicable (no therapist column)".
5. :func:`set_out_of_range_missing` — an item or total outside its instrument's
   range is set to missing and logged with its original value (the record is
   kept: its other values are still valid).  ``error`` stops instead.
6. :func:`split_intake` — records at the configured intake session become the
   patient-level ``outcome_intake``.
7. :func:`exclude_invalid_sessions` — session numbers that are zero or
   negative (other than the intake session), or implausibly high: above
   ``cleaning.max_session`` (default 200; a typo such as 1100 for 11).
8. :func:`exclude_empty_records` — records with neither an alliance nor an
   outcome score after scoring.
9. :func:`exclude_patients_without_outcome` — patients with no outcome at any
   session contribute nothing to an alliance–outcome analysis.
10. :func:`flag_few_sessions` — patients with fewer than ``min_sessions_within``
    sessions holding both scores are kept but flagged (``within_eligible``
    False): they inform between-patient but not within-patient estimates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.errors import LedgerMismatchError, SettingsError
from helpers.schema import PATIENT_ID, SESSION, SESSION_DATE, SOURCE_ROW, THERAPIST_ID
from helpers.validation import (
    Problem,
    StudyDataError,
    release_freed_memory,
    widen_half,
    with_columns,
)

#: Columns of the exclusion ledger (one row per excluded or intake record).
LEDGER_COLUMNS = [SOURCE_ROW, PATIENT_ID, THERAPIST_ID, SESSION, "step", "fate", "reason"]
#: Columns of the value-change log (one row per altered value).
VALUE_CHANGE_COLUMNS = [
    SOURCE_ROW,
    PATIENT_ID,
    SESSION,
    "column",
    "original_value",
    "new_value",
    "step",
    "reason",
]


@dataclass
class CleaningLog:
    """What the cleaning rules did, record by record.

    Parameters
    ----------
    n_records_in
        Number of records that entered cleaning (rows of the canonical long
        frame; in a long file these are the file's data rows).
    source
        The input file, relative to the project root, for messages.
    therapists
        Whether the study identifies therapists.  In a two-level study
        (``False``) the ledger has no ``therapist_id`` column and the flow's
        ``therapists_kept`` is missing (empty in ``flow.csv``), not 0.
    """

    n_records_in: int
    source: str = ""
    ledger: list[pd.DataFrame] = field(default_factory=list)
    value_changes: list[pd.DataFrame] = field(default_factory=list)
    flow: list[dict] = field(default_factory=list)
    therapists: bool = True
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def exclude(self, rows: pd.DataFrame, step: str, reasons: str | Iterable[str]) -> None:
        """Log ``rows`` as excluded at ``step`` with one reason or one per row."""
        self._add(rows, step, "excluded", reasons)

    def use_as_intake(self, rows: pd.DataFrame, step: str) -> None:
        """Log ``rows`` as consumed into the patient-level intake score."""
        self._add(rows, step, "intake", "intake assessment: becomes outcome_intake")

    def _add(self, rows: pd.DataFrame, step: str, fate: str, reasons) -> None:
        """Append ``rows`` to the ledger as one block (columns, not row objects)."""
        if rows.empty:
            return
        reasons = reasons if isinstance(reasons, str) else list(reasons)
        if not isinstance(reasons, str) and len(reasons) != len(rows):
            raise ValueError(f"{len(rows)} ledger rows but {len(reasons)} reasons")
        part = {c: _column_array(rows, c) for c in (SOURCE_ROW, PATIENT_ID, THERAPIST_ID)}
        part |= {SESSION: _column_array(rows, SESSION), "step": step, "fate": fate}
        self.ledger.append(pd.DataFrame(part | {"reason": reasons}, index=range(len(rows))))
        self.counts[(step, fate)] = self.counts.get((step, fate), 0) + len(rows)

    def change_value(
        self, rows: pd.DataFrame, column: str, new_value, step: str, reason: str
    ) -> None:
        """Log that ``column`` of ``rows`` was changed to ``new_value``."""
        if rows.empty:
            return
        part = {c: _column_values(rows, c) for c in (SOURCE_ROW, PATIENT_ID, SESSION)}
        part |= {"column": column, "original_value": _column_values(rows, column)}
        part |= {"new_value": new_value, "step": step, "reason": reason}
        self.value_changes.append(pd.DataFrame(part, index=range(len(rows))))

    def record_step(self, step: str, kept: pd.DataFrame, intake: pd.DataFrame | None = None):
        """Snapshot the counts after ``step`` and check that they reconcile."""
        n_intake = self.n_fate("intake")
        self.flow.append(
            {
                "step": step,
                "records_kept": len(kept),
                "patients_kept": kept[PATIENT_ID].nunique(),
                "therapists_kept": kept[THERAPIST_ID].nunique() if self.therapists else pd.NA,
                "records_excluded_here": self.counts.get((step, "excluded"), 0),
                "records_excluded_total": self.n_fate("excluded"),
                "intake_records": n_intake,
            }
        )
        self.reconcile(len(kept))

    def n_fate(self, fate: str) -> int:
        """Number of ledger records with the given fate."""
        return sum(n for (_, kind), n in self.counts.items() if kind == fate)

    def reconcile(self, n_kept: int) -> None:
        """Assert records in = kept + intake + excluded, each record once."""
        n_out = n_kept + self.n_fate("intake") + self.n_fate("excluded")
        if n_out != self.n_records_in:
            raise LedgerMismatchError(
                f"ledger does not reconcile for {self.source}: {self.n_records_in} records in, "
                f"{n_kept} kept + {self.n_fate('intake')} intake + "
                f"{self.n_fate('excluded')} excluded = {n_out}"
            )

    def ledger_frame(self) -> pd.DataFrame:
        """The exclusion ledger as a DataFrame, in input order."""
        frame = _concat(self.ledger, LEDGER_COLUMNS)
        if not self.therapists:
            frame = frame.drop(columns=THERAPIST_ID)
        return frame.sort_values([SOURCE_ROW, SESSION, "step"], kind="stable").reset_index(
            drop=True
        )

    def value_changes_frame(self) -> pd.DataFrame:
        """Every altered value with its original, in input order."""
        frame = _concat(self.value_changes, VALUE_CHANGE_COLUMNS)
        if not frame.empty:
            frame["original_value"] = frame["original_value"].map(_format_value)
        return frame.sort_values([SOURCE_ROW, SESSION, "column"], kind="stable").reset_index(
            drop=True
        )

    def flow_frame(self) -> pd.DataFrame:
        """CONSORT-style flow: records, patients and therapists after each step."""
        return pd.DataFrame(self.flow)

    def reasons_frame(self) -> pd.DataFrame:
        """Counts of excluded records per step and reason."""
        ledger = self.ledger_frame()
        if ledger.empty:
            return pd.DataFrame(columns=["step", "fate", "reason", "records", "patients"])
        return (
            ledger.groupby(["step", "fate", "reason"], sort=False)
            .agg(records=(SOURCE_ROW, "size"), patients=(PATIENT_ID, "nunique"))
            .reset_index()
        )


def _column_values(rows: pd.DataFrame, column: str) -> np.ndarray:
    """``rows[column]`` as Python objects, or ``None`` for every row without the column."""
    if column not in rows.columns:
        return np.full(len(rows), None, dtype=object)
    return rows[column].to_numpy(dtype=object)


def _column_array(rows: pd.DataFrame, column: str):
    """``rows[column]`` in its own type (text stays Arrow text, not Python objects: memory).

    ``None`` for every row when ``rows`` has no such column.
    """
    if column not in rows.columns:
        return np.full(len(rows), None, dtype=object)
    return rows[column].array


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The logged blocks as one frame with ``columns``, types inferred from the values."""
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({c: _concat_column([p[c] for p in parts]) for c in columns})


def _fits_int64(dtype) -> bool:
    """Whether ``dtype`` is a NumPy integer type every value of which is an int64.

    Examples
    --------
    >>> _fits_int64(np.dtype("int16")), _fits_int64(np.dtype("uint64")), _fits_int64("Int64")
    (True, False, False)
    """
    if not isinstance(dtype, np.dtype):
        return False
    return dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize < 8)


def _concat_column(pieces: list[pd.Series]) -> pd.Series:
    """One column of the logged blocks, typed as ``infer_objects`` types their values.

    Pieces all of text or all of whole numbers are joined in their type (the
    type inference would find: ``str``, or ``int64``), so no Python object is
    made per value (memory: a sixth of the ledger's peak).  Anything else
    (mixed types, objects, floats, text with no value) goes through Python
    objects and :meth:`pandas.Series.infer_objects`.

    Examples
    --------
    >>> _concat_column([pd.Series([1, 2], dtype="int8"), pd.Series([300])]).dtype
    dtype('int64')
    >>> _concat_column([pd.Series(["a", None], dtype="str")]).tolist()
    ['a', nan]
    >>> _concat_column([pd.Series([None], dtype="str")]).dtype
    dtype('float64')
    """
    joined = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
    if all(_fits_int64(p.dtype) for p in pieces):
        return joined.astype("int64").reset_index(drop=True)
    if all(p.dtype == "str" for p in pieces) and joined.notna().any():
        return joined.astype("str").reset_index(drop=True)
    values = np.concatenate([p.to_numpy(dtype=object) for p in pieces])
    return pd.Series(values, dtype=object).infer_objects()


def _logged(df: pd.DataFrame, mask) -> pd.DataFrame:
    """The rows of ``df`` at ``mask`` with only the columns the ledger records (memory).

    A ledger row needs the row number, ids and session (:meth:`CleaningLog.exclude`);
    copying every column of the rows a step removes would hold a tenth of the
    frame twice when the intake assessments are split off.
    """
    return df.loc[mask, [c for c in (SOURCE_ROW, PATIENT_ID, THERAPIST_ID, SESSION) if c in df]]


def _format_value(value) -> str:
    """A value as the user typed it: ``6.0`` → ``"6"``, ``2.5`` → ``"2.5"``."""
    if isinstance(value, float | np.floating) and np.isfinite(value):
        return f"{float(value):g}" if float(value).is_integer() else repr(float(value))
    return str(value)


def _problem_rows(df: pd.DataFrame, mask: pd.Series) -> list[int]:
    return [int(r) for r in df.loc[mask, SOURCE_ROW].tolist()]


def rows_kept(df: pd.DataFrame, removed) -> pd.DataFrame:
    """The rows of ``df`` not at the boolean mask ``removed``, a new frame.

    The memory the rule's own work freed (factorised ids, hash tables, masks)
    is given back first (:func:`helpers.validation.release_freed_memory`),
    so the copy of the kept rows, the largest allocation of a rule, does not
    come on top of it (at a million rows up to 90 MB of the step's peak).

    Examples
    --------
    >>> rows_kept(pd.DataFrame({"a": [1, 2, 3]}), pd.Series([False, True, False]))["a"].tolist()
    [1, 3]
    """
    release_freed_memory()
    return df.loc[~removed]


def exclude_missing_ids(df: pd.DataFrame, log: CleaningLog) -> pd.DataFrame:
    """Exclude records without a therapist id, patient id or session number.

    The therapist id is checked only when the frame has the column (not in a
    two-level study).  When sessions are given by date (a ``session_date``
    column), the date is checked instead of the number derived from it.
    """
    step = "missing identifiers"
    ids = [c for c in (THERAPIST_ID, PATIENT_ID) if c in df.columns]
    ids.append(SESSION_DATE if SESSION_DATE in df.columns else SESSION)
    missing = df[ids].isna()
    bad = missing.any(axis=1)
    reasons = [
        "missing " + ", ".join(c for c in missing.columns if missing.loc[i, c])
        for i in df.index[bad]
    ]
    log.exclude(_logged(df, bad), step, reasons)
    kept = rows_kept(df, bad)
    log.record_step(step, kept)
    return kept


def exclude_exact_duplicates(df: pd.DataFrame, log: CleaningLog) -> pd.DataFrame:
    """Exclude records identical to an earlier record in every column but the row number.

    Only rows that share a content hash with another row can be duplicates
    (:func:`_hash_candidates`); those few are compared value by value, so
    the whole table is never grouped on all its columns (memory).
    """
    step = "exact duplicates"
    positions = np.flatnonzero(_hash_candidates(df.drop(columns=[SOURCE_ROW])))
    candidates = df.iloc[positions]
    content = _groupable(candidates.drop(columns=[SOURCE_ROW]))
    group = content.groupby(list(content.columns), dropna=False, sort=False).ngroup()
    group = group.to_numpy()
    later = pd.Series(group).duplicated(keep="first").to_numpy()
    first_row = candidates[SOURCE_ROW].groupby(group).transform("first")
    dup = pd.Series(np.isin(np.arange(len(df)), positions[later]), index=df.index)
    dated = ", same session date" if SESSION_DATE in df.columns else ""
    reasons = [f"exact duplicate of row {int(r)}{dated}" for r in first_row[later]]
    log.exclude(_logged(df, dup), step, reasons)
    kept = rows_kept(df, dup)
    log.record_step(step, kept)
    return kept


def _groupable(content: pd.DataFrame) -> pd.DataFrame:
    """``content`` with float16 columns (compact item scores) as float32, which pandas groups by.

    Every float16 is a float32 exactly, so the groups are the same.

    Examples
    --------
    >>> _groupable(pd.DataFrame({"a": np.array([1, 2], dtype="float16")})).dtypes.tolist()
    [dtype('float32')]
    """
    halves = [c for c in content.columns if content[c].dtype == np.float16]
    return content.astype(dict.fromkeys(halves, np.float32)) if halves else content


def _hash_candidates(content: pd.DataFrame) -> np.ndarray:
    """Mask of the rows whose hash over every column another row shares.

    Rows equal in every column (missing equal to missing) hash alike, so a
    row with a hash of its own has no exact copy.  A collision only adds a
    candidate: :func:`exclude_exact_duplicates` compares the candidates' values.
    """
    combined = np.zeros(len(content), dtype=np.uint64)
    for column in content.columns:
        combined = combined * np.uint64(1_000_003) ^ _hash_column(content[column])
    return pd.Series(combined).duplicated(keep=False).to_numpy()


def _hash_column(values: pd.Series) -> np.ndarray:
    """One hash per cell, equal for values that group together (0 for object columns).

    Numbers are hashed as floats with ``-0.0`` as ``0.0`` and every missing
    value alike; mixed Python objects (where ``1 == 1.0 == True`` group
    together) are not hashed at all, which leaves the comparison to the values.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        return pd.util.hash_array(np.where(np.isnan(numbers), np.nan, numbers + 0.0))
    if values.dtype == object:
        return np.zeros(len(values), dtype=np.uint64)
    return pd.util.hash_pandas_object(values, index=False).to_numpy()


def resolve_conflicting_duplicates(
    df: pd.DataFrame, log: CleaningLog, policy: str = "exclude"
) -> pd.DataFrame:
    """Handle records of the same patient and session that disagree.

    Parameters
    ----------
    policy
        ``exclude`` every copy (default), ``keep_first`` in file order, or
        ``error``.
    """
    step = "conflicting duplicates"
    dup = df.duplicated([PATIENT_ID, SESSION], keep=False)
    if dup.any() and policy == "error":
        rows = df.loc[dup]
        raise StudyDataError(
            [
                Problem(
                    file=log.source,
                    column=f"{PATIENT_ID}, {SESSION}",
                    rows=_problem_rows(df, dup),
                    values=[
                        f"{p} session {s}"
                        for p, s in zip(rows[PATIENT_ID], rows[SESSION], strict=True)
                    ],
                    rule="one record per patient and session",
                    found=f"{int(dup.sum())} records share a patient and session"
                    + (" date" if SESSION_DATE in df.columns else "")
                    + " but differ in other values",
                    fix="correct the records in the source, or set "
                    "cleaning.conflicting_duplicates: exclude | keep_first",
                )
            ]
        )
    if policy == "keep_first":
        drop = df.duplicated([PATIENT_ID, SESSION], keep="first")
    elif policy in {"exclude", "error"}:
        drop = dup
    else:
        raise SettingsError(f"unknown conflicting_duplicates policy {policy!r}")
    pairs = df.loc[dup, [PATIENT_ID, SESSION, SOURCE_ROW]]  # not every column (memory)
    groups = pairs.groupby([PATIENT_ID, SESSION], sort=False)[SOURCE_ROW]
    rows_of = {key: sorted(int(r) for r in s) for key, s in groups}
    template = (
        "same session date as row(s) {rows} of the same patient, other values ({policy})"
        if SESSION_DATE in df.columns
        else "conflicts with row(s) {rows} for the same patient and session ({policy})"
    )
    reasons = [
        template.format(
            rows=", ".join(str(r) for r in rows_of[(p, s)] if r != int(src)), policy=policy
        )
        for p, s, src in zip(
            df.loc[drop, PATIENT_ID], df.loc[drop, SESSION], df.loc[drop, SOURCE_ROW], strict=True
        )
    ]
    log.exclude(_logged(df, drop), step, reasons)
    kept = rows_kept(df, drop)
    log.record_step(step, kept)
    return kept


def resolve_multiple_therapists(
    df: pd.DataFrame, log: CleaningLog, policy: str = "exclude"
) -> pd.DataFrame:
    """Handle patients who appear under more than one therapist.

    Parameters
    ----------
    policy
        ``exclude`` (default): exclude the patient.  ``keep_majority``: keep
        the records under the therapist with a strict majority of the
        patient's records, exclude the rest; without a strict majority
        exclude the patient.  ``error``: stop with a report.
    """
    step = "patients under several therapists"
    if THERAPIST_ID not in df.columns:
        log.record_step(f"{step}: not applicable (no therapist column)", df)
        return df
    counts = _pair_counts(df[PATIENT_ID], df[THERAPIST_ID])
    n_ther = counts.groupby(PATIENT_ID)[THERAPIST_ID].transform("size")
    multi = counts.loc[n_ther > 1]
    if multi.empty:
        log.record_step(step, df)
        return df
    if policy == "error":
        mask = df[PATIENT_ID].isin(multi[PATIENT_ID])
        raise StudyDataError(
            [
                Problem(
                    file=log.source,
                    column=THERAPIST_ID,
                    rows=_problem_rows(df, mask),
                    values=[
                        f"{p}: "
                        + ", ".join(
                            f"{t} ({n} records)"
                            for t, n in zip(g[THERAPIST_ID], g["n"], strict=True)
                        )
                        for p, g in multi.groupby(PATIENT_ID)
                    ],
                    rule="each patient is seen by one therapist",
                    found=f"{multi[PATIENT_ID].nunique()} patient(s) under more than one therapist",
                    fix="correct the therapist ids in the source, or set "
                    "cleaning.multiple_therapists: keep_majority | exclude",
                )
            ]
        )
    if policy not in {"keep_majority", "exclude"}:
        raise SettingsError(f"unknown multiple_therapists policy {policy!r}")
    decisions = _therapist_decisions(multi, policy)
    at = np.flatnonzero(df[PATIENT_ID].isin(decisions.index))
    involved = df[[PATIENT_ID, THERAPIST_ID]].iloc[at]
    kept_therapist = involved[PATIENT_ID].map(decisions["keep"])
    out = kept_therapist.isna() | (involved[THERAPIST_ID] != kept_therapist)
    drop = np.zeros(len(df), dtype=bool)
    drop[at[out.to_numpy()]] = True  # by position: no hash table of the index (memory)
    drop = pd.Series(drop, index=df.index)
    reasons = involved.loc[out.to_numpy(), PATIENT_ID].map(decisions["reason"])
    log.exclude(_logged(df, drop), step, reasons.tolist())
    kept = rows_kept(df, drop)
    log.record_step(step, kept)
    return kept


def _pair_counts(patients: pd.Series, therapists: pd.Series) -> pd.DataFrame:
    """Records per (patient, therapist), as ``groupby([patient, therapist]).size()``.

    One row per pair, sorted by patient and therapist, with columns
    ``patient_id``, ``therapist_id`` and ``n``; rows missing either id are
    left out.  The ids are factorised once and the pairs counted as integer
    keys (fewer than rows² < 2**63), so only the distinct pairs are ever
    text (memory: grouping a million rows by two text columns took 100 MB).

    Examples
    --------
    >>> p = pd.Series(["b", "a", "b", "b"]); t = pd.Series(["u", "t", "v", "u"])
    >>> _pair_counts(p, t).values.tolist()
    [['a', 't', 1], ['b', 'u', 2], ['b', 'v', 1]]
    """
    keys, patient_ids = pd.factorize(patients)
    therapist_codes, therapist_ids = pd.factorize(therapists)
    known = (keys >= 0) & (therapist_codes >= 0)  # as groupby: a missing id is no group
    keys *= len(therapist_ids)  # keys is new: computed in place (memory)
    keys += therapist_codes
    del therapist_codes
    pairs, n = np.unique(keys if known.all() else keys[known], return_counts=True)
    patient, therapist = np.divmod(pairs, len(therapist_ids))
    counts = pd.DataFrame(
        {
            PATIENT_ID: patient_ids.take(patient).to_numpy(),
            THERAPIST_ID: therapist_ids.take(therapist).to_numpy(),
            "n": n.astype("int64"),
        }
    )
    counts = counts.astype({PATIENT_ID: patients.dtype, THERAPIST_ID: therapists.dtype})
    return counts.sort_values([PATIENT_ID, THERAPIST_ID], kind="stable", ignore_index=True)


def _therapist_decisions(multi: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Per patient under several therapists: the therapist kept (or none) and the reason.

    ``multi`` has one row per (patient, therapist) with its record count ``n``.
    """
    rows = []
    for patient, g in multi.groupby(PATIENT_ID, sort=False):
        total = int(g["n"].sum())
        top = g.loc[g["n"].idxmax()]
        listing = ", ".join(f"{t} ({n})" for t, n in zip(g[THERAPIST_ID], g["n"], strict=True))
        if policy == "keep_majority" and 2 * int(top["n"]) > total:
            keep = top[THERAPIST_ID]
            reason = (
                f"patient recorded under several therapists [{listing}]; "
                f"kept the majority therapist {keep}"
            )
        else:
            keep = None
            why = "no strict majority" if policy == "keep_majority" else "policy exclude"
            reason = (
                f"patient recorded under several therapists [{listing}]; patient excluded ({why})"
            )
        rows.append((patient, keep, reason))
    return pd.DataFrame(rows, columns=[PATIENT_ID, "keep", "reason"]).set_index(PATIENT_ID)


def set_out_of_range_missing(
    df: pd.DataFrame,
    log: CleaningLog,
    ranges: Mapping[str, tuple[float, float]],
    policy: str = "set_missing",
    *,
    originals: Mapping[str, tuple[pd.Series, str]] | None = None,
) -> pd.DataFrame:
    """Set values outside their allowed range to missing and log the originals.

    Parameters
    ----------
    ranges
        Column name → (lowest, highest) allowed value, from the instruments.
        Item columns must also hold whole numbers; a fractional item value
        counts as out of range.
    policy
        ``set_missing`` (default) or ``error``.
    originals
        Columns converted before this check (item means turned into totals,
        :func:`helpers.scales.convert_item_means`) → (their values before the
        conversion, how they were converted): these values are logged and
        reported, and the reason says how the column was converted.
    """
    step = "out-of-range values"
    out = df.copy(deep=False)  # copy-on-write: only the columns set here are copied
    problems = []
    for column, (low, high) in ranges.items():
        if column not in out.columns:
            continue
        values = widen_half(out[column])  # items may be float16 (slow to compare)
        bad = values.notna() & ((values < low) | (values > high))
        if "_item" in column:
            bad |= values.notna() & (np.floor(values) != values)
        if not bad.any():
            continue
        shown = out.loc[bad]
        note = ""
        if originals is not None and column in originals:
            before, how = originals[column]
            shown = shown.assign(**{column: before.loc[shown.index]})
            note = f" ({how})"
        if policy == "error":
            problems.append(
                Problem(
                    file=log.source,
                    column=column,
                    rows=_problem_rows(out, bad),
                    values=shown[column].tolist(),
                    rule=f"values from {low:g} to {high:g}"
                    + (" in whole numbers" if "_item" in column else "")
                    + note,
                    found=f"{int(bad.sum())} value(s) outside that range",
                    fix="correct the values in the source, or set "
                    "cleaning.out_of_range: set_missing",
                )
            )
            continue
        log.change_value(
            shown,
            column,
            None,
            step,
            f"outside the allowed range {low:g}–{high:g}{note}",
        )
        out.loc[bad, column] = np.nan
    if problems:
        raise StudyDataError(problems)
    log.record_step(step, out)
    return out


def split_intake(
    df: pd.DataFrame, log: CleaningLog, intake_session: int | None, outcome_column: str
) -> tuple[pd.DataFrame, pd.Series]:
    """Separate intake-assessment records from treatment sessions.

    Returns the treatment-session records and a Series of intake scores indexed
    by patient id (the scored ``outcome_column`` at the intake session).
    """
    step = "intake assessments"
    if intake_session is None:
        log.record_step(step, df)
        return df, pd.Series(dtype=float, name="outcome_intake")
    is_intake = df[SESSION] == intake_session
    intake = df.loc[is_intake, [PATIENT_ID, outcome_column]].set_index(PATIENT_ID)[outcome_column]
    intake = intake.rename("outcome_intake")
    log.use_as_intake(_logged(df, is_intake), step)
    kept = rows_kept(df, is_intake)
    log.record_step(step, kept)
    return kept, intake


def exclude_invalid_sessions(
    df: pd.DataFrame, log: CleaningLog, max_session: int | None = None
) -> pd.DataFrame:
    """Exclude records whose session number is zero, negative or above ``max_session``.

    Parameters
    ----------
    max_session : int, optional
        The highest plausible session number (``cleaning.max_session``);
        ``None`` = no upper limit.
    """
    step = "invalid session numbers"
    too_high = df[SESSION] > max_session if max_session is not None else df[SESSION] != df[SESSION]
    bad = (df[SESSION] <= 0) | too_high
    reasons = [
        f"session number {s:g} is above cleaning.max_session ({max_session})"
        if high
        else f"session number {s:g} is not a positive integer"
        for s, high in zip(df.loc[bad, SESSION], too_high[bad], strict=True)
    ]
    log.exclude(_logged(df, bad), step, reasons)
    kept = rows_kept(df, bad)
    log.record_step(step, kept)
    return kept


def exclude_empty_records(
    df: pd.DataFrame, log: CleaningLog, score_columns: list[str]
) -> pd.DataFrame:
    """Exclude records with no score in any of ``score_columns`` (a missed questionnaire)."""
    step = "records without scores"
    bad = df[score_columns].isna().all(axis=1)
    log.exclude(_logged(df, bad), step, f"no score in {', '.join(score_columns)}")
    kept = rows_kept(df, bad)
    log.record_step(step, kept)
    return kept


def exclude_patients_without_outcome(
    df: pd.DataFrame, log: CleaningLog, outcome_column: str = "outcome"
) -> pd.DataFrame:
    """Exclude every record of patients with no outcome score at any session."""
    step = "patients without any outcome"
    has_outcome = df[outcome_column].notna().groupby(df[PATIENT_ID]).transform("any")
    bad = ~has_outcome
    log.exclude(_logged(df, bad), step, f"patient has no {outcome_column} score at any session")
    kept = rows_kept(df, bad)
    log.record_step(step, kept)
    return kept


def flag_few_sessions(
    df: pd.DataFrame,
    log: CleaningLog,
    min_sessions: int,
    columns: tuple[str, str] = ("alliance", "outcome"),
) -> pd.DataFrame:
    """Add ``within_eligible``: the patient has at least ``min_sessions`` complete sessions.

    A complete session has both ``columns`` scored.  Patients below the
    threshold are kept (they inform between-patient estimates) and flagged.
    """
    step = f"fewer than {min_sessions} complete sessions (flagged, kept)"
    complete = df[list(columns)].notna().all(axis=1)
    n_complete = complete.groupby(df[PATIENT_ID]).transform("sum")
    out = with_columns(df, {"within_eligible": n_complete >= min_sessions})  # a new frame
    log.record_step(step, out)
    return out


def require_sessions(df: pd.DataFrame, log: CleaningLog) -> None:
    """Stop when no record is left to analyse, saying what removed them.

    Without this check an input whose scores are all empty would "clean" to
    0 sessions of 0 patients and fail later, far from the cause.

    Raises
    ------
    StudyDataError
        When ``df`` is empty; ``found`` names the steps that excluded the
        records, the largest first.
    """
    if not df.empty:
        return
    steps: dict[str, int] = {}
    for (step, _), n in log.counts.items():
        steps[step] = steps.get(step, 0) + n
    ranked = sorted(steps.items(), key=lambda item: -item[1])
    why = "; ".join(f"{n} by '{step}'" for step, n in ranked) or "no records"
    raise StudyDataError(
        Problem(
            file=log.source or None,
            column=None,
            rule="at least one session with an alliance or outcome score",
            found=f"nothing usable was found: all {log.n_records_in} records were "
            f"excluded or used as intake ({why})",
            fix="check that the config names the columns holding the scores (alliance, "
            "outcome) and that read.missing_codes does not list real values; "
            "the steps named above say where the records went",
        ),
        f"No usable data in {log.source or 'the study'}.",
    )
