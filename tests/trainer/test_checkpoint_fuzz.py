"""Property tests over the checkpoint readers: whatever a state.json or training_state.pt holds, resuming
either takes it or refuses it naming the file, never with a traceback from deep inside torch."""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from tests.trainer.helpers import Recorder, toy_config
from trainer.checkpoint import STATE_FILE, WEIGHTS_FILE, read_state, restore_checkpoint
from trainer.errors import InputError
from trainer.jobs import create_job
from trainer.runfolder import RunFolder

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
state_fields = st.sampled_from(["step", "elapsed_s", "total_steps", "processes", "mode", "saved_at", "extra"])
state_objects = st.dictionaries(state_fields, st.integers(-3, 12) | json_values, max_size=6)


def write_state(folder: Path, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_bytes(content)
    return folder / "state.json"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(state=state_objects | json_values)
def test_any_state_json_is_taken_checked_or_refused_by_name(state):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "step-000010"
        file = write_state(folder, json.dumps(state).encode())
        try:
            taken = read_state(folder)
        except InputError as exc:
            assert str(exc).startswith(f"{file}: "), exc
            return
    assert taken["step"] == 10 and type(taken["step"]) is int
    elapsed = taken.get("elapsed_s", 0.0)
    assert type(elapsed) in (int, float) and math.isfinite(elapsed) and elapsed >= 0
    for name in ("total_steps", "processes"):
        assert name not in taken or (type(taken[name]) is int and taken[name] >= 1)
    for name in ("mode", "saved_at"):
        assert name not in taken or isinstance(taken[name], str)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(content=st.binary(max_size=64) | st.sampled_from([b"[" * 100_000, b"\xff\xfe{}", b'{"step": 1e999}']))
def test_any_bytes_in_state_json_are_refused_by_name(content):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "step-000010"
        file = write_state(folder, content)
        try:
            read_state(folder)
        except InputError as exc:
            assert str(exc).startswith(str(file)), exc


# ------------------------------------------------------------------------------------------- training_state.pt


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a state that the template gives a kind to (None leaves give none)."""
    found = [prefix] if prefix and value is not None else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, (list, tuple)):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


def kind(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype)
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float):
        return "number"
    return type(value).__name__


def differs(replacement: Any, template: Any) -> bool:
    """A change of kind (a whole number where any number goes is none)."""
    return kind(replacement) != kind(template) and (kind(template), kind(replacement)) != ("number", "int")


REPLACEMENTS = ["3", 3, 0.5, True, None, [1], {"a": 1}, torch.zeros(2), torch.zeros(2, dtype=torch.uint8)]


def changed(state: dict, where: tuple, replacement: Any) -> dict:
    state = copy.deepcopy(state)
    holder = state
    for key in where[:-1]:
        holder = holder[key]
    if isinstance(holder, tuple):
        raise AssertionError("the toy's state keeps no value of interest in a tuple")
    if replacement is DELETE:
        del holder[where[-1]]
    else:
        holder[where[-1]] = replacement
    return state


DELETE = object()


def get(state: Any, where: tuple) -> Any:
    for key in where:
        state = state[key]
    return state


def rendered(where: tuple) -> str:
    """A place in the state as the refusal names it: ``optimizer.param_groups[0].lr``."""
    text = ""
    for key in where:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


@pytest.fixture(scope="module")
def job_and_checkpoint(tmp_path_factory):
    """A toy job right after setup (what a resume restores into), and the weights and training state
    another one had after ten steps."""
    config = toy_config(training={"steps": 10})
    root = tmp_path_factory.mktemp("fuzz")
    trained = create_job(config, RunFolder.create(config, root / "trained"), Recorder(), logging.getLogger("fuzz"))
    trained.setup()
    for step in range(10):
        trained.train_step(step)
    fresh = create_job(config, RunFolder.create(config, root / "fresh"), Recorder(), logging.getLogger("fuzz"))
    fresh.setup()
    template = copy.deepcopy(fresh.training_state())
    places = [p for p in paths(template) if not isinstance(get(template, p[:-1]), tuple)]
    return fresh, trained.checkpoint_weights(), copy.deepcopy(trained.training_state()), template, places


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_change_of_kind_in_training_state_is_refused_by_name(job_and_checkpoint, data):
    job, weights, saved, template_state, places = job_and_checkpoint
    where = data.draw(st.sampled_from(places), label="where")
    template = get(template_state, where)
    options = [r for r in REPLACEMENTS if differs(r, template)]
    if isinstance(get(saved, where[:-1]), dict):
        options.append(DELETE)
    replacement = data.draw(st.sampled_from(options), label="replacement")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "step-000010"
        folder.mkdir()
        save_file(weights, folder / WEIGHTS_FILE)
        torch.save(changed(saved, where, replacement), folder / STATE_FILE)
        (folder / "state.json").write_text(json.dumps({"step": 10}))
        with pytest.raises(InputError) as refused:
            restore_checkpoint(job, folder)
        expected = f"{rendered(where)} is missing" if replacement is DELETE else f"{rendered(where)} must be "
        assert str(refused.value).startswith(f"{folder / STATE_FILE}: {expected}"), refused.value


def test_an_untouched_checkpoint_restores(job_and_checkpoint, tmp_path):
    job, weights, saved, _, _ = job_and_checkpoint
    folder = tmp_path / "step-000010"
    folder.mkdir()
    save_file(weights, folder / WEIGHTS_FILE)
    torch.save(saved, folder / STATE_FILE)
    (folder / "state.json").write_text(json.dumps({"step": 10, "elapsed_s": 1.0}))
    assert restore_checkpoint(job, folder)["step"] == 10
    for name, tensor in job.checkpoint_weights().items():
        assert torch.equal(tensor, weights[name])
