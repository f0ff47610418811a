"""The study config: how a researcher's own file maps onto the canonical schema.

The format is documented key by key in ``study_template.yml`` (next to this
module; :func:`default_template_path`).  :func:`load_config` reads a config,
checks every key and value against that format and returns a
:class:`StudyConfig`; every mistake is reported at once, as a
:class:`~helpers.errors.ConfigError` (a :class:`~helpers.errors.StudyDataError`)
naming the config file, the key and its line.

Examples
--------
>>> cfg = load_config(default_template_path())
>>> cfg.layout, cfg.primary_alliance
('long', 'client')
>>> cfg.item_columns("client")[:3]
['wai_1', 'wai_2', 'wai_3']
"""

from __future__ import annotations

import codecs
import datetime
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers import schema
from helpers.errors import ConfigError, Problem, StudyDataError
from helpers.paths import display_path

# Item counts of the supported instruments.  helpers.scoring.INSTRUMENTS is the
# full registry (items, ranges, reverse-keyed items, subscales); this copy only
# holds what reading a file needs, so the config can be checked without scoring.
INSTRUMENT_ITEM_COUNTS: dict[str, int] = {
    "wai_sr": 12,
    "wai_s": 12,
    "phq9": 9,
    "gad7": 7,
    "oq45": 45,
    "bdi2": 21,
}
ALLIANCE_INSTRUMENTS: tuple[str, ...] = ("wai_sr", "wai_s")
OUTCOME_INSTRUMENTS: tuple[str, ...] = ("phq9", "gad7", "oq45", "bdi2")

SUPPORTED_FORMATS: tuple[str, ...] = ("csv", "tsv", "xlsx", "sav", "dta", "parquet")
LAYOUTS: tuple[str, ...] = ("long", "wide")
DEFAULT_MISSING_CODES: tuple[str, ...] = ("", "NA", "N/A", ".")
DEFAULT_SESSION_PATTERN = r"^(?P<var>.+)_s(?P<session>\d+)$"
#: Decimal separators of numbers typed as text (``read.decimal``).
DECIMAL_SEPARATORS: tuple[str, ...] = (".", ",")
#: Thousands separators (``read.thousands``); ``None`` = numbers have none.
THOUSANDS_SEPARATORS: tuple[str | None, ...] = (None, ".", ",", " ", "'")
#: What a ``total`` column holds (``total_scale``): the instrument total or the item mean.
TOTAL_SCALES: tuple[str, ...] = ("sum", "mean")
CLEANING_CHOICES: dict[str, tuple[str, ...]] = {
    "out_of_range": ("set_missing", "error"),
    "conflicting_duplicates": ("exclude", "keep_first", "error"),
    "multiple_therapists": ("exclude", "keep_majority", "error"),
    "id_leading_zeros": ("keep", "unify"),
}
#: Default of ``cleaning.max_session``: higher session numbers are excluded as implausible.
DEFAULT_MAX_SESSION = 200

# The keys the template allows, per section.
TOP_LEVEL_KEYS: tuple[str, ...] = (
    "study",
    "read",
    "layout",
    "wide",
    "columns",
    "covariates",
    "modality_labels",
    "alliance",
    "primary_alliance",
    "outcome",
    "cleaning",
)
READ_KEYS: tuple[str, ...] = (
    "format",
    "sheet",
    "header_row",
    "date_format",
    "delimiter",
    "encoding",
    "missing_codes",
    "decimal",
    "thousands",
)
WIDE_KEYS: tuple[str, ...] = ("session_pattern",)
COLUMN_KEYS: tuple[str, ...] = (
    schema.THERAPIST_ID,
    schema.PATIENT_ID,
    schema.SESSION,
    schema.SESSION_DATE,
    schema.MODALITY,
)
MEASURE_KEYS: tuple[str, ...] = ("instrument", "items", "item_pattern", "total", "total_scale")
OUTCOME_KEYS: tuple[str, ...] = (*MEASURE_KEYS, "intake_session", "intake_total")
CLEANING_KEYS: tuple[str, ...] = (
    "out_of_range",
    "conflicting_duplicates",
    "multiple_therapists",
    "min_sessions_within",
    "early_session",
    "max_gap_days",
    "days_since_first",
    "id_leading_zeros",
    "max_session",
)
_DELIMITER_WORDS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_DEFAULT_DELIMITERS = {"csv": ",", "tsv": "\t"}
_SEPARATOR_WORDS = {"point": ".", "dot": ".", "comma": ",", "space": " ", "apostrophe": "'"}
#: Largest study config read (bytes); a study config is a few kilobytes.
MAX_CONFIG_BYTES = 1_000_000
#: ``item_pattern``: one ``{i}`` field, optionally zero-padded to 1-9 digits (``{i:02d}``).
_ITEM_PATTERN = re.compile(r"^[^{}]*\{i(?::0[1-9]d)?\}[^{}]*$")
#: Largest whole number a count-like setting accepts (sessions, days, rows).
MAX_SETTING = 100_000
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ReadConfig:
    """How to read the data file (config section ``read``).

    Attributes
    ----------
    format : str or None
        One of :data:`SUPPORTED_FORMATS`; ``None`` = from the file extension.
    sheet : str or int or None
        Excel sheet name or 0-based index; ``None`` = the first sheet.
    header_row : int
        1-based row holding the column names (CSV/TSV/Excel).
    date_format : str or None
        ``strftime`` format of session dates written as text (e.g.
        ``"%d.%m.%Y"``); ``None`` = ISO 8601 (``YYYY-MM-DD``).  Native date
        cells (Excel, SPSS, Stata, Parquet) are taken as they are.
    delimiter : str or None
        CSV field separator; ``None`` = ``","`` for .csv and tab for .tsv.
    encoding : str
        Text encoding of CSV/TSV files.
    missing_codes : tuple of str
        Cell values that mean "missing" (compared after stripping spaces;
        numeric codes such as ``-99`` also match numeric cells).
    decimal : str
        Decimal separator of numbers stored as text (CSV/TSV cells, text
        cells of Excel/SPSS/Stata): ``"."`` or ``","``.
    thousands : str or None
        Thousands separator of such numbers (``"."``, ``","``, ``" "``,
        ``"'"``), or ``None`` when numbers are written without one.
    """

    format: str | None = None
    sheet: str | int | None = None
    header_row: int = 1
    date_format: str | None = None
    delimiter: str | None = None
    encoding: str = "utf-8"
    missing_codes: tuple[str, ...] = DEFAULT_MISSING_CODES
    decimal: str = "."
    thousands: str | None = None


