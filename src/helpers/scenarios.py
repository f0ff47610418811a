"""A matrix of simulated study shapes, each written as a clinic would export it.

The demo study (:func:`helpers.simulate.write_demo_study`) is one shape of
study: 40 therapists, client and therapist WAI-SR, PHQ-9 items, numbered
sessions with an intake at session 0, a comma-separated file.  Real studies
differ: one rater only, no therapist identifiers, other instruments, mean
scores, dates instead of session numbers, a wide SPSS file, decimal commas,
very short or very long treatments.  :data:`SCENARIOS` lists such shapes; for
each, :func:`write_scenario` simulates a small study with
:func:`helpers.simulate.simulate_study`, writes the data file the way a clinic
would send it, the study config that maps it onto the suite's schema
(``study.yml``, a commented YAML file), a short ``README.md`` and, where the
simulated truth is on the scales the suite analyses (client WAI-SR and PHQ-9,
sum-scored), the ``truth.json`` of the simulation.  The whole suite can then
run on each::

    make scenarios
    make all DATA=runs/scenarios-data/tiny/sessions.csv \\
        CONFIG=runs/scenarios-data/tiny/study.yml OUT=runs/scenarios/tiny

Nothing here describes a real person: identifiers are sequential labels and
the dates of :data:`SCENARIOS` ``["session_dates"]`` start in a fixed year.
Every file is byte-identical on re-run (fixed seeds, no time stamps).

Examples
--------
>>> SCENARIOS["tiny"].kwargs["n_therapists"]
5
>>> [name for name, s in SCENARIOS.items() if not s.truth][:3]
['therapist_only', 'wai_s_oq45', 'gad7']
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import re
import tempfile
import textwrap
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from helpers import schema, scoring, simulate
from helpers.errors import SettingsError
from helpers.safety import atomic_write_bytes

# --------------------------------------------------------------------------- #
# Column names of the clinic export (helpers.simulate.export_clinic_file)
# --------------------------------------------------------------------------- #
WAI_EXPORT: tuple[str, ...] = tuple(f"wai_{k}" for k in range(1, simulate.WAI_SR_ITEMS + 1))
PHQ_EXPORT: tuple[str, ...] = tuple(f"phq_{k}" for k in range(1, simulate.PHQ9_ITEMS + 1))
THERAPIST_TOTAL = "therapist_wai_total"
LEADING: tuple[str, ...] = ("therapist", "patient", "session", "modality", "age", "gender")
WAI_CLEAN: tuple[str, ...] = tuple(
    schema.alliance_item_column("client", k) for k in range(1, simulate.WAI_SR_ITEMS + 1)
)
PHQ_CLEAN: tuple[str, ...] = tuple(
    schema.outcome_item_column(k) for k in range(1, simulate.PHQ9_ITEMS + 1)
)
THERAPIST_CLEAN = schema.alliance_total_column("therapist")

#: Where ``make scenarios`` writes the matrix.
DEFAULT_OUT = Path("runs") / "scenarios-data"
CONFIG_NAME = "study.yml"
TRUTH_NAME = "truth.json"
README_NAME = "README.md"

#: SPSS codes of the wide file: -99 is declared user-missing in the file, -77 is not
#: (the config's read.missing_codes lists both).
SAV_SKIPPED, SAV_NOT_ASKED = -99, -77
SAV_MODALITY_CODES: dict[str, int] = {"CBT": 1, "psychodynamic": 2, "humanistic": 3}
FIRST_DATE = date(2019, 1, 7)  # synthetic calendar of the session_dates scenario

_SMALL: dict[str, int] = {"n_therapists": 14, "patients_per_therapist": 5, "max_sessions": 20}
_TWO_LEVEL: dict[str, float] = {
    "alliance_sd_therapist": 0.0,
    "outcome_sd_therapist": 0.0,
    "therapist_rating_sd_therapist": 0.0,
}
_REVERSED: dict[str, Any] = {
    "alliance_within_effect": -simulate.DEFAULT_PARAMETERS["alliance_within_effect"],
    "alliance_between_effect": -simulate.DEFAULT_PARAMETERS["alliance_between_effect"],
    "reverse_path_effect": -simulate.DEFAULT_PARAMETERS["reverse_path_effect"],
    "alliance_mean": 41.0,
    "therapist_rating_mean": 46.0,
    "modality_outcome_effects": {"psychodynamic": -3.0},
}
_HEAVY_DROPOUT: dict[str, float] = {
    "dropout_hazard_early": 3 * simulate.DEFAULT_PARAMETERS["dropout_hazard_early"],
    "dropout_hazard_late": 3 * simulate.DEFAULT_PARAMETERS["dropout_hazard_late"],
}


# --------------------------------------------------------------------------- #
# The registry
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Scenario:
    """One study shape of the matrix.

    Attributes
    ----------
    name : str
        Key in :data:`SCENARIOS` and the name of the scenario's folder.
    description : str
        One line: what differs from the demo study.
    data_file : str
        Name of the data file written into the folder.
    truth : bool
        Whether ``truth.json`` is written (only when the simulated truth is on
        the analysed scales: client WAI-SR and PHQ-9, sum-scored).
    kwargs : mapping
        Keyword arguments of :func:`helpers.simulate.simulate_study`.
    new_config_keys : tuple of str
        Config options the study config uses beyond the demo study's (e.g.
        ``columns.session_date``); empty when it uses only the demo's kinds of keys.
    """

    name: str
    description: str
    data_file: str
    truth: bool
    kwargs: Mapping[str, Any]
    new_config_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))


def _scenario(
    name: str, description: str, seed: int, *, data_file: str = "sessions.csv", truth=True, **kw
) -> Scenario:
    new_keys = tuple(kw.pop("new_config_keys", ()))
    kwargs = {**_SMALL, **kw, "seed": seed}
    return Scenario(name, description, data_file, truth, kwargs, new_keys)


#: The study shapes, in the order they are written.
SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            _scenario("client_only", "only the client rates the alliance", 3101),
            _scenario(
                "therapist_only",
                "only the therapist rates the alliance (WAI-SR items); primary_alliance: therapist",
                3102,
                truth=False,
            ),
            _scenario(
                "two_level",
                "no therapist column (patients and sessions only; no therapist variance)",
                3103,
                **_TWO_LEVEL,
                new_config_keys=("columns.therapist_id left out",),
            ),
            _scenario(
                "wai_s_oq45",
                "client WAI-S (12 items 1-7, two reverse-keyed) and OQ-45 (45 items 0-4) outcome",
                3104,
                truth=False,
            ),
            _scenario("gad7", "GAD-7 (7 items 0-3) as the outcome", 3105, truth=False),
            _scenario(
                "mean_scored",
                "alliance given as item means (client 1-5 with two decimals, therapist 1-5)",
                3106,
                truth=False,
                new_config_keys=("alliance.client.total_scale", "alliance.therapist.total_scale"),
            ),
            _scenario(
                "max_8_sessions",
                "at most 8 treatment sessions, and no intake assessment (no session 0, no "
                "intake total)",
                3107,
                max_sessions=8,
            ),
            _scenario(
                "sessions_40",
                "up to 40 sessions (8 therapists x 4 patients, late dropout 0.03)",
                3108,
                n_therapists=8,
                patients_per_therapist=4,
                max_sessions=40,
                dropout_hazard_late=0.03,
            ),
            _scenario(
                "tiny",
                "5 therapists x 4 patients, and no modality column",
                3109,
                n_therapists=5,
                patients_per_therapist=4,
            ),
            _scenario(
                "reversed",
                "stronger alliance, worse outcome; therapists rate higher than clients; "
                "psychodynamic 3 PHQ-9 points lower",
                3110,
                n_therapists=15,
                patients_per_therapist=6,
                **_REVERSED,
            ),
            _scenario(
                "heavy_dropout",
                "dropout hazards 3x the demo's (0.30 early, 0.21 late)",
                3111,
                patients_per_therapist=6,
                **_HEAVY_DROPOUT,
            ),
            _scenario(
                "session_dates",
                "visit dates (ISO, weekly with gaps) instead of session numbers",
                3112,
                new_config_keys=("columns.session_date",),
            ),
            _scenario(
                "wide_spss",
                "wide SPSS file (one row per patient), user-missing -99/-77, labelled modality",
                3113,
                data_file="patients_wide.sav",
            ),
            _scenario(
                "decimal_comma",
                "';'-separated CSV with decimal commas (age, therapist mean rating)",
                3114,
                new_config_keys=("read.decimal", "alliance.therapist.total_scale"),
            ),
        )
    }
)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises
    ------
    ValueError
        If there is no such scenario (the message lists the names).
    """
    if name not in SCENARIOS:
        raise SettingsError(
            f"unknown scenario {name!r}; the scenarios are: {', '.join(SCENARIOS)}."
        )
    return SCENARIOS[name]


