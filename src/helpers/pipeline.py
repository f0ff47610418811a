"""The cleaning step, end to end: read → map → clean → score → derive → write.

:func:`run_cleaning` is what notebook ``01_clean.ipynb`` and the command
``python -m helpers clean`` both run, so the two cannot disagree.  Stages:

1. read the file (:func:`helpers.loading.read_table`) and map it onto the
   canonical long schema (:func:`helpers.loading.map_to_canonical`);
2. apply the logged cleaning rules of :mod:`helpers.cleaning`; before the
   range check, stop when most of a score column is out of range and convert
   item means given as totals (``total_scale: mean``) to totals
   (:mod:`helpers.scales`);
3. score every instrument from its items (:mod:`helpers.scoring`), or check
   the range of totals given directly;
4. split off the intake assessment, drop unusable records, flag patients with
   too few sessions for within-patient analysis;
5. derive the model features (:func:`helpers.features.add_model_features`);
6. validate the result against the processed schema
   (:func:`helpers.schema.validate_processed`) and write it, with the
   exclusion ledger, the value-change log, the flow table and a manifest.

Outputs (in ``out_dir``)
------------------------
``sessions.parquet`` / ``sessions.csv``
    One row per patient-session: identifiers, scores, features.
``patients.csv``
    One row per patient: intake and last outcome, change, reliable change
    category, mean and early alliance, number of sessions.
``exclusion_ledger.csv``
    Every input record that is not a row of ``sessions`` (excluded, or used
    as the intake assessment), with the step and the reason.
``skipped_lines.csv``
    Every record of a CSV/TSV file the parser read but that holds no data row
    (a blank line, a line of separators only, a line above the header): its
    line number and why (:class:`FileLines`).  Header only for other formats
    or when no line was skipped.  The file's records reconcile as
    records of the file = header + skipped lines + data rows.
``id_changes.csv``
    Every id spelling normalised when the file was mapped (whitespace or
    zero-width characters stripped, leading zeros unified), as written
    (``repr``, so spaces show), the id it became, its number of records and
    the other spellings that became the same id
    (:func:`helpers.ids.id_report`).  Header only when no id changed.
``value_changes.csv``
    Every value the cleaning altered (out-of-range values set to missing),
    with its original.
``flow.csv``
    Records, patients and therapists after each step (CONSORT-style).  For a
    CSV/TSV file the first step, "lines of the file: …", counts the file's
    records (header, data rows and skipped lines, said in the step's name)
    before "records read".  In a
    two-level study (no ``columns.therapist_id``) ``therapists_kept`` is
    empty (not identified, rather than 0) and the multiple-therapists step
    reads "patients under several therapists: not applicable (no therapist
    column)".
``session_dates.csv``
    Only when sessions are given by date (``columns.session_date``): counts
    of dated records, same-date records, intervals between sessions and
    intervals longer than ``cleaning.max_gap_days``, and the median interval
    (:func:`helpers.session_dates.session_date_summary`).  It holds no date,
    and neither does any other output: the dates are dropped once the
    duplicate rules have used them.
    Records, patients and therapists after each step (CONSORT-style).
``conversions.csv``
    Every column converted from an item mean to a total (``total_scale:
    mean``): from, to, factor and number of values (header only when none).
``manifest.json``
    Input and output SHA-256, the config, package versions and the commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from helpers import cleaning as cl
from helpers import scales, schema
from helpers.config import StudyConfig, load_config
from helpers.errors import DataInputError
from helpers.features import add_model_features
from helpers.ids import describe_id_report, empty_id_report
from helpers.loading import RawTable, id_report, map_to_canonical, read_table
from helpers.provenance import write_manifest
from helpers.safety import atomic_path, check_output_folder, run_lock
from helpers.scoring import Instrument, classify_change, get_instrument, score_items
from helpers.session_dates import days_since_first_session, session_date_summary
from helpers.validation import display_path, release_freed_memory, with_columns

#: Columns of ``skipped_lines.csv`` (:func:`skipped_frame`).
SKIPPED_LINES_COLUMNS = ["line", "reason"]


@dataclass(frozen=True)
class FileLines:
    """How a CSV/TSV file's records were read: the header, data rows and skipped lines.

    Attributes
    ----------
    records
        The file's records (line breaks outside quoted cells), counted
        independently of the parser (:attr:`helpers.loading.RawTable.physical_records`).
    data_rows
        The records read as data rows.
    skipped
        Line number → why the record starting there holds no data row
        (:attr:`helpers.loading.RawTable.skipped_lines`).
    """

    records: int
    data_rows: int
    skipped: dict[int, str]

    @classmethod
    def from_raw(cls, raw: RawTable) -> FileLines | None:
        """The accounting of ``raw``; ``None`` for formats without lines (Excel, SPSS …)."""
        if raw.physical_records is None:
            return None
        return cls(raw.physical_records, len(raw.data), dict(raw.skipped_lines))

    def reconcile(self, source: str = "") -> None:
        """Assert records of the file = 1 header + skipped lines + data rows."""
        if self.records != 1 + len(self.skipped) + self.data_rows:
            raise cl.LedgerMismatchError(
                f"lines do not reconcile for {source}: {self.records} records in the file, "
                f"1 header + {len(self.skipped)} skipped + {self.data_rows} data rows"
            )

    @property
    def step(self) -> str:
        """The flow step's name, with the counts it stands for."""
        return (
            f"lines of the file: 1 header, {self.data_rows} data rows, "
            f"{len(self.skipped)} skipped (skipped_lines.csv)"
        )

    def flow_row(self) -> dict[str, object]:
        """The first row of the flow table: the file's records, before any is read as data."""
        return {
            "step": self.step,
            "records_kept": self.records,
            "patients_kept": pd.NA,
            "therapists_kept": pd.NA,
            "records_excluded_here": 0,
            "records_excluded_total": 0,
            "intake_records": 0,
        }

    def summary(self) -> str:
        """One line for the command line ("" when no line was skipped)."""
        if not self.skipped:
            return ""
        by_reason: dict[str, list[int]] = {}
        for line, reason in sorted(self.skipped.items()):
            by_reason.setdefault(reason, []).append(line)
        parts = [
            f"{len(lines)} {reason} (line{'s' if len(lines) > 1 else ''} "
            f"{', '.join(map(str, lines[:10]))}{', …' if len(lines) > 10 else ''})"
            for reason, lines in by_reason.items()
        ]
        return (
            f"lines of the file not read as data: {'; '.join(parts)}; "
            f"{self.records} records = 1 header + {len(self.skipped)} skipped + "
            f"{self.data_rows} data rows (see skipped_lines.csv)."
        )

    def to_dict(self) -> dict[str, int]:
        """The counts, for the manifest."""
        return {
            "records": self.records,
            "header": 1,
            "data_rows": self.data_rows,
            "skipped_lines": len(self.skipped),
        }


