"""Both LoRA files Kamaal writes, checked the way their users load them, module for module.

One matrix: SD 1.x, SD 2.x and SDXL tiny models × three kinds of targets × with and without text-encoder
LoRA, plus the shipped demo preset.  Each case puts adapters on the model with the trainer's own code,
gives them weights as training would (B is zero at the start), writes the files with the trainer's own
export, and then:

* diffusers (``load_lora_weights`` on a freshly loaded pipeline) applies every module of either file,
  each with the trained ΔW, and draws the trained adapter's picture;
* the kohya file's module names are kohya's own: diffusers-style for SD 1.x/2.x, the original (SAI)
  layout's for SDXL (checked against the single-file checkpoint's weight of that very module);
* Kamaal's merge room reads both files whole (``convert-lora``, ``loras``; ``fuse-lora`` for the largest
  case of each family draws the adapter's picture too), and an SDXL file in the old diffusers-style
  spelling reads the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.merge.conftest import render
from trainer.config import LoraConfig, load_config
from trainer.lora_formats import DIFFUSERS_FILE, export_lora_files
from trainer.lora_names import canonical_name, is_sai_name
from trainer.merge.lora_files import read_lora

REPO = Path(__file__).resolve().parents[2]
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
TARGETS = {"attn": ATTENTION, "attn+conv": [*ATTENTION, "conv1", "conv2"],
           "attn+proj+ff+conv": [*ATTENTION, "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"]}
CASES = [pytest.param(arch, targets, text, id=f"{arch}-{targets}-{'te' if text else 'unet'}")
         for arch in ("sd15", "sd2", "sdxl") for targets in TARGETS for text in (False, True)]
FUSED = {"attn+proj+ff+conv"}  # fuse-lora (a model load and a folder write) only for the largest case


def pipeline_class(arch: str):
    import diffusers

    return diffusers.StableDiffusionXLPipeline if arch == "sdxl" else diffusers.StableDiffusionPipeline


def plain_pipeline(model: Path, arch: str):
    """What a diffusers user writes: ``from_pretrained(path)``, nothing else."""
    extra = {} if arch == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
    return pipeline_class(arch).from_pretrained(model, local_files_only=True, **extra)


def lora_layers(pipe) -> dict[str, torch.Tensor]:
    """Every peft LoRA layer in the pipeline's UNet and text encoders → the ΔW it adds (float32)."""
    from peft.tuners.lora import LoraLayer

    deltas: dict[str, torch.Tensor] = {}
    for component in ("unet", "text_encoder", "text_encoder_2"):
        model = getattr(pipe, component, None)
        for name, layer in (model.named_modules() if model is not None else ()):
            if isinstance(layer, LoraLayer):
                (adapter,) = layer.active_adapters
                deltas[f"{component}.{name}"] = layer.get_delta_weight(adapter).detach().float()
    return deltas


def train_like(pipe, arch: str, lora: LoraConfig, text: bool, seed: int = 3) -> None:
    """Adapters by the trainer's own code, then weights as training leaves them: B no longer zero."""
    from peft.tuners.lora import LoraLayer

    from trainer.lora_formats import add_lora_adapters

    encoders = [e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None]
    add_lora_adapters(pipe.unet, encoders, lora, text)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in [pipe.unet, *encoders]:
            for layer in model.modules():
                if isinstance(layer, LoraLayer):
                    weight = layer.lora_B["default"].weight
                    weight.copy_(torch.randn(weight.shape, generator=generator) * 0.15)


def kohya_names_for(arch: str, trained: dict[str, torch.Tensor], base_pipe) -> dict[str, str]:
    """kohya's own name for each trained UNet module: ``lora_unet_`` + its path in the model kohya builds,
    dots → underscores.  For SDXL that model is the original (SAI) UNet, whose state dict is the single-file
    checkpoint's: the name is found by the weight itself (the one SAI weight equal to this module's)."""
    names: dict[str, str] = {}
    unet_paths = [key.removeprefix("unet.") for key in trained if key.startswith("unet.")]
    if arch != "sdxl":
        return {path: "lora_unet_" + path.replace(".", "_") for path in unet_paths}
    from trainer.models.original_layout import UNET_PREFIX, pipeline_to_original

    original = pipeline_to_original(base_pipe, "sdxl")
    unet_state = base_pipe.unet.state_dict()
    for path in unet_paths:
        weight = unet_state[f"{path}.weight"]
        matches = [key for key, value in original.items() if key.startswith(UNET_PREFIX) and key.endswith(".weight")
                   and value.shape == weight.shape and torch.equal(value, weight)]
        assert len(matches) == 1, (path, matches)
        names[path] = "lora_unet_" + matches[0][len(UNET_PREFIX):-len(".weight")].replace(".", "_")
    return names


