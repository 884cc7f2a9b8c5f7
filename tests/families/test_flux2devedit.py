"""Flux.2 dev edit through the registry, on Flux.2 dev's tiny model (the session's, ``tiny_models["flux2dev"]``: a
dev folder is this family's when the config names it): the engine packs the noisy target and two reference images
as ``Flux2Pipeline(image=[…])`` packs them — tokens, position ids with time 10, 20 — and predicts as it does, with
dev's guidance input at 1.0; both LoRA files, loaded by ``Flux2Pipeline.load_lora_weights``, edit two references as
the adapter they were written from does; BFL's dev file loads as this family when the config names it.

No learning run of its own: the engine and the job's pair path are klein edit's (``Flux2EditEngine``), whose
make-it-red run, previews and resume ``test_flux2kleinedit.py`` checks; what dev adds — the guidance input, Mistral's
prompts, its files — is checked here and in ``test_flux2dev.py``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.families.test_flux2dev import comfy_dev  # noqa: F401  (a fixture, found by name)

ARCH = "flux2devedit"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
           "to_qkv_mlp_proj"]


@pytest.fixture(scope="module")
def tiny_dev(tiny_models) -> Path:
    return tiny_models["flux2dev"]


def pipeline(model_dir: Path):
    """The folder as Kamaal loads it for this family (``files_of``: a dev folder, named the edit family)."""
    from trainer.models import load_model

    loaded = load_model(model_dir, expected_architecture=ARCH)
    assert loaded.info.architecture == ARCH and type(loaded.pipeline).__name__ == "Flux2Pipeline"
    loaded.pipeline.set_progress_bar_config(disable=True)
    return loaded.pipeline


def engine_of(pipe):
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for

    return engine_for(Components(ARCH, "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae,
                                 pipe.transformer, pipe.scheduler))


def test_the_engine_packs_target_and_two_references_and_predicts_as_the_dev_pipeline_does(tiny_dev):
    """References of other sizes than the target, as ``Flux2Pipeline.prepare_image_latents`` prepares them: each
    encoded as the target is, its tokens after the target's with ids (10 or 20, row, column, 0), the guidance
    input at 1.0, the output sliced to the target's tokens — and each reference reaches the prediction."""
    from trainer.diffusion.engine_flux2 import patchified
    from trainer.diffusion.engines import CONTROL_LATENTS

    pipe = pipeline(tiny_dev)
    generator = torch.Generator().manual_seed(0)
    channels = pipe.vae.bn.running_mean.shape[0]
    pipe.vae.bn.running_mean.copy_(torch.randn(channels, generator=generator))
    pipe.vae.bn.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
    engine = engine_of(pipe)
    first, second = (torch.rand(1, 3, h, w, generator=generator) * 2 - 1 for h, w in ((64, 48), (32, 64)))
    with torch.no_grad():
        references = [engine.image_latents(pixels).repeat(2, 1, 1, 1) for pixels in (first, second)]
        packed, reference_ids = pipe.prepare_image_latents([first, second], 2, None, "cpu", torch.float32)
    assert reference_ids[0, :, 0].unique().tolist() == [10, 20]

    prompts = ["make it red", "put the hat from image 2 on the cat"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        embeds, text_ids = pipe.encode_prompt(prompts, device=torch.device("cpu"))
    noisy = torch.randn(2, channels // 4, 8, 8, generator=generator)
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict_batch(pipe.transformer, noisy, sigma, text, {CONTROL_LATENTS: tuple(references)})
        tokens, latent_ids = pipe.prepare_latents(2, channels // 4, 64, 64, torch.float32, "cpu", None,
                                                  latents=patchified(noisy))
        out = pipe.transformer(hidden_states=torch.cat([tokens, packed], dim=1), timestep=sigma,
                               guidance=torch.full((2,), 1.0), encoder_hidden_states=embeds, txt_ids=text_ids,
                               img_ids=torch.cat([latent_ids, reference_ids], dim=1), return_dict=False)[0]
        velocity = pipe._unpack_latents_with_ids(out[:, : tokens.shape[1]], latent_ids)
        first_only = engine.predict_batch(pipe.transformer, noisy, sigma, text, {CONTROL_LATENTS: references[:1]})
    torch.testing.assert_close(patchified(predicted), velocity, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(predicted, first_only, atol=1e-4)


def edit(pipe, references: list[Image.Image]) -> np.ndarray:
    image = pipe(image=references, prompt="make it red", width=64, height=64, num_inference_steps=2,
                 guidance_scale=4.0, generator=torch.Generator("cpu").manual_seed(3)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_both_lora_files_edit_two_references_in_the_dev_pipeline_as_the_adapter_does(tmp_path, tiny_dev):
    """An adapter on every target module with random B (as if trained), written as the family's two files: each,
    loaded by ``Flux2Pipeline.load_lora_weights``, draws from two references the edit the adapter itself draws (and
    not the base model's).  The kohya file's names are dev's (``flux2_dev``, BFL's layout, module by module in
    ``test_flux2klein.py``'s ComfyUI test)."""
    from safetensors import safe_open

    from trainer.lora_formats import add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora

    rng = np.random.default_rng(4)
    references = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((64, 96), (80, 64))]
    base = edit(pipeline(tiny_dev), references)
    adapted = pipeline(tiny_dev)
    add_lora_adapters(adapted.transformer, [], SimpleNamespace(rank=4, alpha=8.0, dropout=0.0,
                                                               target_modules=TARGETS), False)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in adapted.transformer.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.2
    trained = edit(adapted, references)
    assert np.abs(trained - base).max() > 10
    kohya_file = export_kohya_transformer_lora(tmp_path / "edit.safetensors", ARCH, adapted.transformer, [], "edit",
                                               {})
    diffusers_file = export_transformer_lora(tmp_path / "pytorch_lora_weights.safetensors", ARCH,
                                             adapted.transformer, [], {})
    assert kohya_file is not None
    with safe_open(kohya_file, "pt") as handle:
        assert handle.metadata()["ss_base_model_version"] == "flux2_dev"
        assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in handle.keys()
    pipe = pipeline(tiny_dev)
    for lora_file in (diffusers_file, kohya_file):
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
        assert np.abs(edit(pipe, references) - trained).max() <= 2, lora_file.name
        pipe.unload_lora_weights()


def test_bfls_dev_file_loads_as_the_edit_family_when_the_config_names_it(comfy_dev):  # noqa: F811 (the fixture)
    """The files ComfyUI users keep for dev (``flux2-dev.safetensors``, Mistral's and the VAE's files, FLUX.2-dev's
    tokenizer folder) are detected as dev and load as this family when the config names it: the same weights, in
    ``Flux2Pipeline``."""
    from trainer.models import load_model

    loaded = load_model(comfy_dev["models"] / "diffusion_models" / "flux2-dev.safetensors",
                        config_dir=comfy_dev["config_dir"], tokenizer_folder=str(comfy_dev["tokenizer"]),
                        expected_architecture=ARCH)
    assert loaded.info.architecture == ARCH and type(loaded.pipeline).__name__ == "Flux2Pipeline"
    mine, theirs = loaded.pipeline.transformer.state_dict(), comfy_dev["pipe"].transformer.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
