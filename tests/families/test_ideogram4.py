"""Ideogram 4 through the registry, on a tiny model built from its real classes (two ``Ideogram4Transformer2DModel``
— the conditional one trained, the unconditional one only guiding — a 36-layer Qwen3-VL, Flux.2's VAE): the engine's
latents, prompts and prediction are the pipeline's; LoRA learns, and both its files — diffusers' and the original
layout's (``diffusion_model.`` + Ideogram's layers, q/k/v fused, as ai-toolkit writes and ComfyUI applies them) — load
with ``Ideogram4Pipeline.load_lora_weights`` onto the conditional transformer and draw the trained adapter's image; a
stopped and resumed run ends where an uninterrupted one does; frozen-layer training moves only the chosen block of the
conditional transformer; DreamBooth draws its class images with both transformers."""

from __future__ import annotations

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
def tiny_ideogram(tiny_models) -> Path:
    return tiny_models["ideogram4"]


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.Ideogram4Pipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int, steps: int = 3) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=steps, guidance_scale=4.0, guidance_schedule=None,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_the_engine_reads_images_prompts_and_predictions_as_the_pipeline_does(tiny_ideogram):
    """Latents packed and normalised as the pipeline undoes before decoding; each prompt's real tokens as
    ``encode_prompt`` gives them (left-padded further there); the prediction is the velocity the pipeline's sampler
    steps with (the conditional transformer's output on the image tokens, negated, at time 1 − σ)."""
    from diffusers.models.transformers.transformer_ideogram4 import LLM_TOKEN_INDICATOR

    from trainer.diffusion.components import Components
    from trainer.diffusion.engine_ideogram4 import packed
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_ideogram)
    parts = Components("ideogram4", "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        # The pipeline's own decoding path: de-normalise the packed tokens, unpack, decode.
        tokens = packed(latents)
        std = torch.sqrt(pipe.vae.bn.running_var + pipe.vae.config.batch_norm_eps)
        z = (tokens * std + pipe.vae.bn.running_mean).view(1, 4, 4, 2, 2, 4).permute(0, 5, 1, 3, 2, 4).reshape(
            1, 4, 8, 8)
        torch.testing.assert_close(z, pipe.vae.encode(pixels).latent_dist.mean)

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        embeds, positions, segments, indicator = pipe.encode_prompt(prompts, grid_h=4, grid_w=4,
                                                                    max_sequence_length=256, device=torch.device("cpu"))
    real = indicator == LLM_TOKEN_INDICATOR
    lengths = real.sum(dim=1).tolist()
    assert text.mask is not None and [len(row) for row in text.sequences()] == lengths and lengths[0] < lengths[1]
    for row, full, keep in zip(text.sequences(), embeds, real, strict=True):
        torch.testing.assert_close(row, full[keep])  # the same features, however far the pipeline pads

    noisy = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        ours = engine.predict(pipe.transformer, noisy, sigma, text)
        image = packed(noisy)
        sequence = torch.cat([torch.zeros(2, 256, image.shape[-1]), image], dim=1)
        out = pipe.transformer(hidden_states=sequence, timestep=1 - sigma, encoder_hidden_states=embeds,
                               position_ids=positions, segment_ids=segments, indicator=indicator,
                               return_dict=False)[0]
    velocity = -out[:, 256:]  # what the pipeline steps with: scheduler.step(-v, …)
    torch.testing.assert_close(packed(ours), velocity, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_ideogram, shapes_dataset) -> TrainedRun:
    """The LoRA run the tests below read (guided previews, as the pipeline draws them)."""
    config = lora_config(tiny_ideogram, shapes_dataset, "ideogram4", lora={"rank": 4, "alpha": 8.0},
                         sampling={"guidance_scale": 4.0})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_ideogram4_lora_learns_and_both_files_load_onto_the_conditional_transformer(lora_run, tiny_ideogram):
    from trainer.families.ideogram4 import original_layout

    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    # Measured (seed 1, 30 steps): 1.33 → 1.13 (0.85×).
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    original_file, lora_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    assert lora_file.name == "pytorch_lora_weights.safetensors" and original_file.name == "tiny.safetensors"
    reference = load_file(lora_file)
    assert {key.split(".")[0] for key in reference} == {"transformer"}
    trained_modules = {key.rsplit(".lora_", 1)[0].removeprefix("transformer.") for key in reference}
    assert {"layers.0.attention.to_q", "layers.1.attention.to_out.0"} <= trained_modules

    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_ideogram)
    unconditional = {k: v.clone() for k, v in pipe.unconditional_transformer.state_dict().items()}
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    loaded = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(loaded - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture
    after = pipe.unconditional_transformer.state_dict()
    assert after.keys() == unconditional.keys() and all(torch.equal(after[k], unconditional[k]) for k in after)

    # The original-layout file (ai-toolkit's names): diffusion_model. + a layer of Ideogram's own model (ComfyUI's
    # Ideogram 4 model names its layers so: q, k, v stacked in attention.qkv, the output attention.o), each trained
    # module's delta in its layer's rows; and diffusers' own converter for these files draws the trained image.
    original = load_file(original_file)
    with safe_open(original_file, "pt") as handle:
        assert handle.metadata()["modelspec.architecture"] == "ideogram-4/lora"
    layout = original_layout(dict(pipe.transformer.config))
    comfy_layers = {target for target, *_ in layout.values()}
    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in original}
    assert {"diffusion_model.layers.0.attention.qkv", "diffusion_model.layers.1.attention.o"} <= modules
    assert {module.removeprefix("diffusion_model.") for module in modules} <= comfy_layers
    for module in trained_modules:
        target, offset, rows, _, _ = layout[module]
        name = f"diffusion_model.{target}"
        down, up = original[f"{name}.lora_down.weight"], original[f"{name}.lora_up.weight"]
        fused = float(original[f"{name}.alpha"]) / down.shape[0] * (up @ down)
        part = fused[offset: offset + rows] if rows else fused
        torch.testing.assert_close(part, reference[f"transformer.{module}.lora_B.weight"]
                                   @ reference[f"transformer.{module}.lora_A.weight"])
    fresh = pipeline(tiny_ideogram)
    fresh.load_lora_weights(str(original_file.parent), weight_name=original_file.name)
    assert np.abs(draw(fresh, final.prompts[0], final.seeds[0]) - trained).max() <= 2


