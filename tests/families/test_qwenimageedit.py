"""Qwen-Image-Edit (2509/2511) through the registry, on a tiny model built from its real classes
(``QwenImageTransformer2DModel``, Qwen-Image's VAE, a two-layer Qwen2.5-VL with its vision tower, Qwen2-VL's processor
with its Pillow image half, in ``QwenImageEditPlusPipeline``): the engine shows the control image to the VL encoder
as the pipeline does, packs the noisy target and the control's latents with the pipeline's ``img_shapes``, and reads
the prediction off the target's tokens; a LoRA trained on before/after pairs (the Kontext test's ``make_it_red``)
learns the edit on held-out pairs, with each pair's text conditioning cached per pair."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ARCH = "qwenimageedit"


@pytest.fixture(scope="module")
def tiny_qwenedit(tmp_path_factory) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("qwenedit") / "tiny-qwenedit", ARCH, seed=0)


def pipeline(model_dir: Path):
    """The folder in diffusers' edit pipeline, its processor read with the Pillow image processor (no torchvision)."""
    import diffusers

    from trainer.models.qwen_vl_images import pipeline_parts

    pipe = diffusers.QwenImageEditPlusPipeline.from_pretrained(model_dir, local_files_only=True, tokenizer=None,
                                                               **pipeline_parts(model_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def engine_of(pipe):
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for

    return engine_for(Components(ARCH, "flow_matching", [pipe.processor], [pipe.text_encoder], pipe.vae,
                                 pipe.transformer, pipe.scheduler))


@pytest.mark.parametrize("zero_cond_t", [False, True], ids=["2509", "2511"])
def test_the_engine_conditions_on_the_control_as_the_pipeline_does(tiny_qwenedit, zero_cond_t):
    """The instruction encoded with the control image as vision tokens (the pipeline's condition size, template and
    dropped prefix), the control's latents as ``_encode_vae_image`` gives them, and the transformer called on the
    target's tokens then the control's with ``img_shapes`` of both — 2511's ``zero_cond_t`` reads those shapes to
    modulate the control's tokens at t = 0 — its output sliced to the target's tokens: equal to the pipeline's."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import CONDITION_IMAGE_SIZE, calculate_dimensions
    from PIL import Image

    from trainer.diffusion.engines import CONTROL_LATENTS, pack_2x2, unpack_2x2

    pipe = pipeline(tiny_qwenedit)
    if zero_cond_t:  # 2511's transformer: the same weights, its config's zero_cond_t
        import diffusers

        transformer = diffusers.QwenImageTransformer2DModel(**{**pipe.transformer.config, "zero_cond_t": True})
        transformer.load_state_dict(pipe.transformer.state_dict())
        pipe.transformer = transformer
    engine = engine_of(pipe)
    generator = torch.Generator().manual_seed(0)
    controls = [Image.fromarray((torch.rand(48, 64, 3, generator=generator) * 255).to(torch.uint8).numpy())
                for _ in range(2)]
    prompts = ["make it red", "turn the circle into a square"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu", controls=[[c] for c in controls])
        width, height = calculate_dimensions(CONDITION_IMAGE_SIZE, 64 / 48)
        for row, (prompt, control) in enumerate(zip(prompts, controls, strict=True)):
            embeds, mask = pipe.encode_prompt(prompt, image=[pipe.image_processor.resize(control, height, width)],
                                              device=torch.device("cpu"))
            assert mask is None
            torch.testing.assert_close(text.sequences()[row], embeds[0])
        alone = engine.encode_prompts([pipe.text_encoder], prompts[:1], "cpu")
    assert alone.hidden.shape[1] < text.sequences()[0].shape[0]  # the picture's vision tokens are in the prompt

    control_pixels = torch.rand(2, 3, 64, 48, generator=generator) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(control_pixels)
        torch.testing.assert_close(latents[:, :, None], pipe._encode_vae_image(control_pixels[:, :, None], None))
        channels = pipe.transformer.config.in_channels // 4
        noisy = torch.randn(2, channels, 8, 6, generator=generator)
        sigma = torch.tensor([0.25, 0.8])
        predicted = engine.predict_batch(pipe.transformer, noisy, sigma, text, {CONTROL_LATENTS: (latents,)})
        # The pipeline's own preparation of the control's tokens, and its call of the transformer.
        _, image_tokens = pipe.prepare_latents([control_pixels[:, :, None]], 2, channels, 64, 48, torch.float32,
                                               torch.device("cpu"), None, latents=pack_2x2(noisy))
        out = pipe.transformer(hidden_states=torch.cat([pack_2x2(noisy), image_tokens], dim=1), timestep=sigma,
                               encoder_hidden_states=text.hidden, encoder_hidden_states_mask=text.mask.long(),
                               img_shapes=[[(1, 4, 3), (1, 4, 3)]] * 2, return_dict=False)[0]
        velocity = unpack_2x2(out[:, : 12], 8, 6)
        without = engine.predict_batch(pipe.transformer, noisy, sigma, text, {})
    torch.testing.assert_close(predicted, velocity, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(predicted, without, atol=1e-3)