def skipped_frame(lines: FileLines | None) -> pd.DataFrame:
    """``skipped_lines.csv``: one row per skipped line (header only when none or ``None``)."""
    skipped = {} if lines is None else lines.skipped
    frame = pd.DataFrame(
        {"line": list(skipped), "reason": list(skipped.values())}, columns=SKIPPED_LINES_COLUMNS
    )
    return frame.astype({"line": "int64", "reason": "str"}).sort_values("line", kind="stable")


@dataclass
class CleaningResult:
    """Everything the cleaning step produced.

    Attributes
    ----------
    config
        The study config used.
    sessions
        The processed session-level data (one row per patient-session).
    patients
        The patient-level table.
    log
        The :class:`~helpers.cleaning.CleaningLog` (ledger, value changes, flow).
    n_records_in
        Records that entered cleaning.
    outputs
        Output name → path of every file written (empty when nothing was written).
    session_dates
        When sessions are given by date: the table of
        :func:`helpers.session_dates.session_date_summary` (no dates in it);
        ``None`` when sessions are numbered in the file.
    conversions
        Columns converted from item means to totals
        (:func:`helpers.scales.convert_item_means`); empty when none.
    values_read
        Canonical column → its non-missing values in the data as read (before
        cleaning): the denominators of :meth:`values_lost`.
    id_changes
        The id spellings normalised when the file was mapped, with the
        collisions that caused (:func:`helpers.loading.id_report`); empty
        when no id changed.
    file_lines
        How a CSV/TSV file's records were read (:class:`FileLines`);
        ``None`` for other formats or when cleaning a frame directly.
    """

    config: StudyConfig
    sessions: pd.DataFrame
    patients: pd.DataFrame
    log: cl.CleaningLog
    n_records_in: int
    outputs: dict[str, Path] = field(default_factory=dict)
    session_dates: pd.DataFrame | None = None
    conversions: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=scales.CONVERSION_COLUMNS)
    )
    values_read: dict[str, int] = field(default_factory=dict)
    id_changes: pd.DataFrame = field(default_factory=lambda: empty_id_report())
    file_lines: FileLines | None = None

    @property
    def skipped_lines(self) -> pd.DataFrame:
        """The file's lines that hold no data row (``skipped_lines.csv``)."""
        return skipped_frame(self.file_lines)

    @property
    def flow(self) -> pd.DataFrame:
        """Records, patients and therapists after each step."""
        return self.log.flow_frame()

    @property
    def ledger(self) -> pd.DataFrame:
        """The exclusion ledger."""
        return self.log.ledger_frame()

    @property
    def value_changes(self) -> pd.DataFrame:
        """Every altered value with its original."""
        return self.log.value_changes_frame()

    def reconciliation(self) -> pd.DataFrame:
        """Records in = kept + intake + excluded, as a small table (asserted on creation)."""
        rows = [
            ("records in", self.n_records_in),
            ("kept as treatment sessions", len(self.sessions)),
            ("used as intake assessments", self.log.n_fate("intake")),
            ("excluded", self.log.n_fate("excluded")),
        ]
        return pd.DataFrame(rows, columns=["", "records"]).set_index("")

    def values_lost(self) -> pd.DataFrame:
        """Values set to missing, per column and reason.

        Returns
        -------
        pandas.DataFrame
            One row per (column, reason), columns :data:`VALUES_LOST_COLUMNS`:
            the canonical column, the user's column, the reason, the number
            of values set to missing (int) and their share of the column's
            non-missing values in the data as read (float, 0–1).  Empty (with
            these columns) when no value was set to missing.
        """
        changes = self.value_changes
        lost = changes.loc[changes["new_value"].isna()]
        counts = lost.groupby(["column", "reason"], sort=False).size()
        user = {canonical: name for name, canonical in self.config.source_columns().items()}
        rows = []
        for (column, reason), n in counts.items():
            total = self.values_read.get(column, 0)
            share = n / total if total else np.nan
            rows.append((column, user.get(column, column), reason, int(n), share))
        table = pd.DataFrame(rows, columns=VALUES_LOST_COLUMNS)
        order = {c: i for i, c in enumerate(self.config.canonical_columns())}
        table = table.sort_values("column", key=lambda c: c.map(order), kind="stable")
        dtypes = dict(zip(VALUES_LOST_COLUMNS, VALUES_LOST_DTYPES, strict=True))
        return table.astype(dtypes).reset_index(drop=True)

    def _add_conversions(self, lines: list[str]) -> list[str]:
        """The summary lines with the item-mean conversions said (unchanged when none)."""
        n = len(self.conversions)
        if not n:
            return lines
        first = lines[0].removesuffix(".") + (
            f"; {n} {'column' if n == 1 else 'columns'} converted from item means to totals."
        )
        converted = [
            f"  {c['source column']} ({c['config key']}: mean): {c['from']} × {c['factor']}"
            f" = {c['to']}, {c['values converted']:,} values converted"
            for c in self.conversions.to_dict("records")
        ]
        return [first, *converted, *lines[1:]]

    def summary(self) -> str:
        """A few lines for the command line."""
        s = self.sessions
        kept = f"{len(s)} sessions of {s[schema.PATIENT_ID].nunique()} patients"
        if schema.THERAPIST_ID in s.columns:
            kept += f" and {s[schema.THERAPIST_ID].nunique()} therapists kept"
        else:
            kept += " kept; therapists not identified (two-level study)"
        lines = [
            f"study {self.config.study}: {self.n_records_in} records in; {kept}; "
            f"{self.log.n_fate('intake')} intake records; "
            f"{self.log.n_fate('excluded')} records excluded; "
            f"{len(self.value_changes)} values set to missing.",
        ]
        if self.file_lines is not None and self.file_lines.skipped:
            n = len(self.file_lines.skipped)
            lines[0] = lines[0].removesuffix(".") + (
                f"; {n} {'line' if n == 1 else 'lines'} of the file skipped."
            )
            lines.append(self.file_lines.summary())
        if self.session_dates is not None:
            lines.append(self._session_dates_line())
        if not self.id_changes.empty:
            lines.append(describe_id_report(self.id_changes))
        lines = self._add_conversions(lines)
        for name, path in self.outputs.items():
            lines.append(f"  {name}: {display_path(path)}")
        return "\n".join(lines)

    def _session_dates_line(self) -> str:
        """One line on the session dates (empty when sessions are numbered in the file)."""
        table = self.session_dates
        if table is None:
            return ""
        dated, _, patients, same_date, intervals, long, median = table["value"]
        gap = self.config.cleaning.max_gap_days
        return (
            f"session numbers from dates: {dated} dated records of {patients} patients; "
            f"{same_date} records on the same date as another of the patient's; "
            f"{long} of {intervals} intervals between sessions longer than {gap} days"
            + ("." if median is None else f"; median interval {median:g} days.")
        )