@pytest.mark.slow
def test_ideogram4_resume_equals_uninterrupted(tmp_path, lora_run):
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")


@pytest.mark.slow
def test_ideogram4_frozen_layers_move_only_the_chosen_block_of_the_conditional_transformer(tmp_path, tiny_ideogram,
                                                                                          shapes_dataset):
    """Only the named block of the conditional transformer moves; the unconditional one is written back bitwise as it
    was, and the folder draws the run's final sample with ``Ideogram4Pipeline``; RUN_NAME.safetensors holds the same
    transformer in Ideogram's layout (bare keys, q/k/v fused: ComfyUI's Load Diffusion Model), detected as Ideogram 4's
    when given as an input."""
    from trainer.models import inspect_model
    from trainer.models.ideogram4_layout import to_diffusers

    config = diffusion_config(tiny_ideogram, shapes_dataset, "ideogram4", mode="frozen",
                              frozen={"trainable": ["layers.1"]},
                              training={"steps": 4, "learning_rate": 1e-3, "eval_every": 2},
                              sampling={"inference_steps": 2, "guidance_scale": 4.0})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    for component, moves in (("transformer", True), ("unconditional_transformer", False)):
        part = Path(component) / "diffusion_pytorch_model.safetensors"
        before, after = load_file(tiny_ideogram / part), load_file(folder / part)
        assert before.keys() == after.keys()
        moved = {name for name in before if not torch.equal(before[name], after[name])}
        assert bool(moved) == moves and all(name.startswith("layers.1.") for name in moved)
    original = load_file(single)
    assert single.name == "tiny.safetensors" and {"llm_cond_proj.weight", "layers.1.attention.qkv.weight",
                                                  "layers.1.attention.o.weight"} <= set(original)
    assert not any(".to_q." in key or ".to_out." in key for key in original)
    config = dict(pipeline(folder).transformer.config)
    trained = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    back = to_diffusers(original, config)
    assert set(back) ^ set(trained) == set(), sorted(set(back) ^ set(trained))[:5]
    assert all(torch.equal(back[k], trained[k]) for k in trained)
    assert inspect_model(single).architecture == "ideogram4"
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    image = pipeline(folder)(final.prompts[0], width=64, height=64, num_inference_steps=2, guidance_scale=4.0,
                             guidance_schedule=None, generator=torch.Generator("cpu").manual_seed(final.seeds[0]))
    assert np.abs(np.asarray(image.images[0], dtype=np.int16) - trained).max() <= 2


