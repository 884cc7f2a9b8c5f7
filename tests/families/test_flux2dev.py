"""Flux.2 dev through the registry, on a tiny model built from its real classes (``Flux2Transformer2DModel`` with
the guidance embedder, ``AutoencoderKLFlux2``, ``Mistral3ForConditionalGeneration`` with a Tekken-shaped byte-level
tokenizer and Mistral's chat layout): the engine's latents, prompts and prediction are ``Flux2Pipeline``'s, with the
guidance input at musubi-tuner's training value 1.0; LoRA learns, and both its files — the diffusers one and the kohya
one in Black Forest Labs' layout — load with ``Flux2Pipeline.load_lora_weights`` and give the image the trained
adapter gave; a stopped and resumed run ends where an uninterrupted one does; frozen-layer training moves only the
chosen block; DreamBooth draws its class images through the dev pipeline; a folder whose tokenizer is a
``PixtralProcessor`` (as the release's) loads without torchvision.  What dev shares with klein (the BFL layout, the
kohya file applied as ComfyUI applies it, σ's shift) is tested for both in test_flux2klein.py."""

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

ARCH = "flux2dev"


@pytest.fixture(scope="module")
def tiny_dev(tiny_models) -> Path:
    return tiny_models[ARCH]


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.Flux2Pipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int, steps: int = 3, guidance: float = 7.5) -> np.ndarray:
    image = pipe(prompt=prompt, width=64, height=64, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_the_engine_encodes_latents_and_prompts_and_predicts_as_the_pipeline_does(tiny_dev):
    """Latents as ``_encode_vae_image`` gives them (batch-norm statistics made non-trivial), prompts as
    ``encode_prompt`` (the system turn and the prompt through Mistral, layers 10, 20, 30 side by side), the
    prediction: the transformer's velocity on the pipeline's packed tokens and ids at time σ with the guidance
    input at 1.0 — and the guidance does reach the transformer (another value predicts otherwise)."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engine_flux2 import patchified
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_dev)
    generator = torch.Generator().manual_seed(0)
    channels = pipe.vae.bn.running_mean.shape[0]
    pipe.vae.bn.running_mean.copy_(torch.randn(channels, generator=generator))
    pipe.vae.bn.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
    parts = Components(ARCH, "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        expected = pipe._encode_vae_image(pixels, generator=None)
    torch.testing.assert_close(patchified(latents), expected)

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        embeds, text_ids = pipe.encode_prompt(list(prompts), device=torch.device("cpu"))
    assert torch.equal(text.hidden, embeds) and embeds.shape[1] == 512
    assert not torch.equal(embeds[0], embeds[1])

    noisy = torch.randn(2, channels // 4, 8, 8, generator=generator)
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        tokens, image_ids = pipe.prepare_latents(2, channels // 4, 64, 64, torch.float32, "cpu", None,
                                                 latents=patchified(noisy))

        def velocity(guidance: float) -> torch.Tensor:
            out = pipe.transformer(hidden_states=tokens, timestep=sigma, guidance=torch.full((2,), guidance),
                                   encoder_hidden_states=embeds, txt_ids=text_ids, img_ids=image_ids,
                                   return_dict=False)[0]
            return pipe._unpack_latents_with_ids(out, image_ids)

        at_one, at_four = velocity(1.0), velocity(4.0)
    torch.testing.assert_close(patchified(predicted), at_one, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(at_one, at_four)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_dev, shapes_dataset) -> TrainedRun:
    """The LoRA run the tests below read: the captions' Mistral embeddings cached on disk."""
    targets = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
               "to_qkv_mlp_proj"]
    config = lora_config(tiny_dev, shapes_dataset, ARCH, training={"learning_rate": 2e-2},
                         lora={"rank": 4, "alpha": 8.0, "target_modules": targets},
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_dev_lora_learns_and_both_its_files_reproduce_the_trained_adapter(lora_run, tiny_dev):
    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    with safe_open(diffusers_file, "pt") as handle:
        assert {key.split(".")[0] for key in handle.keys()} == {"transformer"}  # Mistral stays frozen
        assert json.loads(handle.metadata()["kamaal.config"])["model"]["architecture"] == ARCH
    with safe_open(kohya_file, "pt") as handle:
        modules = {key.rsplit(".", 2)[0] for key in handle.keys() if key.endswith(".weight")}
        assert handle.metadata()["ss_base_model_version"] == "flux2_dev"
    assert {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_txt_attn_qkv",
            "lora_unet_single_blocks_1_linear1"} <= modules

    final = rec.of(Sample)[-1]
    assert final.step == 30
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_dev)
    assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() > 10
    for lora_file in (diffusers_file, kohya_file):
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
        assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2, lora_file.name
        pipe.unload_lora_weights()  # the base model again for the next file