# --------------------------------------------------------------------------- #
# Study configs
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ConfigSpec:
    """A study config as nested mappings, with comments; rendered by :func:`render_config`.

    ``comments`` maps a dotted key (``"read.missing_codes"``) to a comment
    written at the end of that key's line; ``notes`` are the header lines
    saying what the scenario tests.  Sections that are ``None`` are left out.
    """

    study: str
    notes: tuple[str, ...]
    read: Mapping[str, Any]
    columns: Mapping[str, str]
    alliance: Mapping[str, Mapping[str, Any]]
    primary_alliance: str
    outcome: Mapping[str, Any]
    layout: str = "long"
    wide: Mapping[str, str] | None = None
    covariates: Mapping[str, str] | None = None
    modality_labels: Mapping[str, str] | None = None
    cleaning: Mapping[str, Any] | None = None
    comments: Mapping[str, str] = field(default_factory=dict)


_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def _yaml_scalar(value: Any, in_list: bool = False) -> str:
    """A YAML scalar: numbers bare, strings plain when safe, else quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if "\\" in text:
        return "'" + text.replace("'", "''") + "'"
    if not in_list and _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _yaml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_scalar(v, in_list=True) for v in value) + "]"
    return _yaml_scalar(value)


def _block(key: str, value: Any, comments: Mapping[str, str], indent: int = 0) -> list[str]:
    """YAML lines of one key; mappings become nested blocks."""
    pad = " " * indent
    comment = comments.get(key)
    tail = f"  # {comment}" if comment else ""
    name = _yaml_scalar(key.rsplit(".", 1)[-1])
    if not isinstance(value, Mapping):
        return [f"{pad}{name}: {_yaml_value(value)}{tail}"]
    lines = [f"{pad}{name}:{tail}"]
    for sub_key, sub_value in value.items():
        lines += _block(f"{key}.{sub_key}", sub_value, comments, indent + 2)
    return lines


def render_config(spec: ConfigSpec, header: Sequence[str] = ()) -> str:
    """The config as commented YAML text (header comment lines first).

    Parameters
    ----------
    spec : ConfigSpec
        The config.
    header : sequence of str
        Comment lines above ``spec.notes`` (without the leading ``#``).

    Returns
    -------
    str
        YAML text ending in a newline.

    Examples
    --------
    >>> spec = base_spec("x", ())
    >>> "item_pattern: \\"wai_{i}\\"" in render_config(spec)
    True
    """
    lines = [f"# {line}".rstrip() for line in (*header, *spec.notes)]
    lines += ["", f"study: {_yaml_scalar(spec.study)}", ""]
    sections: list[tuple[str, Any]] = [
        ("read", spec.read),
        ("layout", spec.layout),
        ("wide", spec.wide),
        ("columns", spec.columns),
        ("covariates", spec.covariates),
        ("modality_labels", spec.modality_labels),
        ("alliance", spec.alliance),
        ("primary_alliance", spec.primary_alliance),
        ("outcome", spec.outcome),
        ("cleaning", spec.cleaning),
    ]
    for key, value in sections:
        if value is not None:
            lines += [*_block(key, value, spec.comments), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def base_spec(study: str, notes: Sequence[str]) -> ConfigSpec:
    """The demo study's config (``data/raw/demo/study.yml``) as a :class:`ConfigSpec`.

    Parameters
    ----------
    study : str
        The ``study`` name.
    notes : sequence of str
        Header comment lines.

    Returns
    -------
    ConfigSpec
    """
    return ConfigSpec(
        study=study,
        notes=tuple(notes),
        read={
            "format": "csv",
            "header_row": 1,
            "delimiter": ",",
            "encoding": "utf-8",
            "missing_codes": list(simulate.MISSING_CODES),
        },
        columns={
            schema.THERAPIST_ID: "therapist",
            schema.PATIENT_ID: "patient",
            schema.SESSION: "session",
            schema.MODALITY: "modality",
        },
        covariates={"age": "age", "gender": "gender"},
        modality_labels={label: name for name, label in simulate.EXPORT_MODALITY_LABELS.items()},
        alliance={
            "client": {"instrument": "wai_sr", "item_pattern": "wai_{i}"},
            "therapist": {"instrument": "wai_sr", "total": THERAPIST_TOTAL},
        },
        primary_alliance="client",
        outcome={"instrument": "phq9", "item_pattern": "phq_{i}", "intake_session": 0},
        cleaning={
            "out_of_range": "set_missing",
            "conflicting_duplicates": "exclude",
            "multiple_therapists": "keep_majority",
            "min_sessions_within": 3,
            "early_session": 3,
        },
        comments={
            "read.missing_codes": "two clerks: NA or blank; a few cells '.'",
            "outcome.intake_session": "session 0 = intake assessment (PHQ-9 only)",
            "cleaning.multiple_therapists": "one row carries a mistyped therapist id",
        },
    )


def _config_header(scenario: Scenario) -> list[str]:
    differs = f"What differs from the demo study: {scenario.description}."
    return [
        f'Study config of the SIMULATED scenario "{scenario.name}" ({scenario.data_file} '
        "in this folder).",
        *textwrap.wrap(differs, width=88),
        "Every value in the data file is simulated: no real person, therapist or clinic.",
        "Written by helpers.scenarios.write_scenario (`make scenarios`); do not edit by hand.",
        "The format is documented key by key in src/helpers/study_template.yml.",
        "",
    ]


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Export:
    """A scenario's data file and config, before writing."""

    payload: bytes
    spec: ConfigSpec
    columns: list[str]
    n_rows: int
    faults: list[dict] = field(default_factory=list)
    info: Mapping[str, Any] = field(default_factory=dict)


def _rng(scenario: Scenario, purpose: str) -> np.random.Generator:
    """A generator for one shaping step, independent of the simulation's streams."""
    return np.random.default_rng([int(scenario.kwargs["seed"]), zlib.crc32(purpose.encode())])


def _delimited_text(table: pd.DataFrame, delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.to_numpy(dtype=object).tolist())
    return buffer.getvalue()


def _is_code(cells: pd.Series | pd.DataFrame) -> Any:
    return cells.isin(list(simulate.MISSING_CODES))


def _missing_counts(table: pd.DataFrame) -> dict[str, int]:
    return {code: int((table == code).to_numpy().sum()) for code in simulate.MISSING_CODES}


def _drop_columns(
    table: pd.DataFrame, faults: list[dict], columns: Iterable[str]
) -> tuple[pd.DataFrame, list[dict]]:
    """Drop columns of the clinic export and the fault records that lived in them."""
    dropped = set(columns)
    table = table.drop(columns=sorted(dropped))
    kept = []
    for fault in copy.deepcopy(faults):
        if fault["type"] == "missing_codes":
            fault["counts"] = _missing_counts(table)
            if "therapist" in dropped:
                fault["rule"] += " (the therapist column is not in this file)"
        elif fault["type"] == "conflicting_duplicate":
            fault["changes"] = [c for c in fault["changes"] if c["column"] not in dropped]
            if not fault["changes"]:
                continue
        elif fault.get("column") in dropped:
            continue
        kept.append(fault)
    return table, kept


def _clinic_table(data: pd.DataFrame, scenario: Scenario) -> tuple[pd.DataFrame, list[dict]]:
    """The demo's clinic export of ``data``, faults included."""
    return simulate.export_clinic_file(data, int(scenario.kwargs["seed"]))


def _csv_export(
    table: pd.DataFrame, faults: list[dict], spec: ConfigSpec, delimiter: str = ","
) -> _Export:
    info = {"missing_codes": list(spec.read["missing_codes"]), "delimiter": delimiter}
    if spec.modality_labels:
        info["modality_labels"] = {v: k for k, v in spec.modality_labels.items()}
    return _Export(
        payload=_delimited_text(table, delimiter).encode("utf-8"),
        spec=spec,
        columns=list(table.columns),
        n_rows=len(table),
        faults=faults,
        info=info,
    )


def _row_code(cells: pd.DataFrame) -> pd.Series:
    """Per row, the first missing code among the cells ("" if none)."""
    values = cells.to_numpy(dtype=object)
    is_code = _is_code(cells).to_numpy()
    first = values[np.arange(len(values)), is_code.argmax(axis=1)]
    return pd.Series(np.where(is_code.any(axis=1), first, ""), index=cells.index, dtype="str")


def _numbers(cells: pd.DataFrame | pd.Series) -> Any:
    """Text cells as floats (missing codes as NaN)."""
    return cells.where(~_is_code(cells)).astype("float64")


def _format_numbers(values: pd.Series, codes: pd.Series, fmt: str, comma: bool = False) -> Any:
    text = values.map(lambda v: format(v, fmt), na_action="ignore")
    if comma:
        text = text.str.replace(".", ",", regex=False)
    return text.where(values.notna(), codes).astype("str")


def _patient_draws(patients: pd.Series, draw: Callable[[int], np.ndarray]) -> np.ndarray:
    """Per row, the row's patient's value of ``draw(number of patients)`` (sorted ids)."""
    order = {p: k for k, p in enumerate(sorted(set(patients)))}
    return draw(len(order))[patients.map(order).to_numpy(dtype="int64")]


# --------------------------------------------------------------------------- #
# Other instruments and rating scales
# --------------------------------------------------------------------------- #
def _propensities(
    rng: np.random.Generator, patient_index: np.ndarray, n_items: int, sd: float = 0.4
) -> np.ndarray:
    """Item propensities: patient-by-item plus row-by-item normal effects."""
    by_patient = sd * rng.standard_normal((int(patient_index.max()) + 1, n_items))
    return by_patient[patient_index] + sd * rng.standard_normal((patient_index.size, n_items))


def _prorated_total(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with any answered item, and the mean of the answered items times their number."""
    answered = ~np.isnan(items)
    rows = answered.any(axis=1)
    totals = np.nanmean(items[rows], axis=1) * items.shape[1]
    return rows, totals


def _instrument_items(totals: np.ndarray, propensity: np.ndarray, instrument: str) -> np.ndarray:
    """Raw item answers adding up (after reverse-scoring) to ``totals``."""
    inst = scoring.get_instrument(instrument)
    items = simulate.spread_total_over_items(totals, propensity, inst.item_min, inst.item_max)
    reverse = [i - 1 for i in inst.reverse_items]
    items[:, reverse] = inst.item_min + inst.item_max - items[:, reverse]
    return items.astype("float64")


Rescale = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _rescaled_items(
    source: np.ndarray,
    patient_index: np.ndarray,
    instrument: str,
    rescale: Rescale,
    rng: np.random.Generator,
) -> np.ndarray:
    """Items of ``instrument`` whose scored total is ``rescale(source total)``.

    Rows with no answered source item stay missing.  ``rescale`` maps the
    prorated source totals to target totals (floats); they are rounded and
    clipped to the instrument range before being spread over the items.
    """
    inst = scoring.get_instrument(instrument)
    rows, totals = _prorated_total(source)
    low, high = inst.n_items * inst.item_min, inst.n_items * inst.item_max
    target = np.clip(np.rint(rescale(totals, rng)), low, high)
    propensity = _propensities(rng, patient_index, inst.n_items)[rows]
    out = np.full((source.shape[0], inst.n_items), np.nan)
    out[rows] = _instrument_items(target, propensity, instrument)
    return out


def _wai_s_items(
    data: pd.DataFrame, patient_index: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Client WAI-S items (1-7): the WAI-SR total stretched to 12-84, same blanks."""
    wai = data[list(WAI_CLEAN)].astype("float64").to_numpy()

    def stretch(total: np.ndarray, g: np.random.Generator) -> np.ndarray:
        return 12 + 1.5 * (total - 12) + g.uniform(-0.75, 0.75, total.size)

    items = _rescaled_items(wai, patient_index, "wai_s", stretch, rng)
    items[np.isnan(wai)] = np.nan
    return items


def _oq45_items(
    data: pd.DataFrame, patient_index: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """OQ-45 items (0-4): 25 + 4 x PHQ-9 total + N(0, 3); a few single blanks."""
    phq = data[list(PHQ_CLEAN)].astype("float64").to_numpy()

    def oq_total(total: np.ndarray, g: np.random.Generator) -> np.ndarray:
        return 25 + 4 * total + 3 * g.standard_normal(total.size)

    items = _rescaled_items(phq, patient_index, "oq45", oq_total, rng)
    items[rng.random(items.shape) < 0.01] = np.nan
    return items


def _gad7_items(
    data: pd.DataFrame, patient_index: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """GAD-7 items (0-3): the PHQ-9 total times 21/27, blanks of PHQ-9 items 1-7."""
    phq = data[list(PHQ_CLEAN)].astype("float64").to_numpy()

    def shrink(total: np.ndarray, g: np.random.Generator) -> np.ndarray:
        return total * 21 / 27 + g.uniform(-0.5, 0.5, total.size)

    items = _rescaled_items(phq, patient_index, "gad7", shrink, rng)
    items[np.isnan(phq[:, :7])] = np.nan
    return items


def _therapist_items(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The export's therapist WAI-SR total spread over 12 items (text, same missing code).

    Items depend only on the patient, the session and the total, so an exact
    duplicate row stays exact.
    """
    cells = table[THERAPIST_TOTAL]
    present = ~_is_code(cells).to_numpy()
    keys = table["patient"] + "|" + table["session"]
    key_index, _ = pd.factorize(keys, sort=True)
    patient_index, _ = pd.factorize(table["patient"], sort=True)
    n_items = simulate.WAI_SR_ITEMS
    by_patient = 0.3 * rng.standard_normal((int(patient_index.max()) + 1, n_items))
    by_key = 0.3 * rng.standard_normal((int(key_index.max()) + 1, n_items))
    propensity = np.asarray(simulate.WAI_ITEM_DIFFICULTY) + by_patient[patient_index]
    propensity = (propensity + by_key[key_index])[present]
    totals = cells[present].astype("int64").to_numpy()
    items = simulate.spread_total_over_items(totals, propensity, 1, 5)
    out = np.repeat(cells.to_numpy(dtype=object)[:, None], n_items, axis=1)
    out[present] = items.astype(str)
    return pd.DataFrame(out, columns=[f"twai_{k}" for k in range(1, n_items + 1)], dtype="str")


# --------------------------------------------------------------------------- #
# Shapes: each turns the simulated data into an _Export
# --------------------------------------------------------------------------- #
def design_changes(scenario: Scenario) -> dict[str, Any]:
    """The simulation arguments of ``scenario`` that differ from the demo study's.

    Examples
    --------
    >>> design_changes(SCENARIOS["max_8_sessions"])
    {'n_therapists': 14, 'patients_per_therapist': 5, 'max_sessions': 8}
    """
    demo = {"n_therapists": 40, "patients_per_therapist": 10, "max_sessions": 20}
    demo.update(simulate.DEFAULT_PARAMETERS)
    return {
        k: v for k, v in scenario.kwargs.items() if k != "seed" and (k not in demo or demo[k] != v)
    }


def _shape_demo_layout(data: pd.DataFrame, scenario: Scenario) -> _Export:
    changes = ", ".join(f"{k}={v!r}" for k, v in design_changes(scenario).items())
    notes = (
        "The file has the demo study's columns and its kinds of data-entry faults (listed in",
        "truth.json); only the simulated design differs:",
        *textwrap.wrap(changes, width=86),
    )
    table, faults = _clinic_table(data, scenario)
    return _csv_export(table, faults, base_spec(scenario.name, notes))


def _shape_client_only(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests a study where only the client rated the alliance: there is no therapist",
        "rating column in the file and no 'therapist' block under 'alliance'.",
    )
    table, faults = _clinic_table(data, scenario)
    table, faults = _drop_columns(table, faults, [THERAPIST_TOTAL])
    spec = base_spec(scenario.name, notes)
    spec = replace(spec, alliance={"client": spec.alliance["client"]})
    return _csv_export(table, faults, spec)


def _shape_therapist_only(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests a study where only the therapist rated the alliance, item by item",
        "(WAI-SR therapist form, twai_1 .. twai_12, 1-5), and the models use that rating.",
        "No truth.json: the simulated truth is about the client's alliance.",
    )
    table, _ = _clinic_table(data, scenario)
    items = _therapist_items(table, _rng(scenario, "therapist items"))
    table, _ = _drop_columns(table, [], [*WAI_EXPORT, THERAPIST_TOTAL])
    table = pd.concat([table[list(LEADING)], items, table[list(PHQ_EXPORT)]], axis=1)
    spec = base_spec(scenario.name, notes)
    spec = replace(
        spec,
        alliance={"therapist": {"instrument": "wai_sr", "item_pattern": "twai_{i}"}},
        primary_alliance="therapist",
    )
    return _csv_export(table, [], spec)


def _shape_two_level(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests a two-level study (sessions within patients): the file has no therapist",
        "column and the config no columns.therapist_id. Simulated without therapist",
        "variance (alliance, outcome and rater leniency), so a two-level model is right.",
    )
    table, faults = _clinic_table(data, scenario)
    table, faults = _drop_columns(table, faults, ["therapist"])
    spec = base_spec(scenario.name, notes)
    columns = {k: v for k, v in spec.columns.items() if k != schema.THERAPIST_ID}
    cleaning = {k: v for k, v in spec.cleaning.items() if k != "multiple_therapists"}
    comments = {
        **spec.comments,
        "columns": "no therapist_id: the file has no therapist column",
        "read.missing_codes": "NA or blank by clerk; a few cells '.'",
    }
    spec = replace(spec, columns=columns, cleaning=cleaning, comments=comments)
    return _csv_export(table, faults, spec)


def _numbered_columns(stem: str, count: int) -> list[str]:
    return [f"{stem}{k}" for k in range(1, count + 1)]


def _whole_number_text(values: np.ndarray, code: str) -> np.ndarray:
    """Whole numbers as text, NaN as ``code``."""
    out = np.full(values.shape, code, dtype=object)
    present = ~np.isnan(values)
    if not np.all(values[present] == np.rint(values[present])):  # internal invariant
        raise RuntimeError("_whole_number_text: a value is not a whole number")
    out[present] = values[present].astype(np.int64).astype(str)
    return out


def _text_table(values: Mapping[str, np.ndarray], code: str) -> pd.DataFrame:
    """Columns of whole numbers (float, NaN = missing) or text as the cells of a CSV."""
    columns = {}
    for name, column in values.items():
        if column.dtype.kind == "f":
            column = _whole_number_text(column, code)
        columns[name] = pd.array(column, dtype="str")
    return pd.DataFrame(columns)


def _leading_values(data: pd.DataFrame) -> dict[str, Any]:
    labels = simulate.EXPORT_MODALITY_LABELS
    return {
        "therapist": data[schema.THERAPIST_ID].to_numpy(dtype=object),
        "patient": data[schema.PATIENT_ID].to_numpy(dtype=object),
        "session": data[schema.SESSION].to_numpy(dtype="float64"),
        "modality": data[schema.MODALITY].map(labels).to_numpy(dtype=object),
        "age": data["age"].to_numpy(dtype="float64"),
        "gender": data["gender"].to_numpy(dtype=object),
    }


def _matrix_columns(stem: str, matrix: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(_numbered_columns(stem, matrix.shape[1]), matrix.T, strict=True))


def _shape_wai_s_oq45(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests other instruments: client WAI-S (Tracey & Kokotovic 1989; wais_1 .. wais_12,",
        "1-7, items 4 and 10 reverse-keyed, as helpers.scoring says) and the OQ-45",
        "(oq_1 .. oq_45, 0-4, nine reverse-keyed items). The simulated WAI-SR total T is",
        "stretched to 12 + 1.5 (T - 12) and the PHQ-9 total Y mapped to 25 + 4 Y + N(0, 3),",
        "then spread over the items. No truth.json: the scales differ from the simulation's.",
        "No injected faults; missing cells are NA.",
    )
    patient_index, _ = pd.factorize(data[schema.PATIENT_ID], sort=True)
    rng = _rng(scenario, "wai_s oq45")
    values = {
        **_leading_values(data),
        **_matrix_columns("wais_", _wai_s_items(data, patient_index, rng)),
        "twai_total": data[THERAPIST_CLEAN].astype("float64").to_numpy(),
        **_matrix_columns("oq_", _oq45_items(data, patient_index, rng)),
    }
    table = _text_table(values, "NA")
    spec = base_spec(scenario.name, notes)
    spec = replace(
        spec,
        read={**spec.read, "missing_codes": ["", "NA"]},
        alliance={
            "client": {"instrument": "wai_s", "item_pattern": "wais_{i}"},
            "therapist": {"instrument": "wai_sr", "total": "twai_total"},
        },
        outcome={"instrument": "oq45", "item_pattern": "oq_{i}", "intake_session": 0},
        cleaning={**spec.cleaning, "multiple_therapists": "exclude"},
        comments={**spec.comments, "read.missing_codes": "missing cells are NA"},
    )
    return _csv_export(table, [], spec)


def _shape_gad7(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests another outcome: the GAD-7 (gad_1 .. gad_7, 0-3, total 0-21). The simulated",
        "PHQ-9 total Y is mapped to 21/27 Y and spread over the items; a GAD-7 item is",
        "blank where the PHQ-9 item of the same number was. No truth.json (other scale).",
        "No injected faults; missing cells are blank.",
    )
    patient_index, _ = pd.factorize(data[schema.PATIENT_ID], sort=True)
    gad = _gad7_items(data, patient_index, _rng(scenario, "gad7"))
    values = {
        **_leading_values(data),
        **{f"wai_{k + 1}": data[c].astype("float64").to_numpy() for k, c in enumerate(WAI_CLEAN)},
        THERAPIST_TOTAL: data[THERAPIST_CLEAN].astype("float64").to_numpy(),
        **_matrix_columns("gad_", gad),
    }
    table = _text_table(values, "")
    spec = base_spec(scenario.name, notes)
    spec = replace(
        spec,
        outcome={"instrument": "gad7", "item_pattern": "gad_{i}", "intake_session": 0},
        cleaning={**spec.cleaning, "multiple_therapists": "exclude"},
        comments={**spec.comments, "read.missing_codes": "missing cells are blank"},
    )
    return _csv_export(table, [], spec)


def _shape_mean_scored(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests alliance totals stored as item means: wai_mean is the mean of the answered",
        "client WAI-SR items (at most one blank; two decimals, 1-5), therapist_wai_mean the",
        "therapist total / 12 (two decimals). total_scale: mean says so. No truth.json.",
    )
    table, _ = _clinic_table(data, scenario)
    items = _numbers(table[list(WAI_EXPORT)])
    mean = items.mean(axis=1).where(items.notna().sum(axis=1) >= simulate.WAI_SR_ITEMS - 1)
    codes = _row_code(table[list(WAI_EXPORT)])
    therapist = _numbers(table[THERAPIST_TOTAL]) / simulate.WAI_SR_ITEMS
    table = table.assign(
        wai_mean=_format_numbers(mean, codes, ".2f"),
        therapist_wai_mean=_format_numbers(therapist, table[THERAPIST_TOTAL], ".2f"),
    )
    table = table[[*LEADING, "wai_mean", "therapist_wai_mean", *PHQ_EXPORT]]
    spec = base_spec(scenario.name, notes)
    spec = replace(
        spec,
        alliance={
            "client": {"instrument": "wai_sr", "total": "wai_mean", "total_scale": "mean"},
            "therapist": {
                "instrument": "wai_sr",
                "total": "therapist_wai_mean",
                "total_scale": "mean",
            },
        },
        comments={
            **spec.comments,
            "alliance.client.total_scale": "NEW key: the column holds the item mean (1-5)",
        },
    )
    return _csv_export(table, [], spec)


def _shape_no_modality(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = ("Tests a study without a modality column (no modality, no modality_labels).",)
    table, faults = _clinic_table(data, scenario)
    table, faults = _drop_columns(table, faults, ["modality"])
    spec = base_spec(scenario.name, notes)
    columns = {k: v for k, v in spec.columns.items() if k != schema.MODALITY}
    spec = replace(spec, columns=columns, modality_labels=None)
    return _csv_export(table, faults, spec)


def _shape_no_intake(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests a study without an intake assessment: the file starts at session 1, and the",
        "config has neither outcome.intake_session nor outcome.intake_total.",
    )
    treatment = data.loc[data[schema.SESSION] >= 1].reset_index(drop=True)
    table, faults = _clinic_table(treatment, scenario)
    spec = base_spec(scenario.name, notes)
    outcome = {k: v for k, v in spec.outcome.items() if k != "intake_session"}
    comments = {k: v for k, v in spec.comments.items() if k != "outcome.intake_session"}
    comments["outcome"] = "no intake: the first record is treatment session 1"
    spec = replace(spec, outcome=outcome, comments=comments)
    return _csv_export(table, faults, spec)


def _shape_decimal_comma(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests a continental-European export: fields separated by ';' and decimal commas.",
        "age has one decimal (e.g. 38,4); therapist_wai_mean is the therapist WAI-SR",
        "total / 12 with two decimals (e.g. 3,75).",
    )
    table, faults = _clinic_table(data, scenario)
    rng = _rng(scenario, "age")
    tenths = _patient_draws(table["patient"], lambda n: rng.integers(0, 10, n))
    age = table["age"].astype("int64") + tenths / 10
    therapist = _numbers(table[THERAPIST_TOTAL]) / simulate.WAI_SR_ITEMS
    table = table.assign(
        age=_format_numbers(age, table["age"], ".1f", comma=True),
        therapist_wai_total=_format_numbers(therapist, table[THERAPIST_TOTAL], ".2f", comma=True),
    ).rename(columns={THERAPIST_TOTAL: "therapist_wai_mean"})
    spec = base_spec(scenario.name, notes)
    spec = replace(
        spec,
        read={**spec.read, "delimiter": ";", "decimal": ","},
        alliance={
            "client": spec.alliance["client"],
            "therapist": {
                "instrument": "wai_sr",
                "total": "therapist_wai_mean",
                "total_scale": "mean",
            },
        },
        comments={
            **spec.comments,
            "read.decimal": "NEW key: decimal comma",
            "alliance.therapist.total_scale": "NEW key: the column holds the item mean (1-5)",
        },
    )
    export = _csv_export(table, faults, spec, delimiter=";")
    return replace(export, info={**export.info, "decimal": ","})


def _visit_dates(patients: pd.Series, sessions: pd.Series, rng: np.random.Generator) -> pd.Series:
    """ISO dates: intake on a day of the fixed year, then mostly weekly, some gaps."""
    names = sorted(set(patients))
    n_max = int(sessions.max())
    start = rng.integers(0, 330, len(names))
    gaps = rng.choice([7, 14, 21, 3, 4], p=[0.75, 0.12, 0.05, 0.04, 0.04], size=(len(names), n_max))
    offsets = np.concatenate([start[:, None], start[:, None] + gaps.cumsum(axis=1)], axis=1)
    row = patients.map({p: k for k, p in enumerate(names)}).to_numpy(dtype="int64")
    days = offsets[row, sessions.to_numpy(dtype="int64")]
    return pd.Series([(FIRST_DATE + timedelta(days=int(d))).isoformat() for d in days], dtype="str")


def _shape_session_dates(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests session DATES instead of session numbers: visit_date (ISO, synthetic",
        f"calendar starting {FIRST_DATE.year}), mostly weekly with gaps of 2-3 weeks and a",
        "few 3-4 day intervals. The first dated record of a patient is the intake",
        "(intake_session: 0). One same-day tie is an exact duplicate row (and one conflicting",
        "duplicate shares its date too); the faults in truth.json carry their dates.",
    )
    table, faults = _clinic_table(data, scenario)
    sessions = table["session"].astype("int64")
    dates = _visit_dates(table["patient"], sessions, _rng(scenario, "dates"))
    date_of = dict(zip(zip(table["patient"], sessions, strict=True), dates, strict=True))
    table = table.assign(session=dates).rename(columns={"session": "visit_date"})
    for fault in faults:
        if "patient" in fault and "session" in fault:
            fault["date"] = date_of[(fault["patient"], fault["session"])]
    spec = base_spec(scenario.name, notes)
    columns = {
        schema.THERAPIST_ID: "therapist",
        schema.PATIENT_ID: "patient",
        "session_date": "visit_date",
        schema.MODALITY: "modality",
    }
    comments = {
        **spec.comments,
        "columns.session_date": "NEW key: sessions numbered by date order (first = 0)",
        "outcome.intake_session": "the first dated record of each patient is the intake",
    }
    spec = replace(spec, columns=columns, comments=comments)
    return _csv_export(table, faults, spec)


# ----------------------------------------------------------------- wide SPSS file
def _coded(values: pd.DataFrame) -> pd.DataFrame:
    """Blank items as -99, a questionnaire not administered (all blank) as -77."""
    whole = values.isna().all(axis=1)
    coded = values.fillna(float(SAV_SKIPPED))
    coded[whole.to_numpy()] = float(SAV_NOT_ASKED)
    return coded


def _per_session_values(data: pd.DataFrame) -> dict[str, np.ndarray]:
    """Variable stem -> coded values per row (alliance missing at the intake)."""
    treat = (data[schema.SESSION] >= 1).to_numpy()
    wai = _coded(data[list(WAI_CLEAN)].astype("float64")).to_numpy(copy=True)
    wai[~treat] = np.nan
    twai = _coded(data[[THERAPIST_CLEAN]].astype("float64")).to_numpy(copy=True)[:, 0]
    twai[~treat] = np.nan
    phq = _coded(data[list(PHQ_CLEAN)].astype("float64")).to_numpy()
    return {
        **{f"wai_{k + 1}": wai[:, k] for k in range(wai.shape[1])},
        "twai": twai,
        **{f"phq_{k + 1}": phq[:, k] for k in range(phq.shape[1])},
    }


def _wide_frame(data: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: patient-level columns, then <stem>_sNN per session."""
    patient_index, patients = pd.factorize(data[schema.PATIENT_ID], sort=True)
    first = data.groupby(schema.PATIENT_ID, sort=True).first()
    columns: dict[str, Any] = {
        "ClientID": np.asarray(patients, dtype=object),
        "TherapistID": first[schema.THERAPIST_ID].to_numpy(dtype=object),
        "Modality": first[schema.MODALITY].map(SAV_MODALITY_CODES).to_numpy(dtype="float64"),
        "Age": first["age"].to_numpy(dtype="float64"),
        "Gender": first["gender"].to_numpy(dtype=object),
    }
    sessions = data[schema.SESSION].to_numpy(dtype="int64")
    grids = {}
    for stem, values in _per_session_values(data).items():
        grid = np.full((len(patients), int(sessions.max()) + 1), np.nan)
        grid[patient_index, sessions] = values
        grids[stem] = grid
    for session in range(int(sessions.max()) + 1):
        for stem, grid in grids.items():
            if not np.isnan(grid[:, session]).all():
                columns[f"{stem}_s{session:02d}"] = grid[:, session]
    return pd.DataFrame(columns)


def _sav_labels(frame: pd.DataFrame) -> dict[str, str]:
    labels = {
        "ClientID": "Client code",
        "TherapistID": "Therapist code",
        "Modality": "Therapy modality of the therapist",
        "Age": "Age in years",
        "Gender": "Gender (F, M, other)",
    }
    for name in frame.columns[len(labels) :]:
        stem, session = name.rsplit("_s", 1)
        what = {"wai": "WAI-SR client item", "phq": "PHQ-9 item"}.get(stem.split("_")[0])
        text = "WAI-SR therapist total" if stem == "twai" else f"{what} {stem.split('_')[1]}"
        labels[name] = f"{text}, session {int(session)} (0 = intake)"
    return labels


def pin_sav_header(payload: bytes) -> bytes:
    """Replace the creation date and time in an SPSS file header by fixed values.

    Parameters
    ----------
    payload : bytes
        The bytes of a ``.sav`` file as written by pyreadstat.

    Returns
    -------
    bytes
        The same file with "01 Jan 00" / "00:00:00" as creation date and time
        (header bytes 92-108: after the record type, product name, five
        4-byte integers and the 8-byte compression bias).

    Raises
    ------
    ValueError
        If the bytes do not start like an SPSS system file.
    """
    if payload[:4] not in (b"$FL2", b"$FL3"):
        raise ValueError("pin_sav_header: not an SPSS system file (no $FL2/$FL3 record)")
    start = 4 + 60 + 5 * 4 + 8
    return payload[:start] + b"01 Jan 00" + b"00:00:00" + payload[start + 17 :]


def _sav_bytes(frame: pd.DataFrame) -> bytes:
    import pyreadstat

    per_session = list(frame.columns[5:])
    codes = {float(SAV_SKIPPED): "item skipped", float(SAV_NOT_ASKED): "not administered"}
    modality = {float(c): simulate.EXPORT_MODALITY_LABELS[m] for m, c in SAV_MODALITY_CODES.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.sav"
        pyreadstat.write_sav(
            frame,
            str(path),
            file_label="Scenario wide_spss (SIMULATED data)",
            column_labels=_sav_labels(frame),
            variable_value_labels={"Modality": modality, **dict.fromkeys(per_session, codes)},
            missing_ranges={name: [float(SAV_SKIPPED)] for name in per_session},
            variable_format={name: "F3.0" for name in ["Modality", "Age", *per_session]},
            variable_measure={"Modality": "nominal", "Gender": "nominal"},
        )
        return pin_sav_header(path.read_bytes())


def _shape_wide_spss(data: pd.DataFrame, scenario: Scenario) -> _Export:
    notes = (
        "Tests a WIDE SPSS file: one row per patient, per-session variables <stem>_sNN",
        "(wai_3_s07 = WAI-SR item 3 at session 7; twai = therapist total; s00 = intake).",
        f"{SAV_SKIPPED} = item skipped (declared user-missing in the file); {SAV_NOT_ASKED} =",
        "questionnaire not administered (NOT declared in the file: only read.missing_codes",
        "makes it missing). Sessions that did not take place are system-missing. Modality",
        "is a numeric code with value labels. No duplicate rows or mistyped ids (a wide",
        "file cannot hold them).",
    )
    frame = _wide_frame(data)
    spec = base_spec(scenario.name, notes)
    spec = replace(
        spec,
        read={"format": "sav", "missing_codes": ["", SAV_SKIPPED, SAV_NOT_ASKED]},
        layout="wide",
        wide={"session_pattern": r"^(?P<var>.+)_s(?P<session>\d+)$"},
        columns={
            schema.THERAPIST_ID: "TherapistID",
            schema.PATIENT_ID: "ClientID",
            schema.MODALITY: "Modality",
        },
        covariates={"age": "Age", "gender": "Gender"},
        alliance={
            "client": spec.alliance["client"],
            "therapist": {"instrument": "wai_sr", "total": "twai"},
        },
        cleaning={**spec.cleaning, "multiple_therapists": "exclude"},
        comments={
            "read.missing_codes": f"{SAV_SKIPPED} item skipped, {SAV_NOT_ASKED} not administered",
            "modality_labels": "the value labels of Modality (1, 2, 3)",
            "outcome.intake_session": "s00 columns = intake assessment (PHQ-9 only)",
        },
    )
    info = {"missing_codes": [SAV_SKIPPED, SAV_NOT_ASKED], "modality_codes": SAV_MODALITY_CODES}
    columns = list(frame.columns)
    return _Export(_sav_bytes(frame), spec, columns, len(frame), [], info)


_SHAPES: dict[str, Callable[[pd.DataFrame, Scenario], _Export]] = {
    "client_only": _shape_client_only,
    "therapist_only": _shape_therapist_only,
    "two_level": _shape_two_level,
    "wai_s_oq45": _shape_wai_s_oq45,
    "gad7": _shape_gad7,
    "mean_scored": _shape_mean_scored,
    "max_8_sessions": _shape_no_intake,
    "sessions_40": _shape_demo_layout,
    "tiny": _shape_no_modality,
    "reversed": _shape_demo_layout,
    "heavy_dropout": _shape_demo_layout,
    "session_dates": _shape_session_dates,
    "wide_spss": _shape_wide_spss,
    "decimal_comma": _shape_decimal_comma,
}


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #
def _truth_text(truth: dict, export: _Export, scenario: Scenario) -> str:
    """truth.json as the demo writes it: rounded floats, sorted keys, indent 2."""
    truth = dict(truth)
    truth["faults"] = export.faults
    truth["export"] = {
        "file": scenario.data_file,
        "columns": export.columns,
        "n_rows": export.n_rows,
        **export.info,
    }
    truth["scenario"] = {
        "name": scenario.name,
        "description": scenario.description,
        "generator": "helpers.scenarios.write_scenario",
    }
    truth = simulate._round_floats(truth)
    return json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _design_line(design: Mapping[str, Any], longest: int) -> str:
    return (
        f"Design: {design['n_therapists']} therapists, {design['n_patients']} patients, "
        f"up to {design['max_sessions']} treatment sessions (longest observed: {longest})."
    )


def _readme(scenario: Scenario, export: _Export, truth: dict, data: pd.DataFrame) -> str:
    design = truth["design"]
    folder = f"{DEFAULT_OUT.as_posix()}/{scenario.name}"
    truth_line = (
        "| `truth.json` | the simulation's truth: parameters, true effects, ruptures, "
        "random effects, injected faults |"
        if scenario.truth
        else "| (no `truth.json`) | the simulated truth is not on the scales in this file |"
    )
    new_keys = ", ".join(f"`{k}`" for k in scenario.new_config_keys) or "none"
    notes = "\n".join(export.spec.notes)
    return f"""\
# Scenario `{scenario.name}` (SIMULATED)

{scenario.description[0].upper()}{scenario.description[1:]}.

**Every value in this folder is simulated**: no real person, therapist or clinic.
Drawn by `helpers.simulate.simulate_study({_kwargs_text(scenario.kwargs)})`.

{notes}

| File | Content |
|---|---|
| `{scenario.data_file}` | the data as the clinic exported it: {export.n_rows} rows |
| `study.yml` | the study config mapping it onto the suite's schema |
{truth_line}
| `README.md` | this page |

{_design_line(design, int(data[schema.SESSION].max()))}
Config options beyond the demo study's: {new_keys}.

Run the whole suite on it (from the project root, after `make scenarios`):

    make all DATA={folder}/{scenario.data_file} \\
        CONFIG={folder}/study.yml OUT=runs/scenarios/{scenario.name}

Regenerate: `python -m helpers scenarios --out {DEFAULT_OUT.as_posix()} --only {scenario.name}`
(byte-identical on every run).
"""


def _prepare_folder(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SettingsError(f"write_scenario: {out_dir} exists and is not a folder; pass a folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def write_scenario(name: str, out_dir: str | Path) -> dict:
    """Simulate one scenario and write its data file, study.yml, README.md (and truth.json).

    Parameters
    ----------
    name : str
        A key of :data:`SCENARIOS`.
    out_dir : str or pathlib.Path
        Folder to write into (created if needed; existing files are replaced).

    Returns
    -------
    dict
        ``name``, ``files`` (file name -> SHA-256), ``n_rows`` (data rows of
        the data file; patients in a wide file), ``n_therapists``,
        ``n_patients``, ``max_session`` (longest observed treatment) and
        ``truth`` (whether truth.json was written).

    Raises
    ------
    ValueError
        For an unknown scenario, or when ``out_dir`` is an existing file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sorted(write_scenario("tiny", folder)["files"])
    ['README.md', 'sessions.csv', 'study.yml', 'truth.json']
    """
    scenario = get_scenario(name)
    out_dir = _prepare_folder(out_dir)
    data, truth = simulate.simulate_study(**scenario.kwargs)
    export = _SHAPES[name](data, scenario)
    config = render_config(export.spec, _config_header(scenario))
    texts = {scenario.data_file: export.payload, CONFIG_NAME: config.encode("utf-8")}
    if scenario.truth:
        texts[TRUTH_NAME] = _truth_text(truth, export, scenario).encode("utf-8")
    texts[README_NAME] = _readme(scenario, export, truth, data).encode("utf-8")
    hashes = {}
    for file_name, payload in texts.items():
        atomic_write_bytes(out_dir / file_name, payload)
        hashes[file_name] = hashlib.sha256(payload).hexdigest()
    return {
        "name": name,
        "files": hashes,
        "n_rows": export.n_rows,
        "n_therapists": truth["design"]["n_therapists"],
        "n_patients": truth["design"]["n_patients"],
        "max_session": int(data[schema.SESSION].max()),
        "truth": scenario.truth,
    }


def write_scenarios(out_root: str | Path, names: Sequence[str] | None = None) -> list[dict]:
    """Write each scenario into ``<out_root>/<name>/``.

    Parameters
    ----------
    out_root : str or pathlib.Path
        Parent folder (created if needed).
    names : sequence of str, optional
        Scenarios to write (default: all of :data:`SCENARIOS`, in order).

    Returns
    -------
    list of dict
        The summary of :func:`write_scenario` for each, in order.

    Raises
    ------
    ValueError
        If a name is not a scenario (checked before anything is written).
    """
    chosen = list(SCENARIOS) if names is None else list(names)
    for name in chosen:
        get_scenario(name)
    root = Path(out_root)
    return [write_scenario(name, root / name) for name in chosen]
