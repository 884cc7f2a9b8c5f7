"""The memory estimate: a pure function of the config; each knob moves it the way the formula says.

(Its agreement with a real measurement is checked in tests/gui/test_memory_and_blocks.py, which runs
the ``measure`` task on the toy config.)
"""

from __future__ import annotations

import pytest

from tests.conftest import PRESETS
from trainer.config import apply_overrides, config_from_dict, load_config
from trainer.memory_estimate import GB, REFERENCE_PARAMETERS, estimate_memory


def preset(name: str, *overrides: str):
    return config_from_dict(apply_overrides(load_config(PRESETS / f"{name}.toml").to_dict(), overrides))


def test_sd15_lora_for_8gb_fits_in_8gb_and_sdxl_needs_more():
    sd15 = estimate_memory(preset("sd15-lora-8gb"), "cuda")
    assert 2 * GB < sd15.total < 8 * GB  # the preset's promise
    sdxl = estimate_memory(preset("sdxl-lora-12gb"), "cuda")
    assert sd15.total < sdxl.total < 12 * GB
    plain = estimate_memory(preset("sd15-lora-8gb", "training.gradient_checkpointing=false", "dataset.resolution=512",
                                   "training.batch_size=1", 'model.precision="fp16"'), "cuda")
    assert 4 * GB < plain.total < 8 * GB  # commonly reported: ~6 GB for SD 1.5 LoRA at 512 px without checkpointing


def test_each_knob_moves_its_term():
    base = preset("sd15-lora-8gb", "training.gradient_checkpointing=false", "training.batch_size=1")
    e = estimate_memory(base, "cuda")
    doubled_batch = estimate_memory(preset("sd15-lora-8gb", "training.gradient_checkpointing=false",
                                           "training.batch_size=2"), "cuda")
    assert doubled_batch.activations == pytest.approx(2 * e.activations, rel=1e-6)
    checkpointed = estimate_memory(preset("sd15-lora-8gb", "training.gradient_checkpointing=true",
                                          "training.batch_size=1"), "cuda")
    assert checkpointed.activations == pytest.approx(0.2 * e.activations, rel=1e-6)
    bigger = estimate_memory(preset("sd15-lora-8gb", "training.gradient_checkpointing=false", "training.batch_size=1",
                                    f"dataset.resolution={2 * base.dataset.resolution}"), "cuda")
    assert bigger.activations == pytest.approx(4 * e.activations, rel=1e-6)
    rank = estimate_memory(preset("sd15-lora-8gb", f"lora.rank={2 * base.lora.rank}"), "cuda")
    assert rank.trainable_parameters == pytest.approx(2 * e.trainable_parameters, rel=1e-3)
    eight_bit = estimate_memory(preset("sd15-lora-8gb", 'training.optimizer="adamw8bit"'), "cuda")
    assert eight_bit.optimizer * 4 == eight_bit.trainable_parameters * 8  # 2 instead of 8 bytes per parameter
    assert e.gradients == 4 * e.trainable_parameters and e.optimizer == 8 * e.trainable_parameters


def test_full_unet_and_frozen_layers_count_the_unet_and_cpu_adds_the_process():
    unet = REFERENCE_PARAMETERS["sd15"]["unet"]
    full = estimate_memory(preset("sd15-dreambooth", "dreambooth.train_full_unet=true"), "cuda")
    assert full.trainable_parameters == unet and full.optimizer == 8 * unet
    counted = estimate_memory(preset("sd15-frozen"), "cuda", trainable_parameters=1_000_000)
    assert counted.trainable_parameters == 1_000_000 and counted.gradients == 4_000_000
    toy = preset("toy")
    on_cpu, on_gpu = estimate_memory(toy, "cpu"), estimate_memory(toy, "cuda")
    assert on_cpu.total - on_gpu.total == on_cpu.overhead > 0
    tiny = estimate_memory(preset("sd15-lora-8gb"), "cpu", {"unet": 1_106_212, "text_encoder": 52_064})
    assert tiny.weights < 20 * 2**20  # a tiny model is costed as tiny, not as SD 1.5