@pytest.mark.slow
def test_dev_resume_equals_uninterrupted(tmp_path, lora_run):
    """Captions' Mistral embeddings cached on disk: the resumed run reads them back and ends where the uninterrupted
    one does."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")


@pytest.mark.slow
def test_dev_frozen_layers_move_only_the_chosen_block_and_write_the_bfl_file(tmp_path, tiny_dev, shapes_dataset):
    """The BFL file keeps dev's guidance embedder (``guidance_in``), which diffusers' own converter reads back."""
    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers

    config = diffusion_config(tiny_dev, shapes_dataset, ARCH, mode="frozen",
                              frozen={"trainable": ["single_transformer_blocks.1"]},
                              training={"steps": 6, "learning_rate": 1e-3, "eval_every": 3},
                              sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_dev / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("single_transformer_blocks.1.") for name in moved)
    original = load_file(single)
    assert "guidance_in.in_layer.weight" in original and "single_blocks.1.linear1.weight" in original
    back = convert_flux2_transformer_checkpoint_to_diffusers(dict(original))
    assert back.keys() == after.keys() and all(torch.equal(back[k], after[k]) for k in after)
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(draw(pipeline(folder), final.prompts[0], final.seeds[0], steps=2) - trained).max() <= 2


@pytest.mark.slow
def test_dev_dreambooth_draws_its_missing_class_image_through_the_dev_pipeline(tmp_path, tiny_dev, shapes_dataset):
    from tests.diffusion.conftest import draw_shapes

    class_dir = draw_shapes(tmp_path / "class", 2, with_captions=False)
    config = diffusion_config(tiny_dev, shapes_dataset, ARCH, mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 3},
                              training={"steps": 4, "eval_every": 2}, sampling={"inference_steps": 1})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert sorted(p.name for p in class_dir.iterdir()) == ["class-00000.png", "shape-00.png", "shape-01.png"]
    log = (tmp_path / "run" / "log.txt").read_text(encoding="utf-8")
    assert "Generating 1 class image(s) for 'a circle'" in log and "3 class images" in log
    assert Path(rec.of(Finished)[0].outputs[-1]).name == "pytorch_lora_weights.safetensors"


def test_a_folder_whose_tokenizer_is_a_pixtral_processor_loads_without_torchvision(tmp_path, tiny_dev):
    """The release names ``PixtralProcessor`` for its tokenizer, which transformers 5 builds only with torchvision:
    ``from_pretrained`` alone fails on such a folder here (diffusers meets transformers' placeholder class); Kamaal's
    loader reads the text tokenizer (with its chat template, here in the processor's ``chat_template.json``) and
    encodes as the folder's own tokenizer does."""
    import shutil

    import diffusers

    from trainer.models import load_model

    folder = shutil.copytree(tiny_dev, tmp_path / "dev")
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    index["tokenizer"] = ["transformers", "PixtralProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "tokenizer" / "processor_config.json").write_text(json.dumps(
        {"processor_class": "PixtralProcessor", "patch_size": 4, "spatial_merge_size": 2}), encoding="utf-8")
    template = folder / "tokenizer" / "chat_template.jinja"  # kept as a processor keeps it: chat_template.json
    (folder / "tokenizer" / "chat_template.json").write_text(json.dumps({"chat_template": template.read_text(
        encoding="utf-8")}), encoding="utf-8")
    template.unlink()
    with pytest.raises(ValueError, match="Placeholder"):  # transformers' stand-in for a class it cannot build
        diffusers.Flux2Pipeline.from_pretrained(folder, local_files_only=True)
    loaded = load_model(folder)
    assert loaded.info.architecture == ARCH and loaded.pipeline.tokenizer.chat_template
    with torch.no_grad():
        embeds, _ = loaded.pipeline.encode_prompt("a red circle", device=torch.device("cpu"))
        reference, _ = pipeline(tiny_dev).encode_prompt("a red circle", device=torch.device("cpu"))
    assert torch.equal(embeds, reference)


@pytest.fixture(scope="module")
def comfy_dev(tiny_dev, tmp_path_factory):
    """The tiny dev as ComfyUI keeps it: BFL's transformer file (``model.diffusion_model.`` keys) in
    models/diffusion_models, Mistral as ComfyUI's ``mistral_3_small_flux2_bf16`` holds it (the language model under
    ``model.``, no LM head, no vision tower, the vocabulary as a ``tekken_model`` byte tensor) in
    models/text_encoders, BFL's VAE file in models/vae; a config folder without a tokenizer (as the shipped one)."""
    import shutil

    from safetensors.torch import save_file

    from tests.families.test_flux2klein_single_files import bfl_vae
    from trainer.models.flux2_single import pipeline_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-dev")
    pipe = pipeline(tiny_dev)
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "flux2-dev.safetensors")
    language = {f"model.{k}": v.contiguous().clone()
                for k, v in pipe.text_encoder.model.language_model.state_dict().items()}
    tekken = torch.frombuffer(bytearray(b'{"vocab": []}'), dtype=torch.uint8)
    save_file(language | {"tekken_model": tekken}, models / "text_encoders" / "mistral_3_small_flux2_bf16.safetensors")
    save_file(bfl_vae(pipe.vae), models / "vae" / "flux2-vae.safetensors")
    config_dir = write_tiny_config_dir(tiny_dev, root / "config")
    shutil.rmtree(config_dir / "tokenizer")
    return {"pipe": pipe, "models": models, "config_dir": config_dir, "tokenizer": tiny_dev / "tokenizer"}


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy_dev):
    """With FLUX.2-dev's tokenizer folder named: the transformer, the VAE and Mistral's language model are the
    very weights they came from, prompts encode as the folder's pipeline encodes them, and the picture is the same."""
    from trainer.models import load_model

    original = comfy_dev["pipe"]
    loaded = load_model(comfy_dev["models"] / "diffusion_models" / "flux2-dev.safetensors",
                        config_dir=comfy_dev["config_dir"], tokenizer_folder=str(comfy_dev["tokenizer"]))
    assert loaded.info.architecture == ARCH and type(loaded.pipeline).__name__ == "Flux2Pipeline"
    for part in ("transformer", "vae"):
        mine, theirs = getattr(loaded.pipeline, part).state_dict(), getattr(original, part).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), part
    mine = loaded.pipeline.text_encoder.model.language_model.state_dict()
    theirs = original.text_encoder.model.language_model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    with torch.no_grad():
        embeds, _ = loaded.pipeline.encode_prompt("a red circle", device=torch.device("cpu"))
        reference, _ = original.encode_prompt("a red circle", device=torch.device("cpu"))
    assert torch.equal(embeds, reference)
    loaded.pipeline.set_progress_bar_config(disable=True)
    assert np.array_equal(draw(loaded.pipeline, "a red circle", 3, steps=2), draw(original, "a red circle", 3, steps=2))


