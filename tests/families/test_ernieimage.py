"""ERNIE-Image through the registry, on a tiny model built from its real classes (``ErnieImageTransformer2DModel``,
``AutoencoderKLFlux2`` with its batch-norm statistics, ``Mistral3Model`` with a Tekken-shaped fast tokenizer): what
is particular to it.  The engine's latents, prompts and prediction are the pipeline's; the kohya file (musubi-tuner's
names) applied module by module as ComfyUI applies it gives the weights the diffusers file gives, and the image the
trained adapter draws; the transformer file a full run writes is what diffusers' ``from_single_file`` reads.  LoRA
learning, the diffusers file through ``load_lora_weights``, resume, frozen blocks and DreamBooth are in
``test_flow_families.py``'s parametrised suites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

ARCH = "ernieimage"


@pytest.fixture(scope="module")
def tiny_ernie(tiny_models) -> Path:
    return tiny_models[ARCH]


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.ErnieImagePipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def delta(tensors: dict, down_key: str, up_key: str, alpha_key: str | None = None) -> torch.Tensor:
    down, up = tensors[down_key].float(), tensors[up_key].float()
    scale = float(tensors[alpha_key]) / down.shape[0] if alpha_key else 1.0
    return (up @ down) * scale


def test_the_tiny_folder_loads_is_detected_and_what_it_cannot_do_is_refused_by_name(tiny_ernie):
    """The folder loads as ERNIE-Image (its tokenizer puts Tekken's ``<s>`` first, as the pipeline expects); its
    Ministral 3 encoder takes no LoRA (its conversions: tests/merge/test_family_models_convert.py)."""
    from trainer.config import ConfigError, config_from_dict
    from trainer.models import load_model

    loaded = load_model(tiny_ernie)
    assert (loaded.info.architecture, loaded.info.prediction_type) == (ARCH, "flow_matching")
    assert type(loaded.pipeline).__name__ == "ErnieImagePipeline" and loaded.pipeline.pe is None
    assert loaded.pipeline.tokenizer("a red circle")["input_ids"][0] == 1
    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: ERNIE-Image's Ministral 3 text encoder"):
        config_from_dict({"mode": "lora", "model": {"architecture": ARCH}, "lora": {"train_text_encoder": True}})


def test_the_engine_encodes_latents_and_prompts_and_predicts_as_the_pipeline_does(tiny_ernie):
    """Latents: the VAE's mean patchified and normalised by its batch-norm statistics (made non-trivial here) with
    the ε the pipeline decodes with, so the pipeline's decode step gives the VAE's mean back; prompts: each prompt's
    ``encode_prompt`` rows, their own lengths; the prediction: the transformer on the pipeline's padded prompts and
    lengths at time σ·1000."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engine_flux2 import patchified, unpatchified
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_ernie)
    generator = torch.Generator().manual_seed(0)
    channels = pipe.vae.bn.running_mean.shape[0]
    pipe.vae.bn.running_mean.copy_(torch.randn(channels, generator=generator))
    pipe.vae.bn.running_var.copy_(torch.rand(channels, generator=generator) * 1e-3)  # ε matters at this size
    parts = Components(ARCH, "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        mean = pipe.vae.encode(pixels).latent_dist.mean
    assert latents.shape == mean.shape == (2, channels // 4, 8, 8)
    # The pipeline's decode: latents · sqrt(var + 1e-5) + mean, unpatchified (its code, applied to ours).
    std = torch.sqrt(pipe.vae.bn.running_var.view(1, -1, 1, 1) + 1e-5)
    restored = pipe._unpatchify_latents(patchified(latents) * std + pipe.vae.bn.running_mean.view(1, -1, 1, 1))
    torch.testing.assert_close(restored, mean, rtol=1e-4, atol=1e-5)
    assert torch.equal(unpatchified(patchified(latents)), latents)

    prompts = ["a red circle", "a small blue square on a green page"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        rows = pipe.encode_prompt(list(prompts), torch.device("cpu"))
    assert [len(row) for row in rows] == text.mask.sum(dim=1).tolist() and len(rows[0]) < len(rows[1])
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(text.sequences(), rows, strict=True))

    noisy = torch.randn(2, channels // 4, 8, 8, generator=generator)
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        text_bth, text_lens = pipe._pad_text(rows, torch.device("cpu"), torch.float32,
                                             pipe.transformer.config.text_in_dim)
        velocity = pipe.transformer(hidden_states=pipe._patchify_latents(noisy), timestep=sigma * 1000,
                                    text_bth=text_bth, text_lens=text_lens, return_dict=False)[0]
    torch.testing.assert_close(patchified(predicted), velocity)


def test_sigma_is_logit_normal_shifted_by_the_schedulers_four():
    from types import SimpleNamespace

    from trainer.diffusion.engine_ernieimage import ErnieImageEngine

    engine = ErnieImageEngine(SimpleNamespace(architecture=ARCH))
    for size in (32, 128):  # static: the same at every resolution
        assert engine.sigmas(torch.tensor([0.5]), torch.zeros(1, 32, size, size)).item() == pytest.approx(0.8)


def test_the_kohya_file_names_every_linear_as_musubi_and_comfyui_apply_it(tmp_path):
    """Adapters on every kind of Linear with random ups: the kohya file names each under its own diffusers path
    (``lora_unet_layers_0_self_attention_to_q``), whole.  Applied as ComfyUI does (every ``lora_unet_`` name is a
    ``diffusion_model.`` weight of its ERNIE model, whose keys are diffusers'; W += alpha/rank · up @ down), it
    gives the very weights the diffusers/peft file gives, and the transformer so patched predicts what the model
    with its adapters predicts."""
    from types import SimpleNamespace

    from trainer.families.ernieimage import musubi_layout
    from trainer.lora_formats import add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora
    from trainer.models.tiny import tiny_pipeline

    transformer = tiny_pipeline(ARCH).transformer
    base = {key: value.clone() for key, value in transformer.state_dict().items()}
    targets = ["to_q", "to_k", "to_v", "to_out.0", "gate_proj", "up_proj", "linear_fc2", "text_proj", "linear_1",
               "linear_2", "adaLN_modulation.1", "final_norm.linear", "final_linear"]
    add_lora_adapters(transformer, [], SimpleNamespace(rank=2, alpha=3.0, dropout=0.0, target_modules=targets), False)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if "lora_B" in name:  # trained adapters: B is no longer zero
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.1
    kohya_file = export_kohya_transformer_lora(tmp_path / "e.safetensors", ARCH, transformer, [], "e", {})
    diffusers_file = export_transformer_lora(tmp_path / "peft.safetensors", ARCH, transformer, [], {})
    kohya, reference = load_file(kohya_file), load_file(diffusers_file)

    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in kohya}
    unet = {key.rsplit(".lora_", 1)[0].removeprefix("transformer.") for key in reference}
    assert set(musubi_layout(dict(transformer.config))) == unet  # every Linear of the model, nothing else
    assert modules == {"lora_unet_" + m.replace(".", "_") for m in unet}
    assert {"lora_unet_layers_0_self_attention_to_q", "lora_unet_layers_1_mlp_linear_fc2", "lora_unet_text_proj",
            "lora_unet_adaLN_modulation_1", "lora_unet_final_norm_linear", "lora_unet_final_linear"} <= modules

    key_map = {"lora_unet_" + key.removesuffix(".weight").replace(".", "_"): key for key in base
               if key.endswith(".weight")}
    applied = dict(base)
    for name in modules:
        key = key_map[name]  # no kohya module that ComfyUI would drop as "lora key not loaded"
        kohya_delta = delta(kohya, f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha")
        module = key.removesuffix(".weight")
        torch.testing.assert_close(kohya_delta, delta(reference, f"transformer.{module}.lora_A.weight",
                                                      f"transformer.{module}.lora_B.weight"))
        applied[key] = applied[key] + kohya_delta

    import diffusers

    patched = diffusers.ErnieImageTransformer2DModel.from_config(transformer.config)
    patched.load_state_dict(applied)
    inputs = {"hidden_states": torch.randn(1, 16, 4, 4, generator=generator), "timestep": torch.tensor([500.0]),
              "text_bth": torch.randn(1, 5, 24, generator=generator), "text_lens": torch.tensor([5])}
    with torch.no_grad():
        torch.testing.assert_close(patched(**inputs, return_dict=False)[0],
                                   transformer(**inputs, return_dict=False)[0], rtol=1e-4, atol=1e-5)


def test_the_full_runs_transformer_file_is_what_diffusers_from_single_file_reads(tmp_path, tiny_ernie):
    """The transformer file of a full/frozen run (``Family.single_file_writer``): its own keys, which diffusers'
    ``from_single_file`` (ERNIE's checkpoint mapping) and ComfyUI's ERNIE model take as they are (Kamaal reads it
    back with its companions: the single-file tests below)."""
    import diffusers
    from safetensors.torch import save_file

    from trainer.models.qwenimage_single import pipeline_to_comfy

    pipe = pipeline(tiny_ernie)
    save_file(pipeline_to_comfy(pipe), tmp_path / "ernie.safetensors")
    read = diffusers.ErnieImageTransformer2DModel.from_single_file(
        str(tmp_path / "ernie.safetensors"), config=str(tiny_ernie), subfolder="transformer", local_files_only=True)
    ours = pipe.transformer.state_dict()
    assert all(torch.equal(value, ours[key]) for key, value in read.state_dict().items())
    assert read.state_dict().keys() == ours.keys()


def test_previews_from_prompts_encoded_once_are_the_images_from_the_text(tiny_ernie, tmp_path):
    """``encode_prompt`` returns one list (an embedding per prompt); previews drawn from the prompts encoded once
    (both sides: the pipeline guides above 1) are the pipeline's images from the text."""
    from PIL import Image

    from trainer.diffusion.sampling import draw as draw_samples
    from trainer.diffusion.sampling import encode_sample_prompts

    pipe = pipeline(tiny_ernie)
    encoded = encode_sample_prompts(pipe, ARCH, ["a red circle"], 4.0, "cpu")
    assert set(encoded["a red circle"]) == {"prompt_embeds", "negative_prompt_embeds"}
    from_text, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, 4.0, tmp_path / "text")
    from_embeds, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, 4.0, tmp_path / "embeds",
                                     conditioning=encoded)
    assert np.array_equal(np.asarray(Image.open(from_text[0])), np.asarray(Image.open(from_embeds[0])))


def test_the_shipped_configs_have_the_registrys_parameter_counts_and_shares():
    """``resources/model_configs/ernie-image`` built on the meta device: the memory estimate's reference counts, and
    the shares of Linear weights inside the blocks that base and text-encoder quantization store in fewer bits."""
    import diffusers
    import transformers

    from trainer.families import family
    from trainer.models.info import MODEL_CONFIGS

    folder, facts = MODEL_CONFIGS / "ernie-image", family(ARCH).memory
    with torch.device("meta"):
        transformer = diffusers.ErnieImageTransformer2DModel.from_config(
            diffusers.ErnieImageTransformer2DModel.load_config(folder / "transformer"))
        encoder = transformers.Mistral3Model(transformers.AutoConfig.from_pretrained(folder / "text_encoder"))
        vae = diffusers.AutoencoderKLFlux2.from_config(diffusers.AutoencoderKLFlux2.load_config(folder / "vae"))

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    def linear_share(module: torch.nn.Module, blocks: tuple[str, ...]) -> float:
        inside = sum(layer.weight.numel() for path in blocks for layer in module.get_submodule(path).modules()
                     if isinstance(layer, torch.nn.Linear))
        return inside / count(module)

    assert {"transformer": count(transformer), "text_encoder": count(encoder), "vae": count(vae)} == \
        facts.reference_parameters
    assert len(transformer.layers) == facts.block_count
    assert linear_share(transformer, family(ARCH).blocks) == pytest.approx(facts.quantizable_share, abs=0.001)
    assert linear_share(encoder, family(ARCH).text_encoders[0].blocks) == pytest.approx(
        facts.text_quantizable_share, abs=0.001)


@pytest.fixture(scope="module")
def comfy_ernie(tiny_ernie, tmp_path_factory):
    """The tiny ERNIE-Image as ComfyUI keeps it: the transformer under diffusers' keys with ComfyUI's
    ``model.diffusion_model.`` prefix in models/diffusion_models, Ministral 3 as ComfyUI's file holds it (the
    language model under ``model.``, no vision tower, the vocabulary as a ``tekken_model`` byte tensor) in
    models/text_encoders, Flux.2's VAE in BFL's layout in models/vae; a config folder without a tokenizer (as the
    shipped one)."""
    import shutil

    from safetensors.torch import save_file

    from tests.families.test_flux2klein_single_files import bfl_vae
    from trainer.models.qwenimage_single import pipeline_to_comfy
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-ernie")
    pipe = pipeline(tiny_ernie)
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_comfy(pipe).items()},
              models / "diffusion_models" / "ernie-image-turbo.safetensors")
    language = {f"model.{k}": v.contiguous().clone() for k, v in pipe.text_encoder.language_model.state_dict().items()}
    tekken = torch.frombuffer(bytearray(b'{"vocab": []}'), dtype=torch.uint8)
    save_file(language | {"tekken_model": tekken}, models / "text_encoders" / "ministral-3-3b.safetensors")
    save_file(bfl_vae(pipe.vae), models / "vae" / "flux2-vae.safetensors")
    config_dir = write_tiny_config_dir(tiny_ernie, root / "config")
    shutil.rmtree(config_dir / "tokenizer")
    return {"pipe": pipe, "models": models, "config_dir": config_dir, "tokenizer": tiny_ernie / "tokenizer"}


