"""Tests of helpers.scenarios: the files of every study shape, their configs and truths.

Each scenario is written once (module fixture) and once more to check that the
files are byte-identical.  The data files are read back with pandas and
pyreadstat, and checked against the configs, the instruments' published ranges
and reverse-keyed items (written out here, not taken from helpers.scoring), and
against the clean data that ``simulate_study`` gives for the same arguments.
Configs that use keys the config loader does not accept yet (being added on
other branches) are expected to fail loading until those branches merge.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import yaml

from helpers import schema
from helpers.cli import main
from helpers.config import load_config
from helpers.paths import DEMO_DIR
from helpers.scenarios import (
    SCENARIOS,
    base_spec,
    design_changes,
    get_scenario,
    pin_sav_header,
    render_config,
    write_scenario,
    write_scenarios,
)
from helpers.simulate import simulate_study

NAMES = list(SCENARIOS)
ITEMS = {"wai_sr": 12, "wai_s": 12, "phq9": 9, "gad7": 7, "oq45": 45}
WAI_S_REVERSED = (4, 10)  # Tracey & Kokotovic (1989), client form: scored 8 - x
OQ45_REVERSED = (1, 12, 13, 20, 21, 24, 31, 37, 43)  # OQ-45.2 scoring sheet: scored 4 - x
CODES = {"", "NA", "."}
WAI_CLEAN = [schema.alliance_item_column("client", k) for k in range(1, 13)]
PHQ_CLEAN = [schema.outcome_item_column(k) for k in range(1, 10)]
NO_TRUTH = {"therapist_only", "wai_s_oq45", "gad7", "mean_scored"}
USES_NEW_KEYS = {"two_level", "mean_scored", "session_dates", "decimal_comma"}


# --------------------------------------------------------------------------- #
# Fixtures and readers
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """Every scenario written once: the root folder and the summaries by name."""
    root = tmp_path_factory.mktemp("scenarios")
    return root, {s["name"]: s for s in write_scenarios(root)}


def _config(root: Path, name: str) -> dict:
    return yaml.safe_load((root / name / "study.yml").read_text(encoding="utf-8"))


def _read(root: Path, name: str) -> pd.DataFrame:
    """The data file: a .sav with pyreadstat (declared missing as NaN), else text cells."""
    path = root / name / SCENARIOS[name].data_file
    if path.suffix == ".sav":
        frame, _ = pyreadstat.read_sav(str(path))
        return frame
    delimiter = _config(root, name)["read"].get("delimiter", ",")
    return pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)


def _numbers(cells: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    return cells.where(~cells.isin(list(CODES))).astype("float64")


def _clean(name: str) -> pd.DataFrame:
    """The clean data simulate_study gives for the scenario's arguments."""
    data, _ = simulate_study(**SCENARIOS[name].kwargs)
    return data


def _truth(root: Path, name: str) -> dict:
    return json.loads((root / name / "truth.json").read_text(encoding="utf-8"))


def _configured_names(cfg: dict) -> tuple[list[str], list[str]]:
    """(column names, per-session variable names) that the config refers to."""
    fixed = [*cfg["columns"].values(), *(cfg.get("covariates") or {}).values()]
    measured = []
    for block in [*cfg["alliance"].values(), cfg["outcome"]]:
        if "item_pattern" in block:
            n = ITEMS[block["instrument"]]
            measured += [block["item_pattern"].format(i=i) for i in range(1, n + 1)]
        else:
            measured.append(block["total"])
    return fixed, measured


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
def test_registry_lists_at_least_14_shapes():
    assert len(SCENARIOS) >= 14
    assert all(name == s.name for name, s in SCENARIOS.items())
    assert {n for n, s in SCENARIOS.items() if not s.truth} == NO_TRUTH
    assert {n for n, s in SCENARIOS.items() if s.new_config_keys} == USES_NEW_KEYS
    for s in SCENARIOS.values():
        assert "\n" not in s.description and not s.description.endswith(".")
        assert Path(s.data_file).suffix in (".csv", ".sav")
        assert {"seed", "n_therapists", "patients_per_therapist", "max_sessions"} <= set(s.kwargs)
    seeds = [s.kwargs["seed"] for s in SCENARIOS.values()]
    assert len(set(seeds)) == len(seeds)


