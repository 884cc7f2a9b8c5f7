"""Schedule-free AdamW inside a real run: evaluation, samples and the saved LoRA use its averaged weights, and a
stopped and resumed run (which evaluated, sampled and saved on its way) ends bit for bit where an uninterrupted
one does."""

from __future__ import annotations

import torch

from tests.diffusion.conftest import diffusion_config, straight_and_resumed
from trainer.runfolder import RunFolder


def test_schedule_free_resumes_bit_for_bit_through_its_evaluations_and_saves(tmp_path, tiny_sd15, shapes_dataset):
    config = diffusion_config(tiny_sd15, shapes_dataset, training={
        "steps": 8, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 2, "seed": 1,
        "optimizer": "adamw_schedulefree", "warmup_steps": 2}, sampling={
        "prompts": ["a red circle"], "seeds": [7], "inference_steps": 2, "every_n_steps": 3, "at_start": True})
    _, _, (a, b) = straight_and_resumed(config, tmp_path, stop_at=5)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    curve = [row["heldout_loss"] for row in RunFolder(tmp_path / "straight").read_metrics() if "heldout_loss" in row]
    assert len(curve) == 5 and curve[-1] < curve[0], curve  # steps 0, 2, 4, 6, 8

