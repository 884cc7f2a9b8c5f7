"""Z-Image through the registry, on a tiny model built from its real classes (``ZImageTransformer2DModel``,
Qwen3, Flux's VAE shape): the engine encodes prompts as ``ZImagePipeline`` does and predicts what its sampler
reads; LoRA learns and its diffusers file loads with ``ZImagePipeline.load_lora_weights`` (and names only modules
ComfyUI maps) and gives the image the trained adapter gave; a stopped and resumed run ends where an uninterrupted
one does; frozen-layer training moves only the chosen block."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.families.harness import TrainedRun, assert_resume_equals_uninterrupted, lora_config, train
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder


@pytest.fixture(scope="module")
def tiny_zimage(tiny_models) -> Path:
    return tiny_models["zimage"]


def test_the_tiny_model_command_writes_a_zimage_folder_that_loads_and_is_detected(tmp_path, capsys):
    from trainer.cli import main
    from trainer.models import load_model

    assert main(["tiny-model", str(tmp_path / "z"), "--arch", "zimage"]) == 0
    assert "Wrote a tiny zimage model" in capsys.readouterr().out
    loaded = load_model(tmp_path / "z")
    assert (loaded.info.architecture, loaded.info.prediction_type) == ("zimage", "flow_matching")
    assert type(loaded.pipeline).__name__ == "ZImagePipeline"
    assert loaded.pipeline.tokenizer.apply_chat_template(  # the shipped Qwen3 tokenizer, with its template
        [{"role": "user", "content": "a red circle"}], tokenize=False, add_generation_prompt=True,
        enable_thinking=True) == "<|im_start|>user\na red circle<|im_end|>\n<|im_start|>assistant\n"


def test_what_zimage_cannot_do_is_refused_by_name(tmp_path, tiny_zimage):
    """Its Qwen3 encoder takes no LoRA (no loader applies one)."""
    from trainer.config import ConfigError, config_from_dict
    from trainer.errors import InputError
    from trainer.merge.fuse import fuse_lora

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Z-Image's Qwen3 text encoder takes no LoRA"):
        config_from_dict({"mode": "lora", "model": {"architecture": "zimage"}, "lora": {"train_text_encoder": True}})
    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_zimage, [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.ZImagePipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int, guidance: float = 7.5) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=3, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_the_engine_encodes_prompts_and_predicts_as_the_pipeline_does(tiny_zimage):
    """Each prompt's real tokens only (its own length), as ``encode_prompt`` gives them; batched prompts padded
    with a mask give each prompt back whole; and the engine's prediction is the velocity the pipeline's sampler
    steps with (the transformer's output negated, at time 1 − σ)."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for
    from trainer.diffusion.text import TextConditioning

    pipe = pipeline(tiny_zimage)
    parts = Components("zimage", "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        expected, _ = pipe.encode_prompt(list(prompts), device=torch.device("cpu"), do_classifier_free_guidance=False)
    assert prompts == ["a red circle", "a small blue square on a green field"]  # the caller's list is untouched
    assert text.mask is not None and text.hidden.shape[0] == 2
    rows = text.sequences()
    assert [len(r) for r in rows] == [len(e) for e in expected] and len(rows[0]) < len(rows[1])
    assert all(torch.equal(r, e) for r, e in zip(rows, expected, strict=True))
    # A cache keeps each caption alone, unpadded; joined again they are the batch.
    alone = [text.select(slice(i, i + 1)) for i in range(2)]
    assert alone[0].mask is None and alone[0].hidden.shape[1] == len(expected[0])
    joined = TextConditioning.cat(alone)
    assert torch.equal(joined.hidden, text.hidden) and torch.equal(joined.mask, text.mask)

    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 4, 8, 8, generator=generator)
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        for i in range(2):  # as the pipeline's loop: one image, its prompt, time (1000 − t) / 1000, negated
            out = pipe.transformer([noisy[i].unsqueeze(1)], (1000 - sigma[i:i + 1] * 1000) / 1000, [expected[i]],
                                   return_dict=False)[0]
            torch.testing.assert_close(predicted[i], -out[0].squeeze(1), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_zimage, varied_captions) -> TrainedRun:
    """The LoRA run the tests below read: captions of different lengths in one batch (padded, masked), their Qwen3
    embeddings cached on disk each at its own length."""
    config = lora_config(tiny_zimage, varied_captions, "zimage",
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_zimage_lora_learns_and_its_file_reproduces_the_trained_adapter(lora_run, tiny_zimage):
    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    # Measured (seed 1, 30 steps, captions of three lengths): 1.39 → 1.17 (0.84×).
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    (lora_file,) = (Path(p) for p in rec.of(Finished)[0].outputs)
    assert lora_file.name == "pytorch_lora_weights.safetensors"
    with safe_open(lora_file, "pt") as handle:
        keys = set(handle.keys())
        assert json.loads(handle.metadata()["kamaal.config"])["model"]["architecture"] == "zimage"
    assert {key.split(".")[0] for key in keys} == {"transformer"}
    modules = {key.rsplit(".lora_", 1)[0].removeprefix("transformer.") for key in keys}
    assert {"layers.0.attention.to_q", "noise_refiner.0.attention.to_out.0",
            "context_refiner.0.attention.to_v"} <= modules

    final = rec.of(Sample)[-1]
    assert final.step == 30
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_zimage)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    loaded = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(loaded - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture


@pytest.mark.slow
def test_zimage_resume_equals_uninterrupted(tmp_path, lora_run):
    """Captions of different lengths in one batch (padded, masked), their Qwen3 embeddings cached on disk each at
    its own length: the resumed run reads them back and ends where the uninterrupted one does."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")


@pytest.mark.slow
def test_zimage_frozen_layers_move_only_the_chosen_block(tmp_path, tiny_zimage, shapes_dataset):
    config = diffusion_config(tiny_zimage, shapes_dataset, "zimage", mode="frozen", frozen={"trainable": ["layers.1"]},
                              training={"steps": 8, "learning_rate": 1e-3, "eval_every": 4},
                              sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_zimage / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("layers.1.") for name in moved)
    # RUN_NAME.safetensors: the transformer in the original layout ComfyUI's Load Diffusion Model takes
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    original = load_file(single)
    assert single.name == "tiny.safetensors" and "layers.1.attention.qkv.weight" in original
    back = convert_z_image_transformer_checkpoint_to_diffusers(dict(original))
    assert back.keys() == after.keys() and all(torch.equal(back[k], after[k]) for k in after)
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    image = pipeline(folder)(final.prompts[0], width=64, height=64, num_inference_steps=2, guidance_scale=7.5,
                             generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
    assert np.abs(np.asarray(image, dtype=np.int16) - trained).max() <= 2


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_previews_from_prompts_encoded_once_at_turbos_guidance_and_at_one(guidance, tiny_zimage, tmp_path):
    """Z-Image's pipeline guides whenever guidance > 0 (Turbo draws at 0, and 1 still guides): the prompts encoded
    once carry the negative side exactly when the pipeline uses it, so the previews are the images from the text."""
    from trainer.diffusion.sampling import draw, encode_sample_prompts

    pipe = pipeline(tiny_zimage)
    encoded = encode_sample_prompts(pipe, "zimage", ["a red circle"], guidance, "cpu")
    assert bool(encoded["a red circle"]["negative_prompt_embeds"]) == (guidance > 0)
    from_text, _, _ = draw(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "text")
    from_embeds, _, _ = draw(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "embeds",
                             conditioning=encoded)
    assert np.array_equal(np.asarray(Image.open(from_text[0])), np.asarray(Image.open(from_embeds[0])))


@pytest.mark.slow
def test_zimage_lora_learns_on_an_nf4_base_and_loads_on_the_full_precision_one(tmp_path, tiny_zimage, shapes_dataset):
    """model.base_quantization = nf4 on Z-Image's blocks (layers, both refiners): the LoRA learns, and its file moves
    the full-precision base's picture the way it moved the nf4 base's during training."""
    import shutil

    import diffusers

    from trainer.families import family

    model = tmp_path / "tiny-zimage-64"  # a transformer 64 wide: nf4's blocks of 64 weights fit every layer
    shutil.copytree(tiny_zimage, model)
    name, spec = family("zimage").tiny["denoiser"]
    torch.manual_seed(0)
    getattr(diffusers, name).from_config({**spec, "dim": 64, "axes_dims": [8, 12, 12]}).save_pretrained(
        model / "transformer")
    config = diffusion_config(model, shapes_dataset, "zimage", model={"architecture": "zimage", "path": str(model),
                                                                      "base_quantization": "nf4"})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    run = RunFolder(tmp_path / "run")
    curve = [row["heldout_loss"] for row in run.read_metrics() if "heldout_loss" in row]
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve
    assert "in nf4 (bitsandbytes)" in run.log_path.read_text(encoding="utf-8")

    lora_file = Path(rec.of(Finished)[0].outputs[-1])
    pipe = pipeline(model)
    plain = draw(pipe, "a red circle", 7)
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    adapted = draw(pipe, "a red circle", 7)
    trained = np.asarray(Image.open(rec.of(Sample)[-1].paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(adapted - plain).max() > 10
    assert np.abs(adapted - trained).mean() < np.abs(plain - trained).mean()