@pytest.mark.slow
def test_ideogram4_dreambooth_draws_its_class_images_through_its_pipeline_and_uses_the_prior(
        tmp_path, tiny_ideogram, shapes_dataset, monkeypatch):
    """DreamBooth with prior preservation: the missing class image is the base model's own picture of the class
    prompt (``Ideogram4Pipeline`` with both transformers, at the Sampling section's guidance), and every step adds the
    class term."""
    from tests.diffusion.conftest import draw_shapes
    from trainer.jobs.diffusion import DiffusionJob

    class_dir = draw_shapes(tmp_path / "class", 2, with_captions=False)
    seen: list[bool] = []
    original = DiffusionJob._batch_loss

    def spy(self, examples, is_class, indices):
        seen.append(is_class)
        return original(self, examples, is_class, indices)

    monkeypatch.setattr(DiffusionJob, "_batch_loss", spy)
    config = diffusion_config(tiny_ideogram, shapes_dataset, "ideogram4", mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 3,
                                          "prior_loss_weight": 1.0},
                              training={"steps": 2, "eval_every": 2},
                              sampling={"inference_steps": 2, "guidance_scale": 4.0})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert seen.count(True) == 2 and seen.count(False) == 2
    generated = np.asarray(Image.open(class_dir / "class-00000.png").convert("RGB"), dtype=np.int16)
    expected = draw(pipeline(tiny_ideogram), "a circle", 1 * 100_003, steps=2)
    assert np.abs(expected - generated).max() <= 2


def test_the_shipped_folder_counts_the_registrys_parameters_and_names_every_layer_in_the_original_layout():
    """The real-size folder, built on the meta device, counts the registry's parameters (both transformers 9.28 B,
    Qwen3-VL-8B without its LM head, Flux.2's VAE); at that shape every Linear of the transformer has its original
    layer (the one ComfyUI's Ideogram 4 model holds), q, k and v the thirds of attention.qkv's 3 × 4608 rows."""
    import diffusers
    import transformers

    from trainer.families import family
    from trainer.families.ideogram4 import original_layout
    from trainer.models.info import MODEL_CONFIGS

    model = family("ideogram4")
    folder = MODEL_CONFIGS / model.config_folders["flow_matching"]
    with torch.device("meta"):
        built = {name: diffusers.Ideogram4Transformer2DModel.from_config(
                     diffusers.Ideogram4Transformer2DModel.load_config(folder / name))
                 for name in ("transformer", "unconditional_transformer")}
        text_config = transformers.AutoConfig.from_pretrained(folder / "text_encoder")
        built["text_encoder"] = transformers.Qwen3VLModel(text_config)
        vae = diffusers.AutoencoderKLFlux2
        built["vae"] = vae.from_config(vae.load_config(folder / "vae"))
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in built.items()}
    assert counts == model.memory.reference_parameters
    transformer = built["transformer"]
    layout = original_layout(dict(transformer.config))
    linears = {name for name, module in transformer.named_modules() if isinstance(module, torch.nn.Linear)}
    assert linears == set(layout)
    assert layout["layers.33.attention.to_v"] == ("layers.33.attention.qkv", 2 * 4608, 4608, 3 * 4608, False)
    assert layout["layers.0.attention.to_out.0"][0] == "layers.0.attention.o"