def test_what_a_dev_file_lacks_or_cannot_be_is_refused_by_name(comfy_dev, tmp_path):
    """No tokenizer: the folder to name; ComfyUI's scaled fp8 file: by name; a klein file stays klein's."""
    from safetensors.torch import save_file

    from trainer.errors import InputError
    from trainer.models import load_model
    from trainer.models.detect import detect_architecture

    dev = comfy_dev["models"] / "diffusion_models" / "flux2-dev.safetensors"
    with pytest.raises(InputError, match=r"model\.tokenizer_folder: Flux\.2 dev's tokenizer .* choose the tokenizer "
                                         r"folder of black-forest-labs/FLUX\.2-dev"):
        load_model(dev, config_dir=comfy_dev["config_dir"])
    scaled = tmp_path / "flux2_dev_fp8mixed.safetensors"
    save_file({"guidance_in.in_layer.weight": torch.zeros(2, 2), "single_stream_modulation.lin.weight":
               torch.zeros(2, 2), "single_blocks.0.linear1.scale_weight": torch.ones(1)}, scaled)
    with pytest.raises(InputError, match=r"model\.path: .*flux2_dev_fp8mixed\.safetensors is a scaled fp8 file"):
        load_model(scaled)
    klein = {"double_blocks.0.img_attn.qkv.weight": (1, 1), "single_stream_modulation.lin.weight": (1, 1)}
    assert detect_architecture(klein, "k") == "flux2klein"
    assert detect_architecture(klein | {"guidance_in.in_layer.weight": (1, 1)}, "d") == ARCH
    from trainer.config import config_from_dict
    from trainer.preflight import input_problems

    model = {"architecture": ARCH, "path": str(dev), "tokenizer_folder": str(comfy_dev["tokenizer"]),
             "text_encoder_files": [str(tmp_path)]}
    config = config_from_dict({"mode": "lora", "model": model})
    problems = input_problems(config)  # the tokenizer folder is taken; a folder among the weight files is not
    assert "model.tokenizer_folder" not in problems and "is a folder" in problems["model.text_encoder_files[0]"]


