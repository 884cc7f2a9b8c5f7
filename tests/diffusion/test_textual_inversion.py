"""Textual inversion and pivotal tuning: a new word's vectors learn, nothing else in the model moves (the base
model with the word's file loaded by diffusers' own ``load_textual_inversion`` draws the run's final preview,
pixel for pixel), SDXL's file carries both encoders' vectors (``clip_l``, ``clip_g``), a LoRA trained beside the
word loads with it, and a stopped and resumed run ends where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config, draw_shapes, straight_and_resumed
from tests.trainer.helpers import run_in_process
from trainer.config import ConfigError, config_from_dict
from trainer.errors import InputError
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder

WORD = "<my-ring>"


@pytest.fixture(scope="module")
def uncaptioned(tmp_path_factory) -> Path:
    """Circles without captions: each trains as the template "a photo of <my-ring>"."""
    return draw_shapes(tmp_path_factory.mktemp("rings") / "rings", 6, with_captions=False)


def word_config(model: Path, data: Path, arch: str, mode: str = "embedding", **sections):
    base = {"mode": mode, "dataset": {"instance_token": WORD, "caption_template": "a photo of {token}"},
            "embedding": {"token": WORD, "init_text": "circle", "vectors": 2, "learning_rate": 0.05},
            "sampling": {"prompts": [f"a photo of {WORD}"], "seeds": [7], "inference_steps": 3, "at_start": False}}
    for key, value in sections.items():
        base[key] = base.get(key, {}) | value
    return diffusion_config(model, data, arch, **base)


def pipeline(arch: str, model: Path):
    import diffusers

    cls = diffusers.StableDiffusionPipeline if arch == "sd15" else diffusers.StableDiffusionXLPipeline
    extra = {"safety_checker": None, "requires_safety_checker": False} if arch == "sd15" else {}
    pipe = cls.from_pretrained(model, local_files_only=True, **extra)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)  # the previews' default
    pipe.set_progress_bar_config(disable=True)
    return pipe


def drawn(pipe, prompt: str, seed: int) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=3, guidance_scale=7.5,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image)


@pytest.mark.slow
@pytest.mark.timeout(600)  # a real run on the shapes model with previews before and after
def test_a_new_word_learns_what_the_pictures_show_and_its_file_draws_the_trained_preview(tmp_path):
    """On the shipped shapes model, a new word trained on red shapes makes "a <zq> circle" red, which before
    training drew blue and teal; the UNet and the old words stay as they were, so the base model with the word's
    file loaded by diffusers' ``load_textual_inversion`` draws the run's final preview pixel for pixel."""
    from tests.shapes.conftest import SHAPES_MODEL, shapes_config
    from trainer.shapes.judge import read_image
    from trainer.shapes.world import new_colour_samples, write_captioned

    items = [(image, caption.replace("red", "<zq>")) for image, caption in new_colour_samples(8, "red", seed=0)]
    write_captioned(tmp_path / "data", items, "red")
    prompt = "a <zq> circle on a gray background"
    config = shapes_config(SHAPES_MODEL, tmp_path / "data", mode="embedding",
                           embedding={"token": "<zq>", "init_text": "shape", "learning_rate": 0.05},
                           training={"steps": 24, "eval_every": 12}, sampling={"prompts": [prompt]})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    run = RunFolder(tmp_path / "run")
    curve = [row["heldout_loss"] for row in run.read_metrics() if "heldout_loss" in row]
    assert curve[-1] < 0.7 * curve[0], curve  # measured (40 steps): 0.027 → 0.0099

    def reds(step: int) -> int:
        return sum(read_image(Image.open(path)).colour == "red" for path in sorted(run.sample_dir(step).glob("*.png")))

    # Measured (40 steps): before, the 4 previews are blue, blue, teal and one the judge cannot read; after, red.
    assert reds(0) == 0 and reds(24) >= 3, (reds(0), reds(24))
    (embedding,) = rec.of(Finished)[0].outputs
    tensors = load_file(embedding)
    assert Path(embedding).name == "zq.safetensors" and list(tensors) == ["emb_params"]
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(SHAPES_MODEL, local_files_only=True, safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)  # the previews' default
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(embedding, token="<zq>")
    final = rec.of(Sample)[-1]
    image = pipe(prompt, width=64, height=64, num_inference_steps=config.sampling.inference_steps,
                 guidance_scale=config.sampling.guidance_scale,
                 generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(final.paths[0])))


@pytest.mark.slow
def test_pivotal_tuning_on_sdxl_writes_both_encoders_vectors_and_a_lora_that_load_together(tmp_path, tiny_sdxl,
                                                                                        uncaptioned):
    config = word_config(tiny_sdxl, uncaptioned, "sdxl", mode="lora", training={"steps": 6, "eval_every": 3})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    outputs = [Path(path) for path in rec.of(Finished)[0].outputs]
    embedding = next(path for path in outputs if path.parent.name == "embeddings")
    lora = next(path for path in outputs if path.parent.name == "diffusers")
    tensors = load_file(embedding)
    assert sorted(tensors) == ["clip_g", "clip_l"] and tensors["clip_l"].shape[0] == 2
    pipe = pipeline("sdxl", tiny_sdxl)
    pipe.load_lora_weights(lora.parent)
    pipe.load_textual_inversion(tensors["clip_l"], token=WORD, text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(tensors["clip_g"], token=WORD, text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    trained = np.asarray(Image.open(rec.of(Sample)[-1].paths[0]))
    assert np.abs(drawn(pipe, f"a photo of {WORD}", 7).astype(int) - trained).max() <= 1  # fp rounding of LoRA


@pytest.mark.slow
def test_a_stopped_and_resumed_word_ends_where_an_uninterrupted_one_does(tmp_path, tiny_sd15, uncaptioned):
    config = word_config(tiny_sd15, uncaptioned, "sd15", training={"steps": 4, "eval_every": 2},
                         sampling={"prompts": []})
    _, _, (straight, resumed) = straight_and_resumed(config, tmp_path, stop_at=2)
    assert straight.keys() == resumed.keys() == {"emb_params"}
    assert torch.equal(straight["emb_params"], resumed["emb_params"])


def test_the_config_and_the_model_refuse_a_word_they_cannot_train(tiny_sd15, shapes_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"embedding\.token: textual inversion trains a new word; name it"):
        config_from_dict({"mode": "embedding", "model": {"architecture": "sd15"}})
    with pytest.raises(ConfigError, match=r"mode: 'embedding' does not work with model.architecture 'flux'"):
        config_from_dict({"mode": "embedding", "model": {"architecture": "flux"}, "embedding": {"token": "<x>"}})
    with pytest.raises(ConfigError, match=r"embedding\.token: Flux\.1 trains no new words"):
        config_from_dict({"mode": "lora", "model": {"architecture": "flux"}, "embedding": {"token": "<x>"}})
    with pytest.raises(ConfigError, match=r"embedding\.token: write the new word in lower case"):
        config_from_dict({"mode": "embedding", "model": {"architecture": "sd15"}, "embedding": {"token": "<MyDog>"}})
    with pytest.raises(ConfigError, match=r"dataset\.cache_text: on cannot cache captions while a new word"):
        config_from_dict({"mode": "embedding", "model": {"architecture": "sd15"}, "embedding": {"token": "<x>"},
                          "dataset": {"cache_text": "on"}})
    # Captions that never write the word ("a red circle"): it would learn nothing.
    code, rec = run_in_process(word_config(tiny_sd15, shapes_dataset, "sd15"), tmp_path / "run")
    assert code != EXIT_OK and "embedding.token: no caption writes <my-ring>" in rec.of(Failed)[0].message
    from transformers import CLIPTextModel, CLIPTokenizer

    from trainer.diffusion.new_word import add_new_word

    tokenizer = CLIPTokenizer.from_pretrained(tiny_sd15 / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(tiny_sd15 / "text_encoder")
    with pytest.raises(InputError, match=r"embedding\.token: 'of' is already a word the text encoder knows"):
        add_new_word([tokenizer], [encoder], "of", "a", 1, ["text encoder"])
    ids = tokenizer("a photo of a dog", return_tensors="pt").input_ids
    with torch.no_grad():
        plain = encoder(ids)[0]
        word = add_new_word([tokenizer], [encoder], "<z>", "photo", 3, ["text encoder"])
        assert torch.equal(encoder(ids)[0], plain)  # every old word reads exactly what it read before
        photo = tokenizer("photo", add_special_tokens=False).input_ids[0]
        assert torch.equal(word.embeddings[0].vectors[2], word.embeddings[0].base.weight[photo])  # from "photo"
    assert word.expand("a <z> dog") == "a <z> <z>_1 <z>_2 dog"
