"""Noise and timestep options (``training.*``): multires noise, the timestep range, debiased estimation, min-SNR
with v-prediction and zero terminal SNR — each shown doing to training what it claims, and refused by name where
the family cannot use it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.diffusion.conftest import diffusion_config
from trainer.config import ConfigError, config_from_dict
from trainer.diffusion.loss import NoiseOptions, denoising_loss, draw_noise, snr
from trainer.diffusion.text import TextConditioning


def block_variance(noise: torch.Tensor, block: int = 16) -> float:
    """Variance of the noise averaged over block × block squares, relative to white noise's (1/block²)."""
    return float(F.avg_pool2d(noise, block).var()) * block**2


def test_multires_noise_adds_low_frequency_energy_at_unit_variance():
    shape = (16, 4, 64, 64)
    plain, _ = draw_noise(shape, torch.Generator().manual_seed(3), NoiseOptions(), 1000)
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(3)))  # off: as before
    assert block_variance(plain) == pytest.approx(1.0, abs=0.15)  # white noise: averaging divides variance by 256
    energies = []
    for discount in (0.3, 0.6):
        noise, _ = draw_noise(shape, torch.Generator().manual_seed(3), NoiseOptions(multires_iterations=6,
                                                                                   multires_discount=discount), 1000)
        assert noise.std(dim=(1, 2, 3)) == pytest.approx(torch.ones(16), abs=1e-4)  # each image at unit variance
        energies.append(block_variance(noise))
    # Coarse levels survive the averaging: more large-area energy than white noise, the more the higher the discount.
    assert 1.25 < energies[0] < energies[1] and energies[1] > 5, energies


def test_ddpm_timesteps_lie_in_the_range():
    options = NoiseOptions(timestep_range=(0.2, 0.5))
    _, timesteps = draw_noise((4096, 1, 2, 2), torch.Generator().manual_seed(0), options, 1000)
    assert int(timesteps.min()) == 200 and int(timesteps.max()) == 499  # [200, 500), every value reached
    assert len(timesteps.unique()) == 300


@pytest.mark.parametrize(("architecture", "side"), [("sd3", 16), ("flux", 16), ("flux", 64)])
def test_flow_matching_sigmas_lie_in_the_range_after_the_shift(architecture, side):
    """σ (the model's timestep ÷ 1000) is what the range bounds, after SD 3's fixed or Flux's size-dependent shift."""
    from trainer.diffusion.engines import SD3Engine

    engine = SD3Engine(SimpleNamespace(architecture=architecture))
    shape = (2048, 1, side, side)
    _, u = engine.draw_noise(shape, torch.Generator().manual_seed(0), NoiseOptions(timestep_range=(0.3, 0.6)))
    sigma = engine.sigmas(u, torch.zeros(1, 1, side, side))
    assert float(sigma.min()) >= 0.3 - 1e-6 and float(sigma.max()) <= 0.6 + 1e-6
    assert float(sigma.min()) < 0.32 and float(sigma.max()) > 0.58  # the whole range is used
    _, full = engine.draw_noise(shape, torch.Generator().manual_seed(0), NoiseOptions())
    assert float(engine.sigmas(full, torch.zeros(1, 1, side, side)).min()) < 0.2  # without it, σ goes lower


class ZeroPrediction(torch.nn.Module):
    """A denoiser that predicts 0 and remembers its input: its loss is the mean square of the target itself."""

    def forward(self, noisy, timesteps, hidden):
        self.seen = noisy
        return SimpleNamespace(sample=torch.zeros_like(noisy))


def per_timestep_losses(scheduler, latents, noise, timesteps, **weighting) -> torch.Tensor:
    text = TextConditioning(torch.zeros(1, 2, 8))
    return torch.stack([denoising_loss(ZeroPrediction(), scheduler, latents, noise, t[None], text, None, **weighting)
                        for t in timesteps])


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_debiased_estimation_and_min_snr_weigh_each_timestep_in_the_loss(prediction_type):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(prediction_type=prediction_type)
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([0, 10, 250, 500, 999])
    ratio = snr(scheduler, timesteps)
    plain = per_timestep_losses(scheduler, latents, noise, timesteps)
    debiased = per_timestep_losses(scheduler, latents, noise, timesteps, debiased=True)
    min_snr = per_timestep_losses(scheduler, latents, noise, timesteps, min_snr_gamma=5.0)
    capped = ratio.clamp(max=1000)
    if prediction_type == "epsilon":  # on the noise error: 1/√SNR (Yu et al.), min(SNR, γ)/SNR (Hang et al.)
        assert torch.allclose(debiased / plain, 1 / capped.sqrt(), rtol=1e-5)
        assert torch.allclose(min_snr / plain, ratio.clamp(max=5) / ratio, rtol=1e-5)
    else:  # the same weights carried to the v error, which is (SNR + 1)/SNR times the noise error
        assert torch.allclose(debiased / plain, capped.sqrt() / (capped + 1), rtol=1e-5)
        assert torch.allclose(min_snr / plain, ratio.clamp(max=5) / (ratio + 1), rtol=1e-5)
    both = per_timestep_losses(scheduler, latents, noise, timesteps, debiased=True, min_snr_gamma=5.0)
    assert torch.allclose(both * plain, debiased * min_snr, rtol=1e-5)


