"""Sessions given by date: parse the dates, number the sessions, describe the intervals.

A study may give the date of each session (config key ``columns.session_date``)
instead of its number.  :func:`helpers.loading.map_to_canonical` parses the
dates (:func:`parse_session_dates`) and numbers each patient's sessions in date
order (:func:`number_sessions_by_date`); the cleaning step describes the
intervals between sessions (:func:`session_date_summary`), may add the days
since the patient's first treatment session (:func:`days_since_first_session`),
and then drops the dates.  Dates are identifying: none of the tables made here
holds one, and no date reaches the processed data or any output file.

Dates written as text follow ``read.date_format`` (a ``strftime`` format such as
``"%d.%m.%Y"``), or ISO 8601 (``2024-03-05``, optionally followed by a time)
when it is not set.  Date cells of Excel, SPSS, Stata and Parquet files are
taken as they are.  A time of day is ignored: two records of a patient on the
same day share a session number and go through the duplicate rules.
"""

from __future__ import annotations

import datetime
import numbers
import re
from typing import Any

import numpy as np
import pandas as pd

#: ISO 8601 dates as text, optionally with a time of day (which is ignored).
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")

#: Formats tried, in this order, to suggest ``read.date_format`` in error reports.
COMMON_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%d.%m.%Y",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d-%m-%Y",
    "%Y/%m/%d",
    "%d.%m.%y",
    "%d/%m/%y",
    "%m/%d/%y",
    "%Y%m%d",
)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _to_day(value: Any, date_format: str | None) -> pd.Timestamp | None:
    """One non-missing cell as a day (midnight), or ``None`` when it is not a date."""
    if isinstance(value, datetime.datetime):  # also pandas.Timestamp
        return pd.Timestamp(value.replace(tzinfo=None)).normalize()
    if isinstance(value, datetime.date):
        return pd.Timestamp(value)
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).normalize()
    if isinstance(value, bool | np.bool_):
        return None
    whole = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and float(value).is_integer()
    )
    if whole and date_format is not None:
        value = str(int(value))  # e.g. 20240305 with date_format '%Y%m%d'
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if date_format is None:
            if not ISO_DATE.match(text):
                return None
            return pd.Timestamp(datetime.date.fromisoformat(text[:10]))
        return pd.Timestamp(datetime.datetime.strptime(text, date_format)).normalize()
    except ValueError:
        return None


def parse_session_dates(
    values: pd.Series, date_format: str | None = None
) -> tuple[pd.Series, np.ndarray]:
    """Parse a column of session dates.

    Parameters
    ----------
    values : pandas.Series
        The cells as read: text (CSV/TSV), or native dates and text (Excel,
        SPSS, Stata, Parquet); missing cells stay missing.
    date_format : str, optional
        ``strftime`` format of dates written as text; ``None`` = ISO 8601.
        With a format, whole numbers (such as ``20240305`` for ``"%Y%m%d"``)
        are read as their digits.

    Returns
    -------
    dates : pandas.Series
        ``datetime64[s]`` days (times of day dropped), ``NaT`` where missing
        or not a date; the index of ``values``.
    bad : numpy.ndarray of bool
        Cells that are present but not a date in that format.

    Examples
    --------
    >>> dates, bad = parse_session_dates(pd.Series(["05.03.2024", "", "2024-03-05"]), "%d.%m.%Y")
    >>> (dates[0].day, dates[0].month), dates.isna().tolist(), bad.tolist()
    ((5, 3), [False, True, True], [False, False, True])
    """
    days: list[Any] = []
    bad = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values.to_numpy(dtype=object)):
        if _is_missing(value) or (isinstance(value, str) and not value.strip()):
            days.append(pd.NaT)
            continue
        day = _to_day(value, date_format)
        bad[i] = day is None
        days.append(pd.NaT if day is None else day)
    return pd.Series(days, index=values.index, dtype="datetime64[s]"), bad


def suggest_date_formats(texts: list[str]) -> list[str]:
    """The formats of :data:`COMMON_FORMATS` that read every one of ``texts``.

    >>> suggest_date_formats(["31.01.2024", "05.03.2024"])
    ['%d.%m.%Y']
    """
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        return []
    fits = []
    for fmt in COMMON_FORMATS:
        if all(_to_day(t, fmt) is not None for t in texts):
            fits.append(fmt)
    return fits


