"""Flux.1 Kontext through the registry, on a tiny model built from its real classes (``FluxTransformer2DModel`` with
the guidance embedder, Flux's VAE, CLIP-L and T5 in ``FluxKontextPipeline``): the engine packs the noisy target and
the control image's latents into the sequence, with the position ids and the time the pipeline gives them, and reads
the prediction off the target's tokens as the pipeline does; a LoRA trained on before/after pairs learns a hue edit
(held-out pairs), previews it as control → now → target, writes files that ``FluxKontextPipeline`` and Flux.1's kohya
layout hold; a resumed run (control latents cached on disk) ends where an uninterrupted one does."""

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


def test_bfls_kontext_file_has_flux_dev_keys_and_loads_as_kontext_when_the_config_names_it(tmp_path, tiny_kontext):
    """``flux1-kontext-dev.safetensors`` holds Flux.1 dev's keys: detected alone it is Flux.1; with
    ``model.architecture = "fluxkontext"`` the same file, with clip_l, t5xxl and ae in ComfyUI's folders beside it,
    loads into ``FluxKontextPipeline``, every weight as stored."""
    from safetensors.torch import save_file

    from trainer.models import load_model
    from trainer.models.flux_layout import to_original
    from trainer.models.original_layout import vae_to_original
    from trainer.models.tiny import write_tiny_config_dir

    pipe = pipeline(tiny_kontext)
    models = tmp_path / "models"
    for folder in ("unet", "clip", "vae"):
        (models / folder).mkdir(parents=True)
    path = models / "unet" / "flux1-kontext-dev.safetensors"
    transformer = to_original(pipe.transformer.state_dict(), dict(pipe.transformer.config))
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in transformer.items()}, path)
    save_file({k: v.contiguous() for k, v in pipe.text_encoder.state_dict().items()},
              models / "clip" / "clip_l.safetensors")
    save_file({k: v.contiguous() for k, v in pipe.text_encoder_2.state_dict().items()
               if k != "encoder.embed_tokens.weight"}, models / "clip" / "t5xxl_fp16.safetensors")
    vae = vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae.items()},
              models / "vae" / "ae.safetensors")
    config_dir = write_tiny_config_dir(tiny_kontext, tmp_path / "config")

    assert load_model(path, config_dir=config_dir).info.architecture == "flux"
    loaded = load_model(path, config_dir=config_dir, expected_architecture=ARCH)
    assert loaded.info.architecture == ARCH and type(loaded.pipeline).__name__ == "FluxKontextPipeline"
    for name in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        mine, theirs = getattr(loaded.pipeline, name).state_dict(), getattr(pipe, name).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name


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


# Flux.1's test's targets: every attention projection and the single blocks' linear2 (``N.proj_out``).
TARGETS = ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out", "0.proj_out",
           "1.proj_out"]


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