def test_scenarios_are_immutable():
    tiny = SCENARIOS["tiny"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny.truth = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        tiny.kwargs["seed"] = 1  # type: ignore[index]


def test_small_unless_size_is_the_point():
    for name, s in SCENARIOS.items():
        if name not in ("tiny", "sessions_40"):
            assert 12 <= s.kwargs["n_therapists"] <= 15, name
            assert 5 <= s.kwargs["patients_per_therapist"] <= 6, name
    assert design_changes(SCENARIOS["tiny"]) == {"n_therapists": 5, "patients_per_therapist": 4}


def test_unknown_names_are_refused_before_writing(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown scenario 'huge'.*client_only"):
        get_scenario("huge")
    with pytest.raises(ValueError, match="unknown scenario"):
        write_scenarios(tmp_path, ["tiny", "huge"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- #
# Files, determinism, configs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", NAMES)
def test_files_written(written, name: str):
    root, summaries = written
    expected = {SCENARIOS[name].data_file, "study.yml", "README.md"}
    if SCENARIOS[name].truth:
        expected.add("truth.json")
    assert {p.name for p in (root / name).iterdir()} == expected
    assert set(summaries[name]["files"]) == expected
    readme = (root / name / "README.md").read_text(encoding="utf-8")
    assert "SIMULATED" in readme and f"make all DATA=runs/scenarios-data/{name}/" in readme


def test_rewriting_gives_byte_identical_files(written, tmp_path: Path):
    root, summaries = written
    again = {s["name"]: s for s in write_scenarios(tmp_path)}
    for name in NAMES:
        assert again[name]["files"] == summaries[name]["files"], name
        for file_name in summaries[name]["files"]:
            first = (root / name / file_name).read_bytes()
            assert (tmp_path / name / file_name).read_bytes() == first, (name, file_name)


@pytest.mark.parametrize("name", NAMES)
def test_config_is_commented_yaml_naming_the_file_columns(written, name: str):
    root, _ = written
    text = (root / name / "study.yml").read_text(encoding="utf-8")
    assert text.startswith(f'# Study config of the SIMULATED scenario "{name}"')
    assert "no real person" in text
    cfg = yaml.safe_load(text)
    assert cfg["study"] == name
    fixed, measured = _configured_names(cfg)
    columns = set(_read(root, name).columns)
    assert set(fixed) <= columns
    if cfg["layout"] == "wide":
        stems = {re.sub(r"_s\d+$", "", c) for c in columns if re.search(r"_s\d+$", c)}
        assert set(measured) == stems
    else:
        assert set(measured) <= columns
        assert len(columns) == len(set(fixed) | set(measured))  # no column left unmapped


@pytest.mark.parametrize("name", NAMES)
def test_config_loads(written, name: str):
    root, _ = written
    cfg = load_config(root / name / "study.yml")
    assert cfg.study == name


def test_base_spec_is_the_demo_config():
    demo = yaml.safe_load((DEMO_DIR / "study.yml").read_text(encoding="utf-8"))
    assert yaml.safe_load(render_config(base_spec("demo", ()))) == demo


# --------------------------------------------------------------------------- #
# Truth files
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", [n for n in NAMES if SCENARIOS[n].truth])
def test_truth_has_the_demo_structure_and_locates_its_faults(written, name: str):
    root, _ = written
    text = (root / name / "truth.json").read_text(encoding="utf-8")
    truth = json.loads(text)
    demo = json.loads((DEMO_DIR / "truth.json").read_text(encoding="utf-8"))
    assert set(demo) <= set(truth) and set(demo["effects"]) <= set(truth["effects"])
    assert text == json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert truth["simulated"] is True and truth["scenario"]["name"] == name
    assert truth["seed"] == SCENARIOS[name].kwargs["seed"]
    path = root / name / SCENARIOS[name].data_file
    if path.suffix != ".csv":
        assert truth["faults"] == []
        return
    delimiter = _config(root, name)["read"].get("delimiter", ",")
    lines = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter=delimiter))
    assert len(lines) - 1 == truth["export"]["n_rows"]
    assert lines[0] == truth["export"]["columns"]
    patient = lines[0].index("patient")
    for fault in truth["faults"]:
        if "row" in fault:
            assert lines[fault["row"] - 1][patient] == fault["patient"], fault
        if "column" in fault and fault["type"] == "out_of_range":
            assert lines[fault["row"] - 1][lines[0].index(fault["column"])] == str(fault["new"])
    codes = next(f for f in truth["faults"] if f["type"] == "missing_codes")["counts"]
    cells = [c for line in lines[1:] for c in line]
    assert codes == {code: cells.count(code) for code in codes}


# --------------------------------------------------------------------------- #
# The shapes
# --------------------------------------------------------------------------- #
def test_client_only_has_no_therapist_rating(written):
    root, _ = written
    frame = _read(root, "client_only")
    assert "therapist_wai_total" not in frame.columns
    assert list(_config(root, "client_only")["alliance"]) == ["client"]


def test_therapist_only_items_add_up_to_the_simulated_total(written):
    root, _ = written
    frame = _read(root, "therapist_only")
    assert not any(c.startswith("wai_") for c in frame.columns)
    assert _config(root, "therapist_only")["primary_alliance"] == "therapist"
    items = _numbers(frame[[f"twai_{k}" for k in range(1, 13)]])
    assert items.stack().dropna().between(1, 5).all()
    frame = frame.assign(
        session=frame["session"].astype(int), total=items.sum(axis=1, min_count=12)
    )
    clean = _clean("therapist_only").dropna(subset=["alliance_therapist"])
    exported = frame.dropna(subset=["total"]).drop_duplicates(["patient", "session"])
    merged = clean.merge(
        exported, left_on=["patient_id", "session"], right_on=["patient", "session"]
    )
    assert len(merged) == len(clean) > 500
    np.testing.assert_array_equal(merged["total"], merged["alliance_therapist"].astype(float))


def test_two_level_has_no_therapist_column_nor_variance(written):
    root, _ = written
    frame = _read(root, "two_level")
    assert not any("therapist" in c and c != "therapist_wai_total" for c in frame.columns)
    assert "therapist_id" not in _config(root, "two_level")["columns"]
    truth = _truth(root, "two_level")
    assert truth["effects"]["therapist_variance_outcome"] == 0
    assert "mistyped_therapist_id" not in {f["type"] for f in truth["faults"]}


def _scored(items: pd.DataFrame, low: int, high: int, reversed_items: tuple[int, ...]):
    """Sum of complete rows after reverse-scoring (column k-1 holds item k)."""
    values = items.to_numpy(dtype=float).copy()
    for k in reversed_items:
        values[:, k - 1] = low + high - values[:, k - 1]
    return pd.Series(values.sum(axis=1), index=items.index)


def test_wai_s_and_oq45_follow_the_instruments(written):
    root, _ = written
    frame = _read(root, "wai_s_oq45")
    wai_s = _numbers(frame[[f"wais_{k}" for k in range(1, 13)]])
    oq = _numbers(frame[[f"oq_{k}" for k in range(1, 46)]])
    assert set(wai_s.stack().dropna().unique()) <= set(range(1, 8))
    assert set(oq.stack().dropna().unique()) <= set(range(0, 5))
    clean = _clean("wai_s_oq45").reset_index(drop=True)
    assert len(clean) == len(frame)
    wai_sr = clean[WAI_CLEAN].astype(float).sum(axis=1, min_count=12)
    stretched = 12 + 1.5 * (wai_sr - 12)
    gap = (_scored(wai_s, 1, 7, WAI_S_REVERSED) - stretched).dropna()
    assert len(gap) > 400 and gap.abs().max() <= 1.25  # jitter +-0.75, then rounding
    phq = clean[PHQ_CLEAN].astype(float).sum(axis=1, min_count=9)
    residual = (_scored(oq, 0, 4, OQ45_REVERSED) - (25 + 4 * phq)).dropna()
    assert len(residual) > 300 and abs(residual.mean()) < 1 and 2 < residual.std() < 4
    # a reverse-keyed item goes against the scored total
    total = _scored(oq, 0, 4, OQ45_REVERSED)
    assert np.corrcoef(oq["oq_1"].fillna(2), total.fillna(total.mean()))[0, 1] < 0


def test_gad7_is_the_phq9_total_shrunk(written):
    root, _ = written
    frame = _read(root, "gad7")
    gad = _numbers(frame[[f"gad_{k}" for k in range(1, 8)]])
    assert set(gad.stack().dropna().unique()) <= {0, 1, 2, 3}
    assert not any(c.startswith("phq") for c in frame.columns)
    clean = _clean("gad7").reset_index(drop=True)
    phq = clean[PHQ_CLEAN].astype(float).sum(axis=1, min_count=9)
    gap = (gad.sum(axis=1, min_count=7) - phq * 21 / 27).dropna()
    assert len(gap) > 400 and gap.abs().max() <= 1.0


def test_mean_scored_alliance_is_an_item_mean(written):
    root, _ = written
    frame = _read(root, "mean_scored")
    cfg = _config(root, "mean_scored")
    assert {b["total_scale"] for b in cfg["alliance"].values()} == {"mean"}
    for column in ("wai_mean", "therapist_wai_mean"):
        cells = frame[column][~frame[column].isin(list(CODES))]
        assert cells.str.fullmatch(r"[1-5]\.\d\d").all(), column
        assert len(cells) > 500
    therapist = _numbers(frame["therapist_wai_mean"]).dropna() * 12
    assert (therapist - therapist.round()).abs().max() < 0.061  # a total / 12, 2 decimals


def _sessions(frame: pd.DataFrame) -> pd.Series:
    return frame["session"].astype(int)


def test_session_counts_of_the_design_shapes(written):
    root, summaries = written
    assert _sessions(_read(root, "max_8_sessions")).max() == 8
    assert _sessions(_read(root, "sessions_40")).max() == 40
    tiny = _read(root, "tiny")
    assert tiny["therapist"].nunique() == 5 and tiny["patient"].nunique() <= 25
    for name, summary in summaries.items():
        if name not in ("sessions_40", "wide_spss"):
            assert summary["n_rows"] < 1200, name  # small: the suite runs quickly on each


def test_reversed_truth_and_data_point_the_other_way(written):
    root, _ = written
    truth = _truth(root, "reversed")
    effects = truth["effects"]
    assert effects["alliance_within_lag1_effect"] > 0 and effects["alliance_between_effect"] > 0
    assert effects["reverse_path_effect"] > 0
    assert effects["modality_outcome_effects"]["psychodynamic"] == -3.0
    assert truth["sample"]["alliance_outcome_r_patient"] < 0  # stronger alliance, less gain
    frame = _read(root, "reversed")
    client = _numbers(frame[[f"wai_{k}" for k in range(1, 13)]]).sum(axis=1, min_count=12)
    therapist = _numbers(frame["therapist_wai_total"])
    assert therapist.mean() > client.mean() + 3
    phq = _numbers(frame[[f"phq_{k}" for k in range(1, 10)]]).sum(axis=1, min_count=9)
    treated = phq[_sessions(frame) >= 1].groupby(frame["modality"]).mean()
    assert treated["Psychodynamic"] < treated.drop("Psychodynamic").min() - 1


def test_heavy_dropout_ends_many_treatments_early(written):
    root, _ = written
    truth = _truth(root, "heavy_dropout")
    assert truth["parameters"]["dropout_hazard_early"] == pytest.approx(0.30)
    assert truth["parameters"]["dropout_hazard_late"] == pytest.approx(0.21)
    lengths = pd.Series({p["patient_id"]: p["n_sessions"] for p in truth["patients"]})
    assert (lengths <= 2).mean() > 0.35 and lengths.mean() < 6


def test_session_dates_replace_session_numbers(written):
    root, _ = written
    frame = _read(root, "session_dates")
    cfg = _config(root, "session_dates")
    assert "session" not in frame.columns and "session" not in cfg["columns"]
    assert cfg["columns"]["session_date"] == "visit_date"
    assert cfg["outcome"]["intake_session"] == 0
    dates = pd.to_datetime(frame["visit_date"], format="%Y-%m-%d")
    assert dates.min() >= pd.Timestamp(date(2019, 1, 1)) and dates.max().year <= 2021
    gaps = dates.groupby(frame["patient"]).diff().dropna().dt.days
    assert (gaps >= 0).all() and (gaps == 7).mean() > 0.6 and (gaps > 7).any()
    same_day = frame[frame.duplicated(["patient", "visit_date"], keep=False)]
    assert frame.duplicated().sum() == 1  # the exact duplicate
    assert len(same_day) == 4  # it and one conflicting duplicate
    for fault in _truth(root, "session_dates")["faults"]:
        if "row" in fault:
            assert frame.loc[fault["row"] - 2, "visit_date"] == fault["date"]


def test_wide_spss_file(written):
    root, summaries = written
    path = root / "wide_spss" / "patients_wide.sav"
    frame, meta = pyreadstat.read_sav(str(path), user_missing=True)
    declared, _ = pyreadstat.read_sav(str(path))
    assert len(frame) == summaries["wide_spss"]["n_patients"] == frame["ClientID"].nunique()
    assert meta.variable_value_labels["Modality"] == {
        1.0: "CBT",
        2.0: "Psychodynamic",
        3.0: "Humanistic",
    }
    per_session = [c for c in frame.columns if re.fullmatch(r".+_s\d\d", c)]
    assert "wai_3_s07" in per_session and "phq_1_s00" in per_session
    assert "wai_1_s00" not in per_session and "twai_s00" not in per_session
    values = frame[per_session].stack().dropna()
    assert {-99.0, -77.0} <= set(values.unique())
    assert set(meta.missing_ranges["wai_3_s07"][0].values()) == {-99.0}
    kept = declared[per_session].stack().dropna()
    assert -99.0 not in set(kept.unique()) and -77.0 in set(kept.unique())
    assert kept[kept >= 0].between(0, 60).all()
    assert b"01 Jan 0000:00:00" in path.read_bytes()[:120]  # no creation time stamp
    with pytest.raises(ValueError, match="not an SPSS system file"):
        pin_sav_header(b"PK\x03\x04")


def test_decimal_comma_file(written):
    root, _ = written
    cfg = _config(root, "decimal_comma")
    assert cfg["read"]["delimiter"] == ";" and cfg["read"]["decimal"] == ","
    frame = _read(root, "decimal_comma")
    assert len(frame.columns) == 28
    assert frame["age"].str.fullmatch(r"\d\d,\d").all()
    assert frame.groupby("patient")["age"].nunique().max() == 1
    rating = frame["therapist_wai_mean"][~frame["therapist_wai_mean"].isin(list(CODES))]
    assert rating.str.fullmatch(r"[1-5],\d\d").all() and len(rating) > 500
    assert cfg["alliance"]["therapist"] == {
        "instrument": "wai_sr",
        "total": "therapist_wai_mean",
        "total_scale": "mean",
    }


def test_no_modality_and_no_intake(written):
    root, _ = written
    assert "modality" not in _read(root, "tiny").columns
    cfg = _config(root, "tiny")
    assert "modality" not in cfg["columns"] and "modality_labels" not in cfg
    assert _sessions(_read(root, "max_8_sessions")).min() == 1
    outcome = _config(root, "max_8_sessions")["outcome"]
    assert "intake_session" not in outcome and "intake_total" not in outcome


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
def test_cli_writes_the_chosen_scenarios(tmp_path: Path, capsys, written):
    root, _ = written
    assert main(["scenarios", "--out", str(tmp_path), "--only", "tiny"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]
    assert (tmp_path / "tiny" / "sessions.csv").read_bytes() == (
        root / "tiny" / "sessions.csv"
    ).read_bytes()
    assert "tiny" in capsys.readouterr().out
    assert main(["scenarios", "--out", str(tmp_path / "x"), "--only", "huge"]) == 2
    assert "unknown scenario(s) huge" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_write_scenario_refuses_a_file_as_folder(tmp_path: Path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        write_scenario("tiny", target)