@dataclass(frozen=True)
class WideConfig:
    """How per-session columns are named in a wide file (config section ``wide``).

    Attributes
    ----------
    session_pattern : str
        Regular expression with the named groups ``var`` and ``session``; a
        column is a per-session column when its whole name matches.
    """

    session_pattern: str = DEFAULT_SESSION_PATTERN


@dataclass(frozen=True)
class MeasureConfig:
    """Where one instrument's scores are (an ``alliance.<rater>`` block).

    Exactly one of ``items``, ``item_pattern`` and ``total`` is set.

    Attributes
    ----------
    instrument : str
        Instrument name (a key of :data:`INSTRUMENT_ITEM_COUNTS`).
    items : tuple of str or None
        The user's item columns, in the instrument's item order.
    item_pattern : str or None
        Item column names with ``{i}`` standing for the 1-based item number.
    total : str or None
        A column already holding the instrument total.
    total_scale : str
        What the ``total`` column (and, for the outcome, ``intake_total``)
        holds: ``"sum"``, the instrument total, or ``"mean"``, the item mean
        on the item range, which cleaning converts to the total (mean times
        the number of items).
    """

    instrument: str
    items: tuple[str, ...] | None = None
    item_pattern: str | None = None
    total: str | None = None
    total_scale: str = "sum"

    @property
    def n_items(self) -> int:
        """Number of items of the instrument."""
        return INSTRUMENT_ITEM_COUNTS[self.instrument]

    @property
    def has_items(self) -> bool:
        """Whether the scores are given item by item (``items`` or ``item_pattern``)."""
        return self.total is None

    def item_columns(self) -> list[str]:
        """The user's item columns in item order (empty when a total is given)."""
        if self.items is not None:
            return list(self.items)
        if self.item_pattern is not None:
            return [self.item_pattern.format(i=i) for i in range(1, self.n_items + 1)]
        return []


@dataclass(frozen=True)
class OutcomeConfig(MeasureConfig):
    """Where the outcome scores are (config section ``outcome``).

    Attributes
    ----------
    intake_session : int or None
        Session number marking the intake (pre-treatment) assessment rows.
    intake_total : str or None
        A column holding the patient's intake total (at most one of the two).
    """

    intake_session: int | None = None
    intake_total: str | None = None


@dataclass(frozen=True)
class CleaningConfig:
    """Cleaning policies (config section ``cleaning``); see the template.

    ``max_gap_days`` and ``days_since_first`` apply to studies whose sessions
    are given by date (``columns.session_date``).  ``id_leading_zeros``
    (``keep`` or ``unify``) chooses whether digit-only ids such as ``007``
    and ``101.0`` are written as whole numbers (:mod:`helpers.ids`);
    ``max_session`` is the highest plausible session number (records above
    it are excluded and logged).
    """

    out_of_range: str = "set_missing"
    conflicting_duplicates: str = "exclude"
    multiple_therapists: str = "exclude"
    min_sessions_within: int = 3
    early_session: int = 3
    max_gap_days: int = 28
    days_since_first: bool = False
    id_leading_zeros: str = "keep"
    max_session: int = DEFAULT_MAX_SESSION


