"""The typed config: refusals name the field and never raise anything but ConfigError."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PRESETS
from trainer import config as config_module
from trainer.config import (
    SCHEMA_VERSION,
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    save_config,
)

REFUSALS = [
    ({"training": {"steps": 0}}, "training.steps: must be ≥ 1, got 0"),
    ({"training": {"steps": 2.5}}, "training.steps: must be a whole number, got 2.5"),
    ({"training": {"steps": True}}, "training.steps: must be a whole number, got True"),
    ({"training": {"learning_rate": 0}}, "training.learning_rate: must be > 0"),
    ({"training": {"learning_rate": float("nan")}}, "training.learning_rate: must be a finite number"),
    ({"training": {"scheduler": "cosin"}}, "training.scheduler: must be one of 'constant', 'constant_with_warmup', "
                                           "'linear', 'cosine', 'cosine_with_restarts' or 'polynomial'"),
    ({"training": {"warmup_steps": 50, "steps": 10}}, "training.warmup_steps: must be ≤ training.steps (10), got 50"),
    ({"lora": {"rank": 0}}, "lora.rank: must be ≥ 1, got 0"),
    ({"lora": {"target_modules": "to_q"}}, "lora.target_modules: must be a list, got 'to_q'"),
    ({"dataset": {"resolution": 500}}, "dataset.resolution: must be a multiple of 8, got 500"),
    ({"mode": "dreambooth"}, "mode: 'dreambooth' does not work with model.architecture 'toy'"),
    ({"mode": "paint"}, "mode: must be one of 'toy', 'frozen', 'lora', 'dreambooth' or 'embedding', got 'paint'"),
    ({"mode": "frozen", "frozen": {"trainable": []}}, "frozen.trainable: name at least one block"),
    ({"output": {"run_name": "../escape"}}, "output.run_name: has characters that are not allowed"),
    ({"output": {"run_name": ""}}, "output.run_name: must not be empty"),
    ({"toy": {"holdout_fraction": 0.95}}, "toy.holdout_fraction: must be < 0.9, got 0.95"),
    ({"trainnig": {"steps": 5}}, "trainnig: unknown key"),
    ({"training": {"stepz": 5}}, "training.stepz: unknown key"),
    ({"training": 5}, "training: must be a table, got 5"),
    ({"schema_version": 99}, "schema_version: this file is version 99, written by a newer Kamaal"),
    ({"schema_version": "one"}, "schema_version: must be a whole number ≥ 1"),
]


@pytest.mark.parametrize(("data", "message"), REFUSALS, ids=[m.split(":")[0] for _, m in REFUSALS])
def test_refusals_name_the_field(data, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert message in str(caught.value)


def test_several_problems_are_all_reported():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"training": {"steps": 0, "batch_size": 0}, "lora": {"rank": -1}})
    fields = caught.value.by_field()
    assert set(fields) == {"training.steps", "training.batch_size", "lora.rank"}


# Values of every kind TOML can hold, to throw at every field.
toml_values = st.recursive(
    st.none().map(lambda _: "") | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
field_names = st.sampled_from(
    [f"{section}.{name}" for section, field in Config.model_fields.items()
     if hasattr(field.annotation, "model_fields") for name in field.annotation.model_fields]
    + ["mode", "schema_version", "model", "training", "nonsense", "training.nonsense"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(field_names, toml_values), min_size=1, max_size=4))
def test_any_values_give_a_config_or_a_named_refusal(assignments):
    data: dict = {}
    for dotted, value in assignments:
        parts = dotted.split(".")
        table = data
        for part in parts[:-1]:
            existing = table.get(part)
            table = table.setdefault(part, {}) if isinstance(existing, dict) or existing is None else {}
        table[parts[-1]] = value
    try:
        config = config_from_dict(data)
    except ConfigError as exc:
        assert exc.problems and all(problem.strip() for problem in exc.problems)
        # every problem names a field (or the schema) before its colon
        assert all(":" in problem for problem in exc.problems), exc.problems
    else:
        assert config_from_dict(tomllib.loads(config.to_toml())) == config  # valid ones round-trip


@given(st.text(max_size=40))
def test_any_override_text_gives_a_value_or_a_named_refusal(text):
    try:
        data = apply_overrides({}, [text])
        config_from_dict(data)
    except ConfigError as exc:
        assert str(exc)


def test_overrides_parse_toml_values():
    assert parse_override("training.learning_rate=1e-4") == (["training", "learning_rate"], 1e-4)
    assert parse_override("sampling.prompts=['a', 'b c']") == (["sampling", "prompts"], ["a", "b c"])
    assert parse_override("model.path=C:/models/x y.safetensors") == (["model", "path"], "C:/models/x y.safetensors")
    assert parse_override("lora.train_text_encoder=true") == (["lora", "train_text_encoder"], True)
    with pytest.raises(ConfigError, match="'training' is a value, not a table"):
        apply_overrides({"training": 5}, ["training.steps=1"])


def test_save_load_round_trip_and_path_resolution(tmp_path, monkeypatch):
    config = config_from_dict({"mode": "frozen", "model": {"architecture": "toy", "path": "weights/base.safetensors"}})
    target = tmp_path / "cfg" / "job.toml"
    save_config(config, target)
    monkeypatch.chdir(tmp_path)
    loaded = load_config(target, ["dataset.path=imgs"])
    assert loaded.model.path == str(tmp_path / "cfg" / "weights" / "base.safetensors")  # relative to the file
    assert loaded.dataset.path == str(tmp_path / "imgs")  # overrides: relative to the current folder
    assert loaded.mode == "frozen" and loaded.training == config.training
    assert not list(target.parent.glob("*.tmp"))  # atomic save leaves no temp file


def test_presets_are_complete_valid_configs():
    presets = sorted(PRESETS.glob("*.toml"))
    assert {"toy", "toy-frozen"} <= {p.stem for p in presets}
    for preset in presets:
        data = tomllib.loads(preset.read_text(encoding="utf-8"))
        assert data["schema_version"] == SCHEMA_VERSION, preset
        load_config(preset)


def test_old_files_migrate_step_by_step(monkeypatch, tmp_path):
    """The migration hook: a version-1 file read by a (pretend) version-3 Kamaal."""
    calls = []

    def v1_to_v2(data):
        calls.append(1)
        data = dict(data)
        data["training"] = {**data.get("training", {}), "steps": data.pop("total_steps")}
        return data

    def v2_to_v3(data):
        calls.append(2)
        return data

    monkeypatch.setattr(config_module, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(config_module, "MIGRATIONS", {1: v1_to_v2, 2: v2_to_v3})
    old = tmp_path / "old.toml"
    old.write_text('schema_version = 1\ntotal_steps = 77\n', encoding="utf-8")
    config = load_config(Path(old))
    assert calls == [1, 2] and config.training.steps == 77 and config.schema_version == 3


@pytest.mark.parametrize(("content", "message"), [
    (b"mode = ", "is not valid TOML"),
    (b"\xff\xfe\x00", "is not UTF-8 text"),
])
def test_unreadable_files_are_named(tmp_path, content, message):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(bad) in str(caught.value) and message in str(caught.value)
