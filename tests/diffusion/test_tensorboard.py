"""TensorBoard event files beside metrics.jsonl: the same numbers at the same steps, the previews as images, and a
resumed run's curve continuing from its checkpoint instead of folding back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.helpers import ScriptedCommands, run_in_process, toy_config
from trainer.protocol import EXIT_OK, Failed, Stop
from trainer.runfolder import RunFolder


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_the_scalars_are_the_metrics_rows(tmp_path):
    config = toy_config(training={"steps": 30, "learning_rate": 0.01, "log_every": 5, "eval_every": 10})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    run = RunFolder(tmp_path / "run")
    rows = run.read_metrics()
    events = read_events(run.tensorboard_dir)
    train = {e.step: e.value for e in events.Scalars("loss/train")}
    assert train == pytest.approx({row["step"]: row["loss"] for row in rows if row.get("loss") is not None})
    held_out = {e.step: e.value for e in events.Scalars("loss/held_out")}
    assert held_out == pytest.approx({row["step"]: row["heldout_loss"] for row in rows if "heldout_loss" in row})
    assert [e.step for e in events.Scalars("learning_rate")] == [row["step"] for row in rows]


def test_a_resumed_run_continues_its_curve_from_the_checkpoint(tmp_path):
    config = toy_config(training={"steps": 20, "learning_rate": 0.01, "log_every": 1, "eval_every": 10},
                        output={"run_name": "toy", "checkpoint_every": 5})
    code, rec = run_in_process(config, tmp_path / "run", ScriptedCommands({12: [Stop(save=False)]}))
    assert code == EXIT_OK, rec.of(Failed)  # stopped at 12 without saving: the last checkpoint is step 10
    code, rec = run_in_process(config, tmp_path / "run", resume=True)
    assert code == EXIT_OK, rec.of(Failed)
    events = read_events(RunFolder(tmp_path / "run").tensorboard_dir)
    steps = [e.step for e in events.Scalars("loss/train")]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 20, str(steps)  # 11 and 12 purged, then redone


def test_the_previews_are_logged_as_images(tmp_path, tiny_sd15, shapes_dataset):
    from tests.diffusion.conftest import diffusion_config

    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 4, "batch_size": 2, "seed": 1,
                                                                   "learning_rate": 3e-3, "eval_every": 2},
                              sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 2,
                                        "every_n_steps": 2, "at_start": True, "width": 64, "height": 64})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    events = read_events(RunFolder(tmp_path / "run").tensorboard_dir)
    images = events.Images("samples/p00-seed7")
    assert [image.step for image in images] == [0, 2, 4]
    assert images[0].width == 64 and images[0].height == 64


def test_a_tensorboard_writer_that_breaks_turns_itself_off_and_the_run_goes_on(tmp_path, monkeypatch):
    import torch.utils.tensorboard

    class Broken:
        def __init__(self, *args, **kwargs):
            raise TypeError("Descriptors cannot be created directly (a protobuf clash)")

    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", Broken)
    code, rec = run_in_process(toy_config(training={"steps": 5, "learning_rate": 0.01}), tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    log = RunFolder(tmp_path / "run").log_path.read_text(encoding="utf-8")
    assert "TensorBoard logging is off for this run (Descriptors cannot be created directly" in log
    assert [row["step"] for row in RunFolder(tmp_path / "run").read_metrics()] == [0, 1, 2, 3, 4, 5]  # all of it