def check_files(tmp_path: Path, model: Path, arch: str, lora: LoraConfig, text: bool, fuse: bool) -> None:
    from trainer.merge.convert import convert_lora
    from trainer.merge.lora_merge import merge_loras

    pipe = plain_pipeline(model, arch)
    base_image = render(pipe)
    train_like(pipe, arch, lora, text)
    trained = lora_layers(pipe)
    assert trained and any(k.startswith("text_encoder") for k in trained) == text
    trained_image = render(pipe)
    assert np.abs(trained_image - base_image).max() > 10  # the adapter really changes the picture

    encoders = [e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None] if text else []
    kohya_file, diffusers_file = export_lora_files(
        tmp_path / "run.safetensors", tmp_path / "diffusers" / DIFFUSERS_FILE, arch, pipe.unet, encoders,
        "run", {"mode": "lora"})

    # 1. diffusers applies every module of both files with the trained ΔW, and draws the trained picture.
    for path in (kohya_file, diffusers_file):
        fresh = plain_pipeline(model, arch)
        fresh.load_lora_weights(str(path.parent), weight_name=path.name)
        loaded = lora_layers(fresh)
        assert loaded.keys() == trained.keys(), (path.name, sorted(trained.keys() ^ loaded.keys())[:5])
        for key, delta in trained.items():
            assert torch.allclose(loaded[key], delta, atol=1e-6, rtol=1e-4), (path.name, key)
        assert np.abs(render(fresh) - trained_image).max() <= 1, path.name

    # 2. kohya's own module names.
    kohya_keys = load_file(kohya_file).keys()
    modules = {k.removesuffix(".lora_down.weight") for k in kohya_keys if k.endswith(".lora_down.weight")}
    expected = set(kohya_names_for(arch, trained, plain_pipeline(model, arch)).values())
    assert {m for m in modules if m.startswith("lora_unet_")} == expected
    te_pattern = r"lora_te1?_|lora_te2_" if arch == "sdxl" else r"lora_te_"
    text_modules = {m for m in modules if m.startswith("lora_te")}
    assert len(text_modules) == sum(k.startswith("text_encoder") for k in trained)
    assert all(re.match(rf"({te_pattern})text_model_encoder_layers_\d+_self_attn_[qkvout]+_proj$", m)
               for m in text_modules), sorted(text_modules)[:3]
    if arch == "sdxl":
        assert all(is_sai_name(m) for m in expected) and not any("down_blocks" in m for m in modules)
        assert not text or {m[:8] for m in text_modules} == {"lora_te1", "lora_te2"}

    # 3. The merge room reads both files whole: same modules, same ΔW; converts and merges them.
    as_kohya, as_diffusers = read_lora(kohya_file), read_lora(diffusers_file)
    assert as_kohya.modules.keys() == as_diffusers.modules.keys() and len(as_kohya.modules) == len(trained)
    for name, module in as_kohya.modules.items():
        assert torch.allclose(as_diffusers.modules[name].delta(), module.delta(), atol=1e-6, rtol=1e-5), name
    for path in (kohya_file, diffusers_file):
        converted = read_lora(convert_lora(path, tmp_path / f"converted-{path.stem}.safetensors"))
        assert converted.modules.keys() == as_kohya.modules.keys()
    half_and_half = read_lora(merge_loras([(kohya_file, 0.5), (diffusers_file, 0.5)],
                                          tmp_path / "merged.safetensors").output)
    for name, module in as_kohya.modules.items():
        assert torch.allclose(half_and_half.modules[name].delta(), module.delta(), atol=1e-6, rtol=1e-5), name
    if arch == "sdxl":  # a file from before SAI names (diffusers-style) still reads the same
        old = tmp_path / "old-spelling.safetensors"
        save_file({canonical_name(k.partition(".")[0]) + "." + k.partition(".")[2]: v
                   for k, v in load_file(kohya_file).items()}, str(old))
        assert not any(is_sai_name(k.split(".")[0]) for k in load_file(old))
        assert read_lora(old).modules.keys() == as_kohya.modules.keys()
    if fuse:
        from trainer.merge.fuse import fuse_lora

        fuse_lora(model, [(kohya_file, 1.0)], output_dir=tmp_path / "fused")
        assert np.abs(render(plain_pipeline(tmp_path / "fused", arch)) - trained_image).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "targets", "text"), CASES)
def test_both_lora_files_load_module_for_module(tmp_path, request, arch, targets, text):
    model = request.getfixturevalue(f"tiny_{arch}")
    lora = LoraConfig(rank=4, alpha=8.0, target_modules=TARGETS[targets], train_text_encoder=text)
    check_files(tmp_path, model, arch, lora, text, fuse=text and targets in FUSED)


@pytest.mark.slow
def test_the_demo_presets_lora_files_load_module_for_module(tmp_path):
    config = load_config(REPO / "resources" / "presets" / "demo.toml")
    model = Path(config.model.path)
    if not model.is_absolute():
        model = REPO / "resources" / "presets" / model
    check_files(tmp_path, model.resolve(), config.model.architecture, config.lora, config.lora.train_text_encoder,
                fuse=True)