def test_what_ideogram4_cannot_do_is_refused_by_name(tmp_path, tiny_ideogram):
    """Its Qwen3-VL encoder takes no LoRA (no loader applies one); a caption longer than the pipeline reads is named;
    Ideogram's own transformer file without the unconditional one beside it is named and refused; fusing a LoRA
    reaches the LoRA's own checks."""
    from safetensors.torch import save_file

    from trainer.config import ConfigError, config_from_dict
    from trainer.diffusion.engine_ideogram4 import prompt_tokens
    from trainer.errors import InputError
    from trainer.merge.fuse import fuse_lora
    from trainer.models import inspect_model, load_model

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Ideogram 4's Qwen3-VL text encoder takes no"):
        config_from_dict({"mode": "lora", "model": {"architecture": "ideogram4"}, "lora": {"train_text_encoder": True}})
    pipe = pipeline(tiny_ideogram)
    with pytest.raises(InputError, match=r"prompt 'a a a .*: 2\d{3} tokens; Ideogram 4 reads at most 2048"):
        prompt_tokens(pipe.tokenizer, ["a red circle", "a " * 2100])  # a caption the pipeline would refuse
    single = tmp_path / "ideogram4_fp8_scaled.safetensors"
    transformer = pipe.transformer
    save_file({key.replace(".to_q.", ".qkv."): value.contiguous() for key, value in transformer.state_dict().items()
               if ".to_k." not in key and ".to_v." not in key}, single)
    assert inspect_model(single).architecture == "ideogram4"
    with pytest.raises(InputError, match=r"model\.path: .*ideogram4_fp8_scaled\.safetensors holds Ideogram 4's "
                                         r"conditional transformer only; .* keep ideogram4_unconditional\.safetensors"):
        load_model(single)
    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_ideogram, [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def comfy_text_encoder(pipe) -> dict[str, torch.Tensor]:
    """The tiny Qwen3-VL as ComfyUI's Ideogram 4 encoder holds it (``final_norm``, ``lm_head`` off): the language
    model under ``model.`` without the norm after its last layer, no vision tower, no LM head."""
    return {key.replace("language_model.", "model.", 1): value.contiguous()
            for key, value in pipe.text_encoder.state_dict().items()
            if key.startswith("language_model.") and key != "language_model.norm.weight"}


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_ideogram):
    """The tiny Ideogram 4 as ComfyUI keeps it: ``ideogram4.safetensors`` (Ideogram's layout, ComfyUI's prefix) and
    ``ideogram4_unconditional.safetensors`` (bare keys) in models/diffusion_models, ``qwen3vl_8b.safetensors`` in
    models/text_encoders with Krea 2's ``qwen3vl_4b`` beside it (not to be taken for it), Flux.2's VAE in BFL's layout
    in models/vae; a config folder without a tokenizer (as the shipped one: the shipped Qwen3 files serve)."""
    import shutil

    from safetensors.torch import save_file

    from tests.families.test_flux2klein_single_files import bfl_vae
    from trainer.models.ideogram4_layout import to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-ideogram4")
    pipe = pipeline(tiny_ideogram)
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    for component, name, prefix in (("transformer", "ideogram4", "model.diffusion_model."),
                                    ("unconditional_transformer", "ideogram4_unconditional", "")):
        transformer = getattr(pipe, component)
        original = to_original(transformer.state_dict(), dict(transformer.config))
        save_file({prefix + k: v.contiguous() for k, v in original.items()},
                  models / "diffusion_models" / f"{name}.safetensors")
    save_file(comfy_text_encoder(pipe), models / "text_encoders" / "qwen3vl_8b.safetensors")
    save_file({"model.embed_tokens.weight": torch.zeros(8, 4)}, models / "text_encoders" / "qwen3vl_4b.safetensors")
    save_file(bfl_vae(pipe.vae), models / "vae" / "flux2-vae.safetensors")
    config_dir = write_tiny_config_dir(tiny_ideogram, root / "config")
    shutil.rmtree(config_dir / "tokenizer")
    return {"pipe": pipe, "models": models, "config_dir": config_dir}


