"""The memory planner: a pure function of (device facts, config, model sizes) — every plan it calls fitting fits
the budget by the estimate, more GPU memory never makes it slower, it matches or beats the hand-made presets
on their own cards, and it says why it chose what it chose."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.conftest import PRESETS
from trainer.config import ConfigError, apply_overrides, config_from_dict, load_config
from trainer.memory_estimate import GB, estimate_memory
from trainer.memory_plan import (
    DeviceFacts,
    next_smaller_plan,
    option_space,
    plan_memory,
    ram_need,
    relative_step_time,
)

SIZED_PRESETS = sorted(path.stem for path in PRESETS.glob("*.toml") if re.search(r"-lora-\d+gb$", path.stem))
# A spread of families and starting points (a preset's options are where the search starts, not what it keeps).
STARTS = ["sd15-lora-8gb", "sdxl-lora-12gb", "flux-lora-24gb", "qwenimage-lora-16gb", "hidream-lora-12gb",
          "zimage-lora-12gb"]


def preset(name: str, *overrides: str):
    return config_from_dict(apply_overrides(load_config(PRESETS / f"{name}.toml").to_dict(), overrides))


devices = st.builds(DeviceFacts, vram_total=st.integers(2, 96).map(lambda n: n * GB),
                    ram=st.integers(8, 256).map(lambda n: n * GB), cpus=st.integers(1, 64))


# Settings that narrow what the planner may change (trained text encoders, captions varied every draw, fp32, …).
EXTRAS = ["lora.train_text_encoder=true", "dataset.shuffle_tags=true", "dataset.flip=true", 'model.precision="fp32"',
          'training.optimizer="adamw8bit"', "training.gradient_accumulation_steps=3", 'dataset.cache_text="off"',
          'model.text_encoder_device="gpu"', "model.blocks_to_swap=2", 'mode="dreambooth"']


def preset_or_none(name: str, *overrides: str):
    try:
        return preset(name, *overrides)
    except ConfigError:  # a combination the config refuses (a Flux text encoder trained): not a case
        return None


@settings(max_examples=60, deadline=None)
@given(start=st.sampled_from(STARTS), device=devices, batch=st.sampled_from([1, 2, 4]),
       images=st.sampled_from([0, 30, 3000]), extras=st.lists(st.sampled_from(EXTRAS), max_size=3, unique=True))
def test_a_plan_that_fits_fits_by_the_estimate_and_keeps_what_is_the_persons(start, device, batch, images, extras):
    config = preset_or_none(start, f"training.batch_size={batch}", *extras)
    assume(config is not None)
    plan = plan_memory(config, device, images=images)
    planned = plan.config
    # The numbers the plan reports are those of the planned config, recomputed here.
    assert plan.vram_need == estimate_memory(planned, "cuda").total
    assert plan.ram_need == ram_need(planned, device, images=images)
    assert plan.relative_time == pytest.approx(relative_step_time(planned, device))
    if plan.fits:
        assert plan.vram_need <= device.vram_budget and plan.ram_need <= device.ram_budget
    else:  # the smallest plan is over a budget, and so is every other candidate
        assert plan.vram_need > device.vram_budget or plan.ram_need > device.ram_budget
        assert plan.describe().startswith("Does not fit: even the smallest plan needs")
    # The person's choices stay: the family, the mode, the resolution, the rank, the effective batch.
    assert (planned.model.architecture, planned.mode, planned.dataset.resolution, planned.lora.rank) == (
        config.model.architecture, config.mode, config.dataset.resolution, config.lora.rank)
    effective = config.training.batch_size * config.training.gradient_accumulation_steps
    assert planned.training.batch_size * planned.training.gradient_accumulation_steps == effective
    assert (planned.training.optimizer, planned.lora.train_text_encoder, planned.dataset.flip) == (
        config.training.optimizer, config.lora.train_text_encoder, config.dataset.flip)
    assert set(plan.changes) <= set(option_space(config, device, images)) | {"training.gradient_accumulation_steps"}


@settings(max_examples=25, deadline=None)
@given(start=st.sampled_from(STARTS), small=st.integers(2, 48), more=st.integers(1, 48), ram=st.integers(16, 128),
       batch=st.sampled_from([1, 4]))
def test_more_gpu_memory_never_gives_a_slower_plan(start, small, more, ram, batch):
    config = preset(start, f"training.batch_size={batch}")
    smaller = plan_memory(config, DeviceFacts(small * GB, ram * GB))
    bigger = plan_memory(config, DeviceFacts((small + more) * GB, ram * GB))
    assert bigger.fits or not smaller.fits
    if smaller.fits:
        assert bigger.relative_time <= smaller.relative_time


@pytest.mark.parametrize("name", SIZED_PRESETS)
def test_the_plan_for_a_presets_card_fits_and_is_no_slower_than_the_preset(name):
    card = int(re.search(r"-(\d+)gb$", name).group(1))
    config = preset(name)
    device = DeviceFacts(card * GB, 64 * GB)
    # The hand-made plan fits by the planner's own rule (else the comparison would flatter the planner).
    assert estimate_memory(config, "cuda").total <= device.vram_budget
    assert ram_need(config, device) <= device.ram_budget
    plan = plan_memory(config, device)
    assert plan.fits, plan.describe()
    assert plan.relative_time <= relative_step_time(config, device) + 1e-9, (name, plan.describe())


def test_the_flux_plan_on_a_16_gb_card_says_why_in_numbers():
    plan = plan_memory(preset("flux-lora-24gb"), DeviceFacts(16 * GB, 64 * GB))
    text = plan.describe()
    assert plan.fits and plan.config.model.base_quantization in ("fp8", "nf4")
    # Each choice has its sentence, with the numbers behind it.
    assert f"{plan.config.model.base_quantization.upper()} base: the transformer's bf16 weights alone are 22.2 GB" \
        in text
    assert "Gradient checkpointing on: with gradient checkpointing off even the smallest plan needs" in text
    assert "Text encoders wait in RAM once the captions are encoded" in text
    assert "(this card leaves 14.7 GB" in text  # 16 GB less 5 % and the CUDA context


def test_every_choice_that_can_vary_has_a_sentence():
    device = DeviceFacts(24 * GB, 64 * GB)
    config = preset("flux-lora-24gb", "training.batch_size=4")
    plan = plan_memory(config, device, images=50)
    first_words = {"model.base_quantization": "base:", "model.blocks_to_swap": ("No block swap", "blocks swapped"),
                   "training.gradient_checkpointing": "Gradient checkpointing", "training.batch_size": "Batch ",
                   "model.text_encoder_device": "Text encoders", "dataset.cache_latents": "Latents cached",
                   "dataset.cache_text": "Captions cached"}
    space = option_space(config, device, 50)
    for path, words in first_words.items():
        assert len(space[path]) > 1, path
        assert any(any(w in reason for w in ((words,) if isinstance(words, str) else words))
                   for reason in plan.reasons), (path, plan.reasons)


def test_a_small_gpu_trades_the_batch_for_accumulation_and_a_big_one_does_not():
    config = preset("sdxl-lora-12gb", "training.batch_size=8", "dataset.resolution=512")
    small = plan_memory(config, DeviceFacts(12 * GB, 64 * GB))
    big = plan_memory(config, DeviceFacts(80 * GB, 128 * GB))
    assert small.fits and big.fits
    assert small.config.training.batch_size < 8 and (
        small.config.training.batch_size * small.config.training.gradient_accumulation_steps == 8)
    assert big.config.training.batch_size == 8 and not big.config.training.gradient_checkpointing
    assert big.relative_time == 1.0 < small.relative_time


def test_ram_counts_the_swapped_blocks_and_a_small_ram_refuses_a_plan_that_needs_them():
    config = preset("qwenimage-lora-16gb")
    roomy = plan_memory(config, DeviceFacts(16 * GB, 64 * GB))
    assert roomy.fits and roomy.config.model.blocks_to_swap > 0
    no_swap = config.model_copy(update={"model": roomy.config.model.model_copy(update={"blocks_to_swap": 0})})
    assert roomy.ram_need > ram_need(no_swap, DeviceFacts(16 * GB, 64 * GB))
    tight = plan_memory(config, DeviceFacts(16 * GB, 12 * GB))  # 10.2 GB of RAM usable: not the encoders and blocks
    assert not tight.fits
    assert "RAM (this computer leaves 10.2 GB)" in tight.describe()


def test_a_machine_without_a_gpu_plans_against_ram_with_the_cpu_estimate():
    config = preset("sd15-lora-8gb", "training.gradient_checkpointing=false")
    plan = plan_memory(config, DeviceFacts(0, 64 * GB))
    assert plan.fits and plan.vram_budget == 0
    assert plan.ram_need == estimate_memory(plan.config, "cpu").total
    assert plan.config.model.base_quantization == "none"  # quantized bases are GPU kernels


@settings(max_examples=20, deadline=None)
@given(start=st.sampled_from(STARTS), vram=st.integers(8, 48), low=st.floats(0.7, 1.5), more=st.floats(0, 1))
def test_a_calibrated_plan_fits_by_the_measured_ratio_and_a_larger_ratio_is_never_faster(start, vram, low, more):
    config, device = preset(start), DeviceFacts(vram * GB, 64 * GB)
    lower = plan_memory(config, device, calibration=low)
    higher = plan_memory(config, device, calibration=low + more)
    if lower.fits:
        assert estimate_memory(lower.config, "cuda").total * low <= device.vram_budget + 1
    if higher.fits:
        assert estimate_memory(higher.config, "cuda").total * (low + more) <= device.vram_budget + 1
        assert lower.fits and lower.relative_time <= higher.relative_time


def test_a_measured_overshoot_moves_the_plan_to_a_smaller_one():
    config, device = preset("flux-lora-24gb"), DeviceFacts(24 * GB, 64 * GB)
    trusted = plan_memory(config, device)
    calibration = 1.3 * device.vram_budget / trusted.vram_need  # Measure found 30 % more than the budget
    corrected = plan_memory(config, device, calibration=calibration)
    assert corrected.fits and corrected.relative_time > trusted.relative_time
    assert estimate_memory(corrected.config, "cuda").total < trusted.vram_need
    assert f"the estimate ×{calibration:.2f}, as Measure found" in corrected.describe()


@settings(max_examples=30, deadline=None)
@given(start=st.sampled_from(STARTS), vram=st.integers(6, 48), over=st.floats(1.0, 1.6),
       batch=st.sampled_from([1, 2, 4]))
def test_the_plan_after_an_out_of_memory_is_strictly_smaller_and_fits_by_the_measured_pressure(start, vram, over,
                                                                                               batch):
    device = DeviceFacts(vram * GB, 64 * GB)
    failed = plan_memory(preset(start, f"training.batch_size={batch}"), device).config  # what ran out
    ran_out_above = int(device.vram_total * over)  # it could hold this much, and needed more
    plan = next_smaller_plan(failed, device, ran_out_above=ran_out_above)
    need = estimate_memory(failed, "cuda").total
    if plan is None:  # nothing the planner may change makes it smaller: every option is at its smallest already
        assert all(next_smaller_plan(failed, DeviceFacts(g * GB, 512 * GB)) is None for g in (8, 80))
        return
    assert estimate_memory(plan.config, "cuda").total < need
    calibration = max(1.0, ran_out_above / need)
    assert plan.vram_need == int(estimate_memory(plan.config, "cuda").total * calibration)
    if plan.fits:
        assert plan.vram_need <= device.vram_budget
    # The person's choices stay, as in any plan.
    assert (plan.config.model.architecture, plan.config.dataset.resolution, plan.config.lora.rank) == (
        failed.model.architecture, failed.dataset.resolution, failed.lora.rank)


def test_after_an_out_of_memory_the_smallest_config_has_no_smaller_plan_and_a_roomy_one_drops_the_fastest_options():
    device = DeviceFacts(12 * GB, 64 * GB)
    smallest = plan_memory(preset("flux-lora-24gb"), DeviceFacts(1 * GB, 512 * GB)).config  # everything at its least
    assert next_smaller_plan(smallest, device, ran_out_above=12 * GB) is None
    assert next_smaller_plan(load_config(PRESETS / "toy.toml"), device) is None  # the toy network: nothing to plan
    roomy = preset("sdxl-lora-12gb")  # its 12 GB plan, run on a card that turned out to hold less than it needs
    plan = next_smaller_plan(roomy, device, ran_out_above=12 * GB)
    assert plan is not None and plan.fits and plan.changes
    assert estimate_memory(plan.config, "cuda").total < estimate_memory(roomy, "cuda").total
    assert "as the out-of-memory showed" in plan.describe()
