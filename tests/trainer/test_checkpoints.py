"""A run is never lost: a killed Save now, a resume with nothing whole, tampered state files, a full disk."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.helpers import run_in_process, toy_config
from trainer.checkpoint import STATE_FILE, WEIGHTS_FILE, load_checkpoint
from trainer.errors import InputError
from trainer.protocol import EXIT_BAD_INPUT, EXIT_OK, CheckpointSaved, Failed, Finished, Started
from trainer.runfolder import RunFolder

REPO = Path(__file__).resolve().parents[2]


def trained_run(tmp_path: Path, steps: int = 20, every: int = 10, keep: int = 3) -> tuple[Path, object]:
    config = toy_config(training={"steps": steps, "eval_every": 5},
                        output={"run_name": "t", "checkpoint_every": every, "keep_checkpoints": keep})
    run_dir = tmp_path / "run"
    code, rec = run_in_process(config, run_dir)
    assert code == EXIT_OK, rec.of(Failed)
    return run_dir, config


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ------------------------------------------------------------------------------------------- Save now, killed


def test_a_save_now_killed_mid_replace_keeps_the_checkpoint_and_resume_continues(tmp_path):
    """Save now at a step that has a checkpoint, killed (-9) as the new copy moves in: the step survives whole
    and the resumed run ends with the very weights of an uninterrupted one."""
    from tests.trainer.killed_saver import KILL_AT_STEP, config

    run_dir = tmp_path / "split"
    child = subprocess.run([sys.executable, "-m", "tests.trainer.killed_saver", str(run_dir)], cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr  # killed at the hook, not finished nor failed

    run = RunFolder(run_dir)
    assert [step for step, _ in run.checkpoints()] == [KILL_AT_STEP]  # still visible (as the copy set aside)

    code, resumed = run_in_process(config(), run_dir, resume=True)
    assert code == EXIT_OK, resumed.of(Failed)
    assert resumed.of(Started)[0].start_step == KILL_AT_STEP
    kept = {p.name for p in run.checkpoints_dir.iterdir()}
    assert kept == {"step-000015", "step-000020"}, kept  # recovered, then pruned normally; no leftovers

    code, straight = run_in_process(config(), tmp_path / "straight")
    assert code == EXIT_OK
    assert_same_weights(load_file(straight.of(Finished)[0].outputs[0]), load_file(resumed.of(Finished)[0].outputs[0]))


@pytest.mark.parametrize("left", ["old copy only", "new copy in, old not yet deleted", "new copy torn"])
def test_recovery_keeps_exactly_one_whole_copy(tmp_path, left):
    run_dir, _ = trained_run(tmp_path, steps=10, every=10)
    run = RunFolder(run_dir)
    final = run.checkpoint_dir(10)
    aside = final.with_name(".old-" + final.name)
    marker = json.loads((final / "state.json").read_text())
    os.replace(final, aside)
    if left == "new copy in, old not yet deleted":
        final.mkdir()
        for name in (WEIGHTS_FILE, STATE_FILE):
            (final / name).write_bytes((aside / name).read_bytes())
        (final / "state.json").write_text(json.dumps({**marker, "saved_at": "newer"}))
    elif left == "new copy torn":
        final.mkdir()
        (final / WEIGHTS_FILE).write_bytes(b"half")

    assert [p for _, p in run.checkpoints()] == [aside if left != "new copy in, old not yet deleted" else final]
    run.recover_interrupted_saves()
    assert not aside.exists()
    assert [p for _, p in run.checkpoints()] == [final]
    state, _, _ = load_checkpoint(final)
    assert state["saved_at"] == ("newer" if left == "new copy in, old not yet deleted" else marker["saved_at"])


def test_resume_with_step_folders_but_none_complete_is_refused(tmp_path):
    run_dir, config = trained_run(tmp_path)
    for _, path in RunFolder(run_dir).checkpoints():
        (path / "state.json").unlink()
    metrics_before = (run_dir / "metrics.jsonl").read_text()

    code, rec = run_in_process(config, run_dir, resume=True)
    assert code == EXIT_BAD_INPUT
    message = rec.of(Failed)[0].message
    assert message.startswith(f"{run_dir / 'checkpoints'}: no complete checkpoint"), message
    assert "step-000010, step-000020" in message
    assert not rec.of(Started)  # not a silent restart at step 0
    assert (run_dir / "metrics.jsonl").read_text() == metrics_before


# ------------------------------------------------------------------------------------------- tampered state


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda s: {**s, "step": -3}, "state.json: step must be a whole number ≥ 0, got -3"),
    (lambda s: {**s, "step": "10"}, 'state.json: step must be a whole number ≥ 0, got "10"'),
    (lambda s: {k: v for k, v in s.items() if k != "step"}, "state.json: step is missing"),
    (lambda s: {**s, "step": 7}, "state.json: step is 7 but the folder is for step 10"),
    (lambda s: {**s, "elapsed_s": [1]}, "state.json: elapsed_s must be a finite number of seconds ≥ 0, got [1]"),
    (lambda s: [s], "state.json: must be a JSON object, got a list"),
])
def test_tampered_state_json_is_refused_by_name(tmp_path, edit, expected):
    run_dir, config = trained_run(tmp_path, steps=10, every=10)
    state_file = run_dir / "checkpoints" / "step-000010" / "state.json"
    state_file.write_text(json.dumps(edit(json.loads(state_file.read_text()))))
    code, rec = run_in_process(config, run_dir, resume=True)
    assert code == EXIT_BAD_INPUT, rec.of(Finished)
    assert rec.of(Failed)[0].message.startswith(str(state_file.parent / expected)), rec.of(Failed)[0].message


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda s: {k: v for k, v in s.items() if k != "optimizer"}, "training_state.pt: optimizer is missing"),
    (lambda s: {**s, "cursor": "3"}, "training_state.pt: cursor must be a whole number, got a string"),
    (lambda s: {**s, "order": s["order"].float()}, "training_state.pt: order must be a torch.int64 tensor"),
    (lambda s: {**s, "scheduler": [1, 2]}, "training_state.pt: scheduler must be a dict, got a list"),
    (lambda s: [1, 2], "training_state.pt: must hold a dict of named states, got list"),
])
def test_tampered_training_state_is_refused_by_name(tmp_path, edit, expected):
    run_dir, config = trained_run(tmp_path, steps=10, every=10)
    state_pt = run_dir / "checkpoints" / "step-000010" / STATE_FILE
    torch.save(edit(torch.load(state_pt, weights_only=True)), state_pt)
    code, rec = run_in_process(config, run_dir, resume=True)
    assert code == EXIT_BAD_INPUT, rec.of(Finished)
    assert rec.of(Failed)[0].message.startswith(str(state_pt.parent / expected)), rec.of(Failed)[0].message


def test_read_state_names_the_file(tmp_path):
    from trainer.checkpoint import read_state

    folder = tmp_path / "step-000004"
    folder.mkdir()
    (folder / "state.json").write_text('{"step": 4, "elapsed_s": NaN}')
    with pytest.raises(InputError, match=r"state.json: elapsed_s must be a finite number of seconds ≥ 0, got nan"):
        read_state(folder)
    (folder / "state.json").write_text('{"step": true}')
    with pytest.raises(InputError, match=r"step must be a whole number ≥ 0, got true"):
        read_state(folder)
    (folder / "state.json").write_text('{"step": 4, "elapsed_s": 1.5, "mode": "toy"}')
    assert read_state(folder)["step"] == 4


# ------------------------------------------------------------------------------------------- full disk


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("writer", ["weights", "training state"])
def test_a_full_disk_at_a_checkpoint_is_refused_and_keeps_the_last_one(tmp_path, monkeypatch, writer):
    import trainer.checkpoint as checkpoint

    calls = []
    real_save_file, real_torch_save = checkpoint.save_file, torch.save

    def full_save_file(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) < 2:
            return real_save_file(tensors, path, *args, **kwargs)
        Path(path).write_bytes(b"\0" * 1000)  # part written, then the disk is full
        raise enospc(path)

    def full_torch_save(obj, handle, *args, **kwargs):
        calls.append(handle)
        if len(calls) < 2:
            return real_torch_save(obj, handle, *args, **kwargs)
        handle.write(b"\0" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from enospc(handle.name)

    if writer == "weights":
        monkeypatch.setattr(checkpoint, "save_file", full_save_file)
    else:
        monkeypatch.setattr(checkpoint.torch, "save", full_torch_save)
    config = toy_config(training={"steps": 30}, output={"run_name": "t", "checkpoint_every": 10})
    run_dir = tmp_path / "run"
    code, rec = run_in_process(config, run_dir)

    assert code == EXIT_BAD_INPUT
    failed = rec.of(Failed)[0]
    assert failed.kind == "input" and not failed.traceback
    checkpoints = run_dir / "checkpoints"
    expected = f"{checkpoints}: the disk is full; writing a checkpoint takes about "
    assert failed.message.startswith(expected), failed.message
    assert "The last checkpoint, step-000010, is kept" in failed.message
    assert [c.step for c in rec.of(CheckpointSaved)] == [10]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000010"]  # no staging folder left
    load_checkpoint(checkpoints / "step-000010")  # whole and readable

    monkeypatch.undo()  # space freed: the run carries on from step 10
    code, rec = run_in_process(config, run_dir, resume=True)
    assert code == EXIT_OK and rec.of(Started)[0].start_step == 10


def test_a_full_disk_at_export_is_refused_and_keeps_the_final_checkpoint(tmp_path, monkeypatch):
    import trainer.jobs.toy as toy

    def full(tensors, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 1000)
        raise enospc(path)

    monkeypatch.setattr(toy, "save_file", full)
    config = toy_config(training={"steps": 20}, output={"run_name": "t", "checkpoint_every": 10})
    run_dir = tmp_path / "run"
    code, rec = run_in_process(config, run_dir)

    assert code == EXIT_BAD_INPUT
    message = rec.of(Failed)[0].message
    assert message.startswith(f"{run_dir / 'output'}: the disk is full; writing the outputs takes about "), message
    assert "The last checkpoint, step-000020, is kept" in message
    assert list((run_dir / "output").iterdir()) == []  # no staging file left
    load_checkpoint(run_dir / "checkpoints" / "step-000020")

    monkeypatch.undo()
    code, rec = run_in_process(config, run_dir, resume=True)  # writes the outputs from the final checkpoint
    assert code == EXIT_OK and rec.of(Finished)[0].outputs
