"""Tests of helpers.config: the study config loader and its error reports."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from helpers import config as cfgmod
from helpers.config import (
    MeasureConfig,
    StudyConfig,
    config_from_dict,
    default_template_path,
    load_config,
)
from helpers.paths import PROJECT_ROOT
from helpers.validation import StudyDataError

DATA = Path(__file__).resolve().parent / "data"

MINIMAL = {
    "study": "s",
    "layout": "long",
    "columns": {"therapist_id": "t", "patient_id": "p", "session": "s"},
    "alliance": {"client": {"instrument": "wai_sr", "total": "wai"}},
    "outcome": {"instrument": "phq9", "total": "phq"},
}


def minimal(**changes) -> dict:
    data = copy.deepcopy(MINIMAL)
    data.update(changes)
    return data


def errors_of(data: dict) -> StudyDataError:
    with pytest.raises(StudyDataError) as info:
        config_from_dict(data, "study.yml")
    return info.value


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- template


def test_template_loads_with_the_documented_values():
    cfg = load_config(default_template_path())
    assert cfg.study == "my_study"
    assert cfg.layout == "long"
    assert cfg.primary_alliance == "client"
    assert cfg.columns == {
        "therapist_id": "therapist",
        "patient_id": "patient",
        "session": "session",
        "modality": "modality",
    }
    assert cfg.covariates == {"age": "age", "gender": "gender"}
    assert cfg.alliance["therapist"] == MeasureConfig(
        instrument="wai_sr", total="therapist_wai_total"
    )
    assert cfg.item_columns("client") == [f"wai_{i}" for i in range(1, 13)]
    assert cfg.item_columns("therapist") == []
    assert cfg.item_columns("outcome") == [f"phq_{i}" for i in range(1, 10)]
    assert cfg.outcome.intake_session == 0
    assert cfg.outcome.intake_total is None
    assert cfg.read.missing_codes == ("", "NA", "N/A", ".")
    assert cfg.read.header_row == 1
    assert cfg.cleaning.out_of_range == "set_missing"
    assert cfg.cleaning.early_session == 3
    assert default_template_path().name == "study_template.yml"


def _key_paths(node, prefix=()):
    """Key paths of the template; free-form blocks contribute their own name only."""
    paths = set()
    for key, value in node.items():
        path = (*prefix, key)
        paths.add(path)
        free_form = path in {("covariates",), ("modality_labels",)}
        if isinstance(value, dict) and not free_form:
            paths |= _key_paths(value, path)
    return paths


def test_every_template_key_is_known_to_the_checker_and_vice_versa():
    template = yaml.safe_load(default_template_path().read_text(encoding="utf-8"))
    paths = _key_paths(template)
    top = {p[0] for p in paths}
    assert top == set(cfgmod.TOP_LEVEL_KEYS)
    paths = {p for p in paths if len(p) > 1}
    assert {p[1] for p in paths if p[0] == "read"} == set(cfgmod.READ_KEYS)
    assert {p[1] for p in paths if p[0] == "cleaning"} == set(cfgmod.CLEANING_KEYS)
    # session_date is the commented-out alternative to session.
    columns = {p[1] for p in paths if p[0] == "columns"}
    assert columns | {"session_date"} == set(cfgmod.COLUMN_KEYS)
    assert {p[1] for p in paths if p[0] == "wide"} == set(cfgmod.WIDE_KEYS)
    # intake_total, total and total_scale are commented out under outcome (they
    # conflict with item_pattern); total_scale is set under alliance.therapist.
    outcome = {p[1] for p in paths if p[0] == "outcome" and len(p) == 2}
    assert outcome | {"intake_total", "items", "total", "total_scale"} == set(cfgmod.OUTCOME_KEYS)
    assert ("alliance", "therapist", "total_scale") in paths
    text = default_template_path().read_text(encoding="utf-8")
    for key in (*cfgmod.MEASURE_KEYS, "intake_total", "session_date"):
        assert f"`{key}`" in text or f"{key}:" in text
    for line in ("# intake_total:", "# total:", "# total_scale:"):
        assert line in text


def test_template_choices_match_the_checker():
    text = default_template_path().read_text(encoding="utf-8")
    assert "set_missing (log original value) | error" in text
    assert cfgmod.CLEANING_CHOICES["out_of_range"] == ("set_missing", "error")
    assert "exclude (all conflicting copies) | keep_first | error" in text
    assert "exclude the patient | keep_majority | error" in text
    assert "csv | tsv | xlsx | sav | dta | parquet" in text
    assert cfgmod.SUPPORTED_FORMATS == ("csv", "tsv", "xlsx", "sav", "dta", "parquet")
    assert "wai_sr (12 items, 1-5) | wai_s (12 items, 1-7)" in text
    assert "phq9 | gad7 | oq45 | bdi2" in text


def test_instrument_item_counts():
    assert cfgmod.INSTRUMENT_ITEM_COUNTS == {
        "wai_sr": 12,
        "wai_s": 12,
        "phq9": 9,
        "gad7": 7,
        "oq45": 45,
        "bdi2": 21,
    }


def test_source_columns_of_the_template():
    cfg = load_config(default_template_path())
    sources = cfg.source_columns()
    assert len(sources) == 4 + 2 + 12 + 1 + 9
    assert sources["patient"] == "patient_id"
    assert sources["session"] == "session"
    assert sources["gender"] == "gender"
    assert sources["wai_3"] == "alliance_client_item03"
    assert sources["wai_12"] == "alliance_client_item12"
    assert sources["therapist_wai_total"] == "alliance_therapist"
    assert sources["phq_9"] == "outcome_item09"
    keys = cfg.source_keys()
    assert keys["patient"] == "columns.patient_id"
    assert keys["wai_3"] == "alliance.client.item_pattern"
    assert keys["therapist_wai_total"] == "alliance.therapist.total"
    assert keys["age"] == "covariates.age"
    cols = cfg.canonical_columns()
    assert cols[:7] == [
        "source_row",
        "therapist_id",
        "patient_id",
        "session",
        "modality",
        "age",
        "gender",
    ]
    assert cols[-1] == "outcome_item09"
    assert len(cols) == 1 + len(sources)
    assert cfg.session_variables() == [f"wai_{i}" for i in range(1, 13)] + [
        "therapist_wai_total"
    ] + [f"phq_{i}" for i in range(1, 10)]


def test_good_fixture_configs_load():
    wide = load_config(DATA / "good" / "wide.yml")
    assert wide.layout == "wide"
    assert wide.read.sheet == "sessions"
    assert "session" not in wide.columns
    assert wide.wide.session_pattern == r"^(?P<var>.+)_s(?P<session>\d+)$"
    sav = load_config(DATA / "good" / "sav.yml")
    assert sav.alliance["client"].items == tuple(f"wai_{i}" for i in range(1, 13))
    assert sav.path == (DATA / "good" / "sav.yml").resolve()


def test_to_dict_round_trips():
    cfg = load_config(DATA / "good" / "wide.yml")
    again = config_from_dict(cfg.to_dict(), cfg.path)
    assert again == cfg
    assert "path" not in cfg.to_dict()


def test_to_dict_holds_the_number_format_and_total_scale():
    cfg = config_from_dict(
        minimal(
            read={"delimiter": ";", "decimal": ",", "thousands": "."},
            alliance={"client": {"instrument": "wai_sr", "total": "wai", "total_scale": "mean"}},
        )
    )
    data = cfg.to_dict()
    assert (data["read"]["decimal"], data["read"]["thousands"]) == (",", ".")
    assert data["alliance"]["client"]["total_scale"] == "mean"
    assert data["outcome"]["total_scale"] == "sum"  # the default, written out
    assert config_from_dict(data) == cfg
    items = config_from_dict(minimal(outcome={"instrument": "gad7", "item_pattern": "g{i}"}))
    assert "total_scale" not in items.to_dict()["outcome"]


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path):
    path = write_yaml(tmp_path, yaml.safe_dump(MINIMAL))
    cfg = load_config(path)
    assert cfg.folder == tmp_path.resolve()
    assert cfg.resolve_path("raw/x.csv") == (tmp_path / "raw" / "x.csv").resolve()
    assert cfg.resolve_path(tmp_path / "abs.csv") == (tmp_path / "abs.csv").resolve()


# --------------------------------------------------------------------------- defaults


def test_minimal_config_gets_defaults():
    cfg = config_from_dict(MINIMAL)
    assert isinstance(cfg, StudyConfig)
    assert cfg.primary_alliance == "client"  # the only rater
    assert cfg.read.encoding == "utf-8"
    assert cfg.read.delimiter is None
    assert cfg.cleaning.conflicting_duplicates == "exclude"
    assert cfg.covariates == {}
    assert cfg.path is None


def test_item_pattern_with_zero_padding_and_explicit_items():
    cfg = config_from_dict(
        minimal(
            alliance={"client": {"instrument": "wai_s", "item_pattern": "w{i:02d}"}},
            outcome={"instrument": "gad7", "items": ["a", "b", "c", "d", "e", "f", "g"]},
        )
    )
    assert cfg.item_columns("client") == [f"w{i:02d}" for i in range(1, 13)]
    assert cfg.item_columns("outcome") == ["a", "b", "c", "d", "e", "f", "g"]
    with pytest.raises(KeyError, match="observer"):
        cfg.item_columns("observer")


def test_number_separators_default_to_a_decimal_point_without_thousands():
    cfg = config_from_dict(MINIMAL)
    assert (cfg.read.decimal, cfg.read.thousands) == (".", None)
    cfg = config_from_dict(minimal(read={"decimal": None, "thousands": None}))
    assert (cfg.read.decimal, cfg.read.thousands) == (".", None)


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        ({"delimiter": ";", "decimal": ","}, (",", None)),
        ({"delimiter": ";", "decimal": ",", "thousands": "."}, (",", ".")),
        ({"delimiter": ";", "decimal": "comma", "thousands": "space"}, (",", " ")),
        ({"delimiter": ";", "decimal": ",", "thousands": " "}, (",", " ")),
        ({"decimal": ".", "thousands": "'"}, (".", "'")),
        ({"format": "tsv", "thousands": ","}, (".", ",")),
    ],
)
def test_decimal_and_thousands_separators(read, expected):
    cfg = config_from_dict(minimal(read=read))
    assert (cfg.read.decimal, cfg.read.thousands) == expected


def test_bad_number_separators_are_config_errors():
    problems = {p.column: p for p in errors_of(minimal(read={"decimal": ";"})).problems}
    assert set(problems) == {"read.decimal"}
    assert problems["read.decimal"].rule == "the decimal separator: '.' or ','"
    problems = errors_of(minimal(read={"thousands": "_"})).problems
    assert [p.column for p in problems] == ["read.thousands"]
    (same,) = errors_of(minimal(read={"delimiter": ";", "decimal": ",", "thousands": ","})).problems
    assert same.column == "read.thousands"
    assert same.found == "both are ','"
    assert "decimal separator" in same.rule
    (point,) = errors_of(minimal(read={"thousands": "."})).problems  # decimal "." by default
    assert point.found == "both are '.'"
    for read in ({"delimiter": ",", "thousands": ","}, {"format": "csv", "thousands": ","}):
        (clash,) = errors_of(minimal(read=read)).problems
        assert clash.column == "read.thousands"
        assert "field separator (read.delimiter)" in clash.rule


def test_total_scale_defaults_to_sum_and_accepts_mean_next_to_a_total():
    cfg = config_from_dict(MINIMAL)
    assert cfg.alliance["client"].total_scale == "sum"
    assert cfg.outcome.total_scale == "sum"
    cfg = config_from_dict(
        minimal(
            alliance={"client": {"instrument": "wai_sr", "total": "wai", "total_scale": "mean"}},
            outcome={
                "instrument": "phq9",
                "total": "phq",
                "intake_total": "phq0",
                "total_scale": "mean",
            },
        )
    )
    assert cfg.alliance["client"].total_scale == "mean"
    assert cfg.outcome.total_scale == "mean"
    assert cfg.outcome.intake_total == "phq0"


def test_total_scale_with_item_columns_or_a_bad_value_is_an_error():
    data = minimal(
        alliance={
            "client": {"instrument": "wai_sr", "item_pattern": "w{i}", "total_scale": "mean"}
        },
        outcome={"instrument": "phq9", "total": "phq", "total_scale": "average"},
    )
    problems = {p.column: p for p in errors_of(data).problems}
    assert set(problems) == {"alliance.client.total_scale", "outcome.total_scale"}
    assert (
        problems["alliance.client.total_scale"].found == "total_scale: mean next to 'item_pattern'"
    )
    assert "only together with 'total'" in problems["alliance.client.total_scale"].rule
    assert problems["outcome.total_scale"].rule == "one of: sum, mean"


def test_delimiter_words_and_numeric_missing_codes():
    cfg = config_from_dict(minimal(read={"delimiter": "tab", "missing_codes": ["", -99, "."]}))
    assert cfg.read.delimiter == "\t"
    assert cfg.read.missing_codes == ("", "-99", ".")


# --------------------------------------------------------------------------- errors


def test_unknown_keys_suggest_the_nearest_valid_key_with_line():
    with pytest.raises(StudyDataError) as info:
        load_config(DATA / "bad" / "unknown_key.yml")
    text = str(info.value)
    assert "tests/data/bad/unknown_key.yml, key 'primay_alliance', line 12" in text
    assert "did you mean 'primary_alliance'?" in text
    assert "key 'alliance.client.item_patern', line 11" in text
    assert "did you mean 'item_pattern'?" in text
    assert len(info.value.problems) == 2
    assert str(PROJECT_ROOT) not in text


def test_bad_layout_suggests_long():
    with pytest.raises(StudyDataError) as info:
        load_config(DATA / "bad" / "bad_layout.yml")
    (problem,) = info.value.problems
    assert problem.column == "layout"
    assert problem.rows == [3]
    assert problem.found == "'longg'"
    assert problem.fix == "did you mean 'long'?"
    assert problem.file == "tests/data/bad/bad_layout.yml"


def test_missing_required_keys():
    data = minimal(columns={"therapist_id": "t"})
    del data["outcome"]
    del data["layout"]
    problems = errors_of(data).problems
    columns = {p.column for p in problems}
    assert "outcome" in columns
    assert "layout" in columns
    # session is required in long layout, but layout is missing, so only patient_id here.
    assert "columns.patient_id" in columns
    assert all(p.found == "the key is missing" for p in problems)


def test_session_column_required_in_long_layout_only():
    data = minimal(columns={"therapist_id": "t", "patient_id": "p"})
    assert {p.column for p in errors_of(data).problems} == {"columns.session"}
    wide = config_from_dict(
        minimal(layout="wide", columns={"therapist_id": "t", "patient_id": "p"})
    )
    assert wide.layout == "wide"


def test_session_column_in_wide_layout_is_an_error():
    (problem,) = errors_of(minimal(layout="wide")).problems
    assert problem.column == "columns.session"
    assert "delete columns.session" in problem.fix


def test_unsupported_and_wrong_family_instruments():
    data = minimal(
        alliance={"client": {"instrument": "wai_srr", "total": "w"}},
        outcome={"instrument": "wai_sr", "total": "phq"},
    )
    problems = {p.column: p for p in errors_of(data).problems}
    assert problems["alliance.client.instrument"].fix == "did you mean 'wai_sr'?"
    assert "not supported" in problems["alliance.client.instrument"].found
    assert "an alliance instrument" in problems["outcome.instrument"].found


def test_items_and_total_both_given():
    data = minimal(
        alliance={"client": {"instrument": "wai_sr", "total": "w", "item_pattern": "w{i}"}}
    )
    (problem,) = errors_of(data).problems
    assert problem.column == "alliance.client"
    assert problem.found == "item_pattern and total both given"


def test_wrong_number_of_items():
    data = minimal(outcome={"instrument": "phq9", "items": ["a", "b"]})
    (problem,) = errors_of(data).problems
    assert problem.rule.startswith("9 item columns for phq9")
    assert problem.found == "2 columns"


def test_item_pattern_without_placeholder():
    data = minimal(outcome={"instrument": "phq9", "item_pattern": "phq_1"})
    (problem,) = errors_of(data).problems
    assert problem.column == "outcome.item_pattern"
    assert "{i}" in problem.fix


def test_primary_alliance_must_be_a_configured_rater():
    data = minimal(primary_alliance="therapist")
    (problem,) = errors_of(data).problems
    assert problem.column == "primary_alliance"
    assert "client" in problem.rule


def test_primary_alliance_required_with_two_raters():
    data = minimal(
        alliance={
            "client": {"instrument": "wai_sr", "total": "a"},
            "observer": {"instrument": "wai_s", "total": "b"},
        }
    )
    (problem,) = errors_of(data).problems
    assert problem.column == "primary_alliance"
    assert problem.found == "the key is missing"


def test_intake_given_both_ways():
    data = minimal(
        outcome={"instrument": "phq9", "total": "phq", "intake_session": 0, "intake_total": "x"}
    )
    (problem,) = errors_of(data).problems
    assert problem.column == "outcome.intake_total"
    assert "intake_session OR intake_total" in problem.rule


def test_unknown_rater_suggests_one():
    data = minimal(alliance={"clinet": {"instrument": "wai_sr", "total": "w"}})
    problems = {p.column: p for p in errors_of(data).problems}
    assert problems["alliance.clinet"].fix == "did you mean 'client'?"


def test_bad_read_values():
    data = minimal(
        read={"format": "xls", "header_row": 0, "delimiter": ";;", "encoding": "utf-9"},
        cleaning={"out_of_range": "drop", "early_session": 0},
    )
    problems = {p.column: p for p in errors_of(data).problems}
    assert set(problems) == {
        "read.format",
        "read.header_row",
        "read.delimiter",
        "read.encoding",
        "cleaning.out_of_range",
        "cleaning.early_session",
    }
    assert problems["read.format"].fix == "did you mean 'xlsx'?"
    assert problems["read.encoding"].fix == "did you mean 'utf-8'?"


def test_covariate_names_may_not_shadow_schema_columns():
    data = minimal(covariates={"session": "visit", "outcome_baseline": "b", "age": "age"})
    columns = {p.column for p in errors_of(data).problems}
    assert columns == {"covariates.session", "covariates.outcome_baseline"}


def test_a_column_may_serve_one_purpose_only():
    data = minimal(columns={"therapist_id": "id", "patient_id": "id", "session": "s"})
    (problem,) = errors_of(data).problems
    assert "column 'id' named for columns.therapist_id and columns.patient_id" in problem.found


def test_study_name_must_suit_file_names():
    (problem,) = errors_of(minimal(study="my study/2")).problems
    assert problem.column == "study"
    assert problem.fix == "for example: study: my_study_2"


def test_section_that_is_not_a_block():
    (problem,) = errors_of(minimal(columns="patient")).problems
    assert problem.column == "columns"


def test_all_problems_are_reported_at_once():
    data = minimal(layout="longg", primary_alliance="observer", lyout="long")
    assert len(errors_of(data).problems) == 3


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(StudyDataError) as info:
        load_config(tmp_path / "nope.yml")
    assert info.value.problems[0].found == "no such file"
    assert str(tmp_path) not in str(info.value)


def test_yaml_syntax_error_gives_the_line(tmp_path: Path):
    path = write_yaml(tmp_path, "study: s\nlayout: long\ncolumns:\n  a: [b\n  c: d\n")
    with pytest.raises(StudyDataError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.row_label == "line"
    assert problem.rows and 4 <= problem.rows[0] <= 6
    assert "valid YAML" in problem.rule


def test_duplicated_key_is_reported(tmp_path: Path):
    text = yaml.safe_dump(MINIMAL, sort_keys=False) + "layout: wide\n"
    path = write_yaml(tmp_path, text)
    with pytest.raises(StudyDataError) as info:
        load_config(path)
    dupes = [p for p in info.value.problems if p.found == "'layout' given again"]
    assert len(dupes) == 1
    assert dupes[0].rows == [len(text.splitlines())]


def test_empty_config_file(tmp_path: Path):
    with pytest.raises(StudyDataError) as info:
        load_config(write_yaml(tmp_path, ""))
    columns = {p.column for p in info.value.problems}
    assert {"study", "layout", "columns", "alliance", "outcome"} <= columns


def test_item_counts_agree_with_the_scoring_registry():
    scoring = pytest.importorskip("helpers.scoring")
    assert set(scoring.INSTRUMENTS) == set(cfgmod.INSTRUMENT_ITEM_COUNTS)
    for key, n_items in cfgmod.INSTRUMENT_ITEM_COUNTS.items():
        assert scoring.INSTRUMENTS[key].n_items == n_items, key
    assert set(cfgmod.ALLIANCE_INSTRUMENTS) | set(cfgmod.OUTCOME_INSTRUMENTS) == set(
        scoring.INSTRUMENTS
    )


# --------------------------------------------------------------------------- two-level studies


def test_therapist_column_is_optional():
    cfg = config_from_dict(minimal(columns={"patient_id": "p", "session": "s"}))
    assert not cfg.has_therapists
    assert cfg.canonical_columns()[:3] == ["source_row", "patient_id", "session"]
    assert "therapist_id" not in cfg.canonical_columns()
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_dict(MINIMAL).has_therapists


# --------------------------------------------------------------------------- session dates

DATED = {"patient_id": "p", "therapist_id": "t", "session_date": "visit"}


def test_session_dates_instead_of_session_numbers():
    cfg = config_from_dict(
        minimal(
            columns=DATED,
            read={"date_format": "%d.%m.%Y"},
            cleaning={"max_gap_days": 14, "days_since_first": True},
        )
    )
    assert cfg.sessions_from_dates
    assert cfg.read.date_format == "%d.%m.%Y"
    assert (cfg.cleaning.max_gap_days, cfg.cleaning.days_since_first) == (14, True)
    assert cfg.canonical_columns()[:5] == [
        "source_row",
        "therapist_id",
        "patient_id",
        "session",
        "session_date",
    ]
    assert cfg.source_keys()["visit"] == "columns.session_date"
    as_dict = cfg.to_dict()
    assert as_dict["read"]["date_format"] == "%d.%m.%Y"
    assert as_dict["cleaning"]["max_gap_days"] == 14
    assert as_dict["cleaning"]["days_since_first"] is True
    assert as_dict["columns"]["session_date"] == "visit"
    assert config_from_dict(as_dict) == cfg


def test_date_defaults():
    cfg = load_config(default_template_path())
    assert cfg.read.date_format is None
    assert cfg.cleaning.max_gap_days == 28
    assert cfg.cleaning.days_since_first is False
    assert not cfg.sessions_from_dates
    assert {"date_format": None}.items() <= cfg.to_dict()["read"].items()


def test_session_and_session_date_both_given():
    (problem,) = errors_of(minimal(columns={**DATED, "session": "s"})).problems
    assert problem.column == "columns.session_date"
    assert "columns.session (numbers) OR columns.session_date (dates)" in problem.rule
    assert problem.found == "both session: s and session_date: visit"


def test_neither_session_nor_session_date():
    (problem,) = errors_of(minimal(columns={"patient_id": "p"})).problems
    assert problem.column == "columns.session"
    assert problem.found == "the key is missing"
    assert "'session_date:'" in problem.fix


def test_session_date_in_wide_layout_is_an_error():
    data = minimal(layout="wide", columns={"patient_id": "p", "session_date": "visit"})
    (problem,) = errors_of(data).problems
    assert problem.column == "columns.session_date"
    assert "long layout only" in problem.rule


@pytest.mark.parametrize("fmt", ["%Y-%m", "dd.mm.yyyy", "%d.%m"])
def test_date_format_needs_day_month_and_year(fmt):
    (problem,) = errors_of(minimal(columns=DATED, read={"date_format": fmt})).problems
    assert problem.column == "read.date_format"
    assert problem.values == [fmt]
    assert "'%d.%m.%Y' for 05.03.2024" in problem.fix


@pytest.mark.parametrize("fmt", ["%d.%m.%Y", "%m/%d/%y", "%Y%m%d", "%d.%m.%Y %H:%M"])
def test_date_formats_that_read_back(fmt):
    assert config_from_dict(minimal(read={"date_format": fmt})).read.date_format == fmt


def test_options_that_need_session_dates():
    data = minimal(cleaning={"days_since_first": True})
    (problem,) = errors_of(data).problems
    assert problem.column == "cleaning.days_since_first"
    assert "columns.session_date" in problem.rule
    dated = minimal(
        columns=DATED, outcome={"instrument": "phq9", "total": "q", "intake_session": 1}
    )
    (problem,) = errors_of(dated).problems
    assert problem.column == "outcome.intake_session"
    assert problem.found == "intake_session: 1"
    ok = minimal(columns=DATED, outcome={"instrument": "phq9", "total": "q", "intake_session": 0})
    assert config_from_dict(ok).outcome.intake_session == 0


def test_bad_date_cleaning_values():
    data = minimal(columns=DATED, cleaning={"days_since_first": "yes", "max_gap_days": 0})
    problems = {p.column: p for p in errors_of(data).problems}
    assert set(problems) == {"cleaning.days_since_first", "cleaning.max_gap_days"}
    assert problems["cleaning.days_since_first"].rule == "true or false"
    assert problems["cleaning.max_gap_days"].rule == "a whole number from 1 to 100000"


def test_session_date_may_not_be_a_covariate_name():
    data = minimal(covariates={"session_date": "d", "days_since_first": "x"})
    columns = {p.column for p in errors_of(data).problems}
    assert columns == {"covariates.session_date", "covariates.days_since_first"}


# --------------------------------------------------------------------------- bounded resources

BILLION_LAUGHS = "study: s\na0: &a0 {x: 1, y: 2}\n" + "".join(
    f"a{n}: &a{n} {{" + ", ".join(f"k{j}: *a{n - 1}" for j in range(9)) + "}\n"
    for n in range(1, 10)
)


def _measure(call) -> tuple[float, int, BaseException | None]:
    """Seconds, peak traced bytes and the exception of ``call()``."""
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    error = None
    try:
        call()
    except Exception as exc:
        error = exc
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, error


def test_billion_laughs_config_is_refused_quickly(tmp_path: Path):
    # 9 levels of 9 aliases each: 9**9 (387 million) mappings once expanded.
    path = write_yaml(tmp_path, BILLION_LAUGHS)
    assert path.stat().st_size < 2_000
    seconds, peak, error = _measure(lambda: load_config(path))
    assert isinstance(error, StudyDataError)
    (problem,) = error.problems
    assert problem.found == "the alias *a0 on line 3"
    assert problem.rows == [3]
    assert "without YAML aliases" in problem.rule
    assert seconds < 1.0
    assert peak < 200_000_000


def test_line_walk_visits_an_aliased_node_once():
    node = yaml.compose(BILLION_LAUGHS, Loader=yaml.SafeLoader)
    seconds, peak, error = _measure(lambda: cfgmod._line_numbers(node, [], set()))
    assert error is None
    assert seconds < 1.0
    assert peak < 200_000_000
    lines = cfgmod._line_numbers(node, [], set())
    # a0's keys (x, y) once, under a0 only; each level's nine keys under their level,
    # but only the first alias of a level is walked (it is the same node each time).
    assert lines[("a0", "x")] == 2
    assert lines[("a1", "k0")] == 3
    assert ("a1", "k1", "x") not in lines


def test_a_single_alias_is_refused_with_its_line(tmp_path: Path):
    text = yaml.safe_dump(MINIMAL, sort_keys=False)
    text = text.replace("  client:\n", "  client: &c\n") + "extra: *c\n"
    with pytest.raises(StudyDataError) as info:
        load_config(write_yaml(tmp_path, text))
    (problem,) = info.value.problems
    assert problem.found == f"the alias *c on line {len(text.splitlines())}"


def test_oversized_config_file_is_refused(tmp_path: Path):
    path = write_yaml(tmp_path, "# padding\n" * 110_000)
    with pytest.raises(StudyDataError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.found == "a file of 1,100,000 bytes"
    assert "at most 1,000,000 bytes" in problem.rule


@pytest.mark.parametrize(
    "pattern", ["wai_{i:300000000}", "wai_{i:0300000000d}", "wai_{i:>5}", "{i}_{i}", "w{{i}}"]
)
def test_item_pattern_format_spec_is_limited(pattern: str):
    data = minimal(alliance={"client": {"instrument": "wai_sr", "item_pattern": pattern}})
    seconds, _, error = _measure(lambda: config_from_dict(data, "study.yml"))
    assert isinstance(error, StudyDataError)
    (problem,) = error.problems
    assert problem.column == "alliance.client.item_pattern"
    assert seconds < 1.0


@pytest.mark.parametrize(("pattern", "third"), [("w{i}", "w3"), ("w{i:03d}", "w003")])
def test_item_pattern_zero_padding_allowed(pattern: str, third: str):
    data = minimal(alliance={"client": {"instrument": "wai_sr", "item_pattern": pattern}})
    assert config_from_dict(data).item_columns("client")[2] == third


# --------------------------------------------------------------------------- one error path


def test_config_that_is_not_utf8(tmp_path: Path):
    path = tmp_path / "study.yml"
    path.write_bytes("study: s\nlayout: long\n# Müller\n".encode("latin-1"))
    with pytest.raises(StudyDataError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.found == "byte 0xFC on line 3 is not UTF-8"
    assert problem.rows == [3]
    assert "UTF-8" in problem.fix


def test_config_given_as_a_folder_or_a_fifo(tmp_path: Path):
    import os

    with pytest.raises(StudyDataError) as info:
        load_config(tmp_path)
    assert info.value.problems[0].found == "a folder, not a file"
    fifo = tmp_path / "pipe.yml"
    os.mkfifo(fifo)
    with pytest.raises(StudyDataError) as info:
        load_config(fifo)  # would block forever if opened
    assert info.value.problems[0].found == "a named pipe (FIFO), not a file"


def test_config_that_cannot_be_read(tmp_path: Path):
    import os

    path = write_yaml(tmp_path, yaml.safe_dump(MINIMAL))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who may read any file (root): chmod 000 does not block")
        with pytest.raises(StudyDataError) as info:
            load_config(path)
    finally:
        path.chmod(0o644)
    (problem,) = info.value.problems
    assert problem.found == "Permission denied"
    assert "permissions" in problem.fix


@pytest.mark.parametrize("encoding", ["rot13", "base64"])
def test_codecs_that_are_not_text_encodings_are_refused(encoding: str):
    (problem,) = errors_of(minimal(read={"encoding": encoding})).problems
    assert problem.column == "read.encoding"
    assert problem.found == f"'{encoding}' (a codec that is not a text encoding)"


def test_overflowing_settings_are_refused():
    data = minimal(cleaning={"early_session": 10**19, "min_sessions_within": 1e19})
    problems = {p.column: p for p in errors_of(data).problems}
    assert set(problems) == {"cleaning.early_session", "cleaning.min_sessions_within"}
    assert problems["cleaning.early_session"].found == (
        "a number too large for a setting (about 20 digits)"
    )
    assert problems["cleaning.min_sessions_within"].found == "1e+19"


def test_yaml_text_1e19_is_refused_as_a_setting(tmp_path: Path):
    text = yaml.safe_dump(MINIMAL, sort_keys=False) + "cleaning:\n  early_session: 1e19\n"
    with pytest.raises(StudyDataError) as info:
        load_config(write_yaml(tmp_path, text))
    (problem,) = info.value.problems
    assert problem.column == "cleaning.early_session"
    assert problem.found == "'1e19'"


def test_id_and_max_session_keys_are_checked_and_exported():
    cfg = config_from_dict(minimal(cleaning={"id_leading_zeros": "unify", "max_session": 60}))
    assert (cfg.cleaning.id_leading_zeros, cfg.cleaning.max_session) == ("unify", 60)
    assert cfg.to_dict()["cleaning"]["id_leading_zeros"] == "unify"
    assert cfg.to_dict()["cleaning"]["max_session"] == 60
    defaults = config_from_dict(minimal()).cleaning
    assert (defaults.id_leading_zeros, defaults.max_session) == ("keep", 200)
    data = minimal(cleaning={"id_leading_zeros": "strip", "max_session": 0})
    problems = {p.column: p for p in errors_of(data).problems}
    assert problems["cleaning.id_leading_zeros"].rule == "one of: keep, unify"
    assert problems["cleaning.max_session"].rule == "a whole number from 1 to 100000"
