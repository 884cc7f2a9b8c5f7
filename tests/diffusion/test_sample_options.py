"""Sample options: a negative prompt, the sampler, and kohya's per-prompt options (``--n --l --s --d --w --h --ss``).
Each preview is the image the family's own pipeline draws when called with those options by hand; a run draws
its samples with them; what a family cannot honour is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.config import ConfigError, config_from_dict
from trainer.protocol import EXIT_OK, Failed, Sample
from trainer.sample_prompt import parse_sample_prompt


def test_a_prompt_line_reads_kohyas_options_and_refuses_what_it_cannot_read():
    line = "a photo of sks dog, smiling --n blurry, lowres --l 5.5 --s 30 --d 7, 8 --w 768 --h 512 --ss euler_a"
    prompt = parse_sample_prompt(line)
    assert (prompt.text, prompt.negative, prompt.guidance, prompt.steps) == (
        "a photo of sks dog, smiling", "blurry, lowres", 5.5, 30)
    assert (prompt.seeds, prompt.width, prompt.height, prompt.sampler) == ((7, 8), 768, 512, "euler_a")
    plain = parse_sample_prompt("a dog--not an option")  # "--" inside words is the prompt's
    assert plain.text == "a dog--not an option" and plain.guidance is None
    filled = plain.resolved(negative="ugly", guidance=4.0, steps=9, seeds=(1,), width=64, height=64, sampler="ddim")
    assert (filled.negative, filled.guidance, filled.steps, filled.seeds) == ("ugly", 4.0, 9, (1,))
    for bad, why in (("x --q 3", "unknown option --q"), ("x --l many", "--l (guidance scale) needs a number"),
                     ("x --s 0", "--s (steps) must be from 1"), ("x --w 100", "multiple of 8"),
                     ("x --ss karras", "unknown sampler 'karras'"), ("x --l 2 --l 3", "--l is given twice"),
                     ("x --d 1,a", "--d (seed) needs whole numbers")):
        with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
            parse_sample_prompt(bad)


def test_the_config_names_the_prompt_and_the_option_a_family_cannot_honour():
    with pytest.raises(ConfigError, match=r"sampling\.prompts.*prompt 2 \('b --l x'\): --l \(guidance scale\)"):
        config_from_dict({"mode": "lora", "model": {"architecture": "sd15"}, "sampling": {"prompts": ["a", "b --l x"]}})
    flux = {"mode": "lora", "model": {"architecture": "flux"}}
    with pytest.raises(ConfigError, match=r"sampling\.negative_prompt: Flux\.1's previews take no negative prompt"):
        config_from_dict(flux | {"sampling": {"negative_prompt": "blurry"}})
    with pytest.raises(ConfigError, match=r"prompt 1: --n: Flux\.1's previews take no negative prompt"):
        config_from_dict(flux | {"sampling": {"prompts": ["a cat --n blurry"]}})
    with pytest.raises(ConfigError, match=r"sampling\.sampler: Flux\.1 draws with its model's own scheduler"):
        config_from_dict(flux | {"sampling": {"sampler": "euler_a"}})
    with pytest.raises(ConfigError, match=r"prompt 1: --ss euler: Stable Diffusion 3"):
        config_from_dict({"mode": "lora", "model": {"architecture": "sd3"}, "sampling": {"prompts": ["a --ss euler"]}})
    config = config_from_dict({"mode": "lora", "model": {"architecture": "sdxl"}, "sampling": {
        "prompts": ["a cat --n dogs --ss dpm++_2m_karras"], "negative_prompt": "blurry", "sampler": "unipc"}})
    assert config.sampling.sampler == "unipc"


def _pipe(model_dir: Path):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True, safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)  # the previews' default
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_each_preview_is_the_pipelines_image_for_its_options(tiny_sd15, tmp_path):
    import diffusers

    from trainer.diffusion.sampling import draw, encode_sample_prompts

    pipe = _pipe(tiny_sd15)
    lines = ["a red circle --n a blue square --l 9 --s 3 --d 5 --w 72 --h 64 --ss euler_a", "a green square"]
    paths, prompts, seeds = draw(pipe, lines, [1, 2], 64, 64, 2, 7.5, tmp_path / "text", negative="stripes",
                                 sampler="dpm++_2m")
    assert prompts == [lines[0], lines[1], lines[1]] and seeds == [5, 1, 2]
    assert isinstance(pipe.scheduler, diffusers.DDIMScheduler)  # the pipeline gets its own scheduler back

    def by_hand(scheduler, prompt, negative, guidance, steps, seed, width):
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
        try:
            image = pipe(prompt, negative_prompt=negative, guidance_scale=guidance, num_inference_steps=steps,
                         width=width, height=64, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
            return np.asarray(image)
        finally:
            pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)

    first = np.asarray(Image.open(paths[0]))
    assert first.shape == (64, 72, 3)
    assert np.array_equal(first, by_hand(diffusers.EulerAncestralDiscreteScheduler, "a red circle", "a blue square",
                                         9.0, 3, 5, 72))
    assert np.array_equal(np.asarray(Image.open(paths[2])),
                          by_hand(diffusers.DPMSolverMultistepScheduler, "a green square", "stripes", 7.5, 2, 2, 64))
    # The negative prompt steers: without it the same seed draws another picture.
    assert not np.array_equal(np.asarray(Image.open(paths[2])),
                              by_hand(diffusers.DPMSolverMultistepScheduler, "a green square", None, 7.5, 2, 2, 64))
    # Prompts encoded once (the text encoders off the GPU) carry each line's own negative prompt and guidance.
    encoded = encode_sample_prompts(pipe, "sd15", lines, 7.5, "cpu", negative="stripes")
    again, _, _ = draw(pipe, lines, [1, 2], 64, 64, 2, 7.5, tmp_path / "encoded", conditioning=encoded,
                       negative="stripes", sampler="dpm++_2m")
    for a, b in zip(paths, again, strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a


@pytest.mark.slow
def test_a_run_draws_its_samples_with_each_prompts_options(tmp_path, tiny_sd15, shapes_dataset):
    config = diffusion_config(tiny_sd15, shapes_dataset, "sd15", lora={"rank": 2},
                              training={"steps": 1}, sampling={
                                  "prompts": ["a red circle --d 5 --w 72 --s 2 --ss euler", "a blue square"],
                                  "seeds": [3], "at_start": False, "negative_prompt": "stripes", "sampler": "unipc",
                                  "inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    final = rec.of(Sample)[-1]
    assert final.prompts == ("a red circle --d 5 --w 72 --s 2 --ss euler", "a blue square") and final.seeds == (5, 3)
    sizes = [Image.open(path).size for path in final.paths]
    assert sizes == [(72, 64), (64, 64)]