def number_sessions_by_date(patients: pd.Series, dates: pd.Series, first: int = 1) -> pd.Series:
    """Number each patient's records in date order.

    Parameters
    ----------
    patients, dates : pandas.Series
        Patient ids and days, aligned on one index.
    first : int, default 1
        Number of the patient's first date: 1, or 0 when the first dated
        record is the intake assessment.

    Returns
    -------
    pandas.Series
        ``Int64``: ``first`` for the patient's earliest date, ``first + 1``
        for the next distinct date, and so on.  Records of one patient on the
        same date get the same number; records without a patient id or a date
        get ``<NA>``.

    Examples
    --------
    >>> p = pd.Series(["a", "a", "b", "a"])
    >>> d = pd.Series(pd.to_datetime(["2024-03-12", "2024-03-05", "2024-01-01", "2024-03-12"]))
    >>> number_sessions_by_date(p, d).tolist()
    [2, 1, 1, 2]
    """
    day = (dates - pd.Timestamp(0)).dt.days  # float, NaN without a date (ranks NaT safely)
    rank = day.groupby(patients, dropna=True).rank(method="dense")
    numbered = rank.reindex(dates.index) + (first - 1)
    return numbered.astype("Int64")


def _treatment_days(patients: pd.Series, sessions: pd.Series, dates: pd.Series) -> pd.DataFrame:
    """One row per patient and distinct treatment-session date (session >= 1), in order."""
    frame = pd.DataFrame({"patient": patients, "session": sessions, "date": dates}).dropna()
    frame = frame.loc[frame["session"] >= 1].drop_duplicates(["patient", "date"])
    return frame.sort_values(["patient", "date"], kind="stable")


def session_date_summary(
    patients: pd.Series, sessions: pd.Series, dates: pd.Series, max_gap_days: int = 28
) -> pd.DataFrame:
    """Counts describing the session dates, without any date in them.

    Parameters
    ----------
    patients, sessions, dates : pandas.Series
        Patient ids, session numbers (from :func:`number_sessions_by_date`)
        and days of the records as read, aligned on one index.
    max_gap_days : int, default 28
        Intervals longer than this many days are counted as gaps.

    Returns
    -------
    pandas.DataFrame
        Columns ``measure`` and ``value`` (whole numbers, and the median as a
        number of days): records with and without a date, patients, records
        sharing a date with another record of their patient, intervals
        between consecutive treatment sessions (the intake assessment is not a
        session), intervals longer than ``max_gap_days``, and the median
        interval in days (missing without intervals).
    """
    dated = dates.notna() & patients.notna()
    pairs = pd.DataFrame({"patient": patients[dated], "date": dates[dated]})
    treatment = _treatment_days(patients, sessions, dates)
    gaps = treatment.groupby("patient")["date"].diff().dropna().dt.days
    rows = [
        ("records with a session date", int(dates.notna().sum())),
        ("records without a session date", int(dates.isna().sum())),
        ("patients with dated records", int(pairs["patient"].nunique())),
        (
            "records on the same date as another record of the patient",
            int(pairs.duplicated(keep=False).sum()),
        ),
        ("intervals between consecutive treatment sessions", len(gaps)),
        (f"intervals longer than {max_gap_days} days", int((gaps > max_gap_days).sum())),
        ("median days between consecutive treatment sessions", _median(gaps)),
    ]
    measures, values = zip(*rows, strict=True)
    return pd.DataFrame({"measure": measures, "value": pd.Series(values, dtype=object)})


def _median(values: pd.Series) -> float | int | None:
    """The median as a whole number when it is one (``7`` rather than ``7.0``)."""
    if values.empty:
        return None
    median = float(values.median())
    return int(median) if median.is_integer() else median


def days_since_first_session(
    patients: pd.Series, sessions: pd.Series, dates: pd.Series
) -> pd.Series:
    """Whole days from the patient's first treatment session (session 1) to each record.

    Returns
    -------
    pandas.Series
        ``Int64``, named ``days_since_first``: 0 at session 1, negative for
        an intake assessment before it, ``<NA>`` without a date or without a
        session 1.

    Examples
    --------
    >>> p = pd.Series(["a", "a", "a"])
    >>> d = pd.Series(pd.to_datetime(["2024-03-01", "2024-03-05", "2024-03-12"]))
    >>> days_since_first_session(p, pd.Series([0, 1, 2]), d).tolist()
    [-4, 0, 7]
    """
    first = dates[sessions == 1].groupby(patients[sessions == 1]).min()
    days = (dates - patients.map(first)).dt.days
    return days.astype("Int64").rename("days_since_first")