def test_the_single_files_in_comfyuis_folders_load_offline_into_the_model_they_came_from(comfy, monkeypatch):
    """With the network blocked: both transformers, the VAE and Qwen3-VL's language model are the very weights they
    came from (the tower and the final norm the file lacks, which the pipeline never runs, are zeros and ones),
    prompts tokenize and encode as the folder's pipeline's do (the shipped Qwen3 vocabulary with Ideogram's chat turn),
    and the picture is the same."""
    import socket

    from trainer.models import load_model

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    original = comfy["pipe"]
    loaded = load_model(comfy["models"] / "diffusion_models" / "ideogram4.safetensors", config_dir=comfy["config_dir"])
    assert (loaded.info.architecture, loaded.info.source_kind) == ("ideogram4", "single_file")
    pipe = loaded.pipeline
    for part in ("transformer", "unconditional_transformer", "vae"):
        a, b = getattr(pipe, part).state_dict(), getattr(original, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    a, b = pipe.text_encoder.language_model.state_dict(), original.text_encoder.language_model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k != "norm.weight")
    assert all(not p.any() for p in pipe.text_encoder.visual.parameters()) and bool(a["norm.weight"].eq(1).all())
    assert not torch.equal(original.transformer.layers[0].attention.to_q.weight,
                           original.unconditional_transformer.layers[0].attention.to_q.weight)  # two models, each kept
    with torch.no_grad():
        ours = pipe.encode_prompt(["a red circle"], grid_h=4, grid_w=4, max_sequence_length=64,
                                  device=torch.device("cpu"))
        theirs = original.encode_prompt(["a red circle"], grid_h=4, grid_w=4, max_sequence_length=64,
                                        device=torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(ours, theirs, strict=True))
    assert np.array_equal(draw(pipe, "a red circle", 3, steps=2), draw(original, "a red circle", 3, steps=2))


def comfy_quantized(state: dict[str, torch.Tensor], layer_format: str = "float8_e4m3fn") -> tuple[dict, dict]:
    """A transformer file as Comfy-Org stores Ideogram 4 (ComfyUI's newer quantized format): each block's Linear
    weight in fp8 with one float32 ``weight_scale``, an ``input_scale`` and a ``comfy_quant`` description
    (``{"format": "float8_e4m3fn"}`` as UTF-8 bytes); and the weights ComfyUI computes with (fp8 × scale)."""
    import json

    description = torch.tensor(list(json.dumps({"format": layer_format}).encode("utf-8")), dtype=torch.uint8)
    stored, computed = {}, {}
    for key, value in state.items():
        if key.removeprefix("model.diffusion_model.").startswith("layers.") and key.endswith(".weight") \
                and value.ndim == 2:
            layer = key.removesuffix(".weight")
            scale = (value.abs().max() / 448).to(torch.float32)
            stored[key] = (value / scale).to(torch.float8_e4m3fn)
            stored |= {layer + ".weight_scale": scale, layer + ".input_scale": torch.ones(()),
                       layer + ".comfy_quant": description.clone()}
            computed[key.removeprefix("model.diffusion_model.")] = stored[key].to(torch.float32) * scale
        else:
            stored[key] = value
    return stored, computed