def draw_edit(pipe, control_path: Path, prompt: str, seed: int, guidance: float, steps: int = 2):
    """The pipeline's edit of a control image at 64 px, as the previews draw it (no resize to Kontext's sizes)."""
    import numpy as np
    from PIL import Image

    image = pipe(image=Image.open(control_path).convert("RGB"), prompt=prompt, width=64, height=64, max_area=64 * 64,
                 _auto_resize=False, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


@pytest.mark.slow
def test_kontext_lora_learns_make_it_red_on_heldout_controls_and_both_files_draw_its_edit(tmp_path, tiny_kontext):
    """Trained on 8 pairs, the LoRA (loaded from its diffusers file by ``FluxKontextPipeline.load_lora_weights``)
    predicts 4 held-out pairs — colours it never saw — far better than the base model.  (How much the tiny model
    reads the control itself stays small in 30 steps: its 16 control tokens share the attention with 512 text
    tokens; the engine's use of the control is what the parity test above pins down.)  The previews show each
    preview pair as control → now → target, and the final edit is what ``FluxKontextPipeline`` draws from the same
    control with the diffusers file loaded; the kohya file holds Flux.1's BFL modules, row for row."""
    import numpy as np
    from PIL import Image
    from safetensors import safe_open
    from safetensors.torch import load_file

    from tests.diffusion.conftest import diffusion_config
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished, Sample

    train, heldout = make_it_red(tmp_path / "train", 8, seed=0), make_it_red(tmp_path / "heldout", 4, seed=1)
    config = diffusion_config(tiny_kontext, train, ARCH, training={"steps": 30, "learning_rate": 2e-2},
                              lora={"rank": 4, "alpha": 8.0, "target_modules": TARGETS},
                              sampling={"inference_steps": 2, "at_start": True})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    trained = pipeline(tiny_kontext)
    trained.load_lora_weights(str(diffusers_file.parent), weight_name=diffusers_file.name)
    before, after = heldout_loss(pipeline(tiny_kontext), heldout), heldout_loss(trained, heldout)
    assert after < 0.8 * before, (before, after)

    # Previews: step 0 and the last step, each pair's control, edit and target side by side.
    samples = rec.of(Sample)
    assert [sample.step for sample in samples] == [0, 30]
    final = samples[-1]
    assert [Path(p).name for p in final.paths] == ["p00-control.png", "p00-seed7.png", "p00-target.png",
                                                   "p01-control.png", "p01-seed7.png", "p01-target.png"]
    assert final.prompts[:3] == ("pair 1: make it red (control)", "pair 1: make it red", "pair 1: make it red (target)")
    first_control = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(first_control - np.asarray(Image.open(train / "control" / "pair-00.png"), dtype=np.int16)).max() <= 1
    edit = np.asarray(Image.open(final.paths[1]).convert("RGB"), dtype=np.int16)
    start = np.asarray(Image.open(samples[0].paths[1]).convert("RGB"), dtype=np.int16)
    assert np.abs(edit - start).max() > 10  # training changed the edit
    pipe = pipeline(tiny_kontext)
    pipe.load_lora_weights(str(diffusers_file.parent), weight_name=diffusers_file.name)
    drawn = draw_edit(pipe, Path(final.paths[0]), "make it red", final.seeds[1], config.sampling.guidance_scale)
    assert np.abs(drawn - edit).max() <= 2

    # The kohya file (diffusers' kohya-Flux converter hard-codes the real model's widths, so it is checked module by
    # module at the tiny shape, as Flux.1's is): Flux.1's metadata, and every trained module's ΔW in its BFL layer's
    # rows — a double block's q, k, v the three row blocks of img_attn.qkv, a single block's q, k, v the first rows
    # of linear1 (its MLP rows zero), linear2 whole.
    from trainer.families.flux import bfl_layout

    kohya, reference = load_file(kohya_file), load_file(diffusers_file)
    with safe_open(kohya_file, "pt") as handle:
        assert handle.metadata()["ss_network_module"] == "networks.lora_flux"
    layout = bfl_layout(dict(trained.transformer.config))

    def kohya_delta(layer: str) -> torch.Tensor:
        name = "lora_unet_" + layer.replace(".", "_")
        down, up = kohya[f"{name}.lora_down.weight"].float(), kohya[f"{name}.lora_up.weight"].float()
        return kohya[f"{name}.alpha"].item() / down.shape[0] * up @ down

    modules = sorted({key.removeprefix("transformer.").rsplit(".lora_", 1)[0] for key in reference})
    assert any(m.startswith("single_transformer_blocks.1.attn.to_q") for m in modules)
    for module in modules:
        layer, first, rows, _, swapped = layout[module]
        assert not swapped
        fused = kohya_delta(layer)
        part = fused if rows == 0 else fused[first:first + rows]
        ab = reference[f"transformer.{module}.lora_B.weight"].float() @ reference[
            f"transformer.{module}.lora_A.weight"].float()
        torch.testing.assert_close(part, ab)
    width = trained.transformer.transformer_blocks[0].attn.to_q.out_features
    assert torch.count_nonzero(kohya_delta("single_blocks.0.linear1")[3 * width:]) == 0


@pytest.mark.slow
def test_kontext_resume_equals_uninterrupted_with_control_latents_cached_on_disk(tmp_path, tiny_kontext):
    """Control latents stored with their targets' in RUN/cache/latents: the resumed run reads them back and ends
    where the uninterrupted one does, weights and losses bit for bit.  The text encoders wait off the device (as the
    presets run them on a GPU): the previews' instructions are encoded up front and the edits drawn from them; the
    folder's previews read back as the run sent them."""
    from safetensors.torch import load_file

    from tests.diffusion.conftest import diffusion_config, straight_and_resumed
    from trainer.protocol import Sample
    from trainer.runfolder import RunFolder

    train = make_it_red(tmp_path / "train", 4, seed=0)
    config = diffusion_config(tiny_kontext, train, ARCH, training={"steps": 4, "eval_every": 2},
                              sampling={"inference_steps": 1}, dataset={"cache_latents": "disk", "cache_text": "disk"},
                              model={"text_encoder_device": "cpu"})
    straight, _, (a, b) = straight_and_resumed(config, tmp_path, stop_at=2)
    assert "Encoded 1 caption(s) and the sample prompts" in (tmp_path / "straight" / "log.txt").read_text("utf-8")
    assert [Path(p).name for p in straight.of(Sample)[-1].paths][:3] == ["p00-control.png", "p00-seed7.png",
                                                                         "p00-target.png"]
    # The Runs page (and a resumed run) read the grid back from the folder: the same columns, titles and files.
    from desktop_app.preview.sample_history import read_sample_history

    assert read_sample_history(tmp_path / "straight") == straight.of(Sample)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [row["loss"] for row in RunFolder(tmp_path / "straight").read_metrics() if "loss" in row]
    assert losses == [row["loss"] for row in RunFolder(tmp_path / "split").read_metrics() if "loss" in row]
    cached = list((tmp_path / "split" / "cache" / "latents").glob("*.safetensors"))
    assert len(cached) == 4 and all("control_0" in load_file(path) for path in cached)