#: Columns of :meth:`CleaningResult.values_lost`, and their dtypes.
VALUES_LOST_COLUMNS = [
    "column",
    "source column",
    "reason",
    "values set to missing",
    "share of non-missing values",
]
VALUES_LOST_DTYPES = ["str", "str", "str", "int64", "float64"]


def value_ranges(config: StudyConfig) -> dict[str, tuple[float, float]]:
    """Allowed range of every canonical item and total column the config defines."""
    ranges: dict[str, tuple[float, float]] = {}
    measures = {f"alliance_{r}": m for r, m in config.alliance.items()}
    measures[schema.OUTCOME] = config.outcome
    for prefix, measure in measures.items():
        inst = get_instrument(measure.instrument)
        if measure.has_items:
            for i in range(1, inst.n_items + 1):
                column = (
                    schema.outcome_item_column(i)
                    if prefix == schema.OUTCOME
                    else f"{prefix}_item{i:02d}"
                )
                ranges[column] = (inst.item_min, inst.item_max)
        else:
            ranges[prefix] = (inst.total_min, inst.total_max)
    if config.outcome.intake_total is not None:
        inst = get_instrument(config.outcome.instrument)
        ranges[schema.OUTCOME_INTAKE] = (inst.total_min, inst.total_max)
    return ranges