def test_what_dev_cannot_do_is_refused_by_name():
    """Its Mistral encoder takes no LoRA (no loader applies one); previews take no negative prompt
    (guidance-distilled: the pipeline has no second pass)."""
    from trainer.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Flux\.2 dev's Mistral Small 3\.2 text encoder"):
        config_from_dict({"mode": "lora", "model": {"architecture": ARCH}, "lora": {"train_text_encoder": True}})
    with pytest.raises(ConfigError, match=r"sampling\.negative_prompt"):
        config_from_dict({"mode": "lora", "model": {"architecture": ARCH}, "sampling": {"negative_prompt": "blur"}})


@pytest.mark.parametrize("layout", ["release", "transformers"])
def test_mistral_in_hugging_faces_layouts_loads_whole(comfy_dev, tmp_path, layout):
    """Mistral Small 3 as Hugging Face stores it — the release's names (``language_model.model.…``,
    ``language_model.lm_head``, ``vision_tower.…``, ``multi_modal_projector.…``) or transformers 5's own — is read
    whole: the vision tower and the head too, every weight the one it came from."""
    from safetensors.torch import save_file

    from trainer.models import load_model

    own = {k: v.contiguous().clone() for k, v in comfy_dev["pipe"].text_encoder.state_dict().items()}
    if layout == "release":
        renames = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                   ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."))
        stored = {}
        for key, value in own.items():
            old, new = next(((o, n) for o, n in renames if key.startswith(o)), ("", ""))
            stored[new + key.removeprefix(old)] = value
    else:
        stored = own
    encoder = tmp_path / "mistral_3_small_flux2_bf16.safetensors"
    save_file(stored, encoder)
    loaded = load_model(comfy_dev["models"] / "diffusion_models" / "flux2-dev.safetensors",
                        config_dir=comfy_dev["config_dir"],
                        text_encoder_files=[str(encoder)], tokenizer_folder=str(comfy_dev["tokenizer"]))
    mine = loaded.pipeline.text_encoder.state_dict()
    assert mine.keys() == own.keys() and all(torch.equal(mine[k], own[k]) for k in own)