@dataclass(frozen=True)
class StudyConfig:
    """A checked study config.  Build it with :func:`load_config`.

    Attributes
    ----------
    study : str
        Short study name (letters, digits, ``_ . -``).
    layout : str
        ``"long"`` (one row per patient-session) or ``"wide"`` (one row per patient).
    columns : dict of str to str
        Canonical identifier/design name -> the user's column.  Without
        ``therapist_id`` the study is two-level; in long layout exactly one of
        ``session`` and ``session_date`` is set.
    alliance : dict of str to MeasureConfig
        Rater (``client``, ``therapist``, ``observer``) -> where the ratings are.
    primary_alliance : str
        The rater whose alliance the models use.
    outcome : OutcomeConfig
        Where the outcome scores are.
    read : ReadConfig
        How to read the file.
    wide : WideConfig
        Per-session column naming (used in wide layout only).
    covariates : dict of str to str
        Canonical covariate name -> the user's column.
    modality_labels : dict of str to str
        The user's modality label (as text) -> the suite's name.
    cleaning : CleaningConfig
        Cleaning policies.
    path : pathlib.Path or None
        The config file, when read from one.
    """

    study: str
    layout: str
    columns: dict[str, str]
    alliance: dict[str, MeasureConfig]
    primary_alliance: str
    outcome: OutcomeConfig
    read: ReadConfig = field(default_factory=ReadConfig)
    wide: WideConfig = field(default_factory=WideConfig)
    covariates: dict[str, str] = field(default_factory=dict)
    modality_labels: dict[str, str] = field(default_factory=dict)
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    path: Path | None = None

    @property
    def has_therapists(self) -> bool:
        """Whether patients are identified by therapist (``columns.therapist_id`` set).

        Without it the study is two-level (sessions within patients): the
        processed data have no ``therapist_id`` and no therapist-level features.
        """
        return schema.THERAPIST_ID in self.columns

    @property
    def sessions_from_dates(self) -> bool:
        """Whether sessions are given by date (``columns.session_date``), not by number."""
        return schema.SESSION_DATE in self.columns

    @property
    def folder(self) -> Path | None:
        """Folder of the config file (``None`` when not read from a file)."""
        return None if self.path is None else self.path.parent

    def resolve_path(self, path: str | Path) -> Path:
        """Resolve a path named in or next to the config.

        Relative paths are taken relative to the config file's folder (or the
        working directory when the config was not read from a file).

        Parameters
        ----------
        path : str or pathlib.Path
            The path as written.

        Returns
        -------
        pathlib.Path
            An absolute path.
        """
        p = Path(path).expanduser()
        if not p.is_absolute() and self.folder is not None:
            p = self.folder / p
        return p.resolve()

    def measure(self, rater_or_outcome: str) -> MeasureConfig:
        """The :class:`MeasureConfig` of a rater, or of the outcome for ``"outcome"``.

        Raises
        ------
        KeyError
            When the rater is not configured.
        """
        if rater_or_outcome == schema.OUTCOME:
            return self.outcome
        if rater_or_outcome not in self.alliance:
            raise KeyError(
                f"rater {rater_or_outcome!r} is not configured; "
                f"configured: {', '.join(self.alliance)} (or 'outcome')"
            )
        return self.alliance[rater_or_outcome]

    def item_columns(self, rater_or_outcome: str) -> list[str]:
        """The user's item columns of a rater (or ``"outcome"``), in item order.

        ``item_pattern`` is expanded with ``i = 1 .. n_items``.  Empty when
        the config gives a total instead of items.

        Parameters
        ----------
        rater_or_outcome : str
            ``"client"``, ``"therapist"``, ``"observer"`` or ``"outcome"``.

        Returns
        -------
        list of str
        """
        return self.measure(rater_or_outcome).item_columns()

    def source_columns(self) -> dict[str, str]:
        """Every user column the config names, and the canonical column it becomes.

        In wide layout the per-session variables (alliance and outcome) are
        named here by their ``var`` stem, as in the config.

        Returns
        -------
        dict of str to str
            User column -> canonical column, in schema order: identifiers,
            modality, covariates, alliance (per rater), outcome, intake total.
        """
        mapping: dict[str, str] = {}
        for canonical, user in self.columns.items():
            mapping[user] = canonical
        for canonical, user in self.covariates.items():
            mapping[user] = canonical
        for rater, measure in self.alliance.items():
            if measure.total is not None:
                mapping[measure.total] = schema.alliance_total_column(rater)
            for i, user in enumerate(measure.item_columns(), start=1):
                mapping[user] = schema.alliance_item_column(rater, i)
        if self.outcome.total is not None:
            mapping[self.outcome.total] = schema.OUTCOME
        for i, user in enumerate(self.outcome.item_columns(), start=1):
            mapping[user] = schema.outcome_item_column(i)
        if self.outcome.intake_total is not None:
            mapping[self.outcome.intake_total] = schema.OUTCOME_INTAKE
        return mapping

    def source_keys(self) -> dict[str, str]:
        """Every user column the config names, and the config key that names it.

        Used in error reports ("set columns.patient_id: …").

        Returns
        -------
        dict of str to str
            User column -> dotted config key, e.g. ``"patient" ->
            "columns.patient_id"``, ``"wai_3" -> "alliance.client.item_pattern"``.
        """
        keys: dict[str, str] = {}
        for canonical, user in self.columns.items():
            keys[user] = f"columns.{canonical}"
        for canonical, user in self.covariates.items():
            keys[user] = f"covariates.{canonical}"
        measures: list[tuple[str, MeasureConfig]] = [
            (f"alliance.{rater}", m) for rater, m in self.alliance.items()
        ]
        measures.append(("outcome", self.outcome))
        for prefix, m in measures:
            how = "items" if m.items is not None else "item_pattern"
            for user in m.item_columns():
                keys[user] = f"{prefix}.{how}"
            if m.total is not None:
                keys[m.total] = f"{prefix}.total"
        if self.outcome.intake_total is not None:
            keys[self.outcome.intake_total] = "outcome.intake_total"
        return keys

    def session_variables(self) -> list[str]:
        """User columns that vary by session (alliance and outcome scores).

        In wide layout these are the ``var`` stems expected in the per-session
        column names; the other configured columns are patient-level.
        """
        canonical_of = self.source_columns()
        return [
            user
            for user, canonical in canonical_of.items()
            if canonical != schema.OUTCOME_INTAKE
            and (canonical.startswith("alliance_") or canonical.startswith("outcome"))
        ]

    def canonical_columns(self) -> list[str]:
        """Columns of the frame :func:`helpers.loading.map_to_canonical` returns, in order.

        ``therapist_id`` only when configured; ``session_date`` (after
        ``session``) only when sessions are given by date.
        """
        ids = [schema.SOURCE_ROW, schema.THERAPIST_ID, schema.PATIENT_ID, schema.SESSION]
        if not self.has_therapists:
            ids.remove(schema.THERAPIST_ID)
        if self.sessions_from_dates:
            ids.append(schema.SESSION_DATE)
        return ids + [c for c in self.source_columns().values() if c not in ids]

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain mapping in the template's shape (for manifests).

        ``path`` is left out, so the result carries no machine-specific path.
        """

        def measure_dict(m: MeasureConfig) -> dict[str, Any]:
            out: dict[str, Any] = {"instrument": m.instrument}
            if m.items is not None:
                out["items"] = list(m.items)
            if m.item_pattern is not None:
                out["item_pattern"] = m.item_pattern
            if m.total is not None:
                out["total"] = m.total
                out["total_scale"] = m.total_scale
            return out

        outcome = measure_dict(self.outcome)
        if self.outcome.intake_session is not None:
            outcome["intake_session"] = self.outcome.intake_session
        if self.outcome.intake_total is not None:
            outcome["intake_total"] = self.outcome.intake_total
        read = {k: getattr(self.read, k) for k in READ_KEYS}
        read["missing_codes"] = list(self.read.missing_codes)
        return {
            "study": self.study,
            "read": read,
            "layout": self.layout,
            "wide": {"session_pattern": self.wide.session_pattern},
            "columns": dict(self.columns),
            "covariates": dict(self.covariates),
            "modality_labels": dict(self.modality_labels),
            "alliance": {r: measure_dict(m) for r, m in self.alliance.items()},
            "primary_alliance": self.primary_alliance,
            "outcome": outcome,
            "cleaning": {k: getattr(self.cleaning, k) for k in CLEANING_KEYS},
        }


def default_template_path() -> Path:
    """Path of the documented study config template shipped with the package.

    Returns
    -------
    pathlib.Path
        ``study_template.yml`` next to this module.
    """
    return Path(__file__).resolve().with_name("study_template.yml")


# --------------------------------------------------------------------------- checking


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"use one of: {', '.join(choices)}"


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"true/false ({value})"
    if isinstance(value, Mapping):
        return "a block of keys"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 63:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"a number too large for a setting (about {digits} digits)"
    return repr(value)


class _Checker:
    """Collects config problems, each tied to its key path and line."""

    def __init__(self, path: Path | None, lines: dict[tuple[str, ...], int]) -> None:
        self.path = path
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, key: tuple[str, ...], rule: str, found: str, fix: str, value: Any = None) -> None:
        line = self._line(key)
        self.problems.append(
            Problem(
                file=self.path,
                column=".".join(key) if key else None,
                rows=[line] if line is not None else [],
                values=[] if value is None else [value],
                rule=rule,
                found=found,
                fix=fix,
                row_label="line",
            )
        )

    def _line(self, key: tuple[str, ...]) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def section(self, data: Mapping[str, Any], key: str, allowed: tuple[str, ...] | None):
        """A sub-mapping (``{}`` when absent or null), its unknown keys reported."""
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(
                (key,),
                f"'{key}' to be a block of 'name: value' lines",
                _type_name(value),
                f"indent the entries of '{key}' under it (see the template)",
            )
            return {}
        if allowed is not None:
            self.unknown_keys(value, allowed, (key,))
        return value

    def unknown_keys(self, data: Mapping[Any, Any], allowed: tuple[str, ...], prefix=()) -> None:
        for name in data:
            if name not in allowed:
                where = ".".join(prefix) if prefix else "the top level"
                self.add(
                    (*prefix, str(name)),
                    f"a key valid in {where}: {', '.join(allowed)}",
                    f"unknown key '{name}'",
                    _suggest(str(name), allowed),
                )

    def text(self, data: Mapping, key: tuple[str, ...], required: bool, what: str) -> str | None:
        value = data.get(key[-1])
        if value is None:
            if required:
                self.add(
                    key, f"{what} under '{'.'.join(key)}'", "the key is missing", _fix_add(key)
                )
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.add(key, what, _type_name(value), "write a single name or value")
            return None
        text = str(value).strip()
        if not text:
            self.add(key, what, "an empty value", _fix_add(key))
            return None
        return text

    def choice(
        self, data: Mapping, key: tuple[str, ...], choices: tuple[str, ...], required: bool
    ) -> str | None:
        value = self.text(data, key, required, f"one of: {', '.join(choices)}")
        if value is not None and value not in choices:
            self.add(
                key,
                f"one of: {', '.join(choices)}",
                f"'{value}'",
                _suggest(value, choices),
                value,
            )
            return None
        return value

    def boolean(self, data: Mapping, key: tuple[str, ...], default: bool) -> bool:
        value = data.get(key[-1])
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.add(key, "true or false", _type_name(value), f"set {key[-1]}: true or false", value)
        return default

    def integer(
        self,
        data: Mapping,
        key: tuple[str, ...],
        minimum: int | None,
        default: int | None,
        maximum: int = MAX_SETTING,
    ) -> int | None:
        """A whole-number setting from ``minimum`` (or ``-maximum``) to ``maximum``.

        The upper bound keeps absurd values (``1e19`` written out in digits)
        from overflowing the 64-bit numbers the analysis uses.
        """
        value = data.get(key[-1])
        if value is None:
            return default
        low = -maximum if minimum is None else minimum
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and low <= value <= maximum:
            return int(value)
        rule = f"a whole number from {low} to {maximum}"
        self.add(key, rule, _type_name(value), f"set {key[-1]}: to {rule}", _short(value))
        return default


def _short(value: Any, limit: int = 40) -> Any:
    """A value as reported: long numbers and texts cut to ``limit`` characters."""
    if isinstance(value, int) and value.bit_length() > 63:
        return _type_name(value)
    text = str(value)
    if isinstance(value, bool) or len(text) <= limit:
        return value
    return text[: limit - 1] + "…"


def _fix_add(key: tuple[str, ...]) -> str:
    return (
        f"add '{key[-1]}:' under '{key[-2]}' (see the template)"
        if len(key) > 1
        else (f"add '{key[0]}:' at the top level (see the template)")
    )


def _line_numbers(
    node: yaml.Node, checker_dupes: list, visited: set[int], prefix=()
) -> dict[tuple[str, ...], int]:
    """Map each key path of a composed YAML document to its 1-based line; note duplicates.

    Each node is visited once (``visited`` holds the ids of nodes seen), so a
    node reached twice -- through an alias -- costs nothing more.
    """
    lines: dict[tuple[str, ...], int] = {}
    if id(node) in visited or not isinstance(node, yaml.MappingNode):
        return lines
    visited.add(id(node))
    seen: set[str] = set()
    for key_node, value_node in node.value:
        name = str(key_node.value)
        key = (*prefix, name)
        if name in seen:
            checker_dupes.append((key, key_node.start_mark.line + 1))
        seen.add(name)
        lines[key] = key_node.start_mark.line + 1
        lines.update(_line_numbers(value_node, checker_dupes, visited, key))
    return lines


def _check_read(c: _Checker, data: Mapping) -> ReadConfig:
    sec = c.section(data, "read", READ_KEYS)
    fmt = c.choice(sec, ("read", "format"), SUPPORTED_FORMATS, required=False)
    sheet = sec.get("sheet")
    if sheet is not None and (
        isinstance(sheet, bool)
        or not isinstance(sheet, str | int)
        or (isinstance(sheet, int) and sheet < 0)
    ):
        c.add(
            ("read", "sheet"),
            "a sheet name or a 0-based sheet number",
            _type_name(sheet),
            "write the sheet's name as shown on its tab, or 0 for the first sheet",
            sheet,
        )
        sheet = None
    header_row = c.integer(sec, ("read", "header_row"), 1, 1)
    date_format = _check_date_format(c, sec)
    delimiter = sec.get("delimiter")
    if delimiter is not None:
        delimiter = _DELIMITER_WORDS.get(str(delimiter).lower(), str(delimiter))
        if len(delimiter) != 1:
            c.add(
                ("read", "delimiter"),
                "a single character, e.g. ',' or ';' (or 'tab')",
                repr(sec.get("delimiter")),
                "write the separator in quotes, e.g. delimiter: ';'",
                sec.get("delimiter"),
            )
            delimiter = None
    encoding = c.text(sec, ("read", "encoding"), False, "a text encoding name") or "utf-8"
    problem = _encoding_problem(encoding)
    if problem is not None:
        c.add(
            ("read", "encoding"),
            "a text encoding Python knows, e.g. utf-8, latin-1, cp1252",
            f"'{_short(encoding)}' ({problem})",
            _suggest(encoding, ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"]),
            _short(encoding),
        )
        encoding = "utf-8"
    codes_value = sec.get("missing_codes", list(DEFAULT_MISSING_CODES))
    if codes_value is None:
        codes_value = []
    if not isinstance(codes_value, list) or any(
        isinstance(v, bool) or not isinstance(v, str | int | float) for v in codes_value
    ):
        c.add(
            ("read", "missing_codes"),
            'a list of cell values meaning "missing", e.g. ["", "NA", -99]',
            _type_name(codes_value),
            "write the codes as a list in square brackets",
        )
        codes_value = list(DEFAULT_MISSING_CODES)
    missing_codes = tuple(str(v).strip() for v in codes_value)
    decimal, thousands = _check_number_format(c, sec, delimiter or _DEFAULT_DELIMITERS.get(fmt))
    return ReadConfig(
        format=fmt,
        sheet=sheet,
        header_row=header_row if header_row is not None else 1,
        date_format=date_format,
        delimiter=delimiter,
        encoding=encoding,
        missing_codes=missing_codes,
        decimal=decimal,
        thousands=thousands,
    )


def _encoding_problem(name: str) -> str | None:
    """Why ``name`` cannot decode a text file (``None`` when it can).

    Some codecs Python knows turn bytes into bytes or text into text (rot13,
    base64, zlib): they are refused like unknown names.
    """
    try:
        info = codecs.lookup(name)
    except LookupError:
        return "an unknown encoding"
    if not getattr(info, "_is_text_encoding", True):
        return "a codec that is not a text encoding"
    return None


def _check_date_format(c: _Checker, sec: Mapping) -> str | None:
    """A strftime format that writes and reads back day, month and year."""
    fmt = c.text(sec, ("read", "date_format"), False, "a date format such as '%d.%m.%Y'")
    if fmt is None:
        return None
    sample = datetime.date(2024, 3, 5)
    try:
        back = datetime.datetime.strptime(sample.strftime(fmt), fmt).date()
    except ValueError:
        back = None
    if "%" in fmt and back == sample:
        return fmt
    c.add(
        ("read", "date_format"),
        "a date format with day, month and year, written with % codes",
        f"'{fmt}'",
        "for example date_format: '%d.%m.%Y' for 05.03.2024, '%m/%d/%Y' for 03/05/2024 "
        "(delete the key for 2024-03-05)",
        fmt,
    )
    return None


def _separator(c: _Checker, sec: Mapping, name: str, choices: tuple, rule: str) -> Any:
    """``read.decimal`` or ``read.thousands`` as a character (words such as 'comma' allowed)."""
    value = sec.get(name)
    if value is None:
        return choices[0]
    if isinstance(value, str):
        value = _SEPARATOR_WORDS.get(value.strip().lower(), value)
    if value in choices:
        return value
    c.add(
        ("read", name),
        rule,
        _type_name(value),
        "write the character in quotes, e.g. decimal: ',' and thousands: '.' for 1.234,5",
        value,
    )
    return choices[0]


def _check_number_format(
    c: _Checker, sec: Mapping, delimiter: str | None
) -> tuple[str, str | None]:
    """The decimal and thousands separators, each different from the other and the delimiter."""
    decimal = _separator(c, sec, "decimal", DECIMAL_SEPARATORS, "the decimal separator: '.' or ','")
    thousands = _separator(
        c,
        sec,
        "thousands",
        THOUSANDS_SEPARATORS,
        "the thousands separator: null (none), '.', ',', ' ' (space) or \"'\"",
    )
    if thousands is None:
        return decimal, None
    if thousands == decimal:
        c.add(
            ("read", "thousands"),
            "a thousands separator other than the decimal separator (read.decimal)",
            f"both are {thousands!r}",
            "for 1.234,5 set decimal: ',' and thousands: '.'; "
            "for 1,234.5 set decimal: '.' and thousands: ','",
            thousands,
        )
        return decimal, None
    if thousands == delimiter:
        c.add(
            ("read", "thousands"),
            "a thousands separator other than the field separator (read.delimiter)",
            f"both are {thousands!r}",
            "delete read.thousands if numbers have no thousands separator, or set "
            "read.delimiter to the file's real separator (e.g. ';')",
            thousands,
        )
        return decimal, None
    return decimal, thousands


def _check_measure(
    c: _Checker, block: Any, key: tuple[str, ...], allowed: tuple[str, ...], instruments
) -> MeasureConfig | None:
    if not isinstance(block, Mapping):
        c.add(
            key,
            "a block with 'instrument' and one of 'items', 'item_pattern', 'total'",
            _type_name(block),
            "see the template for the layout of this block",
        )
        return None
    c.unknown_keys(block, allowed, key)
    instrument = c.text(block, (*key, "instrument"), True, f"one of: {', '.join(instruments)}")
    if instrument is not None and instrument not in instruments:
        other = "an outcome" if instrument in OUTCOME_INSTRUMENTS else "an alliance"
        known = instrument in INSTRUMENT_ITEM_COUNTS
        c.add(
            (*key, "instrument"),
            f"a supported instrument: {', '.join(instruments)}",
            f"'{instrument}'" + (f" ({other} instrument)" if known else " (not supported)"),
            _suggest(instrument, instruments),
            instrument,
        )
        instrument = None
    given = [k for k in ("items", "item_pattern", "total") if block.get(k) is not None]
    misspelt = [k for k in block if k not in allowed]
    if not given and misspelt:
        return None  # already reported as an unknown key (e.g. 'item_patern')
    if len(given) != 1:
        c.add(
            key,
            "exactly one of 'items', 'item_pattern' or 'total'",
            "none of them" if not given else f"{' and '.join(given)} both given",
            "keep exactly one: item columns (items or item_pattern) or a total column",
        )
        return None
    items = pattern = total = None
    if "items" in given:
        raw = block["items"]
        if not isinstance(raw, list) or not raw or any(isinstance(v, Mapping | list) for v in raw):
            c.add((*key, "items"), "a list of column names", _type_name(raw), "write [a, b, ...]")
            return None
        items = tuple(str(v).strip() for v in raw)
        if instrument is not None and len(items) != INSTRUMENT_ITEM_COUNTS[instrument]:
            n = INSTRUMENT_ITEM_COUNTS[instrument]
            c.add(
                (*key, "items"),
                f"{n} item columns for {instrument}, in item order",
                f"{len(items)} columns",
                f"list all {n} items of {instrument}, or give its total with 'total:'",
            )
            return None
    elif "item_pattern" in given:
        pattern = c.text(block, (*key, "item_pattern"), True, "a pattern with {i}")
        if pattern is None:
            return None
        if not _ITEM_PATTERN.match(pattern):
            c.add(
                (*key, "item_pattern"),
                "a column-name pattern with {i} for the item number, e.g. 'wai_{i}' "
                "({i:02d} to zero-pad to 2 digits, up to {i:09d}; no other braces)",
                f"'{_short(pattern)}'",
                "put {i} where the item number goes (use {i:02d} for 01, 02, …)",
                _short(pattern),
            )
            return None
    else:
        total = c.text(block, (*key, "total"), True, "a column name")
    total_scale = _check_total_scale(c, block, key, given[0])
    if instrument is None:
        return None
    return MeasureConfig(
        instrument=instrument,
        items=items,
        item_pattern=pattern,
        total=total,
        total_scale=total_scale,
    )


def _check_total_scale(c: _Checker, block: Mapping, key: tuple[str, ...], given: str) -> str:
    """``total_scale``: sum or mean, and only next to ``total``."""
    scale = c.choice(block, (*key, "total_scale"), TOTAL_SCALES, required=False)
    if scale is None:
        return "sum"
    if given != "total":
        c.add(
            (*key, "total_scale"),
            "total_scale only together with 'total' (a column holding a total or item mean)",
            f"total_scale: {scale} next to '{given}'",
            f"delete total_scale: the suite scores the item columns of '{given}' itself",
            scale,
        )
        return "sum"
    return scale


def _check_outcome(c: _Checker, data: Mapping) -> OutcomeConfig | None:
    block = data.get("outcome")
    if block is None:
        c.add(("outcome",), "an 'outcome' block", "the key is missing", _fix_add(("outcome",)))
        return None
    measure = _check_measure(c, block, ("outcome",), OUTCOME_KEYS, OUTCOME_INSTRUMENTS)
    if not isinstance(block, Mapping):
        return None
    intake_session = c.integer(block, ("outcome", "intake_session"), None, None)
    intake_total = c.text(block, ("outcome", "intake_total"), False, "a column name")
    if block.get("intake_session") is not None and block.get("intake_total") is not None:
        c.add(
            ("outcome", "intake_total"),
            "the intake given one way: intake_session OR intake_total",
            "both intake_session and intake_total",
            "delete one: intake_session if intake rows are sessions in the file, "
            "intake_total if a column holds the intake score",
        )
        return None
    if measure is None:
        return None
    return OutcomeConfig(
        instrument=measure.instrument,
        items=measure.items,
        item_pattern=measure.item_pattern,
        total=measure.total,
        total_scale=measure.total_scale,
        intake_session=intake_session,
        intake_total=intake_total,
    )


def _check_names(c: _Checker, sec: Mapping, prefix: str, keys: tuple[str, ...] | None) -> dict:
    out: dict[str, str] = {}
    for name in sec:
        if keys is not None and name not in keys:
            continue  # reported as an unknown key already
        value = c.text(sec, (prefix, str(name)), False, "a column name")
        if value is not None:
            out[str(name)] = value
    return out


def _check_covariates(c: _Checker, data: Mapping) -> dict[str, str]:
    sec = c.section(data, "covariates", None)
    out = _check_names(c, sec, "covariates", None)
    reserved = {schema.SOURCE_ROW, *schema.ID_COLUMNS, schema.MODALITY}
    reserved |= {schema.SESSION_DATE, schema.DAYS_SINCE_FIRST}
    for name in list(out):
        bad_name = not _IDENTIFIER.match(name)
        clash = name in reserved or name.startswith(("alliance", "outcome"))
        if bad_name or clash:
            c.add(
                ("covariates", name),
                "a covariate name made of letters, digits and _, not a schema column",
                f"'{name}'" + (" (a name the schema uses)" if clash else ""),
                "rename the left-hand side, e.g. 'age' or 'baseline_severity'",
                name,
            )
            del out[name]
    return out


def _check_cleaning(c: _Checker, data: Mapping) -> CleaningConfig:
    sec = c.section(data, "cleaning", CLEANING_KEYS)
    defaults = CleaningConfig()
    values: dict[str, Any] = {}
    for key, choices in CLEANING_CHOICES.items():
        values[key] = c.choice(sec, ("cleaning", key), choices, False) or getattr(defaults, key)
    for key in ("min_sessions_within", "early_session"):
        values[key] = c.integer(sec, ("cleaning", key), 1, getattr(defaults, key))
    values["max_gap_days"] = c.integer(sec, ("cleaning", "max_gap_days"), 1, defaults.max_gap_days)
    values["max_session"] = c.integer(sec, ("cleaning", "max_session"), 1, defaults.max_session)
    values["days_since_first"] = c.boolean(
        sec, ("cleaning", "days_since_first"), defaults.days_since_first
    )
    return CleaningConfig(**values)


def _check_session_keys(c: _Checker, sec: Any, columns: dict[str, str], layout) -> None:
    """Long layout: exactly one of columns.session and columns.session_date; wide: neither."""
    numbers, dates = schema.SESSION, schema.SESSION_DATE
    if layout == "wide" and dates in columns:
        c.add(
            ("columns", dates),
            "session dates in long layout only (in wide layout sessions come from "
            "wide.session_pattern)",
            f"session_date: {columns[dates]}",
            "delete columns.session_date, or set layout: long if the file has one row per session",
        )
        del columns[dates]
    if layout != "long" or not isinstance(sec, Mapping):
        return  # a missing or malformed columns block is reported already
    if numbers in columns and dates in columns:
        c.add(
            ("columns", dates),
            "the session given one way: columns.session (numbers) OR columns.session_date (dates)",
            f"both session: {columns[numbers]} and session_date: {columns[dates]}",
            "delete one: session if your column holds session numbers, session_date if it "
            "holds the dates of the sessions",
        )
        del columns[dates]
    elif sec.get(numbers) is None and sec.get(dates) is None:
        c.add(
            ("columns", numbers),
            "the column holding session numbers (columns.session) or session dates "
            "(columns.session_date)",
            "the key is missing",
            "add 'session:' under 'columns' for session numbers, or 'session_date:' for "
            "session dates (see the template)",
        )


def _check_dated_options(
    c: _Checker, columns: dict[str, str], outcome: OutcomeConfig | None, cleaning: CleaningConfig
) -> None:
    """Options that only make sense with session dates, and the intake they imply."""
    dated = schema.SESSION_DATE in columns
    if cleaning.days_since_first and not dated:
        c.add(
            ("cleaning", "days_since_first"),
            "days_since_first only with session dates (columns.session_date)",
            "days_since_first: true, but sessions are given by number",
            "delete cleaning.days_since_first, or give session dates with columns.session_date",
        )
    if dated and outcome is not None and outcome.intake_session not in (None, 0):
        c.add(
            ("outcome", "intake_session"),
            "with session dates the intake is the patient's first dated record: "
            "intake_session 0, or no intake_session",
            f"intake_session: {outcome.intake_session}",
            "set outcome.intake_session: 0 if each patient's first record is the intake "
            "assessment; delete it otherwise",
            outcome.intake_session,
        )


def _check_wide(c: _Checker, data: Mapping, layout: str | None) -> WideConfig:
    sec = c.section(data, "wide", WIDE_KEYS)
    pattern = c.text(sec, ("wide", "session_pattern"), False, "a regular expression")
    if pattern is None:
        return WideConfig()
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        c.add(
            ("wide", "session_pattern"),
            "a valid regular expression",
            f"'{pattern}' ({exc})",
            f"for example '{DEFAULT_SESSION_PATTERN}' (in single quotes)",
            pattern,
        )
        return WideConfig()
    missing = {"var", "session"} - set(compiled.groupindex)
    if missing and layout == "wide":
        c.add(
            ("wide", "session_pattern"),
            "a regular expression with the named groups (?P<var>…) and (?P<session>…)",
            f"'{pattern}' without the group(s) {', '.join(sorted(missing))}",
            f"for example '{DEFAULT_SESSION_PATTERN}'",
            pattern,
        )
        return WideConfig()
    return WideConfig(session_pattern=pattern)


def config_from_dict(data: Mapping[str, Any], path: str | Path | None = None, *, _lines=None):
    """Check a config given as a mapping and build a :class:`StudyConfig`.

    Parameters
    ----------
    data : mapping
        The config, shaped like ``study_template.yml``.
    path : str or pathlib.Path, optional
        The file the mapping came from (named in error reports; relative
        paths in the config resolve against its folder).

    Returns
    -------
    StudyConfig

    Raises
    ------
    ConfigError
        A :class:`~helpers.errors.StudyDataError` listing every problem found
        (unknown or missing keys, bad values).
    """
    path = None if path is None else Path(path)
    c = _Checker(path, _lines or {})
    if not isinstance(data, Mapping):
        c.add(
            (), "a config made of 'key: value' lines", _type_name(data), "start from the template"
        )
        raise ConfigError(c.problems, _summary(path))
    c.unknown_keys(data, TOP_LEVEL_KEYS)

    study = _check_study_name(c, data)
    read = _check_read(c, data)
    layout = c.choice(data, ("layout",), LAYOUTS, required=True)
    wide = _check_wide(c, data, layout)

    columns = _check_columns(c, data, layout)
    covariates = _check_covariates(c, data)
    labels_sec = c.section(data, "modality_labels", None)
    modality_labels = {
        str(k).strip(): v for k, v in _check_names(c, labels_sec, "modality_labels", None).items()
    }

    alliance, primary = _check_alliance(c, data)
    outcome = _check_outcome(c, data)
    cleaning = _check_cleaning(c, data)
    _check_dated_options(c, columns, outcome, cleaning)

    if not c.problems:
        config = StudyConfig(
            study=str(study),
            layout=str(layout),
            columns=columns,
            alliance=alliance,
            primary_alliance=str(primary),
            outcome=outcome,  # type: ignore[arg-type]
            read=read,
            wide=wide,
            covariates=covariates,
            modality_labels=modality_labels,
            cleaning=cleaning,
            path=None if path is None else path.resolve(),
        )
        _check_reused_columns(c, config)
    if c.problems:
        raise ConfigError(c.problems, _summary(path))
    return config


def _check_study_name(c: _Checker, data: Mapping[str, Any]) -> str | None:
    """``study``: a short name usable in file names."""
    study = c.text(data, ("study",), True, "a short study name")
    if study is not None and not _STUDY_NAME.match(study):
        example = re.sub(r"[^A-Za-z0-9_.-]+", "_", study).strip("_") or "my_study"
        c.add(
            ("study",),
            "a short name of letters, digits, '_', '.' or '-' (it is used in file names)",
            f"'{study}'",
            f"for example: study: {example}",
            study,
        )
    return study


def _check_columns(c: _Checker, data: Mapping[str, Any], layout: str | None) -> dict[str, str]:
    """The ``columns`` block: canonical name -> the user's column, checked against the layout."""
    columns_sec = c.section(data, "columns", COLUMN_KEYS)
    if "columns" not in data:
        c.add(("columns",), "a 'columns' block", "the key is missing", _fix_add(("columns",)))
    columns = _check_names(c, columns_sec, "columns", COLUMN_KEYS)
    required = [schema.PATIENT_ID]
    for key in required:
        if (
            key not in columns
            and isinstance(data.get("columns"), Mapping)
            and (columns_sec.get(key) is None)
        ):
            c.add(
                ("columns", key),
                f"the column holding {key}",
                "the key is missing",
                _fix_add(("columns", key)),
            )
    _check_session_keys(c, data.get("columns"), columns, layout)
    if layout == "wide" and schema.SESSION in columns:
        c.add(
            ("columns", schema.SESSION),
            "no session column in wide layout (session numbers come from wide.session_pattern)",
            f"session: {columns[schema.SESSION]}",
            "delete columns.session, or set layout: long if the file has one row per session",
        )
        del columns[schema.SESSION]
    return columns