def test_zero_terminal_snr_rescales_the_schedule_and_trains_v_on_pure_noise(tiny_sd2, shapes_dataset):
    import logging

    from trainer.diffusion.components import load_components

    config = diffusion_config(tiny_sd2, shapes_dataset, "sd2", training={"zero_terminal_snr": True})
    parts = load_components(config, logging.getLogger("test"))
    scheduler = parts.noise_scheduler
    assert float(scheduler.alphas_cumprod[-1]) < 1e-7 and float(scheduler.alphas_cumprod[-2]) > 0  # pure noise last
    assert parts.sample_scheduler_config["rescale_betas_zero_snr"] is True
    assert parts.sample_scheduler_config["timestep_spacing"] == "trailing"

    latents, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    model = ZeroPrediction()
    loss = denoising_loss(model, scheduler, latents, noise, torch.tensor([999]), TextConditioning(torch.zeros(1, 2, 8)),
                          None)
    assert torch.allclose(model.seen, noise, atol=1e-3)  # the model sees nothing of the image there
    assert float(loss) == pytest.approx(float((latents**2).mean()), rel=1e-3)  # and its target v is −x₀



def test_zero_terminal_snr_on_an_epsilon_model_is_refused_by_name(tiny_sd15, shapes_dataset):
    import logging

    from trainer.diffusion.components import load_components
    from trainer.errors import InputError

    config = diffusion_config(tiny_sd15, shapes_dataset, training={"zero_terminal_snr": True})  # auto: ε model
    with pytest.raises(InputError, match=r"training\.zero_terminal_snr: needs v-prediction, and .* is an epsilon"):
        load_components(config, logging.getLogger("test"))
    with pytest.raises(ConfigError, match=r"training\.zero_terminal_snr: needs v-prediction"):
        config_from_dict({"mode": "lora", "model": {"architecture": "sd15", "prediction_type": "epsilon"},
                          "training": {"zero_terminal_snr": True}})


def test_noise_options_a_family_cannot_use_are_refused_by_name():
    def lora(architecture: str, **training) -> dict:
        return {"mode": "lora", "model": {"architecture": architecture}, "training": training}

    with pytest.raises(ConfigError, match=r"training\.multires_noise_iterations: Flux\.1 draws its own σ"):
        config_from_dict(lora("flux", multires_noise_iterations=6))
    with pytest.raises(ConfigError, match=r"training\.zero_terminal_snr: Stable Diffusion 3\.5 trains by flow"):
        config_from_dict(lora("sd3", zero_terminal_snr=True))
    with pytest.raises(ConfigError, match=r"training\.debiased_estimation: .* no DDPM SNR"):
        config_from_dict(lora("zimage", debiased_estimation=True))
    with pytest.raises(ConfigError, match=r"training\.timestep_min: must be < training\.timestep_max \(300\)"):
        config_from_dict({"training": {"timestep_min": 300, "timestep_max": 300}})
    flux = config_from_dict(lora("flux", timestep_min=100, timestep_max=900))
    assert NoiseOptions.of(flux.training).timestep_range == (0.1, 0.9)  # the range works for every family

    from desktop_app.train.form_groups import field_visible

    assert field_visible("training.multires_noise_iterations", "lora", "sdxl")
    assert not field_visible("training.multires_noise_iterations", "lora", "flux")
    assert field_visible("training.timestep_min", "lora", "flux")


@pytest.mark.slow
def test_a_zero_snr_run_with_every_noise_option_trains_and_previews_with_the_rescaled_schedule(
        tmp_path, tiny_sd2, shapes_dataset):
    """Multires noise, a timestep range, debiased estimation and zero terminal SNR together on a v model: the run
    finishes, and its final preview is what the pipeline draws with the exported LoRA and the rescaled, trailing
    DDIM schedule — not what the model's own schedule draws."""
    import diffusers

    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished, Sample

    config = diffusion_config(tiny_sd2, shapes_dataset, "sd2", training={
        "steps": 6, "zero_terminal_snr": True, "debiased_estimation": True, "multires_noise_iterations": 4,
        "timestep_min": 100, "timestep_max": 1000, "eval_every": 3})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert "that step, which zero terminal SNR adds, is weighted 0" in (tmp_path / "run" / "log.txt").read_text(
        encoding="utf-8")  # debiased estimation's weight at SNR 0, said once
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)

    def draw(**scheduler_options) -> np.ndarray:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd2, local_files_only=True, safety_checker=None)
        pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config, **scheduler_options)
        pipe.load_lora_weights(str(rec.of(Finished)[0].outputs[1]))
        pipe.set_progress_bar_config(disable=True)
        image = pipe(final.prompts[0], width=64, height=64, num_inference_steps=3, guidance_scale=7.5,
                     generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
        return np.asarray(image, dtype=np.int16)

    assert np.abs(draw(rescale_betas_zero_snr=True, timestep_spacing="trailing") - trained).max() <= 2
    assert np.abs(draw() - trained).max() > 10
