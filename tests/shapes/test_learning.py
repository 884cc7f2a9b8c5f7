"""Fine-tuning the shapes model visibly teaches it: the judge sees the new concept after training.

Each run previews the same prompts with the same seeds before the first step and after the last,
and the judge reads those pictures.  Thresholds come from measured runs (README, "Shapes world").
"""

from __future__ import annotations

import pytest

from tests.conftest import PRESETS
from tests.shapes.conftest import judged_previews, shapes_config
from tests.trainer.helpers import run_in_process
from trainer.config import load_config
from trainer.protocol import EXIT_OK, Failed
from trainer.runfolder import RunFolder
from trainer.shapes.judge import EMBLEM
from trainer.shapes.world import SHAPES, new_colour_samples, write_captioned

FROZEN_TEAL_STEPS = 120
FULL_TEAL_STEPS = 40
TEAL_PROMPTS = ["a teal circle on a gray background", "a teal square on a gray background"]


def heldout(run_dir) -> list[float]:
    return [row["heldout_loss"] for row in RunFolder(run_dir).read_metrics() if "heldout_loss" in row]


@pytest.fixture(scope="module")
def teal_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teal")
    write_captioned(folder, new_colour_samples(8, "teal", seed=0), "teal")
    return folder


def emblems(score) -> int:
    return sum(reading.shape == EMBLEM for reading in score.readings)


@pytest.mark.slow  # the shipped demo preset as it is: 400 DreamBooth-LoRA steps of batch 1 (~45 s of CPU)
@pytest.mark.timeout(600)  # the suite's 300 s is too close on a slower 2-core machine
def test_the_demo_preset_teaches_the_sks_emblem_and_keeps_the_class(tmp_path, shapes_model):
    demo = load_config(PRESETS / "demo.toml")  # as shipped: it trains resources/models/shapes-sd
    prompts = ["a sks shape", "a shape"]
    config = demo.model_copy(update={"sampling": demo.sampling.model_copy(update={
        "prompts": prompts, "seeds": list(range(12)), "every_n_steps": 0, "at_start": True})})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    steps = config.training.steps
    curve = heldout(tmp_path / "run")
    assert curve[-1] < curve[0]
    sks_before, _ = judged_previews(tmp_path / "run", 0, prompts)
    sks_after, class_after = judged_previews(tmp_path / "run", steps, prompts)
    # Measured (README, "Shapes world"), training seeds 0 to 4: before training the judge finds
    # the emblem in 0 of 12 samples, after the 400 steps in 6 to 9 of 12; the misses are mostly red
    # rings whose centre is not yet blue.  The exact pictures shift with the CPU's float rounding
    # (thread count), so 5 leaves room for that but not for "nothing learned".
    assert emblems(sks_before) == 0, sks_before
    assert emblems(sks_after) >= 5, sks_after
    # Prior preservation: "a shape" still draws ordinary world shapes, not the new one (measured:
    # no emblem; a world shape in 10 and 11 of 12, mostly circles, as before training).
    assert emblems(class_after) <= 1, class_after
    assert sum(r.shape in SHAPES for r in class_after.readings) >= 6, class_after


def teal_distance(scores) -> float:
    """Mean RGB distance of the judge's colour readings to teal (the word the runs teach)."""
    readings = [reading for score in scores for reading in score.readings]
    return sum(reading.distance_to("teal") for reading in readings) / len(readings)


def assert_teal_learned(run_dir, steps: int, ratio: float) -> None:
    curve = heldout(run_dir)
    assert curve[-1] < curve[0]
    before = judged_previews(run_dir, 0, TEAL_PROMPTS)
    after = judged_previews(run_dir, steps, TEAL_PROMPTS)
    # The judge sees the colour move towards teal while the asked shapes stay.
    assert teal_distance(after) < ratio * teal_distance(before), (before, after)
    assert min(score.shape for score in after) >= 0.5, after


@pytest.mark.slow  # 120 frozen-layer steps plus 2×4 preview pictures, twice (~40 s)
def test_frozen_cross_attention_learns_a_new_colour_word(tmp_path, shapes_model, teal_dataset):
    config = shapes_config(shapes_model, teal_dataset, mode="frozen", frozen={"trainable": ["*attn2*"]},
                           training={"steps": FROZEN_TEAL_STEPS, "learning_rate": 2e-3},
                           sampling={"prompts": TEAL_PROMPTS})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    # Measured: the judge's readings of "teal" start purple-blue, 154 RGB units from teal, and end
    # blue-green, 93 away (0.60×; 128 after 40 steps).  Shapes: 1.0 and 0.75 of the samples.
    assert_teal_learned(tmp_path / "run", FROZEN_TEAL_STEPS, 0.8)


@pytest.mark.slow  # 40 full-UNet steps plus 2×4 preview pictures, twice
def test_full_unet_fine_tune_learns_a_new_colour_word(tmp_path, shapes_model, teal_dataset):
    config = shapes_config(shapes_model, teal_dataset, mode="dreambooth",
                           dreambooth={"train_full_unet": True, "prior_preservation": False,
                                       "instance_prompt": "a teal shape"},
                           training={"steps": FULL_TEAL_STEPS, "learning_rate": 3e-4},
                           sampling={"prompts": TEAL_PROMPTS})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    # Measured: 154 → 94 RGB units from teal (0.61×); both shapes still right in every sample.
    # Neither run reaches the judge's strict "teal" (it reads them as blue): a longer run would.
    assert_teal_learned(tmp_path / "run", FULL_TEAL_STEPS, 0.8)