def _check_alliance(
    c: _Checker, data: Mapping[str, Any]
) -> tuple[dict[str, MeasureConfig], str | None]:
    """The ``alliance`` blocks (one per rater) and ``primary_alliance``, the rater models use."""
    alliance: dict[str, MeasureConfig] = {}
    alliance_sec = c.section(data, "alliance", schema.RATERS)
    if not alliance_sec:
        c.add(
            ("alliance",),
            f"alliance ratings of at least one rater ({', '.join(schema.RATERS)})",
            "no 'alliance' block" if "alliance" not in data else "an empty 'alliance' block",
            "add an alliance block (see the template)",
        )
    for rater, block in alliance_sec.items():
        if rater not in schema.RATERS:
            continue
        m = _check_measure(c, block, ("alliance", rater), MEASURE_KEYS, ALLIANCE_INSTRUMENTS)
        if m is not None:
            alliance[rater] = m

    primary = c.text(data, ("primary_alliance",), False, "a rater")
    configured = [r for r in alliance_sec if r in schema.RATERS]
    if primary is None and len(configured) == 1:
        primary = configured[0]
    elif primary is None and configured:
        c.add(
            ("primary_alliance",),
            f"the rater whose alliance the models use: one of {', '.join(configured)}",
            "the key is missing",
            f"add 'primary_alliance: {configured[0]}' at the top level",
        )
    elif primary is not None and primary not in configured:
        c.add(
            ("primary_alliance",),
            f"a rater configured under 'alliance': {', '.join(configured) or '(none)'}",
            f"'{primary}'",
            _suggest(primary, configured) if configured else "configure that rater first",
            primary,
        )
    return alliance, primary