def comfy_picture(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("a red circle", width=64, height=64, num_inference_steps=2, guidance_scale=4.0,
                           generator=torch.Generator("cpu").manual_seed(3)).images[0], dtype=np.int16)


def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection (hub download, DNS lookup) fails the test."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_single_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy_ernie, monkeypatch):
    """Offline, with the ERNIE-Image folder named as ``model.tokenizer_folder`` (the whole folder: its tokenizer/ is
    found): the transformer, the VAE and Ministral's language model are the very weights they came from, the vision
    tower the file lacks is zeros, prompts encode as the folder's pipeline encodes them, and the picture is the same."""
    from trainer.models import load_model

    block_network(monkeypatch)
    original = comfy_ernie["pipe"]
    loaded = load_model(comfy_ernie["models"] / "diffusion_models" / "ernie-image-turbo.safetensors",
                        config_dir=comfy_ernie["config_dir"], tokenizer_folder=str(comfy_ernie["tokenizer"].parent))
    assert (loaded.info.architecture, loaded.info.source_kind) == (ARCH, "single_file")
    pipe = loaded.pipeline
    assert type(pipe).__name__ == "ErnieImagePipeline"
    for mine, theirs in ((pipe.transformer, original.transformer), (pipe.vae, original.vae),
                         (pipe.text_encoder.language_model, original.text_encoder.language_model)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), type(mine).__name__
    assert all(not p.any() for p in pipe.text_encoder.vision_tower.parameters())
    with torch.no_grad():
        ours = pipe.encode_prompt(["a red circle"], torch.device("cpu"))
        theirs = original.encode_prompt(["a red circle"], torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert np.array_equal(comfy_picture(pipe), comfy_picture(original))


@pytest.mark.parametrize("layout", ["mistral3_model", "release"])
def test_ministral_in_hugging_faces_layouts_loads_whole(comfy_ernie, tmp_path, layout):
    """Ministral 3 as the ERNIE-Image folder keeps it (``Mistral3Model``: ``language_model.``, ``vision_tower.``) or
    as Mistral's release stores ``Mistral3ForConditionalGeneration`` (``language_model.model.``,
    ``language_model.lm_head``) is read whole, the vision tower too; the transformer file without ComfyUI's prefix."""
    from safetensors.torch import save_file

    from trainer.models import load_model

    original = comfy_ernie["pipe"]
    own = {k: v.contiguous().clone() for k, v in original.text_encoder.state_dict().items()}
    if layout == "release":
        own = {k.replace("language_model.", "language_model.model.", 1): v for k, v in own.items()}
        own["language_model.lm_head.weight"] = own["language_model.model.embed_tokens.weight"].clone()
    save_file(own, tmp_path / "text_encoder.safetensors")
    transformer = tmp_path / "ernie-image.safetensors"
    save_file({k: v.contiguous() for k, v in original.transformer.state_dict().items()}, transformer)
    loaded = load_model(transformer, config_dir=comfy_ernie["config_dir"],
                        tokenizer_folder=str(comfy_ernie["tokenizer"]),
                        text_encoder_files=[str(tmp_path / "text_encoder.safetensors")],
                        vae_file=str(comfy_ernie["models"] / "vae" / "flux2-vae.safetensors")).pipeline
    a, b = loaded.text_encoder.state_dict(), original.text_encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a, b = loaded.transformer.state_dict(), original.transformer.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_what_an_ernie_file_lacks_or_cannot_be_is_refused_by_name(comfy_ernie, tmp_path):
    """No tokenizer: the field to set; no text encoder beside it: the file to choose; a text encoder with part of its
    vision tower: what it lacks; ComfyUI's scaled fp8 file is read as ComfyUI computes with it (fp8 × scale), a layer
    in nvfp4 refused by name."""
    import re

    from safetensors.torch import save_file

    from trainer.errors import InputError
    from trainer.models import load_model

    models = comfy_ernie["models"]
    file = models / "diffusion_models" / "ernie-image-turbo.safetensors"
    with pytest.raises(InputError, match=r"model\.tokenizer_folder: ERNIE-Image's tokenizer \(Mistral's Tekken "
                                         r"vocabulary\) .* choose the tokenizer folder of baidu/ERNIE-Image"):
        load_model(file, config_dir=comfy_ernie["config_dir"])
    alone = tmp_path / "models" / "diffusion_models" / "ernie-image.safetensors"
    alone.parent.mkdir(parents=True)
    alone.write_bytes(file.read_bytes())
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*ernie-image\.safetensors holds the ERNIE-Image "
                                         r"transformer only; choose its Ministral 3 text encoder file"):
        load_model(alone, config_dir=comfy_ernie["config_dir"], tokenizer_folder=str(comfy_ernie["tokenizer"]))

    whole = {k: v.contiguous().clone() for k, v in comfy_ernie["pipe"].text_encoder.state_dict().items()}
    torn = next(key for key in whole if key.startswith("vision_tower."))
    save_file({k: v for k, v in whole.items() if k != torn}, tmp_path / "ministral-3-3b_torn.safetensors")
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*ministral-3-3b_torn\.safetensors does not hold "
                                         rf"a Ministral 3 text encoder of this shape: it lacks {re.escape(torn)}"):
        load_model(file, config_dir=comfy_ernie["config_dir"], tokenizer_folder=str(comfy_ernie["tokenizer"]),
                   text_encoder_files=[str(tmp_path / "ministral-3-3b_torn.safetensors")])

    original = comfy_ernie["pipe"].transformer.state_dict()
    scaled, scales = {}, {}
    for key, value in original.items():
        if key.endswith(".weight") and value.ndim == 2 and key.startswith("layers."):
            scales[key] = value.abs().max() / 448
            scaled[key] = (value / scales[key]).to(torch.float8_e4m3fn)
            scaled[key.removesuffix(".weight") + ".scale_weight"] = scales[key].reshape(1)
        else:
            scaled[key] = value.contiguous()
    fp8 = tmp_path / "models" / "diffusion_models" / "ernie-image_fp8_scaled.safetensors"
    save_file(scaled | {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, fp8)
    companions = {"tokenizer_folder": str(comfy_ernie["tokenizer"]), "config_dir": comfy_ernie["config_dir"],
                  "text_encoder_files": [str(models / "text_encoders" / "ministral-3-3b.safetensors")],
                  "vae_file": str(models / "vae" / "flux2-vae.safetensors")}
    read = load_model(fp8, **companions).pipeline.transformer.state_dict()
    for key, scale in scales.items():  # the fp8 weight times its scale, as ComfyUI computes with it
        expected = (scaled[key].to(torch.float32) * scale).to(read[key].dtype)
        assert torch.equal(read[key], expected) and torch.allclose(read[key], original[key], rtol=0.07, atol=1e-3)
    newer = tmp_path / "models" / "diffusion_models" / "ernie-image_nvfp4_mixed.safetensors"
    nvfp4 = torch.tensor(list(b'{"format": "nvfp4"}'), dtype=torch.uint8)
    save_file({k: v.contiguous() for k, v in original.items()} | {"layers.0.mlp.gate_proj.weight_scale": torch.ones(4),
                                                                  "layers.0.mlp.gate_proj.comfy_quant": nvfp4}, newer)
    with pytest.raises(InputError, match=r"model\.path: .*ernie-image_nvfp4_mixed\.safetensors is stored in ComfyUI's "
                                         r"quantized format \(it holds layers\.0\.mlp\.gate_proj\.\w+\), format "
                                         r"nvfp4, which Kamaal does not read"):
        load_model(newer, **companions)
