"""Qwen-Image-Edit (2509/2511) through the registry, on a tiny model built from its real classes
(``QwenImageTransformer2DModel``, Qwen-Image's VAE, a two-layer Qwen2.5-VL with its vision tower, Qwen2-VL's processor
with its Pillow image half, in ``QwenImageEditPlusPipeline``): the engine shows the control images (two here) to the
VL encoder as the pipeline does, packs the noisy target and each control's latents with the pipeline's ``img_shapes``,
and reads the prediction off the target's tokens; a LoRA trained on before/after pairs (the Kontext test's
``make_it_red``) learns the edit on held-out pairs, with each pair's text conditioning cached per pair — with two
controls, its encoding with both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.families.test_fluxkontext import make_it_red, pixels_of

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
def test_the_engine_conditions_on_two_controls_as_the_pipeline_does(tiny_qwenedit, zero_cond_t):
    """Two control images of different aspect ratios, as ``QwenImageEditPlusPipeline`` takes them: the instruction
    encoded with both as vision tokens ("Picture 1: …Picture 2: …", each at the pipeline's condition size for its own
    aspect, the template's prefix dropped), each control's latents as ``_encode_vae_image`` gives them, and the
    transformer called on the target's tokens then each control's with one ``img_shapes`` entry per image — 2511's
    ``zero_cond_t`` reads those shapes to modulate the controls' tokens at t = 0 — its output sliced to the target's
    tokens: equal to the pipeline's; and each control reaches both the text and the prediction."""
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

    def picture(height: int, width: int) -> Image.Image:
        return Image.fromarray((torch.rand(height, width, 3, generator=generator) * 255).to(torch.uint8).numpy())

    controls = [[picture(48, 64), picture(64, 32)], [picture(48, 64), picture(64, 32)]]
    prompts = ["make it red", "put the hat of picture 2 on the cat"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu", controls=controls)
        for row, (prompt, pictures) in enumerate(zip(prompts, controls, strict=True)):
            resized = []
            for control in pictures:
                width, height = calculate_dimensions(CONDITION_IMAGE_SIZE, control.width / control.height)
                resized.append(pipe.image_processor.resize(control, height, width))
            assert resized[0].size != resized[1].size  # each at its own aspect ratio
            embeds, mask = pipe.encode_prompt(prompt, image=resized, device=torch.device("cpu"))
            assert mask is None
            torch.testing.assert_close(text.sequences()[row], embeds[0])
        first_picture = engine.encode_prompts([pipe.text_encoder], prompts[:1], "cpu", controls=[controls[0][:1]])
        alone = engine.encode_prompts([pipe.text_encoder], prompts[:1], "cpu")
    # Each picture's vision tokens (and its "Picture N:" label) are in the prompt.
    assert alone.hidden.shape[1] < first_picture.hidden.shape[1] < text.sequences()[0].shape[0]

    first, second = torch.rand(2, 3, 64, 48, generator=generator) * 2 - 1, torch.rand(2, 3, 32, 64,
                                                                                        generator=generator) * 2 - 1
    with torch.no_grad():
        latents = [engine.image_latents(pixels) for pixels in (first, second)]
        torch.testing.assert_close(latents[1][:, :, None], pipe._encode_vae_image(second[:, :, None], None))
        channels = pipe.transformer.config.in_channels // 4
        noisy = torch.randn(2, channels, 8, 6, generator=generator)
        sigma = torch.tensor([0.25, 0.8])
        predicted = engine.predict_batch(pipe.transformer, noisy, sigma, text, {CONTROL_LATENTS: tuple(latents)})
        # The pipeline's own preparation of the controls' tokens, and its call of the transformer.
        _, image_tokens = pipe.prepare_latents([first[:, :, None], second[:, :, None]], 2, channels, 64, 48,
                                               torch.float32, torch.device("cpu"), None, latents=pack_2x2(noisy))
        assert image_tokens.shape[1] == 4 * 3 + 2 * 4
        out = pipe.transformer(hidden_states=torch.cat([pack_2x2(noisy), image_tokens], dim=1), timestep=sigma,
                               encoder_hidden_states=text.hidden, encoder_hidden_states_mask=text.mask.long(),
                               img_shapes=[[(1, 4, 3), (1, 4, 3), (1, 2, 4)]] * 2, return_dict=False)[0]
        velocity = unpack_2x2(out[:, : 12], 8, 6)
        first_only = engine.predict_batch(pipe.transformer, noisy, sigma, text, {CONTROL_LATENTS: tuple(latents[:1])})
    torch.testing.assert_close(predicted, velocity, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(predicted, first_only, atol=1e-3)


def heldout_loss(pipe, folder: Path) -> float:
    """The flow-matching loss of ``pipe``'s transformer on the pairs of ``folder`` at fixed noise and σ, each
    instruction encoded with its own control (as training and the pipeline encode it)."""
    from PIL import Image

    from trainer.diffusion.engines import CONTROL_LATENTS
    from trainer.diffusion.text import TextConditioning

    engine = engine_of(pipe)
    names = sorted(p.name for p in (folder / "target").glob("*.png"))
    generator = torch.Generator().manual_seed(5)
    sigmas = torch.tensor([0.3, 0.5, 0.7, 0.9])
    losses = []
    with torch.no_grad():
        for name in names:
            text = engine.encode_prompts([pipe.text_encoder], ["make it red"], "cpu",
                                         controls=[[Image.open(folder / "control" / name).convert("RGB")]])
            text = TextConditioning(text.hidden.repeat(4, 1, 1))
            target = engine.image_latents(pixels_of(folder / "target" / name)[None]).repeat(4, 1, 1, 1)
            control = engine.image_latents(pixels_of(folder / "control" / name)[None]).repeat(4, 1, 1, 1)
            noise = torch.randn(target.shape, generator=generator)
            s = sigmas.view(-1, 1, 1, 1)
            predicted = engine.predict_batch(pipe.transformer, (1 - s) * target + s * noise, sigmas, text,
                                             {CONTROL_LATENTS: (control,)})
            losses.append(float(torch.nn.functional.mse_loss(predicted, noise - target)))
    return sum(losses) / len(losses)


@pytest.mark.slow
def test_qwenedit_lora_learns_make_it_red_on_heldout_pairs_and_its_files_draw_its_edit(tmp_path, tiny_qwenedit):
    """Trained on 8 pairs (each instruction's conditioning cached per pair: the VL encoder sees the control), the LoRA
    loaded from its diffusers file by ``QwenImageEditPlusPipeline.load_lora_weights`` predicts 4 held-out pairs far
    better than the base model; the previews show control → now → target, the edit (from the instruction encoded up
    front with the pair's control) being what the pipeline draws from the pair's control file with that file loaded;
    the musubi/ComfyUI file holds each trained module's ΔW under its kohya name."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file

    from tests.diffusion.conftest import diffusion_config
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished, Sample

    train, heldout = make_it_red(tmp_path / "train", 8, seed=0), make_it_red(tmp_path / "heldout", 4, seed=1)
    # The text encoder waits off the device (as the presets run it on a GPU): every pair's instruction is encoded up
    # front with its control, into the run folder, and the previews' with theirs.
    config = diffusion_config(tiny_qwenedit, train, ARCH, training={"steps": 20, "learning_rate": 2e-2},
                              lora={"rank": 4, "alpha": 8.0}, sampling={"inference_steps": 2, "guidance_scale": 1.0},
                              dataset={"cache_text": "disk"}, model={"text_encoder_device": "cpu"})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    log = (tmp_path / "run" / "log.txt").read_text("utf-8")
    assert "Encoded 8 caption(s) and the sample prompts" in log  # one caption, eight pairs: eight encodings
    assert len(list((tmp_path / "run" / "cache" / "text").glob("*.safetensors"))) == 8
    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    trained = pipeline(tiny_qwenedit)
    before = heldout_loss(trained, heldout)
    trained.load_lora_weights(str(diffusers_file.parent), weight_name=diffusers_file.name)
    after = heldout_loss(trained, heldout)
    assert after < 0.8 * before, (before, after)  # measured: 1.34 → 0.91 (0.68×)

    final = rec.of(Sample)[-1]
    assert [Path(p).name for p in final.paths] == ["p00-control.png", "p00-seed7.png", "p00-target.png",
                                                   "p01-control.png", "p01-seed7.png", "p01-target.png"]
    edit = np.asarray(Image.open(final.paths[1]).convert("RGB"), dtype=np.int16)
    control_file = train / "control" / "pair-00.png"
    drawn = trained(image=[Image.open(control_file).convert("RGB")], prompt="make it red", width=64, height=64,
                    num_inference_steps=2, true_cfg_scale=1.0,
                    generator=torch.Generator("cpu").manual_seed(7)).images[0]
    assert np.abs(np.asarray(drawn, dtype=np.int16) - edit).max() <= 2

    # musubi-tuner's names, the same modules (Qwen-Image's layout: nothing fused), each ΔW = alpha/rank · up @ down.
    kohya, reference = load_file(kohya_file), load_file(diffusers_file)
    modules = sorted({key.removeprefix("transformer.").rsplit(".lora_", 1)[0] for key in reference})
    assert len(modules) == len({key.split(".")[0] for key in kohya})
    for module in modules:
        name = "lora_unet_" + module.replace(".", "_")
        down, up = kohya[f"{name}.lora_down.weight"].float(), kohya[f"{name}.lora_up.weight"].float()
        ab = reference[f"transformer.{module}.lora_B.weight"].float() @ reference[
            f"transformer.{module}.lora_A.weight"].float()
        torch.testing.assert_close(kohya[f"{name}.alpha"].item() / down.shape[0] * up @ down, ab)


@pytest.mark.slow
def test_qwenedit_resume_equals_uninterrupted_with_pair_keyed_captions_on_disk(tmp_path, tiny_qwenedit):
    """Instructions cached per pair in RUN/cache/text and control latents with their targets' in RUN/cache/latents:
    the resumed run finds the same entries (keys are the control files' versions, not the run's state) and ends where
    the uninterrupted one does, weights and losses bit for bit."""
    from tests.diffusion.conftest import diffusion_config, straight_and_resumed
    from trainer.runfolder import RunFolder

    train = make_it_red(tmp_path / "train", 4, seed=0)
    config = diffusion_config(tiny_qwenedit, train, ARCH, training={"steps": 4, "eval_every": 2},
                              sampling={"inference_steps": 1, "guidance_scale": 1.0},
                              dataset={"cache_latents": "disk", "cache_text": "disk"})
    _, _, (a, b) = straight_and_resumed(config, tmp_path, stop_at=2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [row["loss"] for row in RunFolder(tmp_path / "straight").read_metrics() if "loss" in row]
    assert losses == [row["loss"] for row in RunFolder(tmp_path / "split").read_metrics() if "loss" in row]
    assert len(list((tmp_path / "split" / "cache" / "text").glob("*.safetensors"))) == 4  # one per pair


@pytest.mark.slow
def test_a_run_on_pairs_with_two_controls_conditions_each_instruction_on_both(tmp_path, tiny_qwenedit):
    """Pairs with two controls each (``control/`` and ``control_2/``), captions and latents cached on disk: both
    controls' latents are stored with each target, and each pair's cached instruction is the pipeline's encoding of
    the instruction with both of its control files as Picture 1 and Picture 2 (not with the first alone); the
    previews draw each pair's edit from both files."""
    from PIL import Image
    from safetensors.torch import load_file

    from tests.diffusion.conftest import diffusion_config
    from tests.families.test_flux2kleinedit import with_second_reference
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Sample

    data = with_second_reference(make_it_red(tmp_path / "pairs", 2, seed=0), seed=2)
    config = diffusion_config(tiny_qwenedit, data, ARCH, training={"steps": 2, "eval_every": 2},
                              sampling={"inference_steps": 1, "guidance_scale": 1.0},
                              dataset={"cache_text": "disk", "cache_latents": "disk"})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    latents = [load_file(path) for path in (tmp_path / "run" / "cache" / "latents").glob("*.safetensors")]
    assert len(latents) == 2 and all({"control_0", "control_1"} <= cached.keys() for cached in latents)
    cached = [load_file(path)["hidden"][0] for path in (tmp_path / "run" / "cache" / "text").glob("*.safetensors")]
    assert len(cached) == 2

    pipe = pipeline(tiny_qwenedit)
    engine = engine_of(pipe)
    for name in ("pair-00.png", "pair-01.png"):
        pictures = [Image.open(data / sub / name).convert("RGB") for sub in ("control", "control_2")]
        with torch.no_grad():
            both = engine.encode_prompts([pipe.text_encoder], ["make it red"], "cpu", controls=[pictures])
            first = engine.encode_prompts([pipe.text_encoder], ["make it red"], "cpu", controls=[pictures[:1]])
        assert sum(torch.equal(both.sequences()[0], hidden) for hidden in cached) == 1, name
        assert not any(hidden.shape == first.sequences()[0].shape for hidden in cached)
    assert [p.name for p in map(Path, rec.of(Sample)[-1].paths)][:3] == ["p00-control.png", "p00-seed7.png",
                                                                          "p00-target.png"]