def _check_reused_columns(c: _Checker, config: StudyConfig) -> None:
    """A user column may serve one purpose only (e.g. not both patient and therapist id)."""
    uses: dict[str, list[str]] = {}
    for canonical, user in config.columns.items():
        uses.setdefault(user, []).append(f"columns.{canonical}")
    for canonical, user in config.covariates.items():
        uses.setdefault(user, []).append(f"covariates.{canonical}")
    for rater, m in config.alliance.items():
        for user in m.item_columns() + ([m.total] if m.total else []):
            uses.setdefault(user, []).append(f"alliance.{rater}")
    for user in config.outcome.item_columns() + [
        x for x in (config.outcome.total, config.outcome.intake_total) if x
    ]:
        uses.setdefault(user, []).append("outcome")
    for user, keys in uses.items():
        if len(keys) > 1:
            c.add(
                (keys[0].split(".")[0],),
                "each of your columns named once in the config",
                f"column '{user}' named for {' and '.join(keys)}",
                "point each key at its own column",
                user,
            )


def _summary(path: Path | None) -> str:
    name = display_path(path) if path is not None else "the study config"
    return f"The study config {name} cannot be used as it is."


def _config_problem(path: Path, rule: str, found: str, fix: str, **kw: Any) -> ConfigError:
    """A :class:`ConfigError` about the config file as a whole."""
    return ConfigError(
        Problem(file=path.resolve(), column=None, rule=rule, found=found, fix=fix, **kw),
        _summary(path.resolve()),
    )