def test_comfy_orgs_fp8_files_are_read_as_comfyui_computes_with_them(comfy, tmp_path):
    """Both transformers in Comfy-Org's format (``ideogram4_fp8_scaled``, ``ideogram4_unconditional_fp8_scaled``):
    every quantized weight is fp8 × its scale, the others as they were; a layer in nvfp4 is refused naming it."""
    from safetensors.torch import load_file, save_file

    from trainer.errors import InputError
    from trainer.models import load_model
    from trainer.models.ideogram4_layout import to_diffusers

    models, folder = comfy["models"], tmp_path / "models" / "diffusion_models"
    folder.mkdir(parents=True)
    expected = {}
    for name in ("ideogram4", "ideogram4_unconditional"):
        stored, expected[name] = comfy_quantized(load_file(models / "diffusion_models" / f"{name}.safetensors"))
        save_file(stored, folder / f"{name}_fp8_scaled.safetensors")
    companions = {"config_dir": comfy["config_dir"], "vae_file": str(models / "vae" / "flux2-vae.safetensors"),
                  "text_encoder_files": [str(models / "text_encoders" / "qwen3vl_8b.safetensors")]}
    pipe = load_model(folder / "ideogram4_fp8_scaled.safetensors", **companions).pipeline
    for component, name in (("transformer", "ideogram4"), ("unconditional_transformer", "ideogram4_unconditional")):
        ours, original = getattr(pipe, component).state_dict(), getattr(comfy["pipe"], component).state_dict()
        computed = to_diffusers(expected[name], dict(getattr(pipe, component).config))
        assert computed and all(torch.equal(ours[k], v) for k, v in computed.items()), component
        assert all(torch.equal(ours[k], original[k]) for k in original if k not in computed), component
        assert all(torch.allclose(ours[k], original[k], rtol=0.07, atol=1e-3) for k in computed), component

    stored, _ = comfy_quantized(load_file(models / "diffusion_models" / "ideogram4.safetensors"), "nvfp4")
    save_file(stored, folder / "ideogram4_nvfp4_mixed.safetensors")
    with pytest.raises(InputError, match=r"model\.path: .*ideogram4_nvfp4_mixed\.safetensors is stored in ComfyUI's "
                                         r"quantized format \(it holds model\.diffusion_model\.layers\.0\..*\), "
                                         r"format nvfp4, which Kamaal does not read"):
        load_model(folder / "ideogram4_nvfp4_mixed.safetensors", **companions)


def test_what_an_ideogram4_file_is_not_is_refused_by_name(comfy, tmp_path):
    """The unconditional file as model.path: the conditional one to choose; a transformer of another shape by the key
    it does not know; the unconditional file is found in models/diffusion_models for a file in models/unet."""
    from safetensors.torch import load_file, save_file

    from trainer.errors import InputError
    from trainer.models import load_model

    models = comfy["models"]
    with pytest.raises(InputError, match=r"model\.path: .*ideogram4_unconditional\.safetensors is Ideogram 4's "
                                         r"unconditional transformer, which only guides; choose the conditional one"):
        load_model(models / "diffusion_models" / "ideogram4_unconditional.safetensors", config_dir=comfy["config_dir"])
    folder = tmp_path / "models" / "diffusion_models"
    folder.mkdir(parents=True)
    (folder / "ideogram4_unconditional.safetensors").write_bytes(
        (models / "diffusion_models" / "ideogram4_unconditional.safetensors").read_bytes())
    state = load_file(models / "diffusion_models" / "ideogram4.safetensors")
    companions = {"config_dir": comfy["config_dir"], "vae_file": str(models / "vae" / "flux2-vae.safetensors"),
                  "text_encoder_files": [str(models / "text_encoders" / "qwen3vl_8b.safetensors")]}
    other = folder / "ideogram4_other.safetensors"
    save_file(state | {"model.diffusion_model.layers.0.attention.wq.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(InputError, match=r"model\.path: .*ideogram4_other\.safetensors does not hold an Ideogram 4 "
                                         r"transformer of this shape: it has unknown layers\.0\.attention\.wq"):
        load_model(other, **companions)

    # ComfyUI lists models/unet with models/diffusion_models: the unconditional file is found in the other one.
    (tmp_path / "models" / "unet").mkdir()
    in_unet = tmp_path / "models" / "unet" / "ideogram4.safetensors"
    in_unet.write_bytes((models / "diffusion_models" / "ideogram4.safetensors").read_bytes())
    found = load_model(in_unet, **companions).pipeline.unconditional_transformer.state_dict()
    expected = comfy["pipe"].unconditional_transformer.state_dict()
    assert found.keys() == expected.keys() and all(torch.equal(found[k], expected[k]) for k in found)
