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
    from trainer.diffusion.engine_kontext import CONTROL_LATENTS
    from trainer.diffusion.engines import engine_for, pack_2x2

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