def _file_kind(path: Path) -> str:
    """What a path that is not a regular file is, in words."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "a folder, not a file"
    if path.is_fifo():
        return "a named pipe (FIFO), not a file"
    if path.is_char_device() or path.is_block_device():
        return "a device, not a file"
    return "not a regular file"


def _read_config_text(path: Path) -> str:
    """The config's text: a regular UTF-8 file of at most :data:`MAX_CONFIG_BYTES`."""
    fix = (
        "check the path, or copy the template: "
        "python -c 'import helpers.config as c; print(c.default_template_path())'"
    )
    rule = "an existing study config file (YAML)"
    if not path.is_file():
        raise _config_problem(path, rule, _file_kind(path), fix)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise _config_problem(
                path,
                f"a study config of at most {MAX_CONFIG_BYTES:,} bytes",
                f"a file of {size:,} bytes",
                "check that this is the study config (it is usually a few kilobytes)",
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise _config_problem(
            path, "a study config file you may read", exc.strerror or str(exc), _OS_FIX
        ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _config_problem(
            path,
            "a study config saved as UTF-8 text",
            f"byte 0x{raw[exc.start]:02X} on line {line} is not UTF-8",
            "save the config as UTF-8 in your editor (e.g. 'Save with encoding: UTF-8')",
            rows=[line],
            row_label="line",
        ) from None


#: Fix for a config the operating system refused to read.
_OS_FIX = "check the file's permissions (you need read access), or copy it somewhere you may read"


def _refuse_aliases(text: str, path: Path) -> None:
    """Stop at the first YAML alias (``*name``).

    A study config needs no anchors or aliases, and aliases of aliases let a
    small file expand into billions of nodes ("billion laughs"), so none is
    accepted.  Scanning the event stream is linear in the file's size.
    """
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1
            raise _config_problem(
                path,
                "a config without YAML aliases (*name) and anchors (&name)",
                f"the alias *{_short(event.anchor)} on line {line}",
                "write the values out in full where the alias stands",
                rows=[line],
                row_label="line",
            )


def _parse_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """The composed node tree (for line numbers) and the parsed data of a config."""
    try:
        _refuse_aliases(text, path)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise _config_problem(
            path,
            "valid YAML ('key: value' lines, nested keys indented by spaces)",
            str(getattr(exc, "problem", None) or exc).strip(),
            "check the indentation and quoting near that line; quote values containing ':' or '#'",
            rows=[mark.line + 1] if mark is not None else [],
            row_label="line",
        ) from None
    except (RecursionError, ValueError) as exc:
        found = "blocks nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _config_problem(
            path,
            "a study config shaped like the template",
            _short(found, 120),
            "start from the template and keep its nesting",
        ) from None
    return node, data


def load_config(path: str | Path) -> StudyConfig:
    """Read and check a study config (YAML, shaped like ``study_template.yml``).

    Parameters
    ----------
    path : str or pathlib.Path
        The config file.

    Returns
    -------
    StudyConfig
        With ``path`` set to the config's absolute path.

    Raises
    ------
    ConfigError
        A :class:`~helpers.errors.StudyDataError`, when the file is missing,
        not a regular file (a folder, a FIFO, a device), unreadable, larger
        than :data:`MAX_CONFIG_BYTES`, not UTF-8, not valid YAML or uses YAML
        aliases (``*name``: refused outright, a study config needs none and
        they allow "billion laughs" expansions), or for every unknown key
        (with the nearest valid key suggested),
        missing required key and bad value, each with its line number.

    Examples
    --------
    >>> load_config(default_template_path()).outcome.instrument
    'phq9'
    """
    path = Path(path)
    text = _read_config_text(path)
    node, data = _parse_yaml(text, path)
    duplicates: list[tuple[tuple[str, ...], int]] = []
    lines = _line_numbers(node, duplicates, set()) if node is not None else {}
    if data is None:
        data = {}
    try:
        config = config_from_dict(data, path.resolve(), _lines=lines)
        problems: list[Problem] = []
    except StudyDataError as exc:
        problems = exc.problems
        config = None
    for key, line in duplicates:
        problems.append(
            Problem(
                file=path.resolve(),
                column=".".join(key),
                rows=[line],
                rule="each key given once per block",
                found=f"'{key[-1]}' given again",
                fix="delete one of the copies (only the last one would be used)",
                row_label="line",
            )
        )
    if problems or config is None:
        raise ConfigError(problems, _summary(path.resolve()))
    return config
