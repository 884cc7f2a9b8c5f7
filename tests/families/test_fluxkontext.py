"""Flux.1 Kontext through the registry, on a tiny model built from its real classes (``FluxTransformer2DModel`` with
the guidance embedder, Flux's VAE, CLIP-L and T5 in ``FluxKontextPipeline``): the engine packs the noisy target and
the control image's latents into the sequence, with the position ids and the time the pipeline gives them, and reads
the prediction off the target's tokens as the pipeline does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ARCH = "fluxkontext"


@pytest.fixture(scope="module")
def tiny_kontext(tmp_path_factory) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("kontext") / "tiny-kontext", ARCH, seed=0)


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.FluxKontextPipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_engine_packs_target_and_control_and_predicts_as_the_pipeline_does(tiny_kontext):
    """Control latents as ``_encode_vae_image`` gives them; the sequence the pipeline builds (the noisy target's
    tokens, then the control's, ``latent_ids`` then ``image_ids`` with first axis 1), time σ, guidance 1.0, and the
    output sliced to the target's tokens, unpacked — and the control does reach the prediction."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import CONTROL_LATENTS, engine_for, pack_2x2

    pipe = pipeline(tiny_kontext)
    parts = Components(ARCH, "flow_matching", [pipe.tokenizer, pipe.tokenizer_2],
                       [pipe.text_encoder, pipe.text_encoder_2], pipe.vae, pipe.transformer, pipe.scheduler)
    engine = engine_for(parts)
    generator = torch.Generator().manual_seed(0)
    control_pixels = torch.rand(2, 3, 64, 48, generator=generator) * 2 - 1
    with torch.no_grad():
        control = engine.image_latents(control_pixels)
        expected = pipe._encode_vae_image(control_pixels, generator=None)
    torch.testing.assert_close(control, expected)

    prompts = ["make it red", "turn the circle into a square"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder, pipe.text_encoder_2], prompts, "cpu")
        embeds, pooled, text_ids = pipe.encode_prompt(prompts, prompts, device=torch.device("cpu"),
                                                      max_sequence_length=512)
    assert torch.equal(text.hidden, embeds) and torch.equal(text.pooled, pooled)

    channels = pipe.transformer.config.in_channels // 4
    noisy = torch.randn(2, channels, 8, 6, generator=generator)
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict_batch(pipe.transformer, noisy, sigma, text, {CONTROL_LATENTS: (control,)})
        # The pipeline's own preparation: the control image's packed latents and ids, the target's ids.
        _, image_tokens, latent_ids, image_ids = pipe.prepare_latents(
            control_pixels, 2, channels, 64, 48, torch.float32, torch.device("cpu"), None, latents=pack_2x2(noisy))
        assert image_ids[:, 0].eq(1).all() and latent_ids[:, 0].eq(0).all()
        out = pipe.transformer(hidden_states=torch.cat([pack_2x2(noisy), image_tokens], dim=1), timestep=sigma,
                               guidance=torch.full((2,), 1.0), pooled_projections=pooled,
                               encoder_hidden_states=embeds, txt_ids=text_ids,
                               img_ids=torch.cat([latent_ids, image_ids]), return_dict=False)[0]
        velocity = pipe._unpack_latents(out[:, : latent_ids.shape[0]], 64, 48, pipe.vae_scale_factor)
        without = engine.predict_batch(pipe.transformer, noisy, sigma, text, {})
    torch.testing.assert_close(predicted, velocity, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(predicted, without, atol=1e-3)


TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "proj_mlp",
           "proj_out"]


def hue_shifted(image, turn: float):
    """``image`` with every colour's hue turned by ``turn`` (a fraction of the circle)."""
    import numpy as np
    from PIL import Image

    hsv = np.asarray(image.convert("HSV"), dtype=np.int16).copy()
    hsv[..., 0] = (hsv[..., 0] + round(256 * turn)) % 256
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def make_it_red(folder: Path, count: int, seed: int, turn: float = 1 / 3) -> Path:
    """``count`` pairs in the folders layout: a control of one random colour and the target, that colour with its hue
    turned by a third (a fixed, visible edit), with the instruction beside the target.  Only a model that reads the
    control can draw the target: the colour is random."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    for sub in ("target", "control"):
        (folder / sub).mkdir(parents=True)
    for i in range(count):
        control = Image.new("RGB", (64, 64), tuple(rng.randrange(30, 256) for _ in range(3)))
        control.save(folder / "control" / f"pair-{i:02d}.png")
        hue_shifted(control, turn).save(folder / "target" / f"pair-{i:02d}.png")
        (folder / "target" / f"pair-{i:02d}.txt").write_text("make it red", encoding="utf-8")
    return folder


def pixels_of(path: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1


def heldout_loss(pipe, folder: Path) -> float:
    """The flow-matching loss of ``pipe``'s transformer on the pairs of ``folder`` at fixed noise and σ."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import CONTROL_LATENTS, engine_for
    from trainer.diffusion.text import TextConditioning

    parts = Components(ARCH, "flow_matching", [pipe.tokenizer, pipe.tokenizer_2],
                       [pipe.text_encoder, pipe.text_encoder_2], pipe.vae, pipe.transformer, pipe.scheduler)
    engine = engine_for(parts)
    names = sorted(p.name for p in (folder / "target").glob("*.png"))
    generator = torch.Generator().manual_seed(5)
    sigmas = torch.tensor([0.3, 0.5, 0.7, 0.9])
    losses = []
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder, pipe.text_encoder_2], ["make it red"], "cpu")
        text = TextConditioning(text.hidden.repeat(4, 1, 1), text.pooled.repeat(4, 1))
        for name in names:
            target = engine.image_latents(pixels_of(folder / "target" / name)[None]).repeat(4, 1, 1, 1)
            control = engine.image_latents(pixels_of(folder / "control" / name)[None]).repeat(4, 1, 1, 1)
            noise = torch.randn(target.shape, generator=generator)
            s = sigmas.view(-1, 1, 1, 1)
            predicted = engine.predict_batch(pipe.transformer, (1 - s) * target + s * noise, sigmas, text,
                                             {CONTROL_LATENTS: (control,)})
            losses.append(float(torch.nn.functional.mse_loss(predicted, noise - target)))
    return sum(losses) / len(losses)


def test_kontext_lora_learns_make_it_red_on_heldout_controls(tmp_path, tiny_kontext):
    """Trained on 8 pairs, the LoRA (loaded from its diffusers file by ``FluxKontextPipeline.load_lora_weights``)
    predicts 4 held-out pairs — colours it never saw — far better than the base model.  (How much the tiny model
    reads the control itself stays small in 30 steps: its 16 control tokens share the attention with 512 text
    tokens; the engine's use of the control is what the parity test above pins down.)"""
    from tests.diffusion.conftest import diffusion_config
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished

    train, heldout = make_it_red(tmp_path / "train", 8, seed=0), make_it_red(tmp_path / "heldout", 4, seed=1)
    config = diffusion_config(tiny_kontext, train, ARCH, training={"steps": 30, "learning_rate": 2e-2},
                              lora={"rank": 4, "alpha": 8.0, "target_modules": TARGETS},
                              sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    diffusers_file = next(Path(p) for p in rec.of(Finished)[0].outputs if Path(p).parent.name == "diffusers")
    trained = pipeline(tiny_kontext)
    trained.load_lora_weights(str(diffusers_file.parent), weight_name=diffusers_file.name)
    before, after = heldout_loss(pipeline(tiny_kontext), heldout), heldout_loss(trained, heldout)
    assert after < 0.8 * before, (before, after)