def score_measures(df: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Replace item columns by instrument totals and subscales.

    Alliance scores become ``alliance_<rater>`` and ``alliance_<rater>_<subscale>``;
    the outcome becomes ``outcome`` (subscales ``outcome_<subscale>``).  Totals
    given directly are kept as they are.  Also adds ``alliance`` (the primary
    rater's total) and, per scored instrument, ``<prefix>_n_missing_items`` and
    ``<prefix>_prorated``.
    """
    out = df  # every step makes a new frame (with_columns): the input is never modified
    measures = {f"alliance_{r}": m for r, m in config.alliance.items()}
    measures[schema.OUTCOME] = config.outcome
    for prefix, measure in measures.items():
        if not measure.has_items:
            continue
        inst = get_instrument(measure.instrument)
        if prefix == schema.OUTCOME:
            item_cols = [schema.outcome_item_column(i) for i in range(1, inst.n_items + 1)]
        else:
            item_cols = [f"{prefix}_item{i:02d}" for i in range(1, inst.n_items + 1)]
        scores = _score_in_slices(out[item_cols], inst)
        added = {prefix: scores["total"]}
        added |= {f"{prefix}_{name}": scores[name] for name in inst.subscale_names}
        added[f"{prefix}_n_missing_items"] = scores["n_missing"]
        added[f"{prefix}_prorated"] = scores["prorated"]
        out = with_columns(out.drop(columns=item_cols), added)
    return with_columns(out, {schema.ALLIANCE: out[f"alliance_{config.primary_alliance}"]})


#: Rows scored at a time by :func:`_score_in_slices`.
SCORE_SLICE_ROWS = 1 << 17


def _score_in_slices(items: pd.DataFrame, inst: Instrument) -> pd.DataFrame:
    """:func:`helpers.scoring.score_items` of ``items``, :data:`SCORE_SLICE_ROWS` rows at a time.

    Scoring works row by row on whole numbers (exact in any order of
    summation), so the slices give the same scores; the float64 item matrix
    and its temporaries are then a slice's size, not several copies of every
    item (about 200 MB at a million rows).  When a slice holds a problem, the
    whole table is scored again so the message counts and names every row.
    """
    if len(items) <= SCORE_SLICE_ROWS:
        return score_items(items, inst)
    try:
        parts = [
            score_items(items.iloc[start : start + SCORE_SLICE_ROWS], inst)
            for start in range(0, len(items), SCORE_SLICE_ROWS)
        ]
    except DataInputError:
        parts = None
    if parts is None:
        return score_items(items, inst)  # raises, naming every row
    return pd.concat(parts)


def patient_table(
    sessions: pd.DataFrame, config: StudyConfig, rows: _PatientRows | None = None
) -> pd.DataFrame:
    """One row per patient: sessions, intake and last outcome, change category, alliance.

    ``outcome_last`` is the outcome at the patient's last session with an
    outcome score (the post-treatment score of a completer, the last
    observation of a drop-out).  The change category follows Jacobson & Truax
    (1991) with the instrument's cited constants.  ``rows`` are
    :func:`_patient_rows` of ``sessions`` when already known (the cleaning
    finds them before the features are added: memory).
    """
    keep = [schema.THERAPIST_ID, schema.MODALITY, *config.covariates]
    keep += [
        schema.OUTCOME_INTAKE,
        "alliance_between",
        "alliance_early",
        "alliance_therapist_mean",
        "alliance_patient_dev",
        "within_eligible",
    ]
    keep = [c for c in keep if c in sessions.columns]  # two-level: no therapist columns
    rows = _patient_rows(sessions) if rows is None else rows
    used = list(dict.fromkeys([schema.PATIENT_ID, schema.SESSION, schema.OUTCOME, *keep]))
    last = sessions[used].iloc[rows.last_scored].set_index(schema.PATIENT_ID)
    first = sessions[used].iloc[rows.first].set_index(schema.PATIENT_ID)
    table = first[keep].rename(columns={"alliance_between": "alliance_mean"})
    at = int(schema.THERAPIST_ID in table.columns)
    table.insert(at, "n_sessions", rows.n_sessions)
    table.insert(at + 1, "last_session", sessions[schema.SESSION].array[rows.last])
    table["outcome_last"] = last[schema.OUTCOME]
    table["outcome_last_session"] = last[schema.SESSION]
    table["improvement"] = table[schema.OUTCOME_INTAKE] - table["outcome_last"]
    inst = get_instrument(config.outcome.instrument)
    if inst.cutoff is not None:
        change = classify_change(table[schema.OUTCOME_INTAKE], table["outcome_last"], inst)
        table["rci"] = change["rci"]
        table["change_category"] = change["category"]
    return table.reset_index()


@dataclass(frozen=True)
class _PatientRows:
    """Positions of each patient's rows in a session table, patients in sorted id order.

    Attributes
    ----------
    first, last : numpy.ndarray
        Position of each patient's lowest- and highest-numbered session.
    last_scored : numpy.ndarray
        Position of the highest-numbered session with an outcome score, for
        the patients who have one.
    n_sessions : numpy.ndarray
        Each patient's number of rows.
    """

    first: np.ndarray
    last: np.ndarray
    last_scored: np.ndarray
    n_sessions: np.ndarray


def _patient_rows(sessions: pd.DataFrame) -> _PatientRows:
    """Each patient's first, last and last scored session rows (:class:`_PatientRows`).

    Equivalent to sorting by patient and session and taking a grouped
    ``head(1)``, ``tail(1)`` and ``size()``, but the ids are factorised once
    (sorted, as ``groupby`` orders them) and only row positions are sorted, so
    no column of a million-row table is copied or grouped by text (memory).
    Rows without a patient id are left out, as ``groupby`` leaves them out.

    Examples
    --------
    >>> s = pd.DataFrame({"patient_id": ["b", "a", "b", "a"], "session": [2, 1, 1, 2],
    ...                   "outcome": [np.nan, 5.0, 7.0, 6.0]})
    >>> rows = _patient_rows(s)
    >>> rows.first.tolist(), rows.last.tolist(), rows.last_scored.tolist()
    ([1, 2], [3, 0], [3, 2])
    """
    codes, _ = pd.factorize(sessions[schema.PATIENT_ID], sort=True)
    numbers = sessions[schema.SESSION].to_numpy(dtype="float64", na_value=np.nan)
    order = np.lexsort((numbers, codes))
    order = order[codes[order] >= 0]  # code -1: no patient id
    grouped = codes[order]
    starts = np.flatnonzero(np.diff(grouped, prepend=-2))
    ends = np.append(starts[1:], len(order)) - 1
    scored = order[sessions[schema.OUTCOME].notna().to_numpy()[order]]
    scored_codes = codes[scored]
    last_scored = scored[np.flatnonzero(np.diff(scored_codes, append=-2))]
    return _PatientRows(order[starts], order[ends], last_scored, ends - starts + 1)


def _attach_intake(
    df: pd.DataFrame, intake: pd.Series, config: StudyConfig, log: cl.CleaningLog
) -> pd.DataFrame:
    """``df`` with ``outcome_intake``: from the intake session, the column as given, or NaN.

    A new frame (:func:`helpers.validation.with_columns`); ``df`` is not modified.
    """
    if config.outcome.intake_session is not None:
        values = df[schema.PATIENT_ID].map(intake).astype("float64")
        return with_columns(df, {schema.OUTCOME_INTAKE: values})
    if schema.OUTCOME_INTAKE not in df.columns:
        return with_columns(df, {schema.OUTCOME_INTAKE: np.full(len(df), np.nan)})
    # given as a column: one value per patient (take the first non-missing; differing
    # values are a data problem, reported through the value-change log)
    firsts = df.groupby(schema.PATIENT_ID)[schema.OUTCOME_INTAKE].transform("first")
    differs = df[schema.OUTCOME_INTAKE].notna() & (df[schema.OUTCOME_INTAKE] != firsts)
    if differs.any():
        log.change_value(
            df.loc[differs],
            schema.OUTCOME_INTAKE,
            "patient's first intake value",
            "intake assessments",
            "intake total differs between a patient's rows",
        )
    return with_columns(df, {schema.OUTCOME_INTAKE: firsts})


def clean_study(
    canonical: pd.DataFrame,
    config: StudyConfig,
    source: str = "",
    id_changes: pd.DataFrame | None = None,
    file_lines: FileLines | None = None,
) -> CleaningResult:
    """Clean, score and derive features from a canonical long frame.

    Parameters
    ----------
    canonical
        From :func:`helpers.loading.map_to_canonical`; not modified.
    config
        The study config (cleaning policies, instruments, intake).
    source
        The input file's name, for messages and the ledger.
    id_changes
        The ids normalised when mapping (:func:`helpers.loading.id_report`),
        kept in the result and said in its summary.
    file_lines
        How the file's records were read (:class:`FileLines`): reconciled,
        and the first step of the flow.
    """
    policy = config.cleaning
    n_records = len(canonical)
    values_read = {c: int(n) for c, n in canonical.notna().sum().items()}
    log = cl.CleaningLog(n_records, source=source, therapists=config.has_therapists)
    if file_lines is not None:
        file_lines.reconcile(source)
        log.flow.append(file_lines.flow_row())
    dates, frame = _session_dates(canonical, config)
    del canonical  # this function's reference (the caller may hold none): memory
    frame = _compact_items(frame, config)
    log.record_step("records read", frame)
    df = cl.exclude_missing_ids(frame, log)
    del frame  # each step returns a new frame; _released(df) frees the one it replaced
    df = cl.exclude_exact_duplicates(_released(df), log)
    df = cl.resolve_conflicting_duplicates(_released(df), log, policy.conflicting_duplicates)
    df = df.drop(columns=[schema.SESSION_DATE], errors="ignore")  # no date goes further
    df = cl.resolve_multiple_therapists(_released(df), log, policy.multiple_therapists)
    columns = scales.score_columns(config)
    scales.check_column_scales(_released(df), columns, source)
    df, conversions, originals = scales.convert_item_means(df, columns)
    df = cl.set_out_of_range_missing(
        df, log, value_ranges(config), policy.out_of_range, originals=originals
    )
    df, wide = compact_numbers(score_measures(df, config), keep=[schema.SOURCE_ROW])
    intake_session = config.outcome.intake_session
    df, intake = cl.split_intake(_released(df), log, intake_session, schema.OUTCOME)
    df = cl.exclude_invalid_sessions(_released(df), log, policy.max_session)
    score_columns = [f"alliance_{r}" for r in config.alliance] + [schema.OUTCOME]
    df = cl.exclude_empty_records(_released(df), log, score_columns)
    df = cl.exclude_patients_without_outcome(_released(df), log, schema.OUTCOME)
    cl.require_sessions(df, log)
    df = _attach_intake(_released(df), intake, config, log)
    df = cl.flag_few_sessions(df, log, policy.min_sessions_within)
    whole = [c for c in (schema.SESSION, schema.DAYS_SINCE_FIRST) if c in df.columns]
    df = df.astype(dict.fromkeys(whole, "int64"))
    keys = [c for c in (schema.THERAPIST_ID, schema.PATIENT_ID, schema.SESSION) if c in df]
    df = df.sort_values(keys, kind="stable")
    therapist = schema.THERAPIST_ID if config.has_therapists else None
    rows = _patient_rows(_released(df))  # the features keep the rows and their order
    df = add_model_features(_released(df), early_session=policy.early_session, therapist=therapist)
    df = _released(df.astype(wide).reset_index(drop=True))  # the compact columns as they were
    schema.validate_processed(df, source=source)
    patients = patient_table(_released(df), config, rows)
    log.reconcile(len(df))
    return CleaningResult(
        config,
        df,
        patients,
        log,
        n_records,
        conversions=conversions,
        values_read=values_read,
        session_dates=dates,
        id_changes=id_changes if id_changes is not None else empty_id_report(),
        file_lines=file_lines,
    )


def _released(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``, after the memory of the frames it replaced is given back to the system.

    Called on each step's input, once the step before has replaced its frame
    (:func:`helpers.validation.release_freed_memory`): the step's peak is then
    its own frames, not its frames and the pages the earlier steps left to the
    process (a few milliseconds each).
    """
    release_freed_memory()
    return frame


def _compact_items(frame: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """``frame`` with its item columns as float16 or float32 where that holds every value exactly.

    Item scores are small whole numbers, so the rules before scoring (which
    compare, copy and filter them) handle a quarter of the bytes: at five
    million rows 630 MB less per copy of the frame.  A column with a value
    neither holds exactly (2.3, 1e300) stays float64; scoring reads items as
    float64 (:func:`helpers.scoring.score_items`) and drops them, so no
    output changes.
    """
    items = [c.column for c in scales.score_columns(config) if c.kind == "item"]
    small = {}
    for column in items:
        if column in frame.columns and frame[column].dtype == "float64":
            compact = smallest_exact_float(frame[column].to_numpy())
            if compact is not None:
                small[column] = compact
    return with_columns(frame, small)  # not assign, which would copy them again


def compact_numbers(
    frame: pd.DataFrame, keep: list[str] = ()
) -> tuple[pd.DataFrame, dict[str, str]]:
    """``frame`` with its float64 and int64 columns in the smallest type that holds them exactly.

    Returns the compact frame and column → original type, for
    ``frame.astype`` to restore them, value for value, before the data are
    written.  Between scoring and the features the scores (whole numbers),
    counts of missing items and covariates then take a quarter to an eighth of
    their bytes in every copy the filter steps make (at five million rows
    about 270 MB per copy).  Columns in ``keep`` are left as they are.

    Examples
    --------
    >>> frame = pd.DataFrame({"total": [12.0, np.nan], "n": [0, 3], "x": [0.1, 0.2]})
    >>> compact, wide = compact_numbers(frame)
    >>> compact.dtypes.astype(str).tolist(), wide
    (['float16', 'int8', 'float64'], {'total': 'float64', 'n': 'int64'})
    """
    small: dict[str, np.ndarray] = {}
    for column in frame.columns:
        if column in keep or frame[column].dtype not in ("float64", "int64"):
            continue
        values = frame[column].to_numpy()
        if values.dtype == "float64":
            compact = smallest_exact_float(values)
        else:
            compact = smallest_int(values)
        if compact is not None:
            small[column] = compact
    wide = {column: str(frame[column].dtype) for column in small}
    return with_columns(frame, small), wide


def smallest_int(values: np.ndarray) -> np.ndarray | None:
    """``values`` (int64) as int8, int16 or int32, the first that holds them; else ``None``.

    Examples
    --------
    >>> smallest_int(np.array([0, 12, -3])).dtype
    dtype('int8')
    >>> smallest_int(np.array([0, 2**40])) is None
    True
    """
    low, high = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    for dtype in (np.int8, np.int16, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return None


def smallest_exact_float(values: np.ndarray) -> np.ndarray | None:
    """``values`` (float64) as float16, else float32, when that type holds each one exactly.

    ``None`` when neither does.  Missing values (NaN) are held by both.

    Examples
    --------
    >>> smallest_exact_float(np.array([0.0, 4.0, np.nan, 2048.0])).dtype
    dtype('float16')
    >>> smallest_exact_float(np.array([1.0, 2049.0])).dtype  # float16 stops at 2048
    dtype('float32')
    >>> smallest_exact_float(np.array([1.0, 2.3])) is None
    True
    """
    for dtype in (np.float16, np.float32):
        with np.errstate(over="ignore"):
            compact = values.astype(dtype)
        if np.array_equal(compact, values, equal_nan=True):
            return compact
    return None


def _session_dates(
    canonical: pd.DataFrame, config: StudyConfig
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """The session-date summary, and the frame with ``days_since_first`` if asked for.

    Both ``(None, canonical)`` when sessions are numbered in the file.
    """
    if not config.sessions_from_dates:
        return None, canonical
    ids = canonical[schema.PATIENT_ID], canonical[schema.SESSION], canonical[schema.SESSION_DATE]
    summary = session_date_summary(*ids, max_gap_days=config.cleaning.max_gap_days)
    if not config.cleaning.days_since_first:
        return summary, canonical
    frame = canonical.copy(deep=False)  # copy-on-write: the input is never modified
    at = frame.columns.get_loc(schema.SESSION) + 1
    frame.insert(at, schema.DAYS_SINCE_FIRST, days_since_first_session(*ids))
    return summary, frame


#: Rows Arrow's CSV writer formats at a time (:func:`_write_csv`; about 4 MB of text).
CSV_BATCH_ROWS = 1 << 14


def _write_csv(table: pd.DataFrame, path: Path, *, arrow: bool = False) -> None:
    """One output table as CSV (no index, ``\\n`` line ends), written atomically.

    ``arrow=True`` writes with Arrow's CSV writer, about 15× faster than
    pandas' on a million rows (pandas formats every float in Python): numbers
    in their shortest round-trip form (``32`` for 32.0, ``1e+16``), booleans as
    ``true``/``false``, text quoted only where it must be.  Used for
    ``sessions.csv``, the one table that grows with the file.  Rows are
    formatted :data:`CSV_BATCH_ROWS` at a time (the same bytes as Arrow's
    default 1,024, in a quarter less time: 2.2 -> 1.6 s at a million rows).
    """
    with atomic_path(path) as tmp:
        if arrow:
            options = pacsv.WriteOptions(quoting_style="needed", batch_size=CSV_BATCH_ROWS)
            pacsv.write_csv(pa.Table.from_pandas(table, preserve_index=False), tmp, options)
        else:
            table.to_csv(tmp, index=False, lineterminator="\n")


def remove_previous_outputs(out_dir: Path) -> list[Path]:
    """Delete the files the previous cleaning run into ``out_dir`` wrote; return them.

    The previous run's files are those its ``manifest.json`` lists (and the
    manifest itself); nothing else in ``out_dir`` is touched, so a folder
    shared with other files keeps them.  A file of another study's outputs
    that this run would not write again (``session_dates.csv``) then does not
    linger beside this run's outputs.  Names that would lead outside
    ``out_dir`` are ignored.
    """
    manifest = out_dir / "manifest.json"
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8")).get("outputs", [])
        names = [str(entry["path"]) for entry in listed]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []
    removed = []
    for name in [*names, manifest.name]:
        path = out_dir / name
        if path.parent.resolve() == out_dir.resolve() and path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def _manifest_parameters(result: CleaningResult) -> dict[str, object]:
    """The config, and for a CSV/TSV file how its records were read."""
    parameters: dict[str, object] = {"config": result.config.to_dict()}
    if result.file_lines is not None:
        parameters["input_lines"] = result.file_lines.to_dict()
    return parameters


#: The CSV outputs, in the order written and listed, and the result's attribute behind each.
OUTPUT_TABLES = {
    "sessions.csv": "sessions",
    "patients.csv": "patients",
    "exclusion_ledger.csv": "ledger",
    "skipped_lines.csv": "skipped_lines",
    "id_changes.csv": "id_changes",
    "value_changes.csv": "value_changes",
    "flow.csv": "flow",
    "conversions.csv": "conversions",
    "session_dates.csv": "session_dates",
}


def write_outputs(result: CleaningResult, out_dir: Path, inputs: list[Path]) -> dict[str, Path]:
    """Write the processed data, ledger, flow and manifest; return their paths.

    Every file is written under a temporary name and renamed into place when
    complete (:func:`helpers.safety.atomic_path`); the manifest last, so a
    folder with a manifest holds every file it lists.  The files of the
    previous run into ``out_dir`` are removed first
    (:func:`remove_previous_outputs`).  The tables derived from the log (the
    ledger, the value changes) are built as they are written, one at a time,
    and the memory each file's writing freed is given back before the next
    (at a million rows the ledger was built beside the Arrow copy of the data).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_previous_outputs(out_dir)
    outputs = {"sessions.parquet": out_dir / "sessions.parquet"}
    with atomic_path(outputs["sessions.parquet"]) as tmp:
        result.sessions.to_parquet(tmp, index=False)
    for name, attribute in OUTPUT_TABLES.items():
        release_freed_memory()  # what the file before left in the pools (memory)
        table = getattr(result, attribute)  # built only now, one at a time (memory)
        if table is not None:
            outputs[name] = out_dir / name
            _write_csv(table, outputs[name], arrow=name == "sessions.csv")
        del table
    outputs["manifest.json"] = out_dir / "manifest.json"
    write_manifest(
        outputs["manifest.json"],
        inputs=inputs,
        outputs=[p for k, p in outputs.items() if k != "manifest.json"],
        parameters=_manifest_parameters(result),
    )
    result.outputs = outputs
    return outputs


def run_cleaning(
    input_path: str | Path,
    config: str | Path | StudyConfig,
    out_dir: str | Path | None = None,
) -> CleaningResult:
    """Run the whole cleaning step on one study file.

    Parameters
    ----------
    input_path
        The study's data file (CSV, TSV, Excel, SPSS, Stata or Parquet); only read.
    config
        The study config, or its path.
    out_dir
        Where to write the outputs; ``None`` writes nothing.  It may not be
        (or hold) the input file or the config
        (:func:`helpers.safety.check_output_folder`), and the run holds its
        lock while it writes (:func:`helpers.safety.run_lock`).

    Raises
    ------
    helpers.validation.StudyDataError
        When the file or config cannot be used; the message names the file,
        column, rows and values, and how to fix it; an
        :class:`helpers.safety.OutputFolderError` when ``out_dir`` holds an
        input, is a file, or another run is writing into it.
    """
    input_path = Path(input_path)
    config_path = None if isinstance(config, StudyConfig) else Path(config)
    inputs = [input_path] + ([config_path] if config_path is not None else [])
    if out_dir is not None:
        check_output_folder(out_dir, inputs)
    if not isinstance(config, StudyConfig):
        config = load_config(Path(config))
    raw = read_table(input_path, config.read, compact_text=True)
    id_changes = id_report(raw, config)
    file_lines = FileLines.from_raw(raw)
    frames = [map_to_canonical(raw, config, consume=True)]
    del raw  # the cells as read are not needed past this point (memory)
    release_freed_memory()
    source = display_path(input_path) or ""
    # clean_study gets the only reference to the canonical frame, so it can free it
    # once its first step has copied what it keeps
    result = clean_study(
        frames.pop(), config, source=source, id_changes=id_changes, file_lines=file_lines
    )
    if out_dir is None:
        return result
    release_freed_memory()  # what the last steps freed, before the outputs are built
    with run_lock(out_dir, f"clean --input {display_path(input_path)}"):
        write_outputs(result, Path(out_dir), inputs)
    return result


# ---------------------------------------------------------------------------
# Tables for the notebook: tidy, rounded, with no identifiers
# ---------------------------------------------------------------------------


def mapping_table(config: StudyConfig) -> pd.DataFrame:
    """The config's column mapping: each of the user's columns and what it becomes.

    Item columns of one instrument are shown as one row (first … last).
    """
    rows = []
    keys = config.source_keys()
    seen_prefix: set[str] = set()
    for user, canonical in config.source_columns().items():
        prefix = canonical.rsplit("_item", 1)[0] if "_item" in canonical else None
        if prefix is not None:
            if prefix in seen_prefix:
                continue
            seen_prefix.add(prefix)
            measure = config.measure(prefix.removeprefix("alliance_") or prefix)
            items = measure.item_columns()
            rows.append(
                (f"{items[0]} … {items[-1]}", f"{prefix}_item01 … {len(items):02d}", keys[user])
            )
        else:
            rows.append((user, canonical, keys[user]))
    return pd.DataFrame(rows, columns=["your column", "canonical column", "config key"])


def _rater_form(name: str, role: str) -> str:
    """The instrument's name as this role uses it (a therapist rating is not the client form)."""
    rater = role.removeprefix("alliance (").removesuffix(")")
    if rater != "client" and "(client form)" in name:
        return name.replace("(client form)", f"({rater} rating)")
    return name


def instrument_table(config: StudyConfig) -> pd.DataFrame:
    """The instruments the config uses, with their scoring rules and sources."""
    rows = []
    measures = {f"alliance ({r})": m for r, m in config.alliance.items()}
    measures["outcome"] = config.outcome
    for role, measure in measures.items():
        inst = get_instrument(measure.instrument)
        rows.append(
            {
                "role": role,
                "instrument": _rater_form(inst.name, role),
                "given as": "items" if measure.has_items else "total",
                "items": inst.n_items,
                "item range": f"{inst.item_min}–{inst.item_max}",
                "total range": f"{inst.total_min}–{inst.total_max}",
                "max missing items": inst.max_missing,
                "source": inst.citation,
            }
        )
    return pd.DataFrame(rows).set_index("role")


def describe_scores(sessions: pd.DataFrame) -> pd.DataFrame:
    """Count, mean, SD, min and max of the scored totals, rounded to 2 decimals."""
    columns = [c for c in sessions.columns if c.startswith("alliance_") or c == "outcome"]
    columns = [
        c
        for c in columns
        if pd.api.types.is_float_dtype(sessions[c])
        and not c.endswith(("_within", "_lag", "_c", "_dev", "_mean", "_between", "_early"))
    ]
    columns = [c for c in ["alliance", *columns, schema.OUTCOME_INTAKE] if c in sessions]
    table = sessions[columns].agg(["count", "mean", "std", "min", "max"]).T
    return table.round(2)


def centring_example(sessions: pd.DataFrame, n_sessions: int = 6) -> pd.DataFrame:
    """One eligible patient's alliance split into between and within parts.

    The patient is the first (in sorted order) with at least ``n_sessions``
    sessions; the table shows sessions, not the patient's identifier.
    """
    eligible = sessions.groupby(schema.PATIENT_ID)[schema.SESSION].transform("size") >= n_sessions
    patient = sorted(sessions.loc[eligible, schema.PATIENT_ID].unique())[0]
    cols = [
        schema.SESSION,
        "alliance",
        "alliance_between",
        "alliance_within",
        "alliance_within_lag",
        schema.OUTCOME,
    ]
    one = sessions.loc[sessions[schema.PATIENT_ID] == patient, cols].head(n_sessions)
    return one.set_index(schema.SESSION).round(2)


def change_category_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients per reliable-change category (Jacobson & Truax 1991), with percentages."""
    missing = "no intake or outcome"
    categories = patients["change_category"].astype("string").fillna(missing)
    counts = categories.value_counts()
    order = ["recovered", "improved", "no reliable change", "deteriorated"]
    counts = counts.reindex(
        [c for c in order if c in counts.index] + sorted(set(counts.index) - set(order))
    )
    table = pd.DataFrame({"patients": counts.astype("int64")})
    table.index = table.index.astype(str)
    table["percent"] = (100 * table["patients"] / table["patients"].sum()).round(1)
    return table
